//! The Shopify Admin API port used to write audience changes made in
//! Galantis back to the store (design.md §4: "Consent changed in Galantis is
//! written back to Shopify"; `write_customers` scope).
//!
//! Write-backs are jobs ([`crate::jobs::kinds::audience::ShopifyWriteBack`])
//! enqueued in the transaction that changed the contact, so a change is
//! never lost and never blocks on Shopify. [`HttpShopifyClient`] talks
//! GraphQL to the shop (or `GALANTIS_SHOPIFY_BASE_URL`); tests install a
//! [`RecordingShopifyClient`].

use std::any::Any;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use galantis_core::{MarketingState, SecretName, TenantId};
use galantis_store::control::tenants;
use galantis_store::{Db, SecretStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A change to write back to one Shopify customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteBack {
    /// SMS marketing consent (Shopify knows SUBSCRIBED and UNSUBSCRIBED).
    Consent {
        customer_id: i64,
        state: MarketingState,
        occurred_at_ms: i64,
    },
    /// The customer's full tag list.
    Tags { customer_id: i64, tags: Vec<String> },
}

impl WriteBack {
    pub fn customer_id(&self) -> i64 {
        match self {
            WriteBack::Consent { customer_id, .. } | WriteBack::Tags { customer_id, .. } => {
                *customer_id
            }
        }
    }
}

/// What went wrong talking to Shopify.
#[derive(Debug, thiserror::Error)]
pub enum ShopifyError {
    /// Worth retrying (network, 5xx, throttling).
    #[error("{0}")]
    Retryable(String),
    /// Will not succeed as is (4xx, user errors).
    #[error("{0}")]
    Permanent(String),
}

/// What a write-back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Done,
    /// Nothing to do (e.g. the tenant has no Shopify connection, or the state
    /// has no Shopify equivalent); the reason is logged.
    Skipped(&'static str),
}

pub trait ShopifyClient: Send + Sync + 'static {
    fn write_back<'a>(
        &'a self,
        tenant: TenantId,
        change: &'a WriteBack,
    ) -> BoxFuture<'a, Result<Written, ShopifyError>>;

    /// For tests that inspect a fake.
    fn as_any(&self) -> &dyn Any;
}

/// Records write-backs instead of sending them (tests, demos).
#[derive(Default)]
pub struct RecordingShopifyClient {
    calls: Mutex<Vec<(TenantId, WriteBack)>>,
}

impl RecordingShopifyClient {
    pub fn calls(&self) -> Vec<(TenantId, WriteBack)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl ShopifyClient for RecordingShopifyClient {
    fn write_back<'a>(
        &'a self,
        tenant: TenantId,
        change: &'a WriteBack,
    ) -> BoxFuture<'a, Result<Written, ShopifyError>> {
        if let Ok(mut c) = self.calls.lock() {
            c.push((tenant, change.clone()));
        }
        Box::pin(async { Ok(Written::Done) })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Shopify's GraphQL Admin API.
pub struct HttpShopifyClient {
    db: Db,
    secrets: SecretStore,
    base_url: Option<String>,
    http: reqwest::Client,
}

pub const ADMIN_API_VERSION: &str = "2025-01";

impl HttpShopifyClient {
    pub fn new(db: Db, secrets: SecretStore, base_url: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self {
            db,
            secrets,
            base_url,
            http,
        }
    }

    fn request(change: &WriteBack) -> Option<Value> {
        match change {
            WriteBack::Consent {
                customer_id,
                state,
                occurred_at_ms,
            } => {
                let shopify_state = match state {
                    MarketingState::Subscribed => "SUBSCRIBED",
                    MarketingState::Unsubscribed => "UNSUBSCRIBED",
                    _ => return None,
                };
                let at = chrono::DateTime::from_timestamp_millis(*occurred_at_ms)
                    .map(|t| t.to_rfc3339());
                Some(json!({
                    "query": "mutation consent($input: CustomerSmsMarketingConsentUpdateInput!) { customerSmsMarketingConsentUpdate(input: $input) { userErrors { field message } } }",
                    "variables": {"input": {
                        "customerId": format!("gid://shopify/Customer/{customer_id}"),
                        "smsMarketingConsent": {
                            "marketingState": shopify_state,
                            "marketingOptInLevel": "SINGLE_OPT_IN",
                            "consentUpdatedAt": at,
                        }
                    }}
                }))
            }
            WriteBack::Tags { customer_id, tags } => Some(json!({
                "query": "mutation tags($input: CustomerInput!) { customerUpdate(input: $input) { userErrors { field message } } }",
                "variables": {"input": {
                    "id": format!("gid://shopify/Customer/{customer_id}"),
                    "tags": tags,
                }}
            })),
        }
    }
}

impl ShopifyClient for HttpShopifyClient {
    fn write_back<'a>(
        &'a self,
        tenant: TenantId,
        change: &'a WriteBack,
    ) -> BoxFuture<'a, Result<Written, ShopifyError>> {
        Box::pin(self.send(tenant, change))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl HttpShopifyClient {
    async fn send(&self, tenant: TenantId, change: &WriteBack) -> Result<Written, ShopifyError> {
        let Some(body) = Self::request(change) else {
            return Ok(Written::Skipped(
                "no Shopify equivalent for this consent state",
            ));
        };
        let token = self
            .secrets
            .get(tenant, SecretName::ShopifyAccessToken)
            .await
            .map_err(|e| ShopifyError::Retryable(format!("reading the access token: {e}")))?;
        let Some(token) = token else {
            return Ok(Written::Skipped("the tenant has no Shopify access token"));
        };
        let shop = tenants::get(&self.db, tenant)
            .await
            .map_err(|e| ShopifyError::Retryable(e.to_string()))?
            .ok_or_else(|| ShopifyError::Permanent("unknown tenant".into()))?
            .shop;
        let base = self
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", shop.as_str()));
        let url = format!(
            "{}/admin/api/{ADMIN_API_VERSION}/graphql.json",
            base.trim_end_matches('/')
        );
        let resp = self
            .http
            .post(&url)
            .header(
                "X-Shopify-Access-Token",
                secrecy::ExposeSecret::expose_secret(&token),
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| ShopifyError::Retryable(format!("Shopify unreachable: {e}")))?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ShopifyError::Retryable(format!(
                "Shopify answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ShopifyError::Permanent(format!(
                "Shopify answered {status}"
            )));
        }
        let v: Value = resp
            .json()
            .await
            .map_err(|e| ShopifyError::Retryable(format!("unreadable Shopify answer: {e}")))?;
        let errors = v
            .pointer("/data")
            .and_then(Value::as_object)
            .and_then(|d| d.values().next())
            .and_then(|m| m.get("userErrors"))
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty());
        if let Some(errors) = errors {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect();
            return Err(ShopifyError::Permanent(messages.join("; ")));
        }
        if v.get("errors").is_some() {
            return Err(ShopifyError::Retryable("Shopify GraphQL errors".into()));
        }
        Ok(Written::Done)
    }
}
