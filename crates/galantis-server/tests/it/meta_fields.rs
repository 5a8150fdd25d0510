//! Meta's webhook fields beyond messages and template approval (issue 13):
//! each handled or recorded as ignored with a reason. Payloads follow Meta's
//! WhatsApp Business Account webhook reference.

use galantis_core::{ConsentSource, MarketingState};
use galantis_server::webhooks::signature::sign_meta;
use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::sending::NumberSettings;
use galantis_store::tenant::{contacts, messaging, sending, templates};
use galantis_testkit::webhooks::meta;
use galantis_testkit::{TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::webhooks::{sent_text, webhook_events};

const DISPLAY: &str = "15550783881";
const CUSTOMER: &str = "16505551234";

/// A tap after the consent the test gave through the API (latest proof wins).
fn later() -> String {
    (chrono::Utc::now().timestamp() + 60).to_string()
}

struct Env {
    app: TestApp,
    t: TestTenant,
    pnid: String,
    waba: String,
}

/// A tenant with one number (routed in the control database, detailed in
/// the tenant's `whatsapp_numbers`), on an app that sends to the sandbox.
async fn env(name: &str) -> Env {
    let app = TestApp::builder().sandbox().without_workers().spawn().await;
    let t = app.create_tenant(name).await;
    let pnid = format!("pn-{name}");
    let waba = format!("waba-{name}");
    let mut tx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut tx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: pnid.clone(),
            waba_id: waba.clone(),
        },
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    sending::replace_numbers(
        &mut tx,
        &[NumberSettings {
            phone_number_id: pnid.clone(),
            waba_id: waba.clone(),
            display_phone_number: Some(format!("+{DISPLAY}")),
            verified_name: Some("Lucky Shrub".into()),
            quality_rating: Some("GREEN".into()),
            messages_per_second: 80,
        }],
        0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Env { app, t, pnid, waba }
}

impl Env {
    fn waba_change(&self, field: &str, value: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": self.waba, "time": 1_748_454_394,
            "changes": [{"field": field, "value": value}]}]})
    }

    fn number_change(&self, field: &str, mut value: Value) -> Value {
        value["messaging_product"] = json!("whatsapp");
        value["metadata"] = json!({"display_phone_number": DISPLAY, "phone_number_id": self.pnid});
        json!({"object": "whatsapp_business_account", "entry": [{"id": self.waba,
            "changes": [{"field": field, "value": value}]}]})
    }

    async fn deliver(&self, body: Value) {
        let r = meta(&self.app, &body).await;
        assert_eq!(r.status(), StatusCode::OK);
        self.app.run_jobs_until_idle().await;
        let failed = webhook_events(&self.app, &self.t, "status=failed").await;
        assert!(failed.is_empty(), "processing failed: {failed:?}");
    }

    async fn connection(&self) -> Value {
        let r = self
            .app
            .get("/api/v1/settings/whatsapp", &self.t.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn customer_texts(&self, wamid: &str, text: &str) {
        self.deliver(self.number_change(
            "messages",
            json!({"contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": CUSTOMER}],
                   "messages": [{"from": CUSTOMER, "id": wamid, "timestamp": "1739321024",
                                 "type": "text", "text": {"body": text}}]}),
        ))
        .await;
    }

    async fn contact(&self) -> (contacts::Contact, Vec<contacts::ConsentEvent>) {
        let mut tx = self.app.db().tenant_read(self.t.id).await.unwrap();
        let c = contacts::by_phone(&mut tx, &format!("+{CUSTOMER}"))
            .await
            .unwrap()
            .unwrap();
        let h = contacts::consent_history(&mut tx, c.id).await.unwrap();
        tx.commit().await.unwrap();
        (c, h)
    }

    async fn subscribe(&self, id: uuid::Uuid) {
        let r = self
            .app
            .request(
                Method::PATCH,
                &format!("/api/v1/contacts/{id}"),
                &self.t.token,
            )
            .json(&json!({"marketing_state": "SUBSCRIBED", "consent_source": "api", "consent_reference": "signed form 12"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
}

#[tokio::test]
async fn account_restriction_halts_the_connection_and_a_send_is_refused_with_its_reason() {
    let e = env("meta-account").await;
    e.customer_texts("wamid.in-1", "hello").await;
    let (c, _) = e.contact().await;
    assert_eq!(e.connection().await["state"], "connected");

    // Informational events change nothing.
    e.deliver(e.waba_change(
        "account_update",
        json!({"event": "PARTNER_ADDED", "waba_info": {"waba_id": e.waba, "owner_business_id": "2329417887457253"}}),
    ))
    .await;
    assert_eq!(e.connection().await["state"], "connected");
    let ignored = webhook_events(&e.app, &e.t, "status=ignored").await;
    assert!(
        ignored.iter().any(|w| w["topic"] == "account_update"
            && w["failure_reason"]
                .as_str()
                .unwrap()
                .contains("PARTNER_ADDED")),
        "{ignored:?}"
    );

    e.deliver(e.waba_change(
        "account_update",
        json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [
            {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": "2026-04-19T13:59:20+0000"}]}),
    ))
    .await;
    let conn = e.connection().await;
    assert_eq!(conn["state"], "needs_attention", "{conn}");
    let reason = conn["reason"].as_str().unwrap();
    assert!(
        reason.contains("RESTRICTED_BIZ_INITIATED_MESSAGING"),
        "{reason}"
    );

    let r = e
        .app
        .request(Method::POST, "/api/v1/messages", &e.t.token)
        .json(&json!({"contact_id": c.id, "text": {"body": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "whatsapp_needs_attention");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("RESTRICTED_BIZ_INITIATED_MESSAGING"),
        "{b}"
    );

    // Reinstated: a halt the account caused is lifted.
    e.deliver(e.waba_change(
        "account_update",
        json!({"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "REINSTATE", "waba_ban_date": "April 17, 2025"}}),
    ))
    .await;
    assert_eq!(e.connection().await["state"], "connected");

    // Disabled, and partner app uninstalled: needs attention too.
    e.deliver(e.waba_change(
        "account_update",
        json!({"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "April 17, 2025"}}),
    ))
    .await;
    let conn = e.connection().await;
    assert_eq!(conn["state"], "needs_attention");
    assert!(
        conn["reason"].as_str().unwrap().contains("disabled"),
        "{conn}"
    );
}

#[tokio::test]
async fn an_unsigned_account_update_is_refused_and_changes_nothing() {
    let e = env("meta-unsigned").await;
    let body = e.waba_change("account_update", json!({"event": "ACCOUNT_DELETED"}));
    let raw = serde_json::to_vec(&body).unwrap();
    let r = e
        .app
        .client
        .post(e.app.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            sign_meta(&raw, &SecretString::from("not-the-app-secret")),
        )
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    e.app.run_jobs_until_idle().await;
    assert!(webhook_events(&e.app, &e.t, "").await.is_empty());
    assert_eq!(e.connection().await["state"], "connected");
}

#[tokio::test]
async fn a_quality_update_changes_the_stored_tier_and_throughput() {
    let e = env("meta-quality").await;
    e.deliver(e.waba_change(
        "phone_number_quality_update",
        json!({"display_phone_number": DISPLAY, "event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED",
               "max_daily_conversations_per_business": "TIER_2K"}),
    ))
    .await;
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let (limit, event) = sending::connection::number_quality(&mut tx, &e.pnid)
        .await
        .unwrap()
        .unwrap();
    let numbers = sending::numbers(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(limit.as_deref(), Some("TIER_2K"));
    assert_eq!(event.as_deref(), Some("THROUGHPUT_UPGRADE"));
    assert_eq!(
        numbers[0].messages_per_second,
        galantis_server::webhooks::meta::HIGH_THROUGHPUT_MPS
    );
    let conn = e.connection().await;
    assert_eq!(
        conn["phone_numbers"][0]["messages_per_second"],
        galantis_server::webhooks::meta::HIGH_THROUGHPUT_MPS
    );

    // Older shape, no throughput change: the tier moves, the rate stays.
    e.deliver(e.waba_change(
        "phone_number_quality_update",
        json!({"display_phone_number": DISPLAY, "event": "DOWNGRADE", "current_limit": "TIER_250", "old_limit": "TIER_2K"}),
    ))
    .await;
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let (limit, _) = sending::connection::number_quality(&mut tx, &e.pnid)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(limit.as_deref(), Some("TIER_250"));

    // Another business's number: recorded as ignored, nothing changes.
    e.deliver(e.waba_change(
        "phone_number_quality_update",
        json!({"display_phone_number": "15550000000", "event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED"}),
    ))
    .await;
    let ignored = webhook_events(&e.app, &e.t, "status=ignored").await;
    assert_eq!(ignored.len(), 1, "{ignored:?}");
}

#[tokio::test]
async fn the_stop_promotions_button_and_configured_payloads_unsubscribe() {
    let e = env("meta-stop-button").await;
    e.customer_texts("wamid.in-1", "hello").await;
    let (c, _) = e.contact().await;
    e.subscribe(c.id).await;
    // Meta's marketing opt-out quick reply on a template.
    e.deliver(e.number_change(
        "messages",
        json!({"contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": CUSTOMER}],
               "messages": [{"context": {"from": DISPLAY, "id": "wamid.template-1"}, "from": CUSTOMER,
                             "id": "wamid.stop-btn", "timestamp": later(), "type": "button",
                             "button": {"payload": "Stop promotions", "text": "Stop promotions"}}]}),
    ))
    .await;
    let (c, history) = e.contact().await;
    assert_eq!(c.marketing_state, MarketingState::Unsubscribed);
    let last = history.last().unwrap();
    assert_eq!(last.source, ConsentSource::StopReply);
    assert_eq!(last.reference.as_deref(), Some("message:wamid.stop-btn"));

    // Another button changes nothing.
    let e2 = env("meta-other-button").await;
    e2.customer_texts("wamid.in-2", "hello").await;
    let (c2, _) = e2.contact().await;
    e2.subscribe(c2.id).await;
    e2.deliver(e2.number_change(
        "messages",
        json!({"messages": [{"from": CUSTOMER, "id": "wamid.other-btn", "timestamp": later(), "type": "button",
                             "button": {"payload": "Track my order", "text": "Track my order"}}]}),
    ))
    .await;
    assert_eq!(
        e2.contact().await.0.marketing_state,
        MarketingState::Subscribed
    );
}

#[tokio::test]
async fn a_configured_interactive_stop_payload_unsubscribes() {
    let app = TestApp::builder()
        .sandbox()
        .without_workers()
        .config(|c| c.consent.stop_button_payloads = vec!["OPT_OUT_ALL".into()])
        .spawn()
        .await;
    let t = app.create_tenant("meta-interactive-stop").await;
    let mut tx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut tx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: "pn-interactive".into(),
            waba_id: "waba-interactive".into(),
        },
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let e = Env {
        app,
        t,
        pnid: "pn-interactive".into(),
        waba: "waba-interactive".into(),
    };
    e.customer_texts("wamid.in-1", "hello").await;
    let (c, _) = e.contact().await;
    e.subscribe(c.id).await;
    e.deliver(e.number_change(
        "messages",
        json!({"messages": [{"from": CUSTOMER, "id": "wamid.int-stop", "timestamp": later(), "type": "interactive",
                             "interactive": {"type": "button_reply", "button_reply": {"id": "OPT_OUT_ALL", "title": "No more offers"}}}]}),
    ))
    .await;
    assert_eq!(
        e.contact().await.0.marketing_state,
        MarketingState::Unsubscribed
    );
}

#[tokio::test]
async fn status_pricing_and_conversation_are_stored_on_the_message() {
    let e = env("meta-pricing").await;
    e.customer_texts("wamid.in-1", "hello").await;
    let (c, _) = e.contact().await;
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    sent_text(&mut tx, c.id, &e.pnid, "k-1", "wamid.out-1").await;
    tx.commit().await.unwrap();
    e.deliver(e.number_change(
        "messages",
        json!({"statuses": [{"id": "wamid.out-1", "status": "sent", "timestamp": "1750263773", "recipient_id": CUSTOMER,
            "conversation": {"id": "CONVERSATION_ID", "expiration_timestamp": "1750350240", "origin": {"type": "utility"}},
            "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"}}]}),
    ))
    .await;
    // `delivered` without pricing keeps what `sent` said.
    e.deliver(e.number_change(
        "messages",
        json!({"statuses": [{"id": "wamid.out-1", "status": "delivered", "timestamp": "1750263780", "recipient_id": CUSTOMER}]}),
    ))
    .await;
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let p = messaging::pricing_of(&mut tx, "wamid.out-1")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        p,
        messaging::MessagePricing {
            billable: Some(true),
            category: Some("utility".into()),
            pricing_model: Some("PMP".into()),
            conversation_id: Some("CONVERSATION_ID".into()),
            conversation_origin: Some("utility".into()),
            conversation_expires_at: Some(1_750_350_240_000),
        }
    );
}

async fn facts(
    e: &Env,
) -> (
    String,
    templates::TemplateMetaFacts,
    templates::TemplateRecord,
) {
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let (id, category) = templates::find_for_meta(&mut tx, "welcome_template", "en_US", None)
        .await
        .unwrap()
        .unwrap();
    let f = templates::meta_facts(&mut tx, id).await.unwrap();
    let record = templates::get(&mut tx, id).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    (category, f, record)
}

#[tokio::test]
async fn template_rejection_quality_category_and_components_are_kept() {
    let e = env("meta-templates").await;
    e.deliver(e.waba_change(
        "message_template_status_update",
        json!({"event": "REJECTED", "message_template_id": 806312974732579_u64, "message_template_name": "welcome_template",
               "message_template_language": "en_US", "reason": "INVALID_FORMAT",
               "rejection_info": {"reason": "The template body has a variable at the start.",
                                  "recommendation": "Move the variable into the sentence."}}),
    ))
    .await;
    let (_, f, record) = facts(&e).await;
    assert_eq!(record.status, "REJECTED");
    assert_eq!(
        f.rejection_info.unwrap()["recommendation"],
        "Move the variable into the sentence."
    );

    e.deliver(e.waba_change(
        "message_template_quality_update",
        json!({"previous_quality_score": "GREEN", "new_quality_score": "YELLOW", "message_template_id": 806312974732579_u64,
               "message_template_name": "welcome_template", "message_template_language": "en_US"}),
    ))
    .await;
    assert_eq!(facts(&e).await.1.quality_score.as_deref(), Some("YELLOW"));

    // Announced a day ahead, then done.
    e.deliver(e.waba_change(
        "template_category_update",
        json!({"message_template_id": 806312974732579_u64, "message_template_name": "welcome_template",
               "message_template_language": "en_US", "new_category": "MARKETING", "correct_category": "UTILITY",
               "category_update_timestamp": 1_746_169_200}),
    ))
    .await;
    let (category, f, _) = facts(&e).await;
    assert_eq!(category, "MARKETING");
    assert_eq!(f.upcoming_category.as_deref(), Some("UTILITY"));
    assert_eq!(f.upcoming_category_at, Some(1_746_169_200_000));
    e.deliver(e.waba_change(
        "template_category_update",
        json!({"message_template_id": 806312974732579_u64, "message_template_name": "welcome_template",
               "message_template_language": "en_US", "previous_category": "MARKETING", "new_category": "UTILITY"}),
    ))
    .await;
    let (category, f, record) = facts(&e).await;
    assert_eq!(category, "UTILITY");
    assert_eq!(record.category.as_str(), "UTILITY");
    assert_eq!(f.previous_category.as_deref(), Some("MARKETING"));
    assert_eq!(f.upcoming_category, None);

    e.deliver(e.waba_change(
        "message_template_components_update",
        json!({"message_template_id": 806312974732579_u64, "message_template_name": "welcome_template",
               "message_template_language": "en_US", "message_template_title": "Welcome!",
               "message_template_element": "Hi {{1}}, welcome to Lucky Shrub.",
               "message_template_footer": "Lucky Shrub",
               "message_template_buttons": [{"message_template_button_type": "URL", "message_template_button_text": "Shop",
                                             "message_template_button_url": "https://www.luckyshrub.com"}]}),
    ))
    .await;
    let f = facts(&e).await.1;
    let comps = f.meta_components.unwrap();
    assert_eq!(
        comps["message_template_element"],
        "Hi {{1}}, welcome to Lucky Shrub."
    );
    assert_eq!(
        comps["message_template_buttons"][0]["message_template_button_type"],
        "URL"
    );

    // Approved later: the rejection's details go.
    e.deliver(e.waba_change(
        "message_template_status_update",
        json!({"event": "APPROVED", "message_template_id": 806312974732579_u64, "message_template_name": "welcome_template",
               "message_template_language": "en_US", "reason": "NONE"}),
    ))
    .await;
    assert_eq!(facts(&e).await.1.rejection_info, None);
}

#[tokio::test]
async fn business_app_echoes_are_stored_as_outbound_messages() {
    let e = env("meta-echoes").await;
    let echo = e.number_change(
        "smb_message_echoes",
        json!({"message_echoes": [{"from": DISPLAY, "to": CUSTOMER, "id": "wamid.echo-1", "timestamp": "1739321024",
                                   "type": "text", "text": {"body": "Here's the info you requested!"}}]}),
    );
    e.deliver(echo.clone()).await;
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let m = messaging::message_by_wamid(&mut tx, "wamid.echo-1")
        .await
        .unwrap()
        .unwrap();
    let source = messaging::source_of(&mut tx, "wamid.echo-1").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(m.direction, "outbound");
    assert_eq!(m.status, "SENT");
    assert_eq!(m.body.as_deref(), Some("Here's the info you requested!"));
    assert!(m.conversation_id.is_some());
    assert_eq!(source.as_deref(), Some("whatsapp_business_app"));
    let (c, _) = e.contact().await;
    assert_eq!(c.id, m.contact_id);
    // The same echo in another delivery is one message.
    let mut again = echo;
    again["entry"][0]["time"] = json!(1_739_321_999);
    e.deliver(again).await;
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    assert!(
        messaging::message_by_wamid(&mut tx, "wamid.echo-1")
            .await
            .unwrap()
            .is_some()
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn calls_are_recorded_as_ignored_with_a_reason() {
    let e = env("meta-calls").await;
    e.deliver(e.number_change(
        "calls",
        json!({"calls": [{"id": "wacid.1", "to": DISPLAY, "from": CUSTOMER, "event": "connect",
                          "timestamp": "1671644824", "direction": "USER_INITIATED"}]}),
    ))
    .await;
    e.deliver(e.waba_change("some_future_field", json!({"x": 1})))
        .await;
    let ignored = webhook_events(&e.app, &e.t, "status=ignored").await;
    let reason = |topic: &str| {
        ignored
            .iter()
            .find(|w| w["topic"] == topic)
            .and_then(|w| w["failure_reason"].as_str())
            .map(str::to_owned)
    };
    assert!(reason("calls").unwrap().contains("calls"), "{ignored:?}");
    assert_eq!(
        reason("some_future_field").as_deref(),
        Some("unknown field")
    );
}
