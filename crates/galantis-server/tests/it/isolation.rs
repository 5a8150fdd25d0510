use galantis_core::Role;
use galantis_store::tenant::settings;
use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn a_row_written_for_one_tenant_is_invisible_to_another() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("iso-a").await;
    let b = app.create_tenant("iso-b").await;

    let mut tx = app.db().tenant_tx(a.id).await.unwrap();
    settings::put(&mut tx, "quiet_hours", &json!({"from": "22:00"}))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = app.db().tenant_read(b.id).await.unwrap();
    assert_eq!(settings::get(&mut tx, "quiet_hours").await.unwrap(), None);
    assert!(settings::all(&mut tx).await.unwrap().is_empty());
    tx.commit().await.unwrap();

    let mut tx = app.db().tenant_read(a.id).await.unwrap();
    assert_eq!(
        settings::get(&mut tx, "quiet_hours").await.unwrap(),
        Some(json!({"from": "22:00"}))
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_rolled_back_tenant_write_leaves_nothing() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("iso-rollback").await;
    let mut tx = app.db().tenant_tx(a.id).await.unwrap();
    settings::put(&mut tx, "k", &json!(1)).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = app.db().tenant_read(a.id).await.unwrap();
    assert_eq!(settings::get(&mut tx, "k").await.unwrap(), None);
}

#[tokio::test]
async fn one_tenants_token_gets_404_for_another_tenants_things() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("iso-tok-a").await;
    let b = app.create_tenant("iso-tok-b").await;
    let (b_member, b_token) = app.add_member(&b, Role::Viewer).await;

    // A's owner tries to change, tokenise and delete B's member.
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/members/{b_member}"),
            &a.token,
        )
        .json(&json!({"role": "ANALYST"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/members/{b_member}/tokens"),
            &a.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .request(
            Method::DELETE,
            &format!("/api/v1/members/{b_member}"),
            &a.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A cannot revoke B's token.
    let b_tokens: Value = app
        .get("/api/v1/tokens", &b_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_token_id = b_tokens["data"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .request(
            Method::DELETE,
            &format!("/api/v1/tokens/{b_token_id}"),
            &a.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // B's member is untouched and B's token still works.
    let r = app.get("/api/v1/tenant", &b_token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["role"], "VIEWER");
    assert_eq!(me["shop"], b.shop.as_str());

    // A's member list shows only A's members.
    let list: Value = app
        .get("/api/v1/members", &a.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["tenant_id"], a.id.to_string());
}
