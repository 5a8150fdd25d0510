//! `GET /storefront/demo?shop=…&token=…`: a sandbox product page with the
//! widget, for trying the storefront flow without a Shopify theme. Served
//! only where the Meta sandbox is mounted (embedded development mode or
//! `[sandbox] enabled`), never in a production configuration, and only to
//! whoever holds the sandbox operator token: the page writes a sample
//! product and signs App Proxy queries with the real app secret, so on a
//! staging server with `[sandbox] enabled` it would otherwise let anyone
//! create subscriptions. The token is the one the sandbox's control routes
//! take (`[sandbox] token`, or `<data_dir>/sandbox.token` in development),
//! checked by the sandbox itself before anything is read or written.
//!
//! The page shows the tenant's newest product (a sample product with one
//! sold-out variant is added to an empty catalog) and points the widget at
//! `POST /storefront/back-in-stock` with an App Proxy query signed here,
//! as Shopify's proxy would sign it.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use galantis_core::ShopDomain;
use galantis_store::tenant::catalog::{self, ProductFields, ProductView, VariantFields};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::proxy;
use crate::error::AppError;
use crate::state::AppState;
use crate::webhooks::ingress::{shopify_secrets, tenant_of_shop};

const PAGE: &str = include_str!("demo.html");
/// The sample product's Shopify id (an id no real shop uses this low).
const SAMPLE_PRODUCT_ID: i64 = 1_000_001;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DemoQuery {
    /// The tenant's shop, `*.myshopify.com`.
    shop: String,
    /// The sandbox operator token (`[sandbox] token` or `sandbox.token`
    /// in the data directory).
    token: Option<String>,
}

fn sample() -> ProductFields {
    let variant = |id: i64, size: &str, qty: i64, pos: i64| VariantFields {
        shopify_variant_id: id,
        title: Some(size.to_owned()),
        price: Some("24.00".into()),
        inventory_quantity: Some(qty),
        option1: Some(size.to_owned()),
        position: Some(pos),
        ..Default::default()
    };
    ProductFields {
        shopify_product_id: SAMPLE_PRODUCT_ID,
        title: Some("Galantis sandbox tee".into()),
        handle: Some("galantis-sandbox-tee".into()),
        status: Some("active".into()),
        options: json!([{"name": "Size"}]),
        payload: json!({"id": SAMPLE_PRODUCT_ID, "sandbox": true}),
        variants: vec![
            variant(2_000_001, "S", 5, 1),
            variant(2_000_002, "M", 0, 2),
            variant(2_000_003, "L", 3, 3),
        ],
        ..Default::default()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The product in Shopify's `/products/<handle>.js` shape (what the widget reads).
fn product_json(p: &ProductView) -> Value {
    let names: Vec<Value> = p
        .options
        .as_array()
        .map(|o| {
            o.iter()
                .filter_map(|x| x.get("name").or(Some(x)).and_then(Value::as_str))
                .map(|n| json!(n))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": p.shopify_product_id,
        "title": p.title,
        "options": names,
        "variants": p.variants.iter().map(|v| json!({
            "id": v.shopify_variant_id,
            "title": v.title,
            "option1": v.option1, "option2": v.option2, "option3": v.option3,
            "price": v.price,
            "available": v.inventory_quantity.is_some_and(|q| q > 0),
        })).collect::<Vec<_>>(),
    })
}

#[utoipa::path(
    get,
    path = "/storefront/demo",
    tag = "storefront",
    summary = "Sandbox product page embedding the widget (development and sandbox only)",
    params(DemoQuery),
    responses(
        (status = 200, description = "HTML", body = String, content_type = "text/html"),
        (status = 404, description = "`not_found` (no sandbox mounted), `invalid_sandbox_token` (token missing or wrong), `unknown_shop`"),
    )
)]
pub async fn page(
    State(state): State<AppState>,
    Query(q): Query<DemoQuery>,
) -> Result<Response, AppError> {
    let Some(sandbox) = state
        .sending
        .embedded_sandbox()
        .filter(|_| state.config.sandbox_mounted())
    else {
        return Err(AppError::NotFoundCode {
            code: "not_found",
            message: "the demo page is served only in development mode or with the sandbox enabled"
                .into(),
        });
    };
    // Before the shop is looked up: without the token nothing is read
    // (not even whether the shop is installed) and nothing is written.
    if q.token.as_deref().is_none_or(str::is_empty) || !sandbox.control_token_ok(q.token.as_deref())
    {
        return Err(AppError::NotFoundCode {
            code: "invalid_sandbox_token",
            message: "the demo page needs `?token=<sandbox operator token>` ([sandbox] token, or sandbox.token in the data directory)".into(),
        });
    }
    let shop = ShopDomain::parse(&q.shop).map_err(|_| AppError::NotFoundCode {
        code: "unknown_shop",
        message: "no tenant is installed for this shop".into(),
    })?;
    let tenant = tenant_of_shop(&state, &shop).await?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let mut products = catalog::list_products(&mut tx, None, 1).await?;
    if products.iter().all(|p| p.variants.is_empty()) {
        catalog::upsert_product(&mut tx, &sample(), now.timestamp_millis()).await?;
        products = catalog::list_products(&mut tx, None, 1).await?;
    }
    tx.commit().await?;
    let product = products
        .into_iter()
        .next()
        .ok_or(AppError::NotFound("product"))?;
    let secret: SecretString = shopify_secrets(&state).swap_remove(0);
    let ts = now.timestamp().to_string();
    let signed = proxy::signed_query(
        &[
            ("shop", shop.as_str()),
            ("logged_in_customer_id", ""),
            ("path_prefix", "/apps/galantis"),
            ("timestamp", &ts),
        ],
        &secret,
    );
    let pj = product_json(&product);
    let options: String = product
        .variants
        .iter()
        .map(|v| {
            let sold_out = v.inventory_quantity.is_none_or(|q| q <= 0);
            format!(
                "<option value=\"{}\">{}{}</option>",
                v.shopify_variant_id,
                escape(v.title.as_deref().unwrap_or("Default")),
                if sold_out { " — sold out" } else { "" }
            )
        })
        .collect();
    let html = PAGE
        .replace(
            "{{title}}",
            &escape(product.title.as_deref().unwrap_or("Product")),
        )
        .replace("{{options}}", &options)
        .replace(
            "{{product_json}}",
            &serde_json::to_string(&pj)
                .expect("json")
                .replace('<', "\\u003c"),
        )
        .replace("{{shop}}", &escape(shop.as_str()))
        .replace(
            "{{endpoint}}",
            &escape(&format!("/storefront/back-in-stock?{signed}")),
        );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response())
}
