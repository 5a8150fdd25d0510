//! Shared set-up of the automation engine tests: a tenant connected to a
//! Meta sandbox with approved templates, a fixed clock, no workers, and
//! readers for runs, activity and messages.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use galantis_core::automation::{ActivityStatus, AutomationStatus, Exclusion, Flow, FrequencyCap};
use galantis_core::{Clock, DomainEvent, FixedClock, MarketingState};
use galantis_sandbox::meta::{
    MetaSandbox, NumberConfig, SandboxConfig, SandboxHandle, TemplateSeed,
};
use galantis_store::tenant::automations::activity::{self, Activity, ActivityFilter};
use galantis_store::tenant::automations::runs::{self, Run};
use galantis_store::tenant::automations::{self, Automation, NewAutomation};
use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_store::tenant::{sending, templates};
use galantis_testkit::{TEST_META_SECRET, TestApp, TestTenant};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const TOKEN: &str = "EAAG-automation-test-token";
pub(crate) const NUMBER: &str = "100000000000888";
const WABA: &str = "200000000000888";

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

pub(crate) struct Env {
    pub app: TestApp,
    pub clock: Arc<FixedClock>,
    pub t: TestTenant,
    #[allow(dead_code)]
    pub sb: SandboxHandle,
    /// `order_update` (`{{1}}`, `{{2}}`) and `promo` (`{{1}}`).
    pub two_vars: Uuid,
    pub one_var: Uuid,
}

/// A tenant connected to a Meta sandbox (approved templates, status
/// webhooks back to the app), a fixed clock, no workers.
pub(crate) async fn env(name: &str) -> Env {
    env_with(name, Vec::new()).await
}

/// [`env`] with more sandbox templates (approved or not, as seeded).
pub(crate) async fn env_with(name: &str, extra: Vec<TemplateSeed>) -> Env {
    let mut c = SandboxConfig::default().with_app_secret(TEST_META_SECRET);
    c.settings.tokens = vec![TOKEN.to_owned()];
    c.numbers = vec![NumberConfig::new(NUMBER, WABA).messages_per_second(80)];
    c.webhooks.sent_after_ms = 0;
    c.webhooks.delivered_after_ms = Some(5);
    c.webhooks.read_after_ms = Some(10);
    c = c
        .with_template(
            TemplateSeed::approved("order_update", "en", "Hi {{1}}, see {{2}}").waba(WABA),
        )
        .with_template(
            TemplateSeed::approved("promo", "en", "Sale for {{1}}!")
                .waba(WABA)
                .category("MARKETING"),
        );
    for t in extra {
        c = c.with_template(t.waba(WABA));
    }
    let sb = MetaSandbox::spawn(c).await.expect("sandbox");
    let base = sb.base_url.clone();
    let clock = Arc::new(FixedClock::new(t0()));
    let app = TestApp::builder()
        .without_workers()
        .fixed_clock(clock.clone())
        .config(move |c| {
            c.meta_base_url = Some(base);
            c.sending.pair_interval_ms = 1;
        })
        .spawn()
        .await;
    sb.update_webhooks(|w| w.url = Some(format!("{}/webhooks/meta", app.base_url)));
    let t = app.create_tenant(name).await;
    let r = app
        .request(reqwest::Method::PUT, "/api/v1/settings/whatsapp", &t.token)
        .json(&json!({"access_token": TOKEN, "waba_id": WABA,
                      "phone_numbers": [{"phone_number_id": NUMBER, "messages_per_second": 80, "default": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .request(reqwest::Method::POST, "/api/v1/templates/sync", &t.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.run_jobs_until_idle().await;
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let two_vars = templates::by_name(&mut tx, "order_update", "en")
        .await
        .unwrap()
        .unwrap()
        .id;
    let one_var = templates::by_name(&mut tx, "promo", "en")
        .await
        .unwrap()
        .unwrap()
        .id;
    tx.commit().await.unwrap();
    Env {
        app,
        clock,
        t,
        sb,
        two_vars,
        one_var,
    }
}

impl Env {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A contact with this phone and consent (Shopify customer `n`).
    pub async fn contact(&self, n: i64, phone: &str, consent: MarketingState) -> Uuid {
        let mut tx = self.app.db().tenant_tx(self.t.id).await.unwrap();
        let f = CustomerFields {
            shopify_customer_id: n,
            first_name: Some(format!("Ana{n}")),
            phone: Some(phone.to_owned()),
            phone_raw: Some(phone.to_owned()),
            phone_status: Some("valid"),
            marketing_state: Some(consent),
            updated_at: 1,
            ..Default::default()
        };
        contacts::upsert_customer(&mut tx, &f, 1).await.unwrap();
        let c = contacts::by_phone(&mut tx, phone).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        c.id
    }

    /// An ACTIVE automation activated now.
    pub async fn automation(
        &self,
        flow: Value,
        cap: FrequencyCap,
        exclusions: &[Exclusion],
    ) -> Automation {
        let parsed = Flow::parse(&flow).expect("flow parses");
        let mut tx = self.app.db().tenant_tx(self.t.id).await.unwrap();
        let now = self.now().timestamp_millis();
        let a = automations::create(
            &mut tx,
            &NewAutomation {
                name: "test",
                flow: (&flow, &parsed),
                frequency_cap: Some(cap),
                exclusions,
                include_existing_users: false,
            },
            now,
        )
        .await
        .unwrap();
        let a = automations::set_status(&mut tx, a.id, AutomationStatus::Active, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        a
    }

    /// Records `ev` now, as the recorder does in a webhook's transaction.
    pub async fn record(&self, ev: DomainEvent) {
        let mut tx = self.app.db().tenant_tx(self.t.id).await.unwrap();
        galantis_store::events::record(&mut tx, &ev, self.now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    pub async fn runs(&self, a: &Automation) -> Vec<Run> {
        let mut tx = self.app.db().tenant_read(self.t.id).await.unwrap();
        let r = runs::of_automation(&mut tx, a.id, 1000).await.unwrap();
        tx.commit().await.unwrap();
        r
    }

    /// Activity, oldest first.
    pub async fn activity(&self, a: &Automation) -> Vec<Activity> {
        let mut tx = self.app.db().tenant_read(self.t.id).await.unwrap();
        let mut r = activity::list(
            &mut tx,
            &ActivityFilter {
                automation_id: Some(a.id),
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        r.reverse();
        r
    }

    /// (node, status, reason) of `contact`'s activity, oldest first.
    pub async fn trail(
        &self,
        a: &Automation,
        contact: Uuid,
    ) -> Vec<(String, ActivityStatus, Option<String>)> {
        self.activity(a)
            .await
            .into_iter()
            .filter(|x| x.contact_id == contact)
            .map(|x| (x.node_id, x.status, x.reason))
            .collect()
    }

    pub async fn messages(&self) -> Vec<sending::Outbound> {
        let mut tx = self.app.db().tenant_read(self.t.id).await.unwrap();
        let m = sending::list_outbound(
            &mut tx,
            &sending::OutboundFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        m
    }
}
