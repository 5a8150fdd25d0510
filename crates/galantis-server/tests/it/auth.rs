use galantis_core::{MemberId, Permission, Role, TokenId};
use galantis_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn error_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let rid = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.expect("JSON error body");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        body["error"]["request_id"].as_str(),
        rid.as_deref(),
        "error carries the request id"
    );
    (status, body)
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_tokens_get_401() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("auth-401").await;

    let r = app
        .client
        .get(app.url("/api/v1/tenant"))
        .send()
        .await
        .unwrap();
    let (s, b) = error_of(r).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["code"], "unauthenticated");

    for bad in [
        "nope",
        "glt_",
        "glt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("{}x", t.token),
    ] {
        let r = app.get("/api/v1/tenant", bad).send().await.unwrap();
        assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let r = app
        .client
        .get(app.url("/api/v1/tenant"))
        .header("authorization", format!("Basic {}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Revoke the token through the API with itself: later calls are 401.
    let (_, second) = app.add_member(&t, Role::Admin).await;
    let list: Value = app
        .get("/api/v1/tokens", &second)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .request(Method::DELETE, &format!("/api/v1/tokens/{id}"), &second)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.get("/api/v1/tenant", &second).send().await.unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    // Revoking again: the token is the owner's to see? No — it is gone for this caller.
    let r = app
        .request(Method::DELETE, &format!("/api/v1/tokens/{id}"), &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "owner may revoke any token; revoking twice is a no-op"
    );
}

#[tokio::test]
async fn a_deactivated_tenants_tokens_stop_working() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("auth-deact").await;
    assert_eq!(
        app.get("/api/v1/tenant", &t.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    galantis_store::control::tenants::deactivate(app.db(), &t.shop)
        .await
        .unwrap();
    let r = app.get("/api/v1/tenant", &t.token).send().await.unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
    galantis_store::control::tenants::reactivate(app.db(), &t.shop)
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/tenant", &t.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// Every route of the API with the permission it requires. A body is sent
/// that fails validation after the permission check, so allowed calls change
/// nothing and never answer 403.
fn routes() -> Vec<(Method, String, Permission, Option<Value>)> {
    let m = MemberId::new();
    let tok = TokenId::new();
    let conv = uuid::Uuid::now_v7();
    vec![
        (
            Method::GET,
            "/api/v1/tenant".into(),
            Permission::TenantRead,
            None,
        ),
        (
            Method::GET,
            "/api/v1/members".into(),
            Permission::MembersRead,
            None,
        ),
        (
            Method::POST,
            "/api/v1/members".into(),
            Permission::MembersWrite,
            Some(json!({"email": "x@y.co", "role": "NOPE"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/members/{m}"),
            Permission::MembersWrite,
            Some(json!({"role": "NOPE"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/members/{m}"),
            Permission::MembersWrite,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/members/{m}/tokens"),
            Permission::MembersWrite,
            None,
        ),
        (
            Method::GET,
            "/api/v1/tokens".into(),
            Permission::TenantRead,
            None,
        ),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Permission::TenantRead,
            Some(json!({"label": "x".repeat(101)})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{tok}"),
            Permission::TenantRead,
            None,
        ),
        // The inbox: unknown ids (404) or bodies that fail validation.
        (
            Method::GET,
            "/api/v1/conversations".into(),
            Permission::InboxRead,
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{conv}"),
            Permission::InboxRead,
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/conversations/{conv}"),
            Permission::InboxAssign,
            Some(json!({"status": "NOPE"})),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{conv}/read"),
            Permission::InboxReply,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{conv}/messages"),
            Permission::InboxReply,
            Some(json!({"text": "hi", "note": "both"})),
        ),
        (
            Method::GET,
            "/api/v1/quick-replies".into(),
            Permission::InboxRead,
            None,
        ),
        (
            Method::POST,
            "/api/v1/quick-replies".into(),
            Permission::InboxReply,
            Some(json!({"shortcut": "", "body": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/quick-replies/{conv}"),
            Permission::InboxReply,
            None,
        ),
        (
            Method::GET,
            "/api/v1/inbox/analytics?from=yesterday".into(),
            Permission::AnalyticsRead,
            None,
        ),
        // Back in stock: bodies or queries that fail validation, unknown ids.
        (
            Method::GET,
            "/api/v1/settings/back-in-stock".into(),
            Permission::SettingsRead,
            None,
        ),
        (
            Method::PUT,
            "/api/v1/settings/back-in-stock".into(),
            Permission::SettingsWrite,
            Some(json!({"button_color": "red"})),
        ),
        (
            Method::GET,
            "/api/v1/back-in-stock/subscriptions".into(),
            Permission::AudienceRead,
            None,
        ),
        (
            Method::GET,
            "/api/v1/back-in-stock/subscriptions.csv".into(),
            Permission::AudienceRead,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/back-in-stock/subscriptions/{conv}/cancel"),
            Permission::AudienceWrite,
            None,
        ),
        (
            Method::GET,
            "/api/v1/back-in-stock/analytics?from=yesterday".into(),
            Permission::AnalyticsRead,
            None,
        ),
        // Campaigns: unknown ids (404) or bodies that fail validation.
        (
            Method::GET,
            "/api/v1/campaigns".into(),
            Permission::CampaignsRead,
            None,
        ),
        (
            Method::POST,
            "/api/v1/campaigns".into(),
            Permission::CampaignsWrite,
            Some(json!({"name": ""})),
        ),
        (
            Method::GET,
            format!("/api/v1/campaigns/{conv}"),
            Permission::CampaignsRead,
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/campaigns/{conv}"),
            Permission::CampaignsWrite,
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/campaigns/{conv}"),
            Permission::CampaignsWrite,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/campaigns/{conv}/duplicate"),
            Permission::CampaignsWrite,
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/campaigns/{conv}/recipients.csv"),
            Permission::CampaignsRead,
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/campaigns/{conv}/stats"),
            Permission::CampaignsRead,
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/campaigns/{conv}/recipients?status=FAILED"),
            Permission::CampaignsRead,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/campaigns/{conv}/estimate"),
            Permission::CampaignsRead,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/campaigns/{conv}/test-send"),
            Permission::CampaignsSend,
            Some(json!({"phone": "nope"})),
        ),
        (
            Method::POST,
            format!("/api/v1/campaigns/{conv}/launch"),
            Permission::CampaignsSend,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/campaigns/{conv}/cancel"),
            Permission::CampaignsSend,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/campaigns/{conv}/pause"),
            Permission::CampaignsSend,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/campaigns/{conv}/resume"),
            Permission::CampaignsSend,
            None,
        ),
        // Automations: unknown ids (404) or bodies that fail validation.
        (
            Method::GET,
            "/api/v1/automations".into(),
            Permission::AutomationsRead,
            None,
        ),
        (
            Method::POST,
            "/api/v1/automations".into(),
            Permission::AutomationsWrite,
            Some(json!({"name": "", "flow": {"nodes": [], "edges": []}})),
        ),
        (
            Method::POST,
            "/api/v1/automations/from-recipe".into(),
            Permission::AutomationsWrite,
            Some(json!({"recipe": "nope", "template_ids": {}})),
        ),
        (
            Method::GET,
            format!("/api/v1/automations/{conv}"),
            Permission::AutomationsRead,
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/automations/{conv}"),
            Permission::AutomationsWrite,
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/automations/{conv}"),
            Permission::AutomationsWrite,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/automations/{conv}/activate"),
            Permission::AutomationsActivate,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/automations/{conv}/pause"),
            Permission::AutomationsActivate,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/automations/{conv}/resume"),
            Permission::AutomationsActivate,
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/automations/{conv}/dry-run"),
            Permission::AutomationsWrite,
            Some(json!({"contact_id": conv})),
        ),
        (
            Method::GET,
            format!("/api/v1/automations/{conv}/activity"),
            Permission::AutomationsRead,
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/automations/{conv}/stats"),
            Permission::AutomationsRead,
            None,
        ),
    ]
}

#[tokio::test]
async fn every_role_on_every_route_is_allowed_exactly_when_its_permissions_say_so() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("auth-matrix").await;
    let mut callers = vec![(Role::Owner, t.token.clone())];
    for role in Role::ALL.into_iter().filter(|r| *r != Role::Owner) {
        callers.push((role, app.add_member(&t, role).await.1));
    }
    let before: Value = app
        .get("/api/v1/members", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (role, token) in &callers {
        for (method, path, permission, body) in routes() {
            let mut req = app.request(method.clone(), &path, token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let r = req.send().await.unwrap();
            let status = r.status();
            if role.allows(permission) {
                assert_ne!(status, StatusCode::FORBIDDEN, "{role} {method} {path}");
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{role} {method} {path}");
                assert!(
                    status.is_success() || status.is_client_error(),
                    "{role} {method} {path}: {status}"
                );
            } else {
                let (s, b) = error_of(r).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{role} {method} {path}");
                assert_eq!(b["error"]["code"], "forbidden");
                assert!(
                    b["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains(permission.as_str())
                );
            }
        }
    }
    let after: Value = app
        .get("/api/v1/members", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before, after, "the matrix changed nothing");
}

#[tokio::test]
async fn a_role_change_applies_to_the_next_request() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("auth-rolechange").await;
    let (member, token) = app.add_member(&t, Role::Viewer).await;
    assert_eq!(
        app.get("/api/v1/members", &token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/members/{member}"),
            &t.token,
        )
        .json(&json!({"role": "ADMIN"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/members", &token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// Resolved tokens are cached for up to 2 s (ADR 0032); a change made
/// through this node takes effect at once anyway: a narrowed role on the
/// very next request, a removed member's token is refused.
#[tokio::test]
async fn role_narrowing_and_removal_take_effect_at_once_despite_the_auth_cache() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("auth-cache").await;
    let (member, token) = app.add_member(&t, Role::Admin).await;
    for _ in 0..2 {
        // Twice: the second answer comes from the cache.
        let r = app.get("/api/v1/members", &token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = app
        .request(
            Method::PATCH,
            &format!("/api/v1/members/{member}"),
            &t.token,
        )
        .json(&json!({"role": "VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get("/api/v1/members", &token).send().await.unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::FORBIDDEN);
    let r = app.get("/api/v1/tenant", &token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .request(
            Method::DELETE,
            &format!("/api/v1/members/{member}"),
            &t.token,
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = app.get("/api/v1/tenant", &token).send().await.unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::UNAUTHORIZED);
}
