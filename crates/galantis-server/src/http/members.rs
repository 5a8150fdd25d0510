//! Team members and API tokens over the API.
//!
//! Members: owner and admins manage them (`members.write`); nobody creates,
//! changes or removes the OWNER, and only the owner manages admins.
//! Tokens: every member manages their own; `members.write` also issues and
//! revokes tokens of other members — of the roles it may assign, so nobody
//! locks out the owner or a peer admin (`Role::may_assign` is the one rule).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galantis_core::{Email, MemberId, Role, TokenId};
use galantis_store::control::members::{self, Member};
use galantis_store::control::tokens::{self, IssuedToken, TokenInfo};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, OptionalJson, Path};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    email: String,
    #[schema(value_type = crate::http::openapi::RoleName)]
    role: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    #[schema(value_type = crate::http::openapi::RoleName)]
    role: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    label: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, AppError> {
    s.parse::<Role>()
        .map_err(|e| AppError::unprocessable("invalid_role", e.to_string()))
}

fn parse_email(s: &str) -> Result<Email, AppError> {
    Email::parse(s).map_err(|e| AppError::unprocessable("invalid_email", e.to_string()))
}

fn may_not_assign(actor: Role, role: Role) -> AppError {
    AppError::ForbiddenAction {
        code: "role_not_assignable",
        message: format!("a member with role {actor} cannot give or change the role {role}"),
    }
}

/// A member's membership and tokens are managed only by someone who could
/// have given them their role: never the OWNER's, an ADMIN's only by the owner.
fn may_manage(actor: Role, target: Role) -> Result<(), AppError> {
    if actor.may_assign(target) {
        Ok(())
    } else {
        Err(AppError::ForbiddenAction {
            code: "role_not_assignable",
            message: format!(
                "a member with role {actor} cannot manage a member with role {target} or their tokens"
            ),
        })
    }
}

#[utoipa::path(
    get,
    path = "/members",
    tag = "members",
    summary = "Members of the tenant",
    responses((status = 200, description = "the members", body = Object))
)]
pub async fn list_members(
    State(state): State<AppState>,
    auth: Authed<perm::MembersRead>,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let members = members::list(&state.db, auth.tenant_id).await?;
    Ok(axum::Json(json!({ "data": members })))
}

#[utoipa::path(
    post,
    path = "/members",
    tag = "members",
    summary = "Add a member",
    request_body = NewMember,
    responses((status = 201, description = "the member", body = Object))
)]
pub async fn add_member(
    State(state): State<AppState>,
    auth: Authed<perm::MembersWrite>,
    Json(body): Json<NewMember>,
) -> Result<Response, AppError> {
    let email = parse_email(&body.email)?;
    let role = parse_role(&body.role)?;
    if !auth.role.may_assign(role) {
        return Err(may_not_assign(auth.role, role));
    }
    let member = members::add(&state.db, auth.tenant_id, email, role).await?;
    tracing::info!(member = %member.id, role = %role, "member added");
    Ok((StatusCode::CREATED, axum::Json(member)).into_response())
}

async fn member_of(
    state: &AppState,
    auth_tenant: galantis_core::TenantId,
    id: MemberId,
) -> Result<Member, AppError> {
    members::get(&state.db, auth_tenant, id)
        .await?
        .ok_or(AppError::NotFound("member"))
}

#[utoipa::path(
    patch,
    path = "/members/{id}",
    tag = "members",
    summary = "Change a member's role",
    params(("id" = uuid::Uuid, Path, description = "member id")),
    request_body = RoleChange,
    responses((status = 200, description = "the member", body = Object))
)]
pub async fn change_role(
    State(state): State<AppState>,
    auth: Authed<perm::MembersWrite>,
    Path(id): Path<MemberId>,
    Json(body): Json<RoleChange>,
) -> Result<axum::Json<Member>, AppError> {
    let role = parse_role(&body.role)?;
    let current = member_of(&state, auth.tenant_id, id).await?;
    if !auth.role.may_assign(role) {
        return Err(may_not_assign(auth.role, role));
    }
    // The owner touching their own membership gets the store's answer
    // (`owner_role_fixed`); anyone else is refused before it.
    if !(current.role == Role::Owner && auth.role == Role::Owner) {
        may_manage(auth.role, current.role)?;
    }
    Ok(axum::Json(
        members::set_role(&state.db, auth.tenant_id, id, role).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/members/{id}",
    tag = "members",
    summary = "Remove a member (and revoke their tokens)",
    params(("id" = uuid::Uuid, Path, description = "member id")),
    responses((status = 204, description = "removed"))
)]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Authed<perm::MembersWrite>,
    Path(id): Path<MemberId>,
) -> Result<StatusCode, AppError> {
    let current = member_of(&state, auth.tenant_id, id).await?;
    if !(current.role == Role::Owner && auth.role == Role::Owner) {
        may_manage(auth.role, current.role)?;
    }
    members::remove(&state.db, auth.tenant_id, id).await?;
    tracing::info!(member = %id, "member removed");
    Ok(StatusCode::NO_CONTENT)
}

fn issued(token: IssuedToken, member: MemberId) -> Response {
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": token.id,
            "member_id": member,
            "token": token.secret.expose_secret(),
            "display_prefix": token.display_prefix,
            "note": "this is the only time the token is shown",
        })),
    )
        .into_response()
}

/// Labels are listed to the whole team: no control or bidi characters.
fn validate_label(label: Option<&str>) -> Result<(), AppError> {
    match label.filter(|l| !l.trim().is_empty()) {
        Some(l) => galantis_core::text::check_field("label", l, 100)
            .map(|_| ())
            .map_err(|e| AppError::unprocessable("invalid_field", e.to_string())),
        None => Ok(()),
    }
}

/// `POST /api/v1/tokens`: a new token for the caller.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    summary = "Issue an API token for the caller",
    request_body = Option<NewToken>,
    responses((status = 201, description = "the token; its secret is shown once", body = Object))
)]
pub async fn create_own_token(
    State(state): State<AppState>,
    auth: Authed<perm::TenantRead>,
    OptionalJson(body): OptionalJson<NewToken>,
) -> Result<Response, AppError> {
    let label = body.label;
    validate_label(label.as_deref())?;
    let token = tokens::create(&state.db, auth.tenant_id, auth.member_id, label.as_deref()).await?;
    Ok(issued(token, auth.member_id))
}

/// `POST /api/v1/members/{id}/tokens`: a token for another member.
#[utoipa::path(
    post,
    path = "/members/{id}/tokens",
    tag = "members",
    summary = "Issue an API token for a member",
    params(("id" = uuid::Uuid, Path, description = "member id")),
    request_body = Option<NewToken>,
    responses((status = 201, description = "the token; its secret is shown once", body = Object))
)]
pub async fn create_member_token(
    State(state): State<AppState>,
    auth: Authed<perm::MembersWrite>,
    Path(id): Path<MemberId>,
    OptionalJson(body): OptionalJson<NewToken>,
) -> Result<Response, AppError> {
    let member = member_of(&state, auth.tenant_id, id).await?;
    if member.id != auth.member_id {
        may_manage(auth.role, member.role)?;
    }
    let label = body.label;
    validate_label(label.as_deref())?;
    let token = tokens::create(&state.db, auth.tenant_id, id, label.as_deref()).await?;
    Ok(issued(token, id))
}

/// `GET /api/v1/tokens`: the caller's tokens (metadata only).
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    summary = "The caller's API tokens",
    responses((status = 200, description = "the tokens", body = Object))
)]
pub async fn list_own_tokens(
    State(state): State<AppState>,
    auth: Authed<perm::TenantRead>,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let list: Vec<TokenInfo> =
        tokens::list(&state.db, auth.tenant_id, Some(auth.member_id)).await?;
    Ok(axum::Json(json!({ "data": list })))
}

/// `DELETE /api/v1/tokens/{id}`: revoke one of the caller's tokens, or, with
/// `members.write`, a token of a member whose role the caller may assign.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "tokens",
    summary = "Revoke a token",
    params(("id" = uuid::Uuid, Path, description = "token id")),
    responses((status = 204, description = "revoked"))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    auth: Authed<perm::TenantRead>,
    Path(id): Path<TokenId>,
) -> Result<StatusCode, AppError> {
    let holder = tokens::list(&state.db, auth.tenant_id, None)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.member_id);
    let Some(holder) = holder else {
        return Err(AppError::NotFound("token"));
    };
    if holder != auth.member_id {
        // Without `members.write` other members' tokens do not exist for you.
        if !auth.role.allows(galantis_core::Permission::MembersWrite) {
            return Err(AppError::NotFound("token"));
        }
        if let Some(member) = members::get(&state.db, auth.tenant_id, holder).await? {
            may_manage(auth.role, member.role)?;
        }
    }
    tokens::revoke(&state.db, auth.tenant_id, id)
        .await
        .map_err(|e| match e {
            galantis_store::StoreError::NotFound => AppError::NotFound("token"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
