//! Searches match literally (issue #11, finding 5): `%`, `_` and `\` in a
//! search or a tag are the characters themselves, never wildcards, on both
//! engines and on every path (contact list, audience filters, list members).

use std::collections::{BTreeSet, HashMap};

use galantis_store::tenant::contacts::{self, CustomerFields};
use galantis_testkit::{TestApp, TestTenant};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// (name, email, tags). Each near miss would match if a metacharacter were a
/// wildcard or stripped.
const PEOPLE: &[(&str, &str, &[&str])] = &[
    ("Exact", "auser1_x@example.com", &["a_b"]),
    ("Wild", "auser1ax@example.com", &["axb", "a_bc"]),
    ("Percent 100%", "pct@example.com", &["50%_off"]),
    ("Almost", "fifty@example.com", &["50xyoff", "50% off"]),
    (r"Back\slash", "bs@example.com", &[]),
    ("Stripped", "auser1x@example.com", &["ab"]),
];

async fn people(app: &TestApp, t: &TestTenant) -> HashMap<Uuid, &'static str> {
    let mut tx = app.db().tenant_tx(t.id).await.unwrap();
    let mut ids = HashMap::new();
    for (i, (name, email, tags)) in PEOPLE.iter().enumerate() {
        let f = CustomerFields {
            shopify_customer_id: 100 + i as i64,
            first_name: Some(name.to_string()),
            email: Some(email.to_string()),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            updated_at: 1,
            ..Default::default()
        };
        let c = match contacts::upsert_customer(&mut tx, &f, 1).await.unwrap() {
            contacts::Upserted::Created(c) => c.id,
            other => panic!("{other:?}"),
        };
        ids.insert(c, *name);
    }
    tx.commit().await.unwrap();
    ids
}

fn names(ids: &HashMap<Uuid, &'static str>, page: &Value) -> BTreeSet<&'static str> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|c| ids[&c["id"].as_str().unwrap().parse::<Uuid>().unwrap()])
        .collect()
}

#[tokio::test]
async fn searches_and_tags_match_literally() {
    let app = TestApp::builder().without_workers().spawn().await;
    let t = app.create_tenant("search-literal").await;
    let ids = people(&app, &t).await;
    let post = |path: String, body: Value| {
        app.request(Method::POST, &path, &t.token)
            .json(&body)
            .send()
    };
    // A list holding everyone sends `GET /contacts` through the audience search.
    let all: Value = post("/api/v1/lists".into(), json!({"name": "everyone"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all_id = all["id"].as_str().unwrap().to_owned();
    let r = post(
        format!("/api/v1/lists/{all_id}/members"),
        json!({"contact_ids": ids.keys().collect::<Vec<_>>()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let cases: &[(&str, &str, &[&str])] = &[
        ("q", "%", &["Percent 100%"]),
        ("q", "_", &["Exact"]),
        ("q", "auser1_x@example.com", &["Exact"]),
        ("q", "AUSER1_X@EXAMPLE.COM", &["Exact"]),
        ("q", r"\", &[r"Back\slash"]),
        ("q", "%_", &[]),
        ("tag", "a_b", &["Exact"]),
        ("tag", "A_B", &["Exact"]),
        ("tag", "50%_off", &["Percent 100%"]),
        ("tag", "%", &[]),
        ("tag", "ab", &["Stripped"]),
    ];
    for (i, (param, value, expected)) in cases.iter().enumerate() {
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        for extra in ["", &format!("&list_id={all_id}")] {
            let page: Value = app
                .get("/api/v1/contacts", &t.token)
                .query(&[(*param, *value)])
                .query(&[("limit", "200")])
                .query(
                    &extra
                        .strip_prefix("&list_id=")
                        .map(|l| vec![("list_id", l)])
                        .unwrap_or_default(),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(names(&ids, &page), expected, "{param}={value}{extra}");
        }
        // The same search adds exactly those contacts to a list.
        let list: Value = post("/api/v1/lists".into(), json!({"name": format!("case {i}")}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list_id = list["id"].as_str().unwrap().to_owned();
        let r = post(
            format!("/api/v1/lists/{list_id}/members"),
            json!({"search": {*param: value}}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{param}={value}");
        let added: Value = r.json().await.unwrap();
        assert_eq!(added["added"], expected.len(), "{param}={value}: {added}");
        let members: Value = app
            .get(
                &format!("/api/v1/contacts?list_id={list_id}&limit=200"),
                &t.token,
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(names(&ids, &members), expected, "list {param}={value}");
    }

    // The tag filter and the segment rule `customer_tag` agree.
    for tag in ["a_b", "50%_off"] {
        let seg: Value = post(
            "/api/v1/segments".into(),
            json!({"name": format!("tag {tag}"), "rules": {"groups": [{"conditions": [
                {"field": "customer_tag", "operator": "is", "value": tag}]}]}}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(seg["member_count"], 1, "{tag}: {seg}");
    }
}
