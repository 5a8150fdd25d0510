//! The back-in-stock widget in a real browser: Debian's Chromium, headless,
//! driven through chromedriver by fantoccini. Loads the sandbox demo page,
//! picks the sold-out variant, sees the button, enters a phone, ticks
//! consent, subscribes, and finds the subscription through the API.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/run`
//! installs them); without them the test fails, naming the install command.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use galantis_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver";
/// The demo's sample product: S in stock, M sold out, L in stock.
const SOLD_OUT: &str = "2000002";
const IN_STOCK_L: &str = "2000003";

fn require_browser() {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: the headless-browser tests need Chromium and its driver; install them with `{INSTALL}`"
        );
    }
}

/// chromedriver on a free local port, killed when dropped.
async fn chromedriver() -> (tokio::process::Child, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {CHROMEDRIVER}: {e}; install it with `{INSTALL}`")
        });
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{url}/status")).send().await
            && r.status().is_success()
        {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not come up on {url}");
}

/// Polls `check` until it holds (bounded; a readiness wait, not a timing test).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_shopper_subscribes_to_a_sold_out_variant_from_the_demo_page() {
    require_browser();
    let app = TestApp::builder().sandbox().spawn().await;
    let t = app.create_tenant("bis-browser").await;
    let (_driver, driver_url) = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a WebDriver session with headless Chromium");

    let run = async {
        c.goto(&app.url(&format!(
            "/storefront/demo?shop={}&token={}",
            t.shop.as_str(),
            galantis_testkit::TEST_SANDBOX_TOKEN
        )))
        .await
        .unwrap();
        // The widget is there, hidden: the first variant is in stock.
        let widget = c
            .wait()
            .for_element(Locator::Id("galantis-bis"))
            .await
            .unwrap();
        assert!(!widget.is_displayed().await.unwrap());

        // The sold-out variant shows the button.
        c.find(Locator::Id("variant"))
            .await
            .unwrap()
            .select_by_value(SOLD_OUT)
            .await
            .unwrap();
        until("the button shows for the sold-out variant", || async {
            widget.is_displayed().await.unwrap()
        })
        .await;
        assert_eq!(
            widget.attr("data-variant").await.unwrap().as_deref(),
            Some(SOLD_OUT)
        );
        c.find(Locator::Css(".galantis-bis-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Css("select[name=galantis-country]"))
            .await
            .unwrap()
            .select_by_value("+52")
            .await
            .unwrap();
        c.find(Locator::Css("input[name=galantis-phone]"))
            .await
            .unwrap()
            .send_keys("55 1234 5678")
            .await
            .unwrap();
        c.find(Locator::Css("input[name=galantis-first-name]"))
            .await
            .unwrap()
            .send_keys("Ana")
            .await
            .unwrap();
        // Without consent, nothing is sent.
        let submit = c.find(Locator::Css(".galantis-bis-submit")).await.unwrap();
        submit.click().await.unwrap();
        let message = c.find(Locator::Css(".galantis-bis-message")).await.unwrap();
        until("the consent hint", || async {
            message.text().await.unwrap().contains("agree")
        })
        .await;
        c.find(Locator::Css("input[name=galantis-consent]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        submit.click().await.unwrap();
        until("the confirmation", || async {
            message
                .text()
                .await
                .unwrap()
                .contains("WhatsApp when it's back")
        })
        .await;

        // Another, in-stock variant hides the widget again.
        c.find(Locator::Id("variant"))
            .await
            .unwrap()
            .select_by_value(IN_STOCK_L)
            .await
            .unwrap();
        until("the widget hides for an in-stock variant", || async {
            !widget.is_displayed().await.unwrap()
        })
        .await;
    };
    run.await;
    c.close().await.unwrap();

    // The subscription is there, through the API, exactly once.
    let r = app
        .get("/api/v1/back-in-stock/subscriptions", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{page}");
    assert_eq!(rows[0]["variant_id"].to_string(), SOLD_OUT);
    assert_eq!(rows[0]["status"], "ACTIVE");
    assert_eq!(rows[0]["contact_phone"], "+525512345678");
    assert_eq!(rows[0]["contact_first_name"], "Ana");
    assert_eq!(rows[0]["options"], json!({"Size": "M"}));
}
