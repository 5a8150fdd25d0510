//! Consent proof cannot be forged (issue #11, finding 4): after an opt-out
//! only the customer opts back in — an inbound START, or a Shopify consent
//! update dated after the opt-out — and the API accepts only the sources a
//! team member can honestly claim.

use galantis_core::{ConsentSource, MarketingState};
use galantis_server::webhooks::signature::sign_meta;
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::contacts;
use galantis_testkit::{TEST_META_SECRET, TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::webhooks::{settled_ok, shopify_ok};

// Meta writes this customer's wa_id with Mexico's legacy mobile `1`.
const PHONE: &str = "+525512345678";
/// 2026-01-01T00:00:00Z, when the customer replies STOP.
const STOP_AT: i64 = 1_767_225_600;

async fn with_number(app: &TestApp, name: &str) -> TestTenant {
    let t = app.create_tenant(name).await;
    let mut tx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut tx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: format!("pn-{name}"),
            waba_id: format!("waba-{name}"),
        },
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t
}

async fn reply(app: &TestApp, pnid: &str, wamid: &str, text: &str, at_secs: i64) {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "521234567890", "phone_number_id": pnid},
        "contacts": [{"profile": {"name": "Jane Smith"}, "wa_id": "5215512345678"}],
        "messages": [{"from": "5215512345678", "id": wamid, "timestamp": at_secs.to_string(), "type": "text", "text": {"body": text}}]}}]}]});
    let raw = serde_json::to_vec(&body).unwrap();
    let r = app
        .client
        .post(app.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            sign_meta(&raw, &SecretString::from(TEST_META_SECRET)),
        )
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn shopify_consent(state: &str, at: &str) -> Value {
    json!({"id": 123456789, "phone": PHONE, "updated_at": at,
           "sms_marketing_consent": {"state": state, "opt_in_level": "single_opt_in", "consent_updated_at": at}})
}

async fn contact(
    app: &TestApp,
    t: &TestTenant,
) -> (contacts::Contact, Vec<contacts::ConsentEvent>) {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_phone(&mut tx, PHONE).await.unwrap().unwrap();
    let history = contacts::consent_history(&mut tx, c.id).await.unwrap();
    tx.commit().await.unwrap();
    (c, history)
}

#[tokio::test]
async fn after_stop_only_the_customer_opts_back_in() {
    let app = TestApp::spawn().await;
    let t = with_number(&app, "consent-stop").await;
    let pnid = "pn-consent-stop";
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &json!({"id": 123456789, "phone": PHONE, "first_name": "Jane",
                "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
                "created_at": "2025-01-15T10:00:00Z", "updated_at": "2025-01-15T10:00:00Z"}),
    )
    .await;
    settled_ok(&app, &t).await;
    reply(&app, pnid, "wamid.STOP-1", "Stop!", STOP_AT).await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    let proofs = history.len();

    // A team member cannot undo it, neither by naming a customer's source
    // (forged proof) nor with a source of their own.
    let patch = |body: Value| {
        app.request(
            Method::PATCH,
            &format!("/api/v1/contacts/{}", c.id),
            &t.token,
        )
        .json(&body)
        .send()
    };
    for forged in [
        "shopify_checkout",
        "shopify_customer",
        "back_in_stock_widget",
        "chat_widget",
        "stop_reply",
        "start_reply",
        "redaction",
    ] {
        let r = patch(json!({"marketing_state": "SUBSCRIBED", "consent_source": forged, "consent_reference": "made-up"}))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{forged}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_field", "{forged}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("consent_source"),
            "{e}"
        );
    }
    for honest in [
        json!({"marketing_state": "SUBSCRIBED"}),
        json!({"marketing_state": "SUBSCRIBED", "consent_source": "api", "consent_reference": "asked at the till"}),
        json!({"marketing_state": "PENDING", "consent_source": "manual_import", "consent_reference": "paper form 12"}),
        // Not even to the first step back (which would erase the opt-out).
        json!({"marketing_state": "NOT_SUBSCRIBED"}),
    ] {
        let r = patch(honest.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{honest}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "resubscribe_requires_opt_in",
            "{honest}"
        );
    }
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(history.len(), proofs, "refused changes leave no proof");

    // A Shopify consent update dated before the STOP is stale.
    shopify_ok(
        &app,
        &t,
        "customers/marketing_consent_update",
        "consent-old",
        &shopify_consent("subscribed", "2025-12-31T23:59:00Z"),
    )
    .await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(history.len(), proofs);

    // So is an old consent carried by a newer customer edit: the consent's
    // own date counts, not the customer's `updated_at`.
    shopify_ok(
        &app,
        &t,
        "customers/update",
        "c-2",
        &json!({"id": 123456789, "phone": PHONE, "first_name": "Janet",
                "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in",
                                          "consent_updated_at": "2025-01-15T10:00:00Z"},
                "updated_at": "2026-01-01T00:00:30Z"}),
    )
    .await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.first_name.as_deref(), Some("Janet"));
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(history.len(), proofs);

    // The customer's own START opts them back in, with the message as proof.
    reply(&app, pnid, "wamid.START-1", "start", STOP_AT + 60).await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    let last = history.last().unwrap();
    assert_eq!(last.source, ConsentSource::StartReply);
    assert_eq!(last.reference.as_deref(), Some("message:wamid.START-1"));
    assert_eq!(last.previous_state, Some(MarketingState::Unsubscribed));

    // STOP again; then a Shopify consent update dated after it re-subscribes.
    reply(&app, pnid, "wamid.STOP-2", "STOP", STOP_AT + 120).await;
    settled_ok(&app, &t).await;
    assert_eq!(
        contact(&app, &t).await.0.marketing_state,
        MarketingState::Unsubscribed
    );
    shopify_ok(
        &app,
        &t,
        "customers/marketing_consent_update",
        "consent-new",
        &shopify_consent("subscribed", "2026-01-01T00:05:00Z"),
    )
    .await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    assert_eq!(
        history.last().unwrap().source,
        ConsentSource::ShopifyCustomer
    );
}

#[tokio::test]
async fn a_member_may_unsubscribe_with_a_reason_but_not_undo_it() {
    let app = TestApp::spawn().await;
    let t = with_number(&app, "consent-member").await;
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &json!({"id": 123456789, "phone": PHONE, "first_name": "Jane",
                "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
                "created_at": "2025-01-15T10:00:00Z", "updated_at": "2025-01-15T10:00:00Z"}),
    )
    .await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    let proofs = history.len();
    let patch = |body: Value| {
        app.request(
            Method::PATCH,
            &format!("/api/v1/contacts/{}", c.id),
            &t.token,
        )
        .json(&body)
        .send()
    };
    // Bad free text is refused naming the field, never cut, and changes nothing.
    for (bad, field) in [
        (
            json!({"marketing_state": "UNSUBSCRIBED", "consent_reference": "x".repeat(256)}),
            "consent_reference",
        ),
        (
            json!({"marketing_state": "UNSUBSCRIBED", "consent_reference": "asked \u{202E}pots"}),
            "consent_reference",
        ),
        (
            json!({"marketing_state": "UNSUBSCRIBED", "consent_reference": "a\u{0}b"}),
            "consent_reference",
        ),
        (
            json!({"consent_reference": "no state"}),
            "consent_reference",
        ),
        (json!({"add_tags": ["ok", "bad\u{2066}tag"]}), "add_tags[1]"),
        (json!({"tags": ["x".repeat(256)]}), "tags[0]"),
    ] {
        let r = patch(bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_field");
        assert!(
            e["error"]["message"].as_str().unwrap().starts_with(field),
            "{field}: {e}"
        );
    }
    let (after, history) = contact(&app, &t).await;
    assert_eq!(after.marketing_state, MarketingState::Subscribed);
    assert!(after.tags.is_empty());
    assert_eq!(history.len(), proofs);

    let reason = "asked by phone to stop — ticket 4411";
    let r = patch(json!({"marketing_state": "UNSUBSCRIBED", "consent_reference": reason}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    let last = history.last().unwrap();
    assert_eq!(last.source, ConsentSource::Api);
    assert_eq!(last.reference.as_deref(), Some(reason));
    // The member's own opt-out is the customer's to undo, not theirs.
    let r = patch(json!({"marketing_state": "SUBSCRIBED", "consent_reference": "oops"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "resubscribe_requires_opt_in"
    );
    assert_eq!(
        contact(&app, &t).await.0.marketing_state,
        MarketingState::Unsubscribed
    );
}

async fn preference(app: &TestApp, pnid: &str, value: &str, at_secs: i64) {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [{"field": "user_preferences", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "521234567890", "phone_number_id": pnid},
        "contacts": [{"profile": {"name": "Jane Smith"}, "wa_id": "5215512345678"}],
        "user_preferences": [{"wa_id": "5215512345678", "detail": "User requested to stop marketing messages",
                              "category": "marketing_messages", "value": value, "timestamp": at_secs}]}}]}]});
    let raw = serde_json::to_vec(&body).unwrap();
    let r = app
        .client
        .post(app.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            sign_meta(&raw, &SecretString::from(TEST_META_SECRET)),
        )
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn whatsapp_marketing_preferences_stop_and_resume_like_stop_and_start() {
    let app = TestApp::spawn().await;
    let t = with_number(&app, "consent-prefs").await;
    let pnid = "pn-consent-prefs";
    shopify_ok(
        &app,
        &t,
        "customers/create",
        "c-1",
        &json!({"id": 123456789, "phone": PHONE, "first_name": "Jane",
                "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
                "created_at": "2025-01-15T10:00:00Z", "updated_at": "2025-01-15T10:00:00Z"}),
    )
    .await;
    settled_ok(&app, &t).await;
    preference(&app, pnid, "stop", STOP_AT).await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    assert_eq!(
        history.last().unwrap().source,
        ConsentSource::MetaUserPreferences
    );
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/contacts/{}", c.id),
            &t.token,
        )
        .json(&json!({"marketing_state": "SUBSCRIBED", "consent_source": "meta_user_preferences", "consent_reference": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    preference(&app, pnid, "resume", STOP_AT + 60).await;
    settled_ok(&app, &t).await;
    let (c, history) = contact(&app, &t).await;
    assert_eq!(c.marketing_state, MarketingState::Subscribed);
    let last = history.last().unwrap();
    assert_eq!(last.source, ConsentSource::MetaUserPreferences);
    assert_eq!(last.previous_state, Some(MarketingState::Unsubscribed));
}
