//! `GET /api/v1/tenant`: who am I calling as.

use axum::extract::State;
use chrono::{DateTime, Utc};
use galantis_core::{MemberId, Role, ShopDomain, TenantId};
use galantis_store::control::tenants::{self, TenantStatus};
use serde::Serialize;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Tenant)]
pub struct TenantView {
    #[schema(value_type = uuid::Uuid)]
    pub id: TenantId,
    /// `*.myshopify.com`
    #[schema(value_type = String)]
    pub shop: ShopDomain,
    #[schema(value_type = crate::http::openapi::TenantStatusName)]
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    /// The caller.
    #[schema(value_type = uuid::Uuid)]
    pub member_id: MemberId,
    #[schema(value_type = crate::http::openapi::RoleName)]
    pub role: Role,
    /// What the caller's role may do, e.g. `messages:send`.
    pub permissions: Vec<&'static str>,
}

#[utoipa::path(
    get,
    path = "/tenant",
    tag = "tenant",
    summary = "The tenant and the caller's role",
    responses((status = 200, description = "the tenant", body = TenantView))
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    auth: Authed<perm::TenantRead>,
) -> Result<axum::Json<TenantView>, AppError> {
    let tenant = tenants::get(&state.db, auth.tenant_id)
        .await?
        .ok_or(AppError::NotFound("tenant"))?;
    Ok(axum::Json(TenantView {
        id: tenant.id,
        shop: tenant.shop,
        status: tenant.status,
        created_at: tenant.created_at,
        member_id: auth.member_id,
        role: auth.role,
        permissions: auth
            .role
            .permissions()
            .into_iter()
            .map(|p| p.as_str())
            .collect(),
    }))
}
