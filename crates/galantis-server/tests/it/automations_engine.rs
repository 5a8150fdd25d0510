//! The automation engine end to end on both engines: triggers enrol
//! through the gate (once per trigger key, never before activation),
//! runs perform their effects once, delays are timers, conditions wait
//! for replies and statuses without polling, paused templates fail their
//! node, and the abandoned checkout recipe runs from real webhooks. A
//! fixed clock; the queue drained by the test; sends go through the Meta
//! sandbox.

use chrono::Duration;
use galantis_core::automation::{
    ActivityStatus, AutomationStatus, Exclusion, ExclusionKind, FrequencyCap, RecipeKind,
    RecipeTemplates, RunStatus, recipe,
};
use galantis_core::{DomainEvent, MarketingState};
use galantis_store::tenant::automations::{self, runs::Run};
use galantis_store::tenant::{lists, templates};
use galantis_testkit::eventually;
use galantis_testkit::webhooks::shopify_ok;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::automations_support::{env, t0};

pub(crate) fn order_event(order: Uuid, contact: Uuid) -> DomainEvent {
    DomainEvent::OrderCreated {
        order_id: order,
        shopify_order_id: 1,
        contact_id: Some(contact),
        total_price: Some("20.00".into()),
    }
}

fn delay_then_send(trigger: Value, template: Uuid) -> Value {
    json!({
        "nodes": [
            trigger,
            {"id": "d", "type": "delay", "amount": 30, "unit": "minutes"},
            {"id": "a", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}
        ],
        "edges": [{"from": "t", "to": "d"}, {"from": "d", "to": "a"}]
    })
}

use ActivityStatus::{Completed, Failed, Skipped};

fn done(node: &str) -> (String, ActivityStatus, Option<String>) {
    (node.to_owned(), Completed, None)
}

#[tokio::test]
async fn an_order_enrols_once_waits_its_delay_and_sends_once() {
    let e = env("auto-order").await;
    let c = e
        .contact(1, "+16135550101", MarketingState::Subscribed)
        .await;
    // An order from before activation enrols nobody.
    let early = Uuid::now_v7();
    e.record(order_event(early, c)).await;
    e.clock.advance(Duration::seconds(1));
    let flow = delay_then_send(
        json!({"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"}),
        e.one_var,
    );
    let a = e.automation(flow, FrequencyCap::Days30, &[]).await;
    e.app.run_jobs_until_idle().await;
    assert!(e.runs(&a).await.is_empty(), "event older than activation");

    // The same order twice (a redelivered webhook recorded again): one run.
    e.clock.advance(Duration::seconds(1));
    let order = Uuid::now_v7();
    e.record(order_event(order, c)).await;
    e.record(order_event(order, c)).await;
    e.app.run_jobs_until_idle().await;
    let r = e.runs(&a).await;
    assert_eq!(r.len(), 1, "{:?}", e.activity(&a).await);
    assert_eq!(r[0].status, RunStatus::Waiting);
    assert_eq!(r[0].current_node.as_deref(), Some("d"));
    let trail = e.trail(&a, c).await;
    assert_eq!(trail[0], done("t"));
    assert_eq!(trail[1], ("d".into(), ActivityStatus::Scheduled, None));

    e.app
        .advance_clock_and_run(Duration::minutes(30) - Duration::seconds(1))
        .await;
    assert!(e.messages().await.is_empty(), "a delay never fires early");
    e.app.advance_clock_and_run(Duration::seconds(1)).await;
    let m = e.messages().await;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].source.map(|s| s.as_str()), Some("automation"));
    assert_eq!(m[0].template_name.as_deref(), Some("promo"));
    let r = e.runs(&a).await;
    assert_eq!(r[0].status, RunStatus::Completed);
    assert_eq!(r[0].last_message_id, Some(m[0].id));
    let trail = e.trail(&a, c).await;
    assert_eq!(trail, vec![done("t"), done("d"), done("a")]);
    let acts = e.activity(&a).await;
    let send = acts.iter().find(|x| x.node_id == "a").unwrap();
    assert_eq!(send.message_id, Some(m[0].id));
    assert!(send.pending_at.is_some() && send.completed_at.is_some());
    let delay = acts.iter().find(|x| x.node_id == "d").unwrap();
    assert_eq!(
        (delay.scheduled_at, delay.completed_at),
        (
            Some(t0() + Duration::seconds(2)),
            Some(t0() + Duration::seconds(2) + Duration::minutes(30))
        )
    );

    e.app.advance_clock_and_run(Duration::days(3)).await;
    assert_eq!(e.messages().await.len(), 1, "sent once");
}

#[tokio::test]
async fn the_gate_logs_each_refusal_and_the_cap_is_rolling() {
    let e = env("auto-gate").await;
    let subscribed = e
        .contact(1, "+16135550102", MarketingState::Subscribed)
        .await;
    let unsubscribed = e
        .contact(2, "+16135550103", MarketingState::Unsubscribed)
        .await;
    let excluded = e
        .contact(3, "+16135550104", MarketingState::Subscribed)
        .await;
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    let list = lists::create(&mut tx, "Staff", None, 0).await.unwrap();
    lists::add_members(&mut tx, list.id, &[excluded], "api", 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let flow = json!({
        "nodes": [{"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
                  {"id": "a", "type": "action", "template_id": e.one_var,
                   "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}],
        "edges": [{"from": "t", "to": "a"}]
    });
    let ex = [Exclusion {
        kind: ExclusionKind::List,
        id: list.id,
    }];
    let a = e.automation(flow, FrequencyCap::Hours24, &ex).await;
    e.clock.advance(Duration::seconds(1));
    for c in [unsubscribed, excluded, subscribed] {
        e.record(order_event(Uuid::now_v7(), c)).await;
    }
    e.app.run_jobs_until_idle().await;
    assert_eq!(
        e.trail(&a, unsubscribed).await,
        vec![("t".into(), Skipped, Some("not_subscribed".into()))]
    );
    assert_eq!(
        e.trail(&a, excluded).await,
        vec![("t".into(), Skipped, Some("excluded".into()))]
    );
    assert_eq!(e.trail(&a, subscribed).await, vec![done("t"), done("a")]);

    // A second order within 24 hours is capped; one after it enrols.
    e.app.advance_clock_and_run(Duration::hours(23)).await;
    e.record(order_event(Uuid::now_v7(), subscribed)).await;
    e.app.run_jobs_until_idle().await;
    let trail = e.trail(&a, subscribed).await;
    assert_eq!(
        trail.last().unwrap(),
        &("t".into(), Skipped, Some("frequency_capped".into()))
    );
    e.app.advance_clock_and_run(Duration::hours(1)).await;
    e.record(order_event(Uuid::now_v7(), subscribed)).await;
    e.app.run_jobs_until_idle().await;
    let runs: Vec<Run> = e
        .runs(&a)
        .await
        .into_iter()
        .filter(|r| r.contact_id == subscribed)
        .collect();
    assert_eq!(runs.len(), 2, "enrolled again after the cap");
    assert_eq!(e.messages().await.len(), 2);
}

fn reply_flow(template: Uuid, condition: Value) -> Value {
    json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "CUSTOMER_TAGGED", "tag": "vip"},
            {"id": "a", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}},
            {"id": "c", "type": "condition", "group": {"op": "and", "rules": [condition]}},
            {"id": "y", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}},
            {"id": "n", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}
        ],
        "edges": [{"from": "t", "to": "a"}, {"from": "a", "to": "c"},
                  {"from": "c", "to": "y", "branch": "yes"}, {"from": "c", "to": "n", "branch": "no"}]
    })
}

/// Contact `n` at `phone`, subscribed, enrolled in [`reply_flow`] with
/// `cond` by a `vip` tag a second after activation; the run has sent and
/// waits at `c`.
async fn waiting_at_condition(
    e: &crate::automations_support::Env,
    n: i64,
    phone: &str,
    cond: Value,
) -> (Uuid, automations::Automation) {
    let c = e.contact(n, phone, MarketingState::Subscribed).await;
    let a = e
        .automation(reply_flow(e.one_var, cond), FrequencyCap::Days7, &[])
        .await;
    e.clock.advance(Duration::seconds(1));
    e.record(DomainEvent::CustomerTagged {
        contact_id: c,
        tag: "vip".into(),
    })
    .await;
    (c, a)
}

/// Runs jobs until `c`'s run in [`reply_flow`] `a` has taken YES, then
/// checks its whole trail.
async fn takes_yes(
    e: &crate::automations_support::Env,
    a: &automations::Automation,
    c: Uuid,
    what: &str,
) {
    eventually(what, || async {
        e.app.run_jobs_until_idle().await;
        e.trail(a, c).await.last() == Some(&done("y"))
    })
    .await;
    assert_eq!(
        e.trail(a, c).await,
        vec![done("t"), done("a"), done("c"), done("y")]
    );
}

#[tokio::test]
async fn a_button_reply_takes_yes_at_once_and_silence_takes_no_at_the_window_end() {
    let e = env("auto-reply").await;
    let replier = e
        .contact(1, "+16135550105", MarketingState::Subscribed)
        .await;
    let silent = e
        .contact(2, "+16135550106", MarketingState::Subscribed)
        .await;
    let cond = json!({"condition": "USER_REPLY_STATUS", "button_id": "yes_please",
                      "window": {"amount": 2, "unit": "hours"}});
    let a = e
        .automation(reply_flow(e.one_var, cond), FrequencyCap::Days7, &[])
        .await;
    e.clock.advance(Duration::seconds(1));
    for c in [replier, silent] {
        e.record(DomainEvent::CustomerTagged {
            contact_id: c,
            tag: "VIP".into(),
        })
        .await;
    }
    e.app.run_jobs_until_idle().await;
    for c in [replier, silent] {
        let trail = e.trail(&a, c).await;
        assert_eq!(
            trail.last().unwrap(),
            &("c".into(), ActivityStatus::Scheduled, None)
        );
    }
    // The button press, 10 minutes later: YES at once.
    e.app.advance_clock_and_run(Duration::minutes(10)).await;
    e.record(DomainEvent::ConversationMessageCreated {
        conversation_id: Uuid::now_v7(),
        message_id: Uuid::now_v7(),
        contact_id: replier,
        wamid: "wamid.reply".into(),
        message_type: "button".into(),
        button_reply_id: Some("yes_please".into()),
        context_wamid: None,
        reopened: false,
    })
    .await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(
        e.trail(&a, replier).await,
        vec![done("t"), done("a"), done("c"), done("y")]
    );
    assert_eq!(
        e.trail(&a, silent).await.last().unwrap(),
        &("c".into(), ActivityStatus::Scheduled, None),
        "still waiting"
    );
    // Silence: NO when the window ends, not before.
    e.app
        .advance_clock_and_run(Duration::minutes(110) - Duration::seconds(2))
        .await;
    assert_eq!(e.trail(&a, silent).await.len(), 3);
    e.app.advance_clock_and_run(Duration::seconds(2)).await;
    assert_eq!(
        e.trail(&a, silent).await,
        vec![done("t"), done("a"), done("c"), done("n")]
    );
    assert_eq!(e.messages().await.len(), 4);
}

/// A template's quick-reply button, pressed on the customer's phone: Meta
/// reports it as a message of type `button` whose `payload` is the
/// button's id. It reaches the waiting run through the real webhook and
/// takes YES.
#[tokio::test]
async fn a_template_quick_reply_button_by_webhook_takes_yes() {
    let e = env("auto-button").await;
    let cond = json!({"condition": "USER_REPLY_STATUS", "button_id": "yes_please",
                      "window": {"amount": 2, "unit": "hours"}});
    let (c, a) = waiting_at_condition(&e, 1, "+16135550108", cond).await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(
        e.trail(&a, c).await.last().unwrap(),
        &("c".into(), ActivityStatus::Scheduled, None)
    );
    e.app.advance_clock_and_run(Duration::minutes(5)).await;
    let press = json!({"object": "whatsapp_business_account", "entry": [{"id": "200000000000888", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550000000", "phone_number_id": crate::automations_support::NUMBER},
                  "contacts": [{"profile": {"name": "Ana"}, "wa_id": "16135550108"}],
                  "messages": [{"from": "16135550108", "id": "wamid.button-press",
                                "timestamp": e.now().timestamp().to_string(), "type": "button",
                                "button": {"payload": "yes_please", "text": "Yes, please"}}]}}]}]});
    let r = galantis_testkit::webhooks::meta(&e.app, &press).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    takes_yes(&e, &a, c, "the press takes YES").await;
}

/// A reply stored while a step writes its wait for that contact's reply
/// (ADR 0038): the step cannot read the replies until the reply commits,
/// and then sees it (the step wakes itself); a reply whose transaction
/// comes second waits for the step's commit, so its wake-up finds the
/// wait. A step inside a batch does not wait: it leaves the batch.
#[tokio::test]
async fn a_reply_stored_while_a_step_writes_its_wait_is_seen_by_one_side() {
    use galantis_store::tenant::automations::runs;
    use galantis_store::tenant::messaging::{self, InboundMessage};

    let e = env("auto-reply-race").await;
    let c = e
        .contact(1, "+16135550109", MarketingState::Subscribed)
        .await;
    let since = e.now().timestamp_millis();
    let at = since + 1_000;
    let content = json!({"from": "16135550109", "id": "wamid.race-reply", "type": "button",
                         "button": {"payload": "yes_please", "text": "Yes, please"}});
    let mut reply_tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    let conversation = messaging::touch_conversation_inbound(
        &mut reply_tx,
        c,
        crate::automations_support::NUMBER,
        at,
        at,
    )
    .await
    .unwrap()
    .id;
    runs::hold_replies(&mut reply_tx, c).await.unwrap();
    messaging::insert_inbound(
        &mut reply_tx,
        &InboundMessage {
            conversation_id: conversation,
            contact_id: c,
            phone_number_id: crate::automations_support::NUMBER,
            wamid: "wamid.race-reply",
            kind: "button",
            body: Some("Yes, please"),
            content: &content,
            context_wamid: None,
            at_ms: at,
        },
        at,
    )
    .await
    .unwrap()
    .unwrap();
    let step = {
        let (db, tenant) = (e.app.db().clone(), e.t.id);
        tokio::spawn(async move {
            let mut tx = db.tenant_tx(tenant).await.unwrap();
            runs::hold_replies(&mut tx, c).await.unwrap();
            let seen = runs::inbound_since(&mut tx, c, since).await.unwrap();
            tx.rollback().await.unwrap();
            seen
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !step.is_finished(),
        "the step read the replies past an uncommitted one"
    );
    if e.app.db().engine() == galantis_store::Engine::Postgres {
        let mut batch = e.app.db().tenant_tx(e.t.id).await.unwrap();
        batch.wait_for_locks(false);
        assert!(matches!(
            runs::hold_replies(&mut batch, c).await,
            Err(galantis_store::StoreError::LockBusy(_))
        ));
        batch.rollback().await.unwrap();
    }
    reply_tx.commit().await.unwrap();
    let seen = step.await.unwrap();
    let created = seen.first().map(|r| r.0);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(created.is_some_and(|t| t >= since));
    assert_eq!(seen[0].1.as_deref(), Some("yes_please"), "with its button");
}

#[tokio::test]
async fn message_delivery_status_follows_the_sandbox_read_receipts() {
    let e = env("auto-status").await;
    let cond = json!({"condition": "MESSAGE_DELIVERY_STATUS", "status": "read",
                      "window": {"amount": 1, "unit": "days"}});
    let (c, a) = waiting_at_condition(&e, 1, "+16135550107", cond).await;
    // The sandbox sends, then reports sent, delivered and read by webhook.
    takes_yes(&e, &a, c, "the read receipt takes the YES branch").await;
    let m = e.messages().await;
    assert_eq!(m.len(), 2);
}

#[tokio::test]
async fn a_template_paused_after_activation_fails_its_node_for_later_customers() {
    let e = env("auto-paused").await;
    let first = e
        .contact(1, "+16135550108", MarketingState::Subscribed)
        .await;
    let later = e
        .contact(2, "+16135550109", MarketingState::Subscribed)
        .await;
    let flow = json!({
        "nodes": [{"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
                  {"id": "a", "type": "action", "template_id": e.one_var,
                   "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}],
        "edges": [{"from": "t", "to": "a"}]
    });
    let a = e.automation(flow, FrequencyCap::Days7, &[]).await;
    e.clock.advance(Duration::seconds(1));
    e.record(order_event(Uuid::now_v7(), first)).await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(e.trail(&a, first).await, vec![done("t"), done("a")]);

    // Meta pauses the template.
    let mut tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    let tpl = templates::get(&mut tx, e.one_var).await.unwrap().unwrap();
    templates::upsert_synced(
        &mut tx,
        &templates::SyncedTemplate {
            meta_template_id: tpl.meta_template_id.as_deref().unwrap_or("x"),
            name: &tpl.name,
            language: &tpl.language,
            category: tpl.category.as_str(),
            status: "PAUSED",
            rejection_reason: None,
            components: &tpl.components,
            parameter_format: &tpl.parameter_format,
        },
        e.now().timestamp_millis(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    e.record(order_event(Uuid::now_v7(), later)).await;
    e.app.run_jobs_until_idle().await;
    assert_eq!(
        e.trail(&a, later).await,
        vec![
            done("t"),
            ("a".into(), Failed, Some("template_paused".into()))
        ]
    );
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let still = automations::get(&mut tx, a.id).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(still.status, AutomationStatus::Active);
    assert_eq!(e.messages().await.len(), 1);
}

fn checkout(token: &str, id: i64, updated_at: &str, phone: &str, total: &str) -> Value {
    json!({
        "id": id, "token": token, "phone": phone, "email": "ana@example.com",
        "currency": "EUR", "total_price": total, "updated_at": updated_at,
        "created_at": "2026-03-01T10:00:00Z",
        "abandoned_checkout_url": format!("https://shop.example/checkouts/{token}/recover"),
        "line_items": [{"title": "Tee", "variant_title": "M", "variant_id": 11, "product_id": 1,
                        "quantity": 2, "price": "64.95"}]
    })
}

/// Checkout with a phone → abandoned (timer) → 30 min → VIP branch for a
/// total over 100 → message → 24 h → reminder; an order completing the
/// checkout in between ends the run before its reminder. Real signed
/// webhooks; `CheckoutAbandoned` comes from the checkout timer.
#[tokio::test]
async fn the_abandoned_checkout_recipe_runs_end_to_end() {
    let e = env("auto-abandoned").await;
    let vip = e
        .contact(1, "+16135550110", MarketingState::Subscribed)
        .await;
    let buyer = e
        .contact(2, "+16135550111", MarketingState::Subscribed)
        .await;
    let r = recipe(
        RecipeKind::AbandonedCheckout,
        &RecipeTemplates {
            template_ids: [("standard".to_owned(), e.two_vars)].into_iter().collect(),
            segment_id: None,
            tag: None,
        },
    );
    let a = e.automation(r.flow, r.frequency_cap, &[]).await;
    e.clock.advance(Duration::seconds(1));
    shopify_ok(
        &e.app,
        &e.t,
        "checkouts/create",
        "c-vip",
        &checkout(
            "tok-vip",
            9001,
            "2026-03-01T10:00:01Z",
            "+16135550110",
            "129.90",
        ),
    )
    .await;
    shopify_ok(
        &e.app,
        &e.t,
        "checkouts/create",
        "c-buy",
        &checkout(
            "tok-buy",
            9002,
            "2026-03-01T10:00:01Z",
            "+16135550111",
            "40.00",
        ),
    )
    .await;
    e.app.run_jobs_until_idle().await;
    // The abandonment delay (10 minutes by default), then the 30 minutes.
    e.app.advance_clock_and_run(Duration::minutes(10)).await;
    assert_eq!(e.runs(&a).await.len(), 2, "both abandoned and enrolled");
    e.app.advance_clock_and_run(Duration::minutes(30)).await;
    assert_eq!(
        e.trail(&a, vip).await,
        vec![
            done("trigger"),
            done("wait_30m"),
            done("is_vip"),
            done("send_vip"),
            ("wait_24h".into(), ActivityStatus::Scheduled, None)
        ]
    );
    assert_eq!(
        e.trail(&a, buyer).await[3],
        done("send_standard"),
        "40.00 is not over 100"
    );
    let m = e.messages().await;
    assert_eq!(m.len(), 2);
    // The buyer's order completes the checkout: the rest is cancelled.
    let order = json!({"id": 501, "order_number": 1001, "checkout_token": "tok-buy",
        "total_price": "40.00", "currency": "EUR",
        "created_at": "2026-03-01T11:00:00Z", "updated_at": "2026-03-01T11:00:00Z"});
    shopify_ok(&e.app, &e.t, "orders/create", "o-1", &order).await;
    e.app.run_jobs_until_idle().await;
    e.app.advance_clock_and_run(Duration::hours(24)).await;
    assert_eq!(
        e.trail(&a, vip).await.last().unwrap(),
        &done("send_reminder")
    );
    assert_eq!(
        e.trail(&a, buyer).await.last().unwrap(),
        &(
            "wait_24h".into(),
            Skipped,
            Some("checkout_completed".into())
        )
    );
    assert_eq!(e.messages().await.len(), 3, "one reminder, to the VIP only");
    let runs = e.runs(&a).await;
    let buyer_run = runs.iter().find(|r| r.contact_id == buyer).unwrap();
    assert_eq!(buyer_run.status, RunStatus::Skipped);
    // The recovery URL reached the template's second variable.
    let vip_msgs: Vec<_> = e
        .messages()
        .await
        .into_iter()
        .filter(|m| m.contact_id == vip)
        .collect();
    assert!(
        vip_msgs[0]
            .content
            .to_string()
            .contains("https://shop.example/checkouts/tok-vip/recover"),
        "{}",
        vip_msgs[0].content
    );
}

/// Whether any `MessageStatusUpdated` of `message` to `to` was recorded
/// with `awaited` set (a run waited for it when it was applied).
async fn status_awaited(e: &crate::automations_support::Env, message: Uuid, to: &str) -> bool {
    let mut tx = e.app.db().tenant_read(e.t.id).await.unwrap();
    let events = galantis_store::tenant::domain_events::list(
        &mut tx,
        Some("MessageStatusUpdated"),
        None,
        1000,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mine: Vec<bool> = events
        .iter()
        .filter_map(|ev| DomainEvent::from_stored(&ev.kind, &ev.payload).ok())
        .filter_map(|ev| match ev {
            DomainEvent::MessageStatusUpdated {
                message_id,
                to: status,
                awaited,
                ..
            } if message_id == message && status == to => Some(awaited),
            _ => None,
        })
        .collect();
    assert!(!mine.is_empty(), "a {to} status of {message} was recorded");
    mine.contains(&true)
}

/// Send → 30 min delay → wait for `delivered` (ADR 0036): a status that
/// arrives while no run waits for it queues no wake-up and the condition
/// reads it when the delay ends; one that arrives while the run waits
/// wakes it. A status applied while a step writes its wait is seen by
/// the step (it cannot read the message until the status commits) or, once
/// the wait commits, by the status handler.
#[tokio::test]
async fn a_status_wakes_a_run_only_while_it_waits_and_never_slips_between() {
    use galantis_core::MessageStatus;
    use galantis_core::automation::{Awaited, Wait, WaitKind};
    use galantis_store::tenant::automations::runs;
    use galantis_store::tenant::messaging::{self, StatusUpdate};
    use galantis_store::tenant::sending;

    let e = env("auto-await").await;
    // Only `sent`: `delivered` comes from this test.
    e.sb.update_webhooks(|w| {
        w.delivered_after_ms = None;
        w.read_after_ms = None;
    });
    let early = e
        .contact(1, "+16135550131", MarketingState::Subscribed)
        .await;
    let late = e
        .contact(2, "+16135550132", MarketingState::Subscribed)
        .await;
    let template = e.one_var;
    let flow = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "CUSTOMER_TAGGED", "tag": "vip"},
            {"id": "a", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}},
            {"id": "d", "type": "delay", "amount": 30, "unit": "minutes"},
            {"id": "c", "type": "condition", "group": {"op": "and", "rules": [
                {"condition": "MESSAGE_DELIVERY_STATUS", "status": "delivered",
                 "window": {"amount": 1, "unit": "days"}}]}},
            {"id": "y", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}},
            {"id": "n", "type": "action", "template_id": template,
             "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}
        ],
        "edges": [{"from": "t", "to": "a"}, {"from": "a", "to": "d"}, {"from": "d", "to": "c"},
                  {"from": "c", "to": "y", "branch": "yes"}, {"from": "c", "to": "n", "branch": "no"}]
    });
    let a = e.automation(flow, FrequencyCap::Days7, &[]).await;
    e.clock.advance(Duration::seconds(1));
    for c in [early, late] {
        e.record(DomainEvent::CustomerTagged {
            contact_id: c,
            tag: "vip".into(),
        })
        .await;
    }
    eventually("both sends are sent", || async {
        e.app.run_jobs_until_idle().await;
        let m = e.messages().await;
        m.len() == 2 && m.iter().all(|m| m.status == MessageStatus::Sent)
    })
    .await;
    let sent = e.messages().await;
    let message_of = |c: Uuid| sent.iter().find(|m| m.contact_id == c).unwrap().clone();
    let (m_early, m_late) = (message_of(early), message_of(late));
    // Both runs sit in the delay: `sent` woke nothing.
    assert!(!status_awaited(&e, m_early.id, "SENT").await);
    assert!(!status_awaited(&e, m_late.id, "SENT").await);

    // `delivered` for `early` is being applied (not committed) just as a
    // step reads the status to write `early`'s wait.
    let run = e
        .runs(&a)
        .await
        .into_iter()
        .find(|r| r.contact_id == early)
        .unwrap();
    let mut status_tx = e.app.db().tenant_tx(e.t.id).await.unwrap();
    let update = StatusUpdate {
        wamid: m_early.wamid.as_deref().unwrap(),
        status: MessageStatus::Delivered,
        at_ms: e.now().timestamp_millis(),
        error_code: None,
        error_title: None,
        error_detail: None,
    };
    let now_ms = e.now().timestamp_millis();
    messaging::apply_status(&mut status_tx, &update, now_ms)
        .await
        .unwrap()
        .unwrap();
    let step = {
        let (db, tenant) = (e.app.db().clone(), e.t.id);
        let mut state = run.state.clone();
        state.node = Some("c".into());
        state.wait = Some(Wait {
            node: "c".into(),
            visit: 1,
            until: e.now() + Duration::days(1),
            kind: WaitKind::Event {
                awaited: Awaited::MessageStatus,
            },
        });
        tokio::spawn(async move {
            let mut tx = db.tenant_tx(tenant).await.unwrap();
            let seen = sending::status_for_wait(&mut tx, m_early.id).await.unwrap();
            runs::save(&mut tx, run.id, &state, None, None, now_ms)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            seen
        })
    };
    // Whichever engine: the step cannot read the message while the status
    // is being applied (PostgreSQL: the row; SQLite: the one writer).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !step.is_finished(),
        "the step read past an uncommitted status"
    );
    assert!(
        !runs::awaits_status(&mut status_tx, m_early.id)
            .await
            .unwrap(),
        "the step's wait is not committed"
    );
    // A step inside a batch does not wait for the row: it leaves the batch.
    if e.app.db().engine() == galantis_store::Engine::Postgres {
        let mut batch = e.app.db().tenant_tx(e.t.id).await.unwrap();
        batch.wait_for_locks(false);
        assert!(matches!(
            sending::status_for_wait(&mut batch, m_early.id).await,
            Err(galantis_store::StoreError::LockBusy(_))
        ));
        batch.rollback().await.unwrap();
    }
    status_tx.commit().await.unwrap();
    assert_eq!(step.await.unwrap(), Some(MessageStatus::Delivered));

    // The delays end: `early`'s condition reads `delivered` and takes YES
    // at once; `late` waits for its status.
    e.app.advance_clock_and_run(Duration::minutes(30)).await;
    assert_eq!(
        e.trail(&a, early).await,
        vec![done("t"), done("a"), done("d"), done("c"), done("y")]
    );
    assert_eq!(
        e.trail(&a, late).await.last().unwrap(),
        &("c".into(), ActivityStatus::Scheduled, None)
    );
    // `delivered` for `late`, by webhook, while it waits: it wakes the run.
    let r = galantis_testkit::webhooks::meta(
        &e.app,
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "200000000000888", "changes": [{
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550000000", "phone_number_id": crate::automations_support::NUMBER},
                      "statuses": [{"id": m_late.wamid.as_deref().unwrap(), "status": "delivered",
                                    "timestamp": e.now().timestamp().to_string(),
                                    "recipient_id": "16135550132"}]}}]}]}),
    )
    .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    eventually("the delivery wakes `late`", || async {
        e.app.run_jobs_until_idle().await;
        e.trail(&a, late).await.last() == Some(&done("y"))
    })
    .await;
    assert!(status_awaited(&e, m_late.id, "DELIVERED").await);
}

/// Steps due together run in one batch whose sends are queued together
/// at its end (`step_batch`); a contact's second run in the same batch
/// waits for the first to commit. Every run sends once, with its own
/// message, and each automation's trail is whole.
#[tokio::test]
async fn steps_due_together_send_once_each_even_for_one_contact_in_two_automations() {
    let e = env("auto-batch").await;
    let flow = delay_then_send(
        json!({"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"}),
        e.one_var,
    );
    let first = e.automation(flow.clone(), FrequencyCap::Days30, &[]).await;
    let second = e.automation(flow, FrequencyCap::Days30, &[]).await;
    e.clock.advance(Duration::seconds(1));
    let mut contacts = Vec::new();
    for n in 1..=4 {
        let c = e
            .contact(n, &format!("+1613555020{n}"), MarketingState::Subscribed)
            .await;
        e.record(order_event(Uuid::now_v7(), c)).await;
        contacts.push(c);
    }
    e.app.run_jobs_until_idle().await;
    e.app.advance_clock_and_run(Duration::minutes(30)).await;

    let messages = e.messages().await;
    assert_eq!(messages.len(), 8, "two automations × four contacts");
    for c in &contacts {
        assert_eq!(
            messages.iter().filter(|m| m.contact_id == *c).count(),
            2,
            "one message per run of {c}"
        );
    }
    for a in [&first, &second] {
        let runs = e.runs(a).await;
        assert_eq!(runs.len(), 4);
        for r in &runs {
            assert_eq!(r.status, RunStatus::Completed, "{r:?}");
            let m = r.last_message_id.expect("the run's message");
            assert!(
                messages
                    .iter()
                    .any(|x| x.id == m && x.contact_id == r.contact_id)
            );
            assert_eq!(
                e.trail(a, r.contact_id).await,
                vec![done("t"), done("d"), done("a")]
            );
        }
    }
    e.app.advance_clock_and_run(Duration::days(1)).await;
    assert_eq!(e.messages().await.len(), 8, "sent once");
}
