//! Webhooks signed as Shopify and Meta sign them, posted to a [`TestApp`].

use galantis_server::webhooks::signature::{sign_meta, sign_shopify};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

use crate::{TEST_META_SECRET, TEST_SHOPIFY_SECRET, TestApp, TestTenant};

/// Posts `body` as Shopify's webhook `topic` for `t`'s shop, with delivery
/// id `id`, signed with the test app secret.
pub async fn shopify(
    app: &TestApp,
    t: &TestTenant,
    topic: &str,
    id: &str,
    body: &Value,
) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    app.client
        .post(app.url("/webhooks/shopify"))
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", t.shop.as_str())
        .header("x-shopify-webhook-id", id)
        .header(
            "x-shopify-hmac-sha256",
            sign_shopify(&raw, &SecretString::from(TEST_SHOPIFY_SECRET)),
        )
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap()
}

/// A signed Shopify webhook that must be acknowledged.
pub async fn shopify_ok(app: &TestApp, t: &TestTenant, topic: &str, id: &str, body: &Value) {
    let r = shopify(app, t, topic, id, body).await;
    assert_eq!(r.status(), StatusCode::OK, "{topic}");
}

/// Posts `body` as a Meta webhook, signed with the test app secret.
pub async fn meta(app: &TestApp, body: &Value) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    app.client
        .post(app.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            sign_meta(&raw, &SecretString::from(TEST_META_SECRET)),
        )
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap()
}
