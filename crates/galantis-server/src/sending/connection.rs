//! A tenant's WhatsApp connection as the send path sees it: state, where
//! sends go, with which token, from which numbers at which rate.

use std::sync::Arc;

use galantis_core::{SecretName, TenantId};
use galantis_store::control::phone_numbers;
use galantis_store::control::tenants::{self, TenantStatus};
use galantis_store::tenant::sending as store;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::state::AppState;

/// The token used with a configured sandbox endpoint (`meta_base_url`) when
/// a tenant has stored none; the embedded sandbox has its own per-process
/// token instead ([`crate::sending::Sending::sandbox_access_token`]).
pub const SANDBOX_TOKEN: &str = "galantis-sandbox";

/// The access token a tenant without stored credentials sends with.
pub fn sandbox_token(app: &AppState) -> SecretString {
    SecretString::from(
        app.sending
            .sandbox_access_token()
            .unwrap_or(SANDBOX_TOKEN)
            .to_owned(),
    )
}

/// Why a tenant without credentials cannot send on this server.
pub const NO_SANDBOX: &str = "no Meta access token is stored and this server runs no sandbox (store the access token with PUT /api/v1/settings/whatsapp)";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Number {
    pub phone_number_id: String,
    pub waba_id: String,
    pub is_default: bool,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub messages_per_second: u32,
}

/// What the connection looks like now.
pub struct Resolved {
    /// `connected`, `needs_attention` or `disconnected`.
    pub state: String,
    pub reason: Option<String>,
    pub error_code: Option<i64>,
    /// `sandbox` or `meta`.
    pub credentials: String,
    pub waba_id: Option<String>,
    pub numbers: Vec<Number>,
    /// The store uninstalled Galantis: nothing is sent.
    pub tenant_active: bool,
    /// Where sends go (none: the embedded sandbox is not running here).
    pub base_url: Option<String>,
    pub token: SecretString,
    /// Sends go to a sandbox (nothing reaches WhatsApp).
    pub sandbox: bool,
}

impl Resolved {
    pub fn number(&self, phone_number_id: &str) -> Option<&Number> {
        self.numbers
            .iter()
            .find(|n| n.phone_number_id == phone_number_id)
    }

    pub fn default_number(&self) -> Option<&Number> {
        self.numbers
            .iter()
            .find(|n| n.is_default)
            .or(self.numbers.first())
    }

    pub fn halted(&self) -> bool {
        self.state == "needs_attention"
    }
}

/// Reads (or takes from the short cache) a tenant's connection.
pub async fn resolve(app: &AppState, tenant: TenantId) -> anyhow::Result<Arc<Resolved>> {
    let sending = &app.sending;
    if let Some(r) = sending.cached(tenant) {
        return Ok(r);
    }
    let routed = phone_numbers::list_for_tenant(&app.db, tenant).await?;
    let active = tenants::get(&app.db, tenant)
        .await?
        .is_some_and(|t| t.status == TenantStatus::Active);
    let mut tx = app.db.tenant_read(tenant).await?;
    let row = store::connection(&mut tx).await?;
    let settings = store::numbers(&mut tx).await?;
    tx.commit().await?;
    let token = app.secrets.get(tenant, SecretName::MetaAccessToken).await?;
    let default_mps = sending.config().default_messages_per_second;
    let numbers: Vec<Number> = routed
        .iter()
        .map(|r| {
            let s = settings
                .iter()
                .find(|s| s.phone_number_id == r.phone_number_id);
            Number {
                phone_number_id: r.phone_number_id.clone(),
                waba_id: r.waba_id.clone(),
                is_default: r.is_default,
                display_phone_number: s.and_then(|s| s.display_phone_number.clone()),
                verified_name: s.and_then(|s| s.verified_name.clone()),
                quality_rating: s.and_then(|s| s.quality_rating.clone()),
                messages_per_second: s.map_or(default_mps, |s| {
                    u32::try_from(s.messages_per_second).unwrap_or(default_mps)
                }),
            }
        })
        .collect();
    let has_token = token.is_some();
    let (state, reason, error_code) = match &row {
        _ if !has_token && !sending.has_sandbox() => {
            ("disconnected".to_owned(), Some(NO_SANDBOX.to_owned()), None)
        }
        _ if numbers.is_empty() => (
            "disconnected".to_owned(),
            Some("no WhatsApp phone number is connected".to_owned()),
            None,
        ),
        Some(r) => (r.state.clone(), r.reason.clone(), r.error_code),
        None => ("connected".to_owned(), None, None),
    };
    let base_url = sending.base_url(has_token);
    let embedded = base_url
        .as_deref()
        .is_some_and(|u| u.ends_with("/sandbox-meta"));
    let resolved = Arc::new(Resolved {
        state,
        reason,
        error_code,
        credentials: if has_token { "meta" } else { "sandbox" }.to_owned(),
        waba_id: row
            .and_then(|r| r.waba_id)
            .or_else(|| routed.first().map(|r| r.waba_id.clone())),
        numbers,
        tenant_active: active,
        base_url,
        token: token.unwrap_or_else(|| sandbox_token(app)),
        sandbox: !has_token || embedded,
    });
    sending.cache(tenant, resolved.clone());
    Ok(resolved)
}

/// The connection as the API shows it (never the token).
pub fn view(r: &Resolved) -> serde_json::Value {
    serde_json::json!({
        "state": r.state,
        "reason": r.reason,
        "error_code": r.error_code,
        "credentials": r.credentials,
        "sandbox": r.sandbox,
        "token_stored": r.credentials == "meta",
        "waba_id": r.waba_id,
        "phone_numbers": r.numbers,
    })
}

/// The bearer token (for the client only).
pub fn token(r: &Resolved) -> &str {
    r.token.expose_secret()
}
