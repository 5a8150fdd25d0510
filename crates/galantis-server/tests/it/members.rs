use galantis_core::Role;
use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let s = r.status();
    let b: Value = r.json().await.unwrap();
    (s, b["error"]["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn owner_manages_members_and_their_tokens() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("mem-owner").await;
    let r = app
        .request(Method::POST, "/api/v1/members", &t.token)
        .json(&json!({"email": "Ana@Example.com", "role": "support_agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["email"], "ana@example.com");
    assert_eq!(m["role"], "SUPPORT_AGENT");
    let id = m["id"].as_str().unwrap();

    // Duplicate email → 409, nothing added.
    let r = app
        .request(Method::POST, "/api/v1/members", &t.token)
        .json(&json!({"email": "ana@example.com", "role": "VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::CONFLICT, "member_exists".into())
    );

    // A token for the new member works with the member's role.
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/members/{id}/tokens"),
            &t.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let tok: Value = r.json().await.unwrap();
    let token = tok["token"].as_str().unwrap();
    assert!(token.starts_with("glt_"));
    let me: Value = app
        .get("/api/v1/tenant", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "SUPPORT_AGENT");
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("inbox.reply"))
    );

    // Removing the member removes their tokens.
    let r = app
        .request(Method::DELETE, &format!("/api/v1/members/{id}"), &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/tenant", token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .request(Method::DELETE, &format!("/api/v1/members/{id}"), &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_member_input_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("mem-bad").await;
    let cases = [
        (
            json!({"email": "not-an-email", "role": "VIEWER"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            json!({"email": "a@b.co", "role": "SUPERUSER"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_role",
        ),
        (
            json!({"email": "a@b.co"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"email": "a@b.co", "role": "VIEWER", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"email": "a@b.co", "role": "OWNER"}),
            StatusCode::FORBIDDEN,
            "role_not_assignable",
        ),
    ];
    for (body, status, expected) in cases {
        let r = app
            .request(Method::POST, "/api/v1/members", &t.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (status, expected.to_owned()), "{body}");
    }
    let r = app
        .request(Method::POST, "/api/v1/members", &t.token)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_json".into())
    );
    let r = app
        .request(Method::POST, "/api/v1/members", &t.token)
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await.0, StatusCode::BAD_REQUEST);
    let list: Value = app
        .get("/api/v1/members", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "only the owner");
}

#[tokio::test]
async fn admins_cannot_touch_the_owner_or_other_admins() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("mem-admin").await;
    let (admin2, _) = app.add_member(&t, Role::Admin).await;
    let (_, admin) = app.add_member(&t, Role::Admin).await;
    let owner = t.owner_id;

    let r = app
        .request(Method::POST, "/api/v1/members", &admin)
        .json(&json!({"email": "new-admin@x.co", "role": "ADMIN"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "role_not_assignable".into())
    );
    let r = app
        .request(Method::PATCH, &format!("/api/v1/members/{owner}"), &admin)
        .json(&json!({"role": "VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "role_not_assignable".into())
    );
    let r = app
        .request(Method::DELETE, &format!("/api/v1/members/{owner}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "role_not_assignable".into())
    );
    let r = app
        .request(Method::DELETE, &format!("/api/v1/members/{admin2}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "role_not_assignable".into())
    );
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/members/{owner}/tokens"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "role_not_assignable".into())
    );
    // Admins can still manage ordinary members.
    let r = app
        .request(Method::POST, "/api/v1/members", &admin)
        .json(&json!({"email": "viewer@x.co", "role": "VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The owner can demote an admin.
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/members/{admin2}"),
            &t.token,
        )
        .json(&json!({"role": "ANALYST"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Roles guard people above them (issue #11, finding 6): an ADMIN cannot lock
/// out the OWNER or a peer admin by revoking their tokens; lower members'
/// tokens stay theirs to manage.
#[tokio::test]
async fn admins_cannot_revoke_the_owners_or_another_admins_tokens() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("mem-revoke").await;
    let (_, admin) = app.add_member(&t, Role::Admin).await;
    let (admin2_id, admin2) = app.add_member(&t, Role::Admin).await;
    let (_, agent) = app.add_member(&t, Role::SupportAgent).await;
    let token_id = |token: String| {
        let app = &app;
        async move {
            let list: Value = app
                .get("/api/v1/tokens", &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list["data"][0]["id"].as_str().unwrap().to_owned()
        }
    };
    let owner_tok = token_id(t.token.clone()).await;
    let admin2_tok = token_id(admin2.clone()).await;
    let agent_tok = token_id(agent.clone()).await;
    let revoke = |id: &str, by: &str| {
        app.request(Method::DELETE, &format!("/api/v1/tokens/{id}"), by)
            .send()
    };
    for (id, holder) in [(&owner_tok, &t.token), (&admin2_tok, &admin2)] {
        assert_eq!(
            code(revoke(id, &admin).await.unwrap()).await,
            (StatusCode::FORBIDDEN, "role_not_assignable".into())
        );
        let r = app.get("/api/v1/tenant", holder).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "the token still works");
    }
    // Nor change a peer admin or mint a token in their name.
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/members/{admin2_id}"),
            &admin,
        )
        .json(&json!({"role": "VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "role_not_assignable".into())
    );
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/members/{admin2_id}/tokens"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (StatusCode::FORBIDDEN, "role_not_assignable".into())
    );
    // Without members.write another member's token does not exist for you.
    assert_eq!(
        revoke(&owner_tok, &agent).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/tenant", &t.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // An admin still manages roles below ADMIN; the owner manages admins.
    assert_eq!(
        revoke(&agent_tok, &admin).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/tenant", &agent)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        revoke(&admin2_tok, &t.token).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // Revoking your own token is always allowed.
    let admin_tok = token_id(admin.clone()).await;
    assert_eq!(
        revoke(&admin_tok, &admin).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
}
