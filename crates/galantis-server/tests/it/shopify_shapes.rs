//! Shopify customer webhooks as Shopify sends them today (API 2025-01+:
//! consent and tags on their own topics, customers without them) and in the
//! seed's older shapes; payloads follow Shopify's webhook reference samples.

use galantis_core::{ConsentSource, MarketingState};
use galantis_server::webhooks::signature::sign_shopify;
use galantis_store::tenant::contacts;
use galantis_testkit::{TEST_SHOPIFY_SECRET, TestApp, TestTenant};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::webhooks::{events_of, meta, processed_ok, shopify, shopify_ok, webhook_events};

const ID: i64 = 706405506930370084;
const PHONE: &str = "+525512345678";

/// `customers/create` as Shopify's current reference sends it: no `tags`,
/// no `sms_marketing_consent`, no `email_marketing_consent`.
fn current_customer(updated_at: &str) -> Value {
    json!({
        "id": ID, "created_at": "2026-01-10T10:00:00-05:00", "updated_at": updated_at,
        "first_name": "Bob", "last_name": "Biller", "state": "enabled",
        "note": "This customer loves ice cream", "verified_email": true,
        "multipass_identifier": null, "tax_exempt": false, "email": "bob@biller.com",
        "phone": PHONE, "currency": "MXN", "addresses": [], "tax_exemptions": [],
        "admin_graphql_api_id": format!("gid://shopify/Customer/{ID}"),
        "default_address": {"id": 12321, "customer_id": ID, "first_name": "Bob", "last_name": "Biller",
            "address1": "Av. Reforma 1", "city": "Ciudad de México", "country": "Mexico", "zip": "06600",
            "phone": PHONE, "name": "Bob Biller", "country_code": "MX", "country_name": "Mexico", "default": true}
    })
}

/// The seed's older shape: tags and both consents inline.
fn seed_customer(updated_at: &str) -> Value {
    let mut c = current_customer(updated_at);
    c["tags"] = json!("vip, newsletter");
    c["sms_marketing_consent"] = json!({"state": "subscribed", "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T10:00:00-05:00", "consent_collected_from": "SHOPIFY"});
    c["email_marketing_consent"] = json!({"state": "subscribed", "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T10:00:00-05:00"});
    c
}

fn whatsapp_consent(state: &str, updated_at: &str) -> Value {
    json!({"customer_id": ID, "phone_number": PHONE,
           "whats_app_marketing_consent": {"state": state, "opt_in_level": "single_opt_in",
                                           "updated_at": updated_at, "collected_from": "shopify"}})
}

fn sms_consent(state: &str, at: &str) -> Value {
    json!({"id": ID, "phone": PHONE,
           "sms_marketing_consent": {"state": state, "opt_in_level": "single_opt_in",
                                     "consent_updated_at": at, "consent_collected_from": "other"}})
}

fn email_consent(state: &str, at: &str) -> Value {
    json!({"customer_id": ID, "email_address": "bob@biller.com",
           "email_marketing_consent": {"state": state, "opt_in_level": "confirmed_opt_in",
                                       "consent_updated_at": at}})
}

async fn contact(
    app: &TestApp,
    t: &TestTenant,
) -> (contacts::Contact, Vec<contacts::ConsentEvent>) {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_shopify_id(&mut tx, ID)
        .await
        .unwrap()
        .expect("contact");
    let h = contacts::consent_history(&mut tx, c.id).await.unwrap();
    tx.commit().await.unwrap();
    (c, h)
}

async fn app_and_tenant(name: &str) -> (TestApp, TestTenant) {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant(name).await;
    (app, t)
}

#[tokio::test]
async fn whatsapp_consent_subscribes_with_proof_and_outranks_sms_consent() {
    let (app, t) = app_and_tenant("shapes-wa").await;
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &current_customer("2026-01-10T10:00:00-05:00"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unknown);
    assert!(h.is_empty());

    let topic = "customers_whats_app_marketing_consent/update";
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-1",
        &whatsapp_consent("subscribed", "2026-01-11T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].source, ConsentSource::ShopifyWhatsappConsent);
    assert_eq!(
        h[0].reference.as_deref(),
        Some(format!("customer:{ID} opt_in_level=single_opt_in collected_from=shopify").as_str())
    );
    assert_eq!(h[0].occurred_at.to_rfc3339(), "2026-01-11T09:00:00+00:00");
    let changed = events_of(&app, &t, "MarketingConsentChanged").await;
    assert_eq!(changed.len(), 1);

    // A later SMS opt-out does not decide WhatsApp marketing any more.
    shopify_ok(
        &app,
        &t,
        "customers_marketing_consent/update",
        "sms-1",
        &sms_consent("unsubscribed", "2026-01-12T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(h.len(), 1);
    let ignored = webhook_events(&app, &t, "status=ignored").await;
    assert_eq!(ignored.len(), 1);
    assert!(
        ignored[0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("WhatsApp consent decides"),
        "{ignored:?}"
    );

    // The WhatsApp opt-out does.
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-2",
        &whatsapp_consent("unsubscribed", "2026-01-13T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].previous_state, Some(MarketingState::Subscribed));
}

#[tokio::test]
async fn consent_before_the_customer_creates_the_contact_and_the_customer_fills_it() {
    let (app, t) = app_and_tenant("shapes-first").await;
    let topic = "customers_whats_app_marketing_consent/update";
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-1",
        &whatsapp_consent("subscribed", "2026-01-11T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, _) = contact(&app, &t).await;
    assert_eq!(c.phone.as_deref(), Some(PHONE));
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &current_customer("2026-01-10T10:00:00-05:00"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.first_name.as_deref(), Some("Bob"));
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(h.len(), 1);
}

#[tokio::test]
async fn sms_consent_in_the_current_and_the_seed_shapes() {
    let (app, t) = app_and_tenant("shapes-sms").await;
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &current_customer("2026-01-10T10:00:00-05:00"),
    )
    .await;
    processed_ok(&app, &t).await;
    shopify_ok(
        &app,
        &t,
        "customers_marketing_consent/update",
        "sms-1",
        &sms_consent("subscribed", "2026-01-11T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(h.last().unwrap().source, ConsentSource::ShopifySmsConsent);

    // The seed's topic name and shape, with email consent inline.
    let seed = json!({"id": ID, "phone": PHONE,
        "email_marketing_consent": {"state": "unsubscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2026-01-12T09:00:00Z"},
        "sms_marketing_consent": {"state": "unsubscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2026-01-12T09:00:00Z"},
        "updated_at": "2026-01-12T09:00:00Z"});
    shopify_ok(
        &app,
        &t,
        "customers/marketing_consent_updated",
        "seed-1",
        &seed,
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(c.email_marketing_state, Some(MarketingState::Unsubscribed));
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].source, ConsentSource::ShopifyCustomer);
}

#[tokio::test]
async fn email_consent_is_stored_and_shown_but_never_decides_whatsapp() {
    let (app, t) = app_and_tenant("shapes-email").await;
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &current_customer("2026-01-10T10:00:00-05:00"),
    )
    .await;
    processed_ok(&app, &t).await;
    let topic = "customers_email_marketing_consent/update";
    shopify_ok(
        &app,
        &t,
        topic,
        "em-1",
        &email_consent("subscribed", "2026-01-11T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.email_marketing_state, Some(MarketingState::Subscribed));
    assert_eq!(c.marketing_state, MarketingState::Unknown);
    assert!(h.is_empty(), "no WhatsApp consent proof");
    let shown: Value = app
        .get(&format!("/api/v1/contacts/{}", c.id), &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["contact"]["email_marketing_state"], "SUBSCRIBED");
    assert_eq!(shown["contact"]["marketing_state"], "UNKNOWN");

    // An older email consent changes nothing; a newer one does.
    shopify_ok(
        &app,
        &t,
        topic,
        "em-2",
        &email_consent("unsubscribed", "2026-01-01T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    assert_eq!(
        contact(&app, &t).await.0.email_marketing_state,
        Some(MarketingState::Subscribed)
    );
    shopify_ok(
        &app,
        &t,
        topic,
        "em-3",
        &email_consent("unsubscribed", "2026-01-12T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, _) = contact(&app, &t).await;
    assert_eq!(c.email_marketing_state, Some(MarketingState::Unsubscribed));
    assert_eq!(c.marketing_state, MarketingState::Unknown);
}

#[tokio::test]
async fn an_older_dated_consent_changes_nothing() {
    let (app, t) = app_and_tenant("shapes-stale").await;
    let topic = "customers_whats_app_marketing_consent/update";
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-new",
        &whatsapp_consent("subscribed", "2026-01-11T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    // Delivered late, dated before the opt-in in force.
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-old",
        &whatsapp_consent("unsubscribed", "2026-01-05T09:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(h.len(), 1);
    assert_eq!(
        events_of(&app, &t, "MarketingConsentChanged").await.len(),
        1
    );
}

#[tokio::test]
async fn tags_in_the_current_and_the_seed_shapes() {
    let (app, t) = app_and_tenant("shapes-tags").await;
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &seed_customer("2026-01-10T10:00:00-05:00"),
    )
    .await;
    processed_ok(&app, &t).await;
    assert_eq!(contact(&app, &t).await.0.tags, vec!["vip", "newsletter"]);

    let gid = format!("gid://shopify/Customer/{ID}");
    shopify_ok(&app, &t, "customer.tags_added", "ta-1",
        &json!({"customerId": gid, "tags": ["gold", "VIP"], "occurredAt": "2026-01-11T05:00:00.000Z"})).await;
    shopify_ok(&app, &t, "customer.tags_removed", "tr-1",
        &json!({"customerId": gid, "tags": ["newsletter"], "occurredAt": "2026-01-11T05:01:00.000Z"})).await;
    processed_ok(&app, &t).await;
    assert_eq!(contact(&app, &t).await.0.tags, vec!["vip", "gold"]);

    shopify_ok(
        &app,
        &t,
        "customer_tags/added",
        "sa-1",
        &json!({"customer_id": ID, "tags_added": ["loyal"]}),
    )
    .await;
    shopify_ok(
        &app,
        &t,
        "customer_tags/removed",
        "sr-1",
        &json!({"customer_id": ID, "tags_removed": ["gold"]}),
    )
    .await;
    processed_ok(&app, &t).await;
    assert_eq!(contact(&app, &t).await.0.tags, vec!["vip", "loyal"]);
    let tagged: Vec<String> = events_of(&app, &t, "CustomerTagged")
        .await
        .iter()
        .map(|e| e["payload"]["tag"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(tagged.len(), 4, "vip, newsletter, gold, loyal: {tagged:?}");
    assert_eq!(events_of(&app, &t, "CustomerUntagged").await.len(), 2);
}

#[tokio::test]
async fn a_current_customer_update_without_tags_or_consent_keeps_them() {
    let (app, t) = app_and_tenant("shapes-keep").await;
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &seed_customer("2026-01-10T10:00:00-05:00"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (before, h) = contact(&app, &t).await;
    assert_eq!(before.marketing_state, MarketingState::Subscribed);
    assert_eq!(
        before.email_marketing_state,
        Some(MarketingState::Subscribed)
    );
    assert_eq!(h.len(), 1);

    let mut update = current_customer("2026-01-12T10:00:00-05:00");
    update["first_name"] = json!("Robert");
    shopify_ok(&app, &t, "customers/update", "u-1", &update).await;
    processed_ok(&app, &t).await;
    let (after, h) = contact(&app, &t).await;
    assert_eq!(after.first_name.as_deref(), Some("Robert"));
    assert_eq!(after.tags, vec!["vip", "newsletter"]);
    assert_eq!(after.marketing_state, MarketingState::Subscribed);
    assert_eq!(
        after.email_marketing_state,
        Some(MarketingState::Subscribed)
    );
    assert_eq!(h.len(), 1);
    let updated = events_of(&app, &t, "CustomerUpdated").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["payload"]["changed"], json!(["first_name"]));
    assert!(events_of(&app, &t, "CustomerUntagged").await.is_empty());

    // A partial payload: the keys it lacks are unknown, not cleared.
    shopify_ok(
        &app,
        &t,
        "customers/update",
        "u-partial",
        &json!({"id": ID, "last_name": "Billerton", "updated_at": "2026-01-12T11:00:00-05:00"}),
    )
    .await;
    processed_ok(&app, &t).await;
    let (after, _) = contact(&app, &t).await;
    assert_eq!(after.first_name.as_deref(), Some("Robert"));
    assert_eq!(after.last_name.as_deref(), Some("Billerton"));
    assert_eq!(after.email.as_deref(), Some("bob@biller.com"));
    assert_eq!(after.phone.as_deref(), Some(PHONE));
    assert_eq!(after.phone_status.as_deref(), Some("valid"));

    // An explicit empty `tags` still clears them: present and empty is known.
    let mut cleared = current_customer("2026-01-13T10:00:00-05:00");
    cleared["tags"] = json!("");
    shopify_ok(&app, &t, "customers/update", "u-2", &cleared).await;
    processed_ok(&app, &t).await;
    assert!(contact(&app, &t).await.0.tags.is_empty());
}

#[tokio::test]
async fn reference_samples_with_null_states_change_nothing_and_bad_payloads_fail_clearly() {
    let (app, t) = app_and_tenant("shapes-null").await;
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &seed_customer("2026-01-10T10:00:00-05:00"),
    )
    .await;
    processed_ok(&app, &t).await;
    // Shopify's own reference samples: every state null.
    shopify_ok(&app, &t, "customers_whats_app_marketing_consent/update", "n-1",
        &json!({"customer_id": ID, "phone_number": null,
                "whats_app_marketing_consent": {"state": null, "opt_in_level": null, "updated_at": null, "collected_from": "other"}})).await;
    shopify_ok(&app, &t, "customers_marketing_consent/update", "n-2",
        &json!({"id": ID, "phone": null,
                "sms_marketing_consent": {"state": null, "opt_in_level": null, "consent_updated_at": null, "consent_collected_from": "other"}})).await;
    shopify_ok(&app, &t, "customers_email_marketing_consent/update", "n-3",
        &json!({"customer_id": ID, "email_address": "bob@biller.com",
                "email_marketing_consent": {"state": null, "opt_in_level": null, "consent_updated_at": null}})).await;
    app.run_jobs_until_idle().await;
    assert_eq!(webhook_events(&app, &t, "status=ignored").await.len(), 3);
    // A tags event without the customer's gid, and consent without its id:
    // acknowledged, failed for good with the reason, nothing changed.
    shopify_ok(
        &app,
        &t,
        "customer.tags_added",
        "b-1",
        &json!({"customerId": ID, "tags": ["x"], "occurredAt": "2026-01-11T05:00:00.000Z"}),
    )
    .await;
    shopify_ok(
        &app,
        &t,
        "customers_whats_app_marketing_consent/update",
        "b-2",
        &json!({"phone_number": PHONE, "whats_app_marketing_consent": {"state": "unsubscribed"}}),
    )
    .await;
    // Failed for good: its job is dead, not retrying.
    let dead = app.try_run_jobs_until_idle().await.unwrap_err();
    assert_eq!(dead.0.len(), 2, "{dead:?}");
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    let reasons: Vec<&str> = failed
        .iter()
        .map(|f| f["failure_reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("customerId")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("customer_id")),
        "{reasons:?}"
    );
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.tags, vec!["vip", "newsletter"]);
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(c.email_marketing_state, Some(MarketingState::Subscribed));
    assert_eq!(h.len(), 1);
}

#[tokio::test]
async fn the_new_topics_with_a_wrong_signature_are_refused_and_store_nothing() {
    let (app, t) = app_and_tenant("shapes-sig").await;
    for (topic, body) in [
        (
            "customers_whats_app_marketing_consent/update",
            whatsapp_consent("subscribed", "2026-01-11T09:00:00Z"),
        ),
        (
            "customers_marketing_consent/update",
            sms_consent("subscribed", "2026-01-11T09:00:00Z"),
        ),
        (
            "customers_email_marketing_consent/update",
            email_consent("subscribed", "2026-01-11T09:00:00Z"),
        ),
        (
            "customer.tags_added",
            json!({"customerId": format!("gid://shopify/Customer/{ID}"), "tags": ["x"]}),
        ),
        (
            "customer.tags_removed",
            json!({"customerId": format!("gid://shopify/Customer/{ID}"), "tags": ["x"]}),
        ),
    ] {
        let raw = serde_json::to_vec(&body).unwrap();
        let r = app
            .client
            .post(app.url("/webhooks/shopify"))
            .header("x-shopify-topic", topic)
            .header("x-shopify-shop-domain", t.shop.as_str())
            .header("x-shopify-webhook-id", format!("sig-{topic}"))
            .header(
                "x-shopify-hmac-sha256",
                sign_shopify(&raw, &SecretString::from("not-the-secret")),
            )
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{topic}");
    }
    assert!(webhook_events(&app, &t, "").await.is_empty());
}

#[tokio::test]
async fn a_webhook_of_another_api_version_is_processed() {
    let (app, t) = app_and_tenant("shapes-version").await;
    assert_eq!(app.state.config.shopify.api_version, "2026-01");
    let raw = serde_json::to_vec(&seed_customer("2026-01-10T10:00:00-05:00")).unwrap();
    let r = app
        .client
        .post(app.url("/webhooks/shopify"))
        .header("x-shopify-topic", "customers/create")
        .header("x-shopify-shop-domain", t.shop.as_str())
        .header("x-shopify-webhook-id", "v-1")
        .header("x-shopify-api-version", "2024-10")
        .header(
            "x-shopify-hmac-sha256",
            sign_shopify(&raw, &SecretString::from(TEST_SHOPIFY_SECRET)),
        )
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    processed_ok(&app, &t).await;
    assert_eq!(
        contact(&app, &t).await.0.marketing_state,
        MarketingState::Subscribed
    );
    // The helper's deliveries carry no version header at all.
    let r = shopify(
        &app,
        &t,
        "customers/update",
        "v-2",
        &current_customer("2026-01-11T10:00:00-05:00"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A STOP in WhatsApp outranks an older Shopify WhatsApp consent; only a
/// consent Shopify dates after it (the customer's own later action) opts the
/// contact back in.
#[tokio::test]
async fn after_a_stop_only_a_later_whatsapp_consent_resubscribes() {
    use galantis_store::control::tenants::{self, PhoneNumberLink};
    let (app, t) = app_and_tenant("shapes-stop").await;
    let mut tx = app.db().control_tx().await.unwrap();
    let link = PhoneNumberLink {
        phone_number_id: "pn-shapes-stop".into(),
        waba_id: "waba-shapes-stop".into(),
    };
    tenants::link_phone_number(&mut tx, t.id, &link, true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let topic = "customers_whats_app_marketing_consent/update";
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &current_customer("2025-12-01T10:00:00Z"),
    )
    .await;
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-1",
        &whatsapp_consent("subscribed", "2025-12-31T00:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    assert_eq!(
        contact(&app, &t).await.0.marketing_state,
        MarketingState::Subscribed
    );

    // STOP at 2026-01-01T00:00:00Z.
    let stop = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba-shapes-stop", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "pn-shapes-stop"},
        "contacts": [{"profile": {"name": "Bob Biller"}, "wa_id": "525512345678"}],
        "messages": [{"from": "525512345678", "id": "wamid.STOP", "timestamp": "1767225600", "type": "text", "text": {"body": "STOP"}}]}}]}]});
    assert_eq!(meta(&app, &stop).await.status(), StatusCode::OK);
    processed_ok(&app, &t).await;
    assert_eq!(
        contact(&app, &t).await.0.marketing_state,
        MarketingState::Unsubscribed
    );

    // Delivered after the STOP, but dated before it: changes nothing.
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-2",
        &whatsapp_consent("subscribed", "2025-12-31T12:00:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(h.last().unwrap().source, ConsentSource::StopReply);

    // Dated after it: the customer opted in again.
    shopify_ok(
        &app,
        &t,
        topic,
        "wa-3",
        &whatsapp_consent("subscribed", "2026-01-01T00:05:00Z"),
    )
    .await;
    processed_ok(&app, &t).await;
    let (c, h) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    let last = h.last().unwrap();
    assert_eq!(last.source, ConsentSource::ShopifyWhatsappConsent);
    assert_eq!(last.previous_state, Some(MarketingState::Unsubscribed));
}
