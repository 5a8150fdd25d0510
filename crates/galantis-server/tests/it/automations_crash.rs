//! `kill -9` of a real `galantis serve` while a run waits in its delay:
//! after a restart the run continues at the right time and its message is
//! sent once. The run is enrolled in-process with a clock set back, so its
//! one-minute delay ends a few seconds after the binary starts.

use std::sync::Arc;
use std::time::Duration;

use galantis_core::automation::{AutomationStatus, Flow, FrequencyCap, RunStatus};
use galantis_core::{Clock, DomainEvent, FixedClock, MarketingState, ShopDomain};
use galantis_sandbox::meta::{MetaSandbox, NumberConfig, SandboxConfig, TemplateSeed};
use galantis_server::app;
use galantis_server::jobs::Registry;
use galantis_server::jobs::worker::Worker;
use galantis_store::control::phone_numbers;
use galantis_store::control::tenants::{self, NewTenant, PhoneNumberLink};
use galantis_store::tenant::automations::{self, NewAutomation, runs};
use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_store::tenant::templates;
use galantis_testkit::{Scratch, TEST_META_SECRET, eventually};
use serde_json::json;
use uuid::Uuid;

use crate::cli::command;

const NUMBER: &str = "100000000000999";
const WABA: &str = "200000000000999";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(env: &[(String, String)]) -> tokio::process::Child {
    command(env)
        .args([
            "serve",
            "--role",
            "worker",
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn sigkill_during_a_delay_then_restart_sends_the_message_once() {
    let mut sc = SandboxConfig::default().with_app_secret(TEST_META_SECRET);
    sc.numbers = vec![NumberConfig::new(NUMBER, WABA).messages_per_second(80)];
    sc.webhooks.url = None;
    let sb = MetaSandbox::spawn(
        sc.with_template(TemplateSeed::approved("promo", "en", "Sale for {{1}}!").waba(WABA)),
    )
    .await
    .unwrap();
    let scratch = Scratch::new().await;
    let mut cfg = scratch.config();
    cfg.meta_base_url = Some(sb.base_url.clone());
    cfg.migrate_on_start = true;

    // In-process: enrol with the clock 55 s back, so the 1-minute delay
    // ends ~5 s from now, in real time.
    let mut state = app::build_state(cfg).await.unwrap();
    let clock = Arc::new(FixedClock::new(
        chrono::Utc::now() - chrono::Duration::seconds(55),
    ));
    state.set_clock(clock.clone());
    let db = state.db.clone();
    let tenant = tenants::create(
        &db,
        &state.master_key,
        NewTenant {
            shop: ShopDomain::parse("auto-crash.myshopify.com").unwrap(),
            owner_email: None,
            phone: None,
        },
    )
    .await
    .unwrap()
    .tenant
    .id;
    let mut ctl = db.control_tx().await.unwrap();
    phone_numbers::replace_for_tenant(
        &mut ctl,
        tenant,
        &[PhoneNumberLink {
            phone_number_id: NUMBER.into(),
            waba_id: WABA.into(),
        }],
        NUMBER,
    )
    .await
    .unwrap();
    ctl.commit().await.unwrap();
    galantis_server::sending::templates::sync(&state, tenant)
        .await
        .unwrap();
    let mut tx = db.tenant_tx(tenant).await.unwrap();
    let tpl = templates::by_name(&mut tx, "promo", "en")
        .await
        .unwrap()
        .unwrap()
        .id;
    let phone = "+16135550140";
    contacts::upsert_customer(
        &mut tx,
        &CustomerFields {
            shopify_customer_id: 1,
            first_name: Some("Ana".into()),
            phone: Some(phone.into()),
            phone_raw: Some(phone.into()),
            phone_status: Some("valid"),
            marketing_state: Some(MarketingState::Subscribed),
            updated_at: 1,
            ..Default::default()
        },
        1,
    )
    .await
    .unwrap();
    let contact = contacts::by_phone(&mut tx, phone)
        .await
        .unwrap()
        .unwrap()
        .id;
    let flow = json!({
        "nodes": [{"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
                  {"id": "d", "type": "delay", "amount": 1, "unit": "minutes"},
                  {"id": "a", "type": "action", "template_id": tpl,
                   "variables": {"1": {"source": "customer.first_name", "fallback": "there"}}}],
        "edges": [{"from": "t", "to": "d"}, {"from": "d", "to": "a"}]
    });
    let parsed = Flow::parse(&flow).unwrap();
    let now_ms = clock.now().timestamp_millis();
    let a = automations::create(
        &mut tx,
        &NewAutomation {
            name: "crash",
            flow: (&flow, &parsed),
            frequency_cap: Some(FrequencyCap::Days7),
            exclusions: &[],
            include_existing_users: false,
        },
        now_ms,
    )
    .await
    .unwrap();
    automations::set_status(&mut tx, a.id, AutomationStatus::Active, now_ms)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    clock.advance(chrono::Duration::seconds(1));
    let mut tx = db.tenant_tx(tenant).await.unwrap();
    galantis_store::events::record(
        &mut tx,
        &DomainEvent::OrderCreated {
            order_id: Uuid::now_v7(),
            shopify_order_id: 1,
            contact_id: Some(contact),
            total_price: None,
        },
        clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Worker::new(state.clone(), Registry::builtin())
        .run_until_idle(100)
        .await
        .unwrap();
    let mut tx = db.tenant_read(tenant).await.unwrap();
    let r = runs::of_automation(&mut tx, a.id, 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, RunStatus::Waiting, "in its delay");
    db.close().await;

    // The real binary, killed during the delay, then restarted.
    let mut env = scratch.env();
    env.extend([
        ("GALANTIS_META_BASE_URL".into(), sb.base_url.clone()),
        ("GALANTIS_QUEUE__HEARTBEAT_INTERVAL_SECS".into(), "1".into()),
        ("GALANTIS_QUEUE__HEARTBEAT_TIMEOUT_SECS".into(), "2".into()),
        ("GALANTIS_QUEUE__POLL_INTERVAL_MS".into(), "100".into()),
    ]);
    let mut first = serve(&env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.start_kill().unwrap(); // SIGKILL
    let _ = first.wait().await;
    let mut second = serve(&env);
    eventually(
        "the message reaches the sandbox after the delay",
        || async { !sb.messages().is_empty() },
    )
    .await;
    // Let the second node finish whatever it would do twice, then stop it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.start_kill().unwrap();
    let _ = second.wait().await;
    assert_eq!(sb.messages().len(), 1, "sent once");
    assert!(
        sb.messages()[0].accepted_at.timestamp_millis() >= now_ms + 60_000,
        "not before the delay ended"
    );
}
