//! Phones from Shopify payloads validated per country: a national-format
//! number is read with the country the payload gives; a number of the right
//! shape that no country assigns is stored as invalid, never as a phone.

use galantis_store::tenant::contacts;
use galantis_testkit::webhooks::shopify_ok;
use galantis_testkit::{TestApp, TestTenant};
use serde_json::{Value, json};

use crate::webhooks::processed_ok;

/// `customers/create` as Shopify sends it since API 2025-01: no top-level
/// phone, the default address's phone in national format.
fn customer(id: i64, phone: Option<&str>, address_phone: &str, country: Option<&str>) -> Value {
    json!({
        "id": id, "email": format!("c{id}@example.com"), "first_name": "Bob", "last_name": "Norman",
        "phone": phone, "state": "enabled", "currency": "CAD", "verified_email": true,
        "created_at": "2026-01-10T10:00:00-05:00", "updated_at": "2026-01-10T10:00:00-05:00",
        "admin_graphql_api_id": format!("gid://shopify/Customer/{id}"),
        "addresses": [],
        "default_address": {
            "id": id + 1000, "customer_id": id, "first_name": "Bob", "last_name": "Norman",
            "address1": "150 Elgin St", "city": "Ottawa", "province": "Ontario", "zip": "K2P 1L4",
            "phone": address_phone, "province_code": "ON", "country": "Canada",
            "country_code": country, "country_name": "Canada", "default": true
        }
    })
}

async fn contact(app: &TestApp, t: &TestTenant, id: i64) -> contacts::Contact {
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let c = contacts::by_shopify_id(&mut tx, id).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    c
}

#[tokio::test]
async fn a_national_address_phone_is_read_with_the_address_country() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("ph-national").await;
    let body = customer(7001, None, "613-555-0123", Some("CA"));
    shopify_ok(&app, &t, "customers/create", "ph-1", &body).await;
    processed_ok(&app, &t).await;
    let c = contact(&app, &t, 7001).await;
    assert_eq!(c.phone.as_deref(), Some("+16135550123"));
    assert_eq!(c.phone_status.as_deref(), Some("valid"));
    assert_eq!(c.country.as_deref(), Some("CA"));

    // The same person found again by the E.164 form.
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let by_phone = contacts::by_phone(&mut tx, "+16135550123").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(by_phone.map(|b| b.id), Some(c.id));
}

#[tokio::test]
async fn numbers_no_country_assigns_or_without_a_country_are_not_phones() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("ph-invalid").await;
    // The right shape for E.164, but too short for Mexico.
    let short = customer(7002, Some("+52155500"), "", Some("MX"));
    // National format and no country anywhere in the payload.
    let no_country = customer(7003, None, "613-555-0123", None);
    // 555 is no North American area code.
    let no_area = customer(7004, None, "555-555-5555", Some("CA"));
    shopify_ok(&app, &t, "customers/create", "ph-2", &short).await;
    shopify_ok(&app, &t, "customers/create", "ph-3", &no_country).await;
    shopify_ok(&app, &t, "customers/create", "ph-4", &no_area).await;
    // Not a processing failure: the customer is kept, without a phone.
    processed_ok(&app, &t).await;
    for (id, status) in [
        (7002, "invalid"),
        (7003, "missing_calling_code"),
        (7004, "invalid"),
    ] {
        let c = contact(&app, &t, id).await;
        assert_eq!(c.phone, None, "{id}");
        assert_eq!(c.phone_status.as_deref(), Some(status), "{id}");
    }
}

#[tokio::test]
async fn a_csv_country_column_resolves_national_numbers_and_a_bad_country_is_reported() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("ph-csv").await;
    let list: Value = app
        .request(reqwest::Method::POST, "/api/v1/lists", &t.token)
        .json(&json!({"name": "Ottawa"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list_id = list["id"].as_str().unwrap();
    let csv =
        "phone,first_name,country\n613-555-0123,Ann,CA\n613-555-0124,Bo,Narnia\n613-555-0125,Cy,\n";
    let r = app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/lists/{list_id}/imports?filename=ottawa.csv"),
            &t.token,
        )
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let import: Value = r.json().await.unwrap();
    let import_id = import["id"].as_str().unwrap();
    app.run_jobs_until_idle().await;

    let get = |path: String| {
        let app = &app;
        let token = t.token.clone();
        async move {
            let v: Value = app
                .get(&path, &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let done = get(format!("/api/v1/imports/{import_id}")).await;
    assert_eq!(
        (done["created"].as_i64(), done["rejected"].as_i64()),
        (Some(1), Some(2)),
        "{done}"
    );
    let report = get(format!("/api/v1/imports/{import_id}/report")).await;
    let reasons: Vec<_> = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (3, "invalid_country".to_owned()),
            (4, "CUSTOMER_IS_MISSING_CALLING_CODE".to_owned())
        ],
        "{report}"
    );
    let mut tx = app.db().tenant_read(t.id).await.unwrap();
    let ann = contacts::by_phone(&mut tx, "+16135550123").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ann.and_then(|c| c.first_name).as_deref(), Some("Ann"));
}
