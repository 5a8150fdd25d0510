//! Inbound WhatsApp messages of every type, in the shape of Meta's messages
//! webhook reference: each new one stored with a readable body and its
//! structured content; reactions, edits and revokes change the message they
//! name; `user_changed_number` moves the contact.

use galantis_store::control::tenants::{self, PhoneNumberLink};
use galantis_store::tenant::contacts::{self, phone_changes};
use galantis_store::tenant::messaging::{self, InboundDetail};
use galantis_testkit::{TestApp, TestTenant};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::webhooks::{events_of, meta, processed_ok, sent_text, webhook_events};

const WA: &str = "34612345678";
const PHONE: &str = "+34612345678";

async fn tenant(app: &TestApp, name: &str) -> TestTenant {
    let t = app.create_tenant(name).await;
    let mut tx = app.db().control_tx().await.unwrap();
    tenants::link_phone_number(
        &mut tx,
        t.id,
        &PhoneNumberLink {
            phone_number_id: format!("pn-{}", t.shop.as_str()),
            waba_id: format!("waba-{}", t.shop.as_str()),
        },
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t
}

/// One message in a `messages` change, as Meta sends it (`system` notices
/// carry no `contacts` array).
fn delivery(t: &TestTenant, from: &str, message: Value) -> Value {
    let pnid = format!("pn-{}", t.shop.as_str());
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": pnid},
        "messages": [message],
    });
    if message_type(&value["messages"][0]) != "system" {
        value["contacts"] = json!([{"profile": {"name": "Lucía Pérez"}, "wa_id": from}]);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": format!("waba-{}", t.shop.as_str()),
        "changes": [{"field": "messages", "value": value}]}]})
}

fn message_type(m: &Value) -> &str {
    m["type"].as_str().unwrap_or_default()
}

fn msg(wamid: &str, ts: i64, kind: &str, body: Value) -> Value {
    let mut m = json!({"from": WA, "id": wamid, "timestamp": ts.to_string(), "type": kind});
    if !body.is_null() {
        m[kind] = body;
    }
    m
}

async fn send(app: &TestApp, t: &TestTenant, from: &str, m: Value) {
    let r = meta(app, &delivery(t, from, m)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn detail(app: &TestApp, t: &TestTenant, wamid: &str) -> Option<InboundDetail> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let d = messaging::inbound_detail(&mut tx, wamid).await.unwrap();
    tx.commit().await.unwrap();
    d
}

async fn contact(app: &TestApp, t: &TestTenant, phone: &str) -> Option<contacts::Contact> {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_phone(&mut tx, phone).await.unwrap();
    tx.commit().await.unwrap();
    c
}

async fn message_count(app: &TestApp, t: &TestTenant) -> usize {
    events_of(app, t, "ConversationMessageCreated").await.len()
}

#[tokio::test]
async fn every_inbound_type_is_stored_with_a_readable_body_and_its_content() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-types").await;
    let media = |id: &str, mime: &str| json!({"id": id, "mime_type": mime, "sha256": "c2hhMjU2"});
    let mut caption = media("media-img-2", "image/jpeg");
    caption["caption"] = json!("Is this in stock?");
    let mut doc = media("media-doc", "application/pdf");
    doc["filename"] = json!("invoice-1001.pdf");
    let mut voice = media("media-voice", "audio/ogg; codecs=opus");
    voice["voice"] = json!(true);
    let mut sticker = media("media-sticker", "image/webp");
    sticker["animated"] = json!(false);
    // (wamid, type, type object, expected body, expected media id and type)
    type Case<'a> = (&'a str, &'a str, Value, &'a str, Option<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "wamid.text",
            "text",
            json!({"body": "Hola, ¿tienen talla M?"}),
            "Hola, ¿tienen talla M?",
            None,
        ),
        (
            "wamid.image",
            "image",
            media("media-img", "image/jpeg"),
            "[image]",
            Some(("media-img", "image/jpeg")),
        ),
        (
            "wamid.image2",
            "image",
            caption,
            "Is this in stock?",
            Some(("media-img-2", "image/jpeg")),
        ),
        (
            "wamid.audio",
            "audio",
            media("media-audio", "audio/mpeg"),
            "[audio]",
            Some(("media-audio", "audio/mpeg")),
        ),
        (
            "wamid.voice",
            "audio",
            voice,
            "[voice message]",
            Some(("media-voice", "audio/ogg; codecs=opus")),
        ),
        (
            "wamid.video",
            "video",
            media("media-video", "video/mp4"),
            "[video]",
            Some(("media-video", "video/mp4")),
        ),
        (
            "wamid.doc",
            "document",
            doc,
            "[document: invoice-1001.pdf]",
            Some(("media-doc", "application/pdf")),
        ),
        (
            "wamid.sticker",
            "sticker",
            sticker,
            "[sticker]",
            Some(("media-sticker", "image/webp")),
        ),
        (
            "wamid.location",
            "location",
            json!({"latitude": 40.4168, "longitude": -3.7038, "name": "Tienda Sol", "address": "Puerta del Sol 1, Madrid", "url": "https://example.com"}),
            "[location] Tienda Sol, Puerta del Sol 1, Madrid (40.4168, -3.7038)",
            None,
        ),
        (
            "wamid.button",
            "button",
            json!({"payload": "TRACK_ORDER", "text": "Track my order"}),
            "Track my order",
            None,
        ),
        (
            "wamid.btnreply",
            "interactive",
            json!({"type": "button_reply", "button_reply": {"id": "yes-1", "title": "Yes, confirm"}}),
            "Yes, confirm",
            None,
        ),
        (
            "wamid.listreply",
            "interactive",
            json!({"type": "list_reply", "list_reply": {"id": "size-m", "title": "Size M", "description": "Medium"}}),
            "Size M",
            None,
        ),
        (
            "wamid.flow",
            "interactive",
            json!({"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                "response_json": "{\"flow_token\": \"tok-1\", \"size\": \"M\"}"}}),
            "[flow reply] {\"flow_token\":\"tok-1\",\"size\":\"M\"}",
            None,
        ),
        (
            "wamid.order",
            "order",
            json!({"catalog_id": "cat-77", "text": "For Friday", "product_items": [
                {"product_retailer_id": "SKU-1", "quantity": 2, "item_price": 19.5, "currency": "EUR"},
                {"product_retailer_id": "SKU-2", "quantity": 1, "item_price": 5, "currency": "EUR"}]}),
            "[order] 2 items from catalog cat-77: 2 × SKU-1 at 19.5 EUR; 1 × SKU-2 at 5 EUR — For Friday",
            None,
        ),
    ];
    let mut ts = 1_767_225_600;
    for (wamid, kind, obj, _, _) in &cases {
        ts += 1;
        send(&app, &t, WA, msg(wamid, ts, kind, obj.clone())).await;
    }
    // Contacts: the message's own `contacts` array of shared cards.
    send(&app, &t, WA, json!({"from": WA, "id": "wamid.contacts", "timestamp": "1767225700", "type": "contacts",
        "contacts": [{"name": {"formatted_name": "Ana Ruiz", "first_name": "Ana", "last_name": "Ruiz"},
            "phones": [{"phone": "+34 699 111 222", "wa_id": "34699111222", "type": "CELL"}],
            "emails": [{"email": "ana@example.com", "type": "WORK"}]}]})).await;
    // Unsupported: Meta's 131051 in `errors`.
    send(&app, &t, WA, json!({"from": WA, "id": "wamid.unsupported", "timestamp": "1767225701", "type": "unsupported",
        "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."}}]})).await;
    processed_ok(&app, &t).await;

    for (wamid, kind, obj, body, media) in &cases {
        let d = detail(&app, &t, wamid)
            .await
            .unwrap_or_else(|| panic!("{wamid} stored"));
        assert_eq!(d.kind, *kind, "{wamid}");
        assert_eq!(d.body.as_deref(), Some(*body), "{wamid}");
        assert_eq!(&d.content[*kind], obj, "{wamid}: structured content kept");
        assert_eq!(
            d.media_id.as_deref().zip(d.media_mime_type.as_deref()),
            *media,
            "{wamid}: media kept for download"
        );
        assert!(!d.deleted && !d.edited && d.reaction.is_none());
    }
    let d = detail(&app, &t, "wamid.contacts").await.unwrap();
    assert_eq!(
        d.body.as_deref(),
        Some("[contacts] Ana Ruiz (+34 699 111 222)")
    );
    assert_eq!(
        d.content["contacts"][0]["emails"][0]["email"],
        "ana@example.com"
    );
    let d = detail(&app, &t, "wamid.unsupported").await.unwrap();
    assert_eq!(
        d.body.as_deref(),
        Some("[unsupported message: Message type is currently not supported.]")
    );
    assert_eq!(message_count(&app, &t).await, cases.len() + 2);
    // All from one contact, in one conversation.
    let c = contact(&app, &t, PHONE).await.unwrap();
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    assert_eq!(
        messaging::conversation_of(&mut tx, c.id)
            .await
            .unwrap()
            .len(),
        1
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn reactions_attach_to_their_message_and_an_empty_emoji_removes_them() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-react").await;
    send(
        &app,
        &t,
        WA,
        msg(
            "wamid.orig",
            1_767_225_600,
            "text",
            json!({"body": "Great, thanks"}),
        ),
    )
    .await;
    processed_ok(&app, &t).await;
    // An outbound message the contact reacts to.
    let c = contact(&app, &t, PHONE).await.unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    sent_text(
        &mut tx,
        c.id,
        &format!("pn-{}", t.shop.as_str()),
        "k-react",
        "wamid.out",
    )
    .await;
    tx.commit().await.unwrap();

    let react = |wamid: &str, ts: i64, target: &str, emoji: Option<&str>| {
        let mut r = json!({"message_id": target});
        if let Some(e) = emoji {
            r["emoji"] = json!(e);
        }
        msg(wamid, ts, "reaction", r)
    };
    send(
        &app,
        &t,
        WA,
        react("wamid.r1", 1_767_225_610, "wamid.out", Some("👍")),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        react("wamid.r1", 1_767_225_610, "wamid.out", Some("👍")),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        react("wamid.r2", 1_767_225_611, "wamid.orig", Some("❤️")),
    )
    .await;
    processed_ok(&app, &t).await;
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let reaction = |d: Option<InboundDetail>| d.unwrap().reaction;
    assert_eq!(
        reaction(
            messaging::inbound_detail(&mut tx, "wamid.out")
                .await
                .unwrap()
        )
        .as_deref(),
        Some("👍")
    );
    assert_eq!(
        reaction(
            messaging::inbound_detail(&mut tx, "wamid.orig")
                .await
                .unwrap()
        )
        .as_deref(),
        Some("❤️")
    );
    tx.commit().await.unwrap();
    assert!(
        detail(&app, &t, "wamid.r1").await.is_none(),
        "a reaction is not a message"
    );
    assert_eq!(message_count(&app, &t).await, 1);

    // Un-reaction: Meta sends an empty emoji (or none). A late, older
    // reaction does not bring it back.
    send(
        &app,
        &t,
        WA,
        react("wamid.r3", 1_767_225_620, "wamid.out", Some("")),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        react("wamid.r4", 1_767_225_630, "wamid.orig", None),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        react("wamid.r0", 1_767_225_605, "wamid.out", Some("😮")),
    )
    .await;
    processed_ok(&app, &t).await;
    assert_eq!(detail(&app, &t, "wamid.out").await.unwrap().reaction, None);
    assert_eq!(detail(&app, &t, "wamid.orig").await.unwrap().reaction, None);
    assert_eq!(message_count(&app, &t).await, 1);
}

fn edit(wamid: &str, ts: i64, target: &str, text: &str) -> Value {
    msg(
        wamid,
        ts,
        "edit",
        json!({"original_message_id": target,
        "message": {"type": "text", "text": {"body": text}}}),
    )
}

#[tokio::test]
async fn an_edit_updates_the_original_and_keeps_the_previous_text_in_any_order() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-edit").await;
    send(
        &app,
        &t,
        WA,
        msg(
            "wamid.e0",
            1_767_225_600,
            "text",
            json!({"body": "I want size S"}),
        ),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        edit("wamid.e1", 1_767_225_660, "wamid.e0", "I want size M"),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        edit("wamid.e1", 1_767_225_660, "wamid.e0", "I want size M"),
    )
    .await;
    processed_ok(&app, &t).await;
    let d = detail(&app, &t, "wamid.e0").await.unwrap();
    assert_eq!(d.body.as_deref(), Some("I want size M"));
    assert!(d.edited);
    assert_eq!(d.previous_bodies, ["I want size S"]);
    assert!(detail(&app, &t, "wamid.e1").await.is_none());
    assert_eq!(message_count(&app, &t).await, 1);

    // The edit processed before its original: applied when the original lands.
    send(
        &app,
        &t,
        WA,
        edit("wamid.f1", 1_767_225_760, "wamid.f0", "See you at 6"),
    )
    .await;
    processed_ok(&app, &t).await;
    send(
        &app,
        &t,
        WA,
        msg(
            "wamid.f0",
            1_767_225_700,
            "text",
            json!({"body": "See you at 5"}),
        ),
    )
    .await;
    processed_ok(&app, &t).await;
    let d = detail(&app, &t, "wamid.f0").await.unwrap();
    assert_eq!(d.body.as_deref(), Some("See you at 6"));
    assert_eq!(d.previous_bodies, ["See you at 5"]);
    assert_eq!(
        d.content["text"]["body"], "See you at 5",
        "the original as received"
    );
}

#[tokio::test]
async fn a_revoke_marks_the_original_deleted_and_drops_its_text() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-revoke").await;
    send(
        &app,
        &t,
        WA,
        msg(
            "wamid.v0",
            1_767_225_600,
            "text",
            json!({"body": "My card is 4111…"}),
        ),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        edit("wamid.v1", 1_767_225_610, "wamid.v0", "My card is 4242…"),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        msg(
            "wamid.v2",
            1_767_225_620,
            "revoke",
            json!({"original_message_id": "wamid.v0"}),
        ),
    )
    .await;
    // An edit after the revoke changes nothing.
    send(
        &app,
        &t,
        WA,
        edit("wamid.v3", 1_767_225_630, "wamid.v0", "again"),
    )
    .await;
    processed_ok(&app, &t).await;
    let d = detail(&app, &t, "wamid.v0").await.unwrap();
    assert!(d.deleted);
    assert_eq!(d.body, None);
    assert!(d.previous_bodies.is_empty(), "edits' older text goes too");
    assert!(!d.content.to_string().contains("4111"));
    assert!(detail(&app, &t, "wamid.v2").await.is_none());
    assert_eq!(message_count(&app, &t).await, 1);
}

fn changed_number(wamid: &str, from: &str, to: &str) -> Value {
    json!({"from": from, "id": wamid, "timestamp": "1767225900", "type": "system",
        "system": {"body": format!("User Lucía Pérez changed from {from} to {to}"), "wa_id": to,
            "type": "user_changed_number"}})
}

#[tokio::test]
async fn user_changed_number_moves_the_contact_and_keeps_its_history() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-number").await;
    const NEW_WA: &str = "34698765432";
    send(
        &app,
        &t,
        WA,
        msg("wamid.n0", 1_767_225_600, "text", json!({"body": "hola"})),
    )
    .await;
    processed_ok(&app, &t).await;
    let before = contact(&app, &t, PHONE).await.unwrap();
    send(&app, &t, WA, changed_number("wamid.n1", WA, NEW_WA)).await;
    send(&app, &t, WA, changed_number("wamid.n1", WA, NEW_WA)).await;
    processed_ok(&app, &t).await;
    send(
        &app,
        &t,
        NEW_WA,
        json!({"from": NEW_WA, "id": "wamid.n2", "timestamp": "1767225960", "type": "text",
        "text": {"body": "now from my new number"}}),
    )
    .await;
    processed_ok(&app, &t).await;

    assert!(
        contact(&app, &t, PHONE).await.is_none(),
        "the old number is free"
    );
    let after = contact(&app, &t, "+34698765432").await.unwrap();
    assert_eq!(after.id, before.id, "one contact, not a new one");
    assert_eq!(events_of(&app, &t, "ContactCreated").await.len(), 1);
    let notice = detail(&app, &t, "wamid.n1").await.unwrap();
    assert_eq!(notice.kind, "system");
    assert_eq!(
        notice.body.as_deref(),
        Some("User Lucía Pérez changed from 34612345678 to 34698765432")
    );
    assert_eq!(notice.contact_id, before.id);
    assert_eq!(
        detail(&app, &t, "wamid.n2").await.unwrap().contact_id,
        before.id
    );
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let history = phone_changes::phone_history(&mut tx, before.id)
        .await
        .unwrap();
    assert_eq!(
        messaging::conversation_of(&mut tx, before.id)
            .await
            .unwrap()
            .len(),
        1
    );
    tx.commit().await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].previous_phone.as_deref(), Some(PHONE));
    assert_eq!(history[0].phone.as_deref(), Some("+34698765432"));
    assert_eq!(history[0].reference.as_deref(), Some("wamid.n1"));
}

#[tokio::test]
async fn a_number_change_to_a_held_number_keeps_one_contact_per_number() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-held").await;
    const NEW_WA: &str = "34698765432";
    // The new number wrote first (webhooks out of order): it has a contact.
    send(
        &app,
        &t,
        WA,
        msg("wamid.h0", 1_767_225_600, "text", json!({"body": "old"})),
    )
    .await;
    send(
        &app,
        &t,
        NEW_WA,
        json!({"from": NEW_WA, "id": "wamid.h1", "timestamp": "1767225960", "type": "text",
        "text": {"body": "new"}}),
    )
    .await;
    send(&app, &t, WA, changed_number("wamid.h2", WA, NEW_WA)).await;
    processed_ok(&app, &t).await;
    let old = detail(&app, &t, "wamid.h0").await.unwrap().contact_id;
    let holder = contact(&app, &t, "+34698765432").await.unwrap();
    assert_ne!(holder.id, old);
    assert!(
        contact(&app, &t, PHONE).await.is_none(),
        "the old number is no longer this person's"
    );
    assert_eq!(
        detail(&app, &t, "wamid.h2").await.unwrap().contact_id,
        holder.id
    );
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let history = phone_changes::phone_history(&mut tx, old).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].phone, None);
    assert!(
        history[0]
            .note
            .as_deref()
            .unwrap()
            .contains(&holder.id.to_string())
    );
}

#[tokio::test]
async fn malformed_inbound_messages_fail_with_a_reason_and_change_nothing() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-bad").await;
    send(
        &app,
        &t,
        WA,
        msg("wamid.b0", 1_767_225_600, "text", json!({"body": "hola"})),
    )
    .await;
    app.run_jobs_until_idle().await;
    let before = contact(&app, &t, PHONE).await.unwrap();
    // A number change to something that is not a phone number.
    send(&app, &t, WA, changed_number("wamid.b1", WA, "not-a-number")).await;
    let dead = app.try_run_jobs_until_idle().await.unwrap_err();
    assert!(dead.to_string().contains("new number"), "{dead}");
    let failed = webhook_events(&app, &t, "status=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("new number"),
        "{failed:?}"
    );
    assert_eq!(contact(&app, &t, PHONE).await.unwrap(), before);
    assert!(detail(&app, &t, "wamid.b1").await.is_none());
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    assert!(
        phone_changes::phone_history(&mut tx, before.id)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn erasure_reaches_edits_reactions_and_the_phone_history() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = tenant(&app, "in-erase").await;
    send(
        &app,
        &t,
        WA,
        msg(
            "wamid.x0",
            1_767_225_600,
            "text",
            json!({"body": "call me at home"}),
        ),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        edit("wamid.x1", 1_767_225_610, "wamid.x0", "call me at work"),
    )
    .await;
    send(
        &app,
        &t,
        WA,
        msg(
            "wamid.x2",
            1_767_225_620,
            "reaction",
            json!({"message_id": "wamid.x0", "emoji": "🙏"}),
        ),
    )
    .await;
    send(&app, &t, WA, changed_number("wamid.x3", WA, "34698765432")).await;
    processed_ok(&app, &t).await;
    let c = contact(&app, &t, "+34698765432").await.unwrap();
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    contacts::redact(&mut tx, c.id, 1_767_300_000_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let d = detail(&app, &t, "wamid.x0").await.unwrap();
    assert_eq!(d.body, None);
    assert!(d.previous_bodies.is_empty(), "{:?}", d.previous_bodies);
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let history = phone_changes::phone_history(&mut tx, c.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].previous_phone.is_none() && history[0].phone.is_none());
}
