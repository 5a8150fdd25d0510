/* Galantis back-in-stock widget: dependency-free, served at
 * /storefront/back-in-stock.js (Shopify appends ?shop=… to script tags).
 *
 * Availability: the product JSON embedded by the page
 * (<script type="application/json" data-galantis-product>, or a theme's
 * [data-product-json]), else /products/<handle>.js fetched from the shop.
 * Selected variant: the add-to-cart form's `id` field, else the `variant`
 * URL parameter, else the first variant; re-read on `variant:change`
 * events, any `change` event, and history changes.
 * Posts to data-endpoint (default /apps/galantis/back-in-stock, the App
 * Proxy path).
 */
(function () {
  "use strict";
  if (window.__galantisBackInStock) return;
  window.__galantisBackInStock = true;
  var SETTINGS = __GALANTIS_SETTINGS__;
  var script = document.currentScript;
  var endpoint = (script && script.getAttribute("data-endpoint")) || "/apps/galantis/back-in-stock";
  var CODES = ["+1", "+52", "+34", "+44", "+49", "+33", "+39", "+55", "+54", "+57", "+56", "+51", "+91", "+61"];
  var product = null;
  var root = null;
  var form = null;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    if (text) e.textContent = text;
    return e;
  }

  function embeddedProduct() {
    var node = document.querySelector("script[data-galantis-product]") || document.querySelector("[data-product-json]");
    if (!node) return null;
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  function loadProduct(done) {
    var p = embeddedProduct();
    if (p) return done(p);
    var m = location.pathname.match(/\/products\/([^\/?#]+)/);
    if (!m || !window.fetch) return done(null);
    var base = (window.Shopify && Shopify.routes && Shopify.routes.root) || "/";
    fetch(base + "products/" + m[1] + ".js", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(done, function () { done(null); });
  }

  function cartForm() {
    return document.querySelector('form[action*="/cart/add"]');
  }

  function selectedVariant() {
    if (!product || !product.variants || !product.variants.length) return null;
    var id = null;
    var f = cartForm();
    var input = f && f.querySelector('[name="id"]');
    if (input && input.value) id = String(input.value);
    if (!id) id = new URLSearchParams(location.search).get("variant");
    for (var i = 0; i < product.variants.length; i++) {
      if (String(product.variants[i].id) === id) return product.variants[i];
    }
    return product.variants[0];
  }

  function selectedOptions(v) {
    var out = {};
    var names = product.options || [];
    for (var i = 0; i < names.length && i < 3; i++) {
      var name = typeof names[i] === "string" ? names[i] : names[i] && names[i].name;
      var value = v.options ? v.options[i] : v["option" + (i + 1)];
      if (name && value) out[name] = String(value);
    }
    return out;
  }

  function message(text, ok) {
    var m = root.querySelector(".galantis-bis-message");
    m.textContent = text;
    m.style.color = ok ? "#1a7f37" : "#b42318";
  }

  function submit(ev) {
    ev.preventDefault();
    var v = selectedVariant();
    if (!v) return;
    var raw = form.querySelector('[name="galantis-phone"]').value.trim();
    var code = form.querySelector('[name="galantis-country"]').value;
    var phone = raw.charAt(0) === "+" ? raw : code + " " + raw;
    if (!raw) return message("Enter your WhatsApp number.", false);
    if (!form.querySelector('[name="galantis-consent"]').checked) {
      return message("Tick the box to agree to the WhatsApp message.", false);
    }
    var body = { variant_id: v.id, phone: phone, consent: true, options: selectedOptions(v) };
    var name = form.querySelector('[name="galantis-first-name"]').value.trim();
    if (name) body.first_name = name;
    var button = form.querySelector(".galantis-bis-submit");
    button.disabled = true;
    fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) { return { status: r.status, body: j }; }, function () { return { status: r.status, body: {} }; });
    }).then(function (res) {
      button.disabled = false;
      if (res.status === 200 || res.status === 201) {
        var pending = res.body.subscription && res.body.subscription.status === "PENDING";
        message(pending ? "Almost done: confirm on WhatsApp to be notified." : "Done! We'll message you on WhatsApp when it's back.", true);
        form.style.display = "none";
        root.setAttribute("data-subscribed", String(v.id));
      } else if (res.status === 429) {
        message("Too many attempts; please try again in a minute.", false);
      } else {
        message((res.body.error && res.body.error.message) || "Something went wrong; please try again.", false);
      }
    }, function () {
      button.disabled = false;
      message("Network error; please try again.", false);
    });
  }

  function build() {
    root = el("div", { id: "galantis-bis", style: "margin:12px 0;font-family:inherit;display:none" });
    if (SETTINGS.position === "floating") root.style.cssText += ";position:fixed;right:16px;bottom:16px;z-index:9999;background:#fff;padding:12px;border-radius:8px;box-shadow:0 2px 12px rgba(0,0,0,.2);max-width:320px";
    var button = el("button", { type: "button", "class": "galantis-bis-button",
      style: "width:100%;padding:12px;border:0;border-radius:6px;cursor:pointer;font-size:1em;background:" + SETTINGS.button_color + ";color:" + SETTINGS.text_color }, SETTINGS.button_text);
    form = el("form", { "class": "galantis-bis-form", style: "display:none;margin-top:8px" });
    var country = el("select", { name: "galantis-country", "aria-label": "Country calling code", style: "padding:8px" });
    for (var i = 0; i < CODES.length; i++) country.appendChild(el("option", { value: CODES[i] }, CODES[i]));
    var phone = el("input", { name: "galantis-phone", type: "tel", autocomplete: "tel-national", placeholder: "WhatsApp number", required: "required", style: "padding:8px;width:60%" });
    var name = el("input", { name: "galantis-first-name", type: "text", autocomplete: "given-name", placeholder: "First name (optional)", style: "padding:8px;width:100%;margin-top:6px;box-sizing:border-box" });
    var label = el("label", { style: "display:block;margin:8px 0;font-size:.9em" });
    var consent = el("input", { name: "galantis-consent", type: "checkbox" });
    label.appendChild(consent);
    label.appendChild(document.createTextNode(" I agree to receive a WhatsApp message when this item is back in stock."));
    var send = el("button", { type: "submit", "class": "galantis-bis-submit",
      style: "padding:10px 16px;border:0;border-radius:6px;cursor:pointer;background:" + SETTINGS.button_color + ";color:" + SETTINGS.text_color }, "Notify me");
    var row = el("div", {});
    row.appendChild(country);
    row.appendChild(document.createTextNode(" "));
    row.appendChild(phone);
    form.appendChild(row);
    form.appendChild(name);
    form.appendChild(label);
    form.appendChild(send);
    form.addEventListener("submit", submit);
    button.addEventListener("click", function () { form.style.display = "block"; });
    root.appendChild(button);
    root.appendChild(form);
    root.appendChild(el("div", { "class": "galantis-bis-message", role: "status", style: "margin-top:6px;font-size:.9em" }));
    var f = cartForm();
    if (SETTINGS.position === "floating" || !f) document.body.appendChild(root);
    else if (SETTINGS.position === "above_add_to_cart") f.parentNode.insertBefore(root, f);
    else f.parentNode.insertBefore(root, f.nextSibling);
  }

  function update() {
    if (!root) return;
    var v = selectedVariant();
    var soldOut = !!v && v.available === false;
    root.style.display = soldOut ? "block" : "none";
    root.setAttribute("data-variant", v ? String(v.id) : "");
    if (soldOut && root.getAttribute("data-subscribed") !== String(v.id)) {
      form.style.display = form.style.display === "block" ? "block" : "none";
      if (root.getAttribute("data-subscribed")) {
        root.removeAttribute("data-subscribed");
        root.querySelector(".galantis-bis-message").textContent = "";
      }
    }
  }

  function later() { setTimeout(update, 0); }

  function start() {
    loadProduct(function (p) {
      if (!p || !p.variants) return;
      product = p;
      build();
      update();
      document.addEventListener("variant:change", later);
      document.addEventListener("change", later, true);
      window.addEventListener("popstate", later);
      ["pushState", "replaceState"].forEach(function (name) {
        var orig = history[name];
        history[name] = function () { var r = orig.apply(this, arguments); later(); return r; };
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
