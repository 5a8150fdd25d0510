//! The Shopify Admin API port used to write audience changes made in
//! Galantis back to the store (design.md §4: "Consent changed in Galantis is
//! written back to Shopify"; `write_customers` scope), and to read what
//! webhooks do not carry: the products of a collection (`read_products`),
//! for "purchased collection" segment rules.
//!
//! Write-backs are jobs ([`crate::jobs::kinds::audience::ShopifyWriteBack`])
//! enqueued in the transaction that changed the contact, so a change is
//! never lost and never blocks on Shopify; collection reads are jobs too
//! ([`crate::jobs::kinds::collections::SyncCollection`]).
//! [`HttpShopifyClient`] talks GraphQL to the shop (or
//! `GALANTIS_SHOPIFY_BASE_URL`); tests install a [`RecordingShopifyClient`].

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
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

/// What a read from Shopify found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read<T> {
    Found(T),
    /// Shopify has no such object (it was deleted).
    NotFound,
    /// Nothing was asked (the tenant has no Shopify access token); the
    /// reason is logged.
    Skipped(&'static str),
}

pub trait ShopifyClient: Send + Sync + 'static {
    fn write_back<'a>(
        &'a self,
        tenant: TenantId,
        change: &'a WriteBack,
    ) -> BoxFuture<'a, Result<Written, ShopifyError>>;

    /// The ids of every product in a collection (all pages), in Shopify's
    /// order, without duplicates.
    fn collection_products(
        &self,
        tenant: TenantId,
        collection_id: i64,
    ) -> BoxFuture<'_, Result<Read<Vec<i64>>, ShopifyError>>;

    /// Creates a one-time app charge (`appPurchaseOneTimeCreate`): Shopify
    /// answers with the purchase (PENDING) and the URL where the merchant
    /// approves it. Shopify's user errors are [`ShopifyError::Permanent`].
    fn create_purchase<'a>(
        &'a self,
        tenant: TenantId,
        request: &'a PurchaseRequest,
    ) -> BoxFuture<'a, Result<Read<CreatedPurchase>, ShopifyError>>;

    /// The status Shopify holds for a one-time purchase (`node(id:)` on
    /// `AppPurchaseOneTime`): PENDING, ACTIVE, DECLINED or EXPIRED.
    fn purchase_status<'a>(
        &'a self,
        tenant: TenantId,
        shopify_id: &'a str,
    ) -> BoxFuture<'a, Result<Read<String>, ShopifyError>>;

    /// For tests that inspect a fake.
    fn as_any(&self) -> &dyn Any;
}

/// A one-time app charge to create for a credit pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurchaseRequest {
    /// Shown to the merchant on Shopify's approval page.
    pub name: String,
    /// A decimal string, e.g. `"10.00"`.
    pub amount: String,
    pub currency_code: String,
    /// Where Shopify sends the merchant after approving.
    pub return_url: String,
    /// A test charge (development stores; nobody pays).
    pub test: bool,
}

/// What `appPurchaseOneTimeCreate` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPurchase {
    /// `gid://shopify/AppPurchaseOneTime/…`
    pub id: String,
    pub status: String,
    pub confirmation_url: String,
}

/// Records write-backs instead of sending them, and answers collection reads
/// from what the test configured (tests, demos). A collection the test never
/// configured is [`Read::Skipped`] (so syncs leave alone rows a test wrote
/// directly); one it removed is [`Read::NotFound`].
#[derive(Default)]
pub struct RecordingShopifyClient {
    calls: Mutex<Vec<(TenantId, WriteBack)>>,
    /// `None`: removed (not found).
    collections: Mutex<HashMap<i64, Option<Vec<i64>>>>,
    reads: Mutex<Vec<(TenantId, i64)>>,
    read_failures: Mutex<VecDeque<ShopifyError>>,
    without_token: Mutex<HashSet<TenantId>>,
    /// One-time purchases by Shopify id: (tenant, request, status).
    purchases: Mutex<Vec<(String, TenantId, PurchaseRequest, String)>>,
    purchase_failures: Mutex<VecDeque<ShopifyError>>,
}

impl RecordingShopifyClient {
    pub fn calls(&self) -> Vec<(TenantId, WriteBack)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// What Shopify says the collection holds from now on.
    pub fn set_collection(&self, collection_id: i64, products: Vec<i64>) {
        if let Ok(mut c) = self.collections.lock() {
            c.insert(collection_id, Some(products));
        }
    }

    /// The collection no longer exists at Shopify.
    pub fn remove_collection(&self, collection_id: i64) {
        if let Ok(mut c) = self.collections.lock() {
            c.insert(collection_id, None);
        }
    }

    /// The next collection read fails with `e` (queued: one per call).
    pub fn fail_next_read(&self, e: ShopifyError) {
        if let Ok(mut f) = self.read_failures.lock() {
            f.push_back(e);
        }
    }

    /// Reads for `tenant` behave as if it had no access token.
    pub fn without_token(&self, tenant: TenantId) {
        if let Ok(mut t) = self.without_token.lock() {
            t.insert(tenant);
        }
    }

    /// Every one-time purchase created: (Shopify id, tenant, request).
    pub fn purchases(&self) -> Vec<(String, TenantId, PurchaseRequest)> {
        self.purchases
            .lock()
            .map(|p| {
                p.iter()
                    .map(|(id, t, r, _)| (id.clone(), *t, r.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What Shopify reports for the purchase from now on (the merchant
    /// approved or declined it, or it expired).
    pub fn set_purchase_status(&self, shopify_id: &str, status: &str) {
        if let Ok(mut p) = self.purchases.lock() {
            for entry in p.iter_mut().filter(|e| e.0 == shopify_id) {
                entry.3 = status.to_owned();
            }
        }
    }

    /// The next purchase creation fails with `e` (queued: one per call).
    pub fn fail_next_purchase(&self, e: ShopifyError) {
        if let Ok(mut f) = self.purchase_failures.lock() {
            f.push_back(e);
        }
    }

    /// Every collection read asked for, failed ones included.
    pub fn collection_reads(&self) -> Vec<(TenantId, i64)> {
        self.reads.lock().map(|r| r.clone()).unwrap_or_default()
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

    fn collection_products(
        &self,
        tenant: TenantId,
        collection_id: i64,
    ) -> BoxFuture<'_, Result<Read<Vec<i64>>, ShopifyError>> {
        if let Ok(mut r) = self.reads.lock() {
            r.push((tenant, collection_id));
        }
        let untokened = self
            .without_token
            .lock()
            .map(|t| t.contains(&tenant))
            .unwrap_or(false);
        let failure = self
            .read_failures
            .lock()
            .ok()
            .and_then(|mut f| f.pop_front());
        let found = self
            .collections
            .lock()
            .ok()
            .and_then(|c| c.get(&collection_id).cloned());
        Box::pin(async move {
            if untokened {
                return Ok(Read::Skipped(NO_TOKEN));
            }
            if let Some(e) = failure {
                return Err(e);
            }
            Ok(match found {
                None => Read::Skipped("the collection is not configured in the fake"),
                Some(None) => Read::NotFound,
                Some(Some(products)) => Read::Found(products),
            })
        })
    }

    fn create_purchase<'a>(
        &'a self,
        tenant: TenantId,
        request: &'a PurchaseRequest,
    ) -> BoxFuture<'a, Result<Read<CreatedPurchase>, ShopifyError>> {
        Box::pin(async move {
            if self.is_untokened(tenant) {
                return Ok(Read::Skipped(NO_TOKEN));
            }
            if let Some(e) = self
                .purchase_failures
                .lock()
                .ok()
                .and_then(|mut f| f.pop_front())
            {
                return Err(e);
            }
            let mut p = self
                .purchases
                .lock()
                .map_err(|_| ShopifyError::Retryable("fake poisoned".into()))?;
            let id = format!("gid://shopify/AppPurchaseOneTime/{}", 1_000_000 + p.len());
            p.push((id.clone(), tenant, request.clone(), "PENDING".into()));
            Ok(Read::Found(CreatedPurchase {
                confirmation_url: format!(
                    "https://admin.shopify.com/charges/{}/confirm_purchase?signature=fake",
                    id.rsplit('/').next().unwrap_or_default()
                ),
                id,
                status: "PENDING".into(),
            }))
        })
    }

    fn purchase_status<'a>(
        &'a self,
        tenant: TenantId,
        shopify_id: &'a str,
    ) -> BoxFuture<'a, Result<Read<String>, ShopifyError>> {
        Box::pin(async move {
            if self.is_untokened(tenant) {
                return Ok(Read::Skipped(NO_TOKEN));
            }
            let p = self
                .purchases
                .lock()
                .map_err(|_| ShopifyError::Retryable("fake poisoned".into()))?;
            // Like `node(id:)`: another shop's purchase is not found.
            Ok(p.iter()
                .find(|e| e.0 == shopify_id && e.1 == tenant)
                .map(|e| Read::Found(e.3.clone()))
                .unwrap_or(Read::NotFound))
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl RecordingShopifyClient {
    fn is_untokened(&self, tenant: TenantId) -> bool {
        self.without_token
            .lock()
            .map(|t| t.contains(&tenant))
            .unwrap_or(false)
    }
}

const NO_TOKEN: &str = "the tenant has no Shopify access token";

/// Shopify's GraphQL Admin API.
pub struct HttpShopifyClient {
    db: Db,
    secrets: SecretStore,
    base_url: Option<String>,
    /// `[shopify] api_version`, in every Admin API URL.
    api_version: String,
    http: reqwest::Client,
}

/// The default of `[shopify] api_version`: the Admin API version pinned
/// unless configured otherwise.
pub const ADMIN_API_VERSION: &str = "2026-01";

fn admin_url(base: &str, api_version: &str) -> String {
    format!(
        "{}/admin/api/{api_version}/graphql.json",
        base.trim_end_matches('/')
    )
}

impl HttpShopifyClient {
    pub fn new(
        db: Db,
        secrets: SecretStore,
        base_url: Option<String>,
        api_version: String,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self {
            db,
            secrets,
            base_url,
            api_version,
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

    fn collection_products(
        &self,
        tenant: TenantId,
        collection_id: i64,
    ) -> BoxFuture<'_, Result<Read<Vec<i64>>, ShopifyError>> {
        Box::pin(self.read_collection_products(tenant, collection_id))
    }

    fn create_purchase<'a>(
        &'a self,
        tenant: TenantId,
        request: &'a PurchaseRequest,
    ) -> BoxFuture<'a, Result<Read<CreatedPurchase>, ShopifyError>> {
        Box::pin(async move {
            let Some(v) = self.post(tenant, &purchase_create_request(request)).await? else {
                return Ok(Read::Skipped(NO_TOKEN));
            };
            purchase_created(&v).map(Read::Found)
        })
    }

    fn purchase_status<'a>(
        &'a self,
        tenant: TenantId,
        shopify_id: &'a str,
    ) -> BoxFuture<'a, Result<Read<String>, ShopifyError>> {
        Box::pin(async move {
            let Some(v) = self
                .post(tenant, &purchase_status_request(shopify_id))
                .await?
            else {
                return Ok(Read::Skipped(NO_TOKEN));
            };
            purchase_status_of(&v)
        })
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
        let Some(v) = self.post(tenant, &body).await? else {
            return Ok(Written::Skipped(NO_TOKEN));
        };
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
        if let Some(e) = graphql_errors(&v) {
            return Err(e);
        }
        Ok(Written::Done)
    }

    /// Pages through `collection.products` (250 a page, the most a
    /// connection returns).
    async fn read_collection_products(
        &self,
        tenant: TenantId,
        collection_id: i64,
    ) -> Result<Read<Vec<i64>>, ShopifyError> {
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let body = collection_products_request(collection_id, cursor.as_deref());
            let Some(v) = self.post(tenant, &body).await? else {
                return Ok(Read::Skipped(NO_TOKEN));
            };
            match collection_products_page(&v)? {
                Page::NotFound => return Ok(Read::NotFound),
                Page::Products { ids: page, next } => {
                    ids.extend(page.into_iter().filter(|id| seen.insert(*id)));
                    match next {
                        None => return Ok(Read::Found(ids)),
                        Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                            return Err(ShopifyError::Permanent(
                                "Shopify's collection pagination did not advance".into(),
                            ));
                        }
                        Some(next) => cursor = Some(next),
                    }
                }
            }
        }
    }

    /// Posts one GraphQL request for the tenant's shop. `None`: the tenant
    /// has no access token. HTTP failures are classified here; GraphQL
    /// errors in the body are the caller's to read.
    async fn post(&self, tenant: TenantId, body: &Value) -> Result<Option<Value>, ShopifyError> {
        let token = self
            .secrets
            .get(tenant, SecretName::ShopifyAccessToken)
            .await
            .map_err(|e| ShopifyError::Retryable(format!("reading the access token: {e}")))?;
        let Some(token) = token else {
            return Ok(None);
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
        let url = admin_url(&base, &self.api_version);
        let resp = self
            .http
            .post(&url)
            .header(
                "X-Shopify-Access-Token",
                secrecy::ExposeSecret::expose_secret(&token),
            )
            .json(body)
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
        Ok(Some(v))
    }
}

/// Top-level GraphQL `errors`: access denied (a missing scope) is permanent,
/// anything else (throttling, internal errors) is worth retrying.
fn graphql_errors(v: &Value) -> Option<ShopifyError> {
    let errors = v.get("errors").filter(|e| !e.is_null())?;
    let list = errors.as_array().cloned().unwrap_or_default();
    let messages: Vec<&str> = list
        .iter()
        .filter_map(|e| e.get("message").and_then(Value::as_str))
        .collect();
    let text = if messages.is_empty() {
        "Shopify GraphQL errors".to_owned()
    } else {
        format!("Shopify GraphQL errors: {}", messages.join("; "))
    };
    let denied = list
        .iter()
        .any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("ACCESS_DENIED"));
    Some(if denied {
        ShopifyError::Permanent(text)
    } else {
        ShopifyError::Retryable(text)
    })
}

/// The GraphQL request for one page of a collection's products.
pub fn collection_products_request(collection_id: i64, after: Option<&str>) -> Value {
    json!({
        "query": "query CollectionProducts($id: ID!, $cursor: String) { collection(id: $id) { products(first: 250, after: $cursor) { nodes { id } pageInfo { hasNextPage endCursor } } } }",
        "variables": {
            "id": format!("gid://shopify/Collection/{collection_id}"),
            "cursor": after,
        }
    })
}

/// One page of `collection.products`.
#[derive(Debug, PartialEq, Eq)]
pub enum Page {
    NotFound,
    Products { ids: Vec<i64>, next: Option<String> },
}

/// Reads one answer to [`collection_products_request`].
pub fn collection_products_page(v: &Value) -> Result<Page, ShopifyError> {
    if let Some(e) = graphql_errors(v) {
        return Err(e);
    }
    let collection = v
        .pointer("/data/collection")
        .ok_or_else(|| ShopifyError::Retryable("Shopify answered without data".into()))?;
    if collection.is_null() {
        return Ok(Page::NotFound);
    }
    let products = collection
        .get("products")
        .ok_or_else(|| ShopifyError::Permanent("collection without products".into()))?;
    let ids = products
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| ShopifyError::Permanent("collection products without nodes".into()))?
        .iter()
        .map(|n| {
            n.get("id")
                .and_then(Value::as_str)
                .and_then(|gid| gid.strip_prefix("gid://shopify/Product/"))
                .and_then(|id| id.parse::<i64>().ok())
                .ok_or_else(|| ShopifyError::Permanent(format!("unexpected product id {n}")))
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let more = products
        .pointer("/pageInfo/hasNextPage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let next = if more {
        Some(
            products
                .pointer("/pageInfo/endCursor")
                .and_then(Value::as_str)
                .ok_or_else(|| ShopifyError::Permanent("a next page without an end cursor".into()))?
                .to_owned(),
        )
    } else {
        None
    };
    Ok(Page::Products { ids, next })
}

/// The GraphQL request creating a one-time app charge.
pub fn purchase_create_request(r: &PurchaseRequest) -> Value {
    json!({
        "query": "mutation AppPurchaseOneTimeCreate($name: String!, $price: MoneyInput!, $returnUrl: URL!, $test: Boolean) { appPurchaseOneTimeCreate(name: $name, price: $price, returnUrl: $returnUrl, test: $test) { appPurchaseOneTime { id status } confirmationUrl userErrors { field message } } }",
        "variables": {
            "name": r.name,
            "price": {"amount": r.amount, "currencyCode": r.currency_code},
            "returnUrl": r.return_url,
            "test": r.test,
        }
    })
}

/// Reads the answer to [`purchase_create_request`].
pub fn purchase_created(v: &Value) -> Result<CreatedPurchase, ShopifyError> {
    if let Some(e) = graphql_errors(v) {
        return Err(e);
    }
    let payload = v
        .pointer("/data/appPurchaseOneTimeCreate")
        .filter(|p| !p.is_null())
        .ok_or_else(|| ShopifyError::Retryable("Shopify answered without data".into()))?;
    if let Some(errors) = payload
        .get("userErrors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .collect();
        return Err(ShopifyError::Permanent(messages.join("; ")));
    }
    let text = |pointer: &str| {
        payload
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ShopifyError::Permanent(format!(
                    "appPurchaseOneTimeCreate answered without {pointer}"
                ))
            })
    };
    Ok(CreatedPurchase {
        id: text("/appPurchaseOneTime/id")?,
        status: text("/appPurchaseOneTime/status")?,
        confirmation_url: text("/confirmationUrl")?,
    })
}

/// The GraphQL request reading a one-time purchase's status.
pub fn purchase_status_request(shopify_id: &str) -> Value {
    json!({
        "query": "query AppPurchase($id: ID!) { node(id: $id) { ... on AppPurchaseOneTime { id status } } }",
        "variables": {"id": shopify_id}
    })
}

/// Reads the answer to [`purchase_status_request`].
pub fn purchase_status_of(v: &Value) -> Result<Read<String>, ShopifyError> {
    if let Some(e) = graphql_errors(v) {
        return Err(e);
    }
    let node = v
        .pointer("/data/node")
        .ok_or_else(|| ShopifyError::Retryable("Shopify answered without data".into()))?;
    if node.is_null() {
        return Ok(Read::NotFound);
    }
    node.get("status")
        .and_then(Value::as_str)
        .map(|s| Read::Found(s.to_owned()))
        .ok_or_else(|| ShopifyError::Permanent("the purchase has no status".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purchases_are_created_and_read_as_shopify_shapes_them() {
        let r = purchase_create_request(&PurchaseRequest {
            name: "Galantis 500 credits".into(),
            amount: "20.00".into(),
            currency_code: "USD".into(),
            return_url: "https://g.example/billing".into(),
            test: true,
        });
        assert_eq!(r["variables"]["price"]["amount"], "20.00");
        assert_eq!(r["variables"]["price"]["currencyCode"], "USD");
        assert!(r["query"].as_str().unwrap().contains("confirmationUrl"));
        let ok = json!({"data": {"appPurchaseOneTimeCreate": {
            "appPurchaseOneTime": {"id": "gid://shopify/AppPurchaseOneTime/7", "status": "PENDING"},
            "confirmationUrl": "https://shop/confirm", "userErrors": []}}});
        assert_eq!(
            purchase_created(&ok).unwrap(),
            CreatedPurchase {
                id: "gid://shopify/AppPurchaseOneTime/7".into(),
                status: "PENDING".into(),
                confirmation_url: "https://shop/confirm".into(),
            }
        );
        let refused = json!({"data": {"appPurchaseOneTimeCreate": {
            "appPurchaseOneTime": null, "confirmationUrl": null,
            "userErrors": [{"field": ["price"], "message": "Price must be positive"}]}}});
        assert!(
            matches!(purchase_created(&refused), Err(ShopifyError::Permanent(m)) if m.contains("Price"))
        );
        let status = json!({"data": {"node": {"id": "gid://shopify/AppPurchaseOneTime/7", "status": "ACTIVE"}}});
        assert_eq!(
            purchase_status_of(&status).unwrap(),
            Read::Found("ACTIVE".into())
        );
        assert_eq!(
            purchase_status_of(&json!({"data": {"node": null}})).unwrap(),
            Read::NotFound
        );
    }

    #[test]
    fn the_request_names_the_collection_and_the_cursor() {
        let r = collection_products_request(888888, Some("abc"));
        assert_eq!(r["variables"]["id"], "gid://shopify/Collection/888888");
        assert_eq!(r["variables"]["cursor"], "abc");
        assert!(
            r["query"]
                .as_str()
                .unwrap()
                .contains("products(first: 250, after: $cursor)")
        );
        assert!(collection_products_request(1, None)["variables"]["cursor"].is_null());
    }

    #[test]
    fn pages_are_read_and_classified() {
        let page = json!({"data": {"collection": {"products": {
            "nodes": [{"id": "gid://shopify/Product/555555"}, {"id": "gid://shopify/Product/7"}],
            "pageInfo": {"hasNextPage": true, "endCursor": "c1"}
        }}}});
        assert_eq!(
            collection_products_page(&page).unwrap(),
            Page::Products {
                ids: vec![555555, 7],
                next: Some("c1".into())
            }
        );
        let last = json!({"data": {"collection": {"products": {
            "nodes": [], "pageInfo": {"hasNextPage": false, "endCursor": null}
        }}}});
        assert_eq!(
            collection_products_page(&last).unwrap(),
            Page::Products {
                ids: vec![],
                next: None
            }
        );
        assert_eq!(
            collection_products_page(&json!({"data": {"collection": null}})).unwrap(),
            Page::NotFound
        );
        let throttled =
            json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]});
        assert!(matches!(
            collection_products_page(&throttled),
            Err(ShopifyError::Retryable(_))
        ));
        let denied = json!({"errors": [{"message": "Access denied", "extensions": {"code": "ACCESS_DENIED"}}], "data": null});
        assert!(matches!(
            collection_products_page(&denied),
            Err(ShopifyError::Permanent(_))
        ));
        let odd = json!({"data": {"collection": {"products": {
            "nodes": [{"id": "gid://shopify/Variant/1"}], "pageInfo": {"hasNextPage": false}
        }}}});
        assert!(matches!(
            collection_products_page(&odd),
            Err(ShopifyError::Permanent(_))
        ));
    }

    #[test]
    fn admin_calls_use_the_pinned_version() {
        assert_eq!(
            admin_url("https://shop.myshopify.com/", "2025-10"),
            "https://shop.myshopify.com/admin/api/2025-10/graphql.json"
        );
    }
}
