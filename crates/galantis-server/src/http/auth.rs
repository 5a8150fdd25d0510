//! Bearer authentication and permission checks: one mechanism for every route.
//!
//! A handler states its permission in its signature, e.g.
//! `auth: Authed<perm::MembersWrite>`; the extractor resolves the token (401
//! when missing, malformed, revoked, or the tenant is deactivated) and checks
//! the member's current role (403 when the role lacks the permission). There
//! is no other place where access is decided.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use galantis_core::Permission;
use galantis_store::control::tokens::{self, Principal};
use secrecy::SecretString;

use crate::error::AppError;
use crate::state::AppState;

/// A permission named at type level, so handlers declare it in their signature.
pub trait RequiredPermission: Send + Sync + 'static {
    const PERMISSION: Permission;
}

macro_rules! permission_markers {
    ($($name:ident),+ $(,)?) => {
        /// Type-level names for every [`Permission`].
        pub mod perm {
            use super::*;
            $(
                pub struct $name;
                impl RequiredPermission for $name {
                    const PERMISSION: Permission = Permission::$name;
                }
            )+
        }
    };
}

permission_markers!(
    TenantRead,
    MembersRead,
    MembersWrite,
    BillingRead,
    BillingWrite,
    SettingsRead,
    SettingsWrite,
    ContactsRead,
    ContactsWrite,
    AudienceRead,
    AudienceWrite,
    OrdersRead,
    CatalogRead,
    CatalogWrite,
    TemplatesRead,
    TemplatesWrite,
    AutomationsRead,
    AutomationsWrite,
    AutomationsActivate,
    CampaignsRead,
    CampaignsWrite,
    CampaignsSend,
    AnalyticsRead,
    InboxRead,
    InboxReply,
    InboxAssign,
    MessagesSend,
    WebhooksRead,
    WebhooksReplay,
    JobsRead,
    JobsWrite,
    EventsRead,
);

/// An authenticated caller holding permission `P`.
pub struct Authed<P: RequiredPermission> {
    pub principal: Principal,
    _permission: PhantomData<P>,
}

impl<P: RequiredPermission> std::ops::Deref for Authed<P> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// The bearer token of a request: `Authorization: Bearer …`, or for browser
/// WebSockets (which cannot set headers) the `token` query parameter.
pub fn bearer_token(parts: &Parts) -> Option<SecretString> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| SecretString::from(token.trim().to_owned()));
    }
    None
}

impl<P: RequiredPermission> FromRequestParts<AppState> for Authed<P> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer_token(parts).ok_or(AppError::Unauthenticated)?;
        let principal = tokens::authenticate(&state.db, &token)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        tracing::Span::current().record("tenant_id", tracing::field::display(principal.tenant_id));
        if !principal.role.allows(P::PERMISSION) {
            return Err(AppError::Forbidden(P::PERMISSION));
        }
        if let Err(e) = tokens::touch(&state.db, &principal).await {
            // Bookkeeping only: never fail a request because of it.
            tracing::warn!(error = %e, "could not record token use");
        }
        Ok(Self {
            principal,
            _permission: PhantomData,
        })
    }
}
