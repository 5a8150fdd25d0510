//! `POST /webhooks/shopify`, `GET|POST /webhooks/meta`: verify the signature
//! over the raw bytes, persist the event and enqueue its processing in one
//! tenant transaction, then acknowledge. Nothing is stored for a bad
//! signature; a redelivery is acknowledged and not processed again.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use galantis_core::{ShopDomain, TenantId};
use galantis_store::control::tenants;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::batcher::Incoming;
use super::meta_ingest::{MetaDelivery, RoutedChange};
use super::signature;
use super::topics;
use crate::config::{DEV_META_APP_SECRET, DEV_META_VERIFY_TOKEN, DEV_SHOPIFY_APP_SECRET};
use crate::error::AppError;
use crate::state::AppState;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn rejected(source: &'static str) -> AppError {
    metrics::counter!("galantis_webhooks_rejected_total", "source" => source, "reason" => "signature").increment(1);
    AppError::RejectedSignature
}

pub(crate) fn shopify_secrets(state: &AppState) -> Vec<SecretString> {
    let c = &state.config;
    let mut v = vec![
        c.shopify_app_secret
            .clone()
            .unwrap_or_else(|| SecretString::from(DEV_SHOPIFY_APP_SECRET)),
    ];
    if let Some(prev) = &c.shopify_previous_app_secret {
        v.push(prev.clone());
    }
    v
}

pub fn meta_secret(state: &AppState) -> SecretString {
    state
        .config
        .meta_app_secret
        .clone()
        .unwrap_or_else(|| SecretString::from(DEV_META_APP_SECRET))
}

fn now_ms(state: &AppState) -> i64 {
    state.clock.now().timestamp_millis()
}

pub(crate) async fn tenant_of_shop(
    state: &AppState,
    shop: &ShopDomain,
) -> Result<TenantId, AppError> {
    if let Some(t) = state.shop_cache.get(shop) {
        return Ok(*t);
    }
    let t = tenants::find_by_shop(&state.db, shop)
        .await?
        .ok_or_else(unknown_shop)?;
    state.shop_cache.insert(shop.clone(), t.id);
    Ok(t.id)
}

/// The body to store, validated as JSON without building a tree: the bytes
/// as received. A body with escapes (`\u00e9`, `\/`) is stored in
/// serde_json's canonical form instead, so the literal match of personal
/// data at erasure (`redaction::scrub_mentions`, a `LIKE` over the stored
/// text on SQLite) still finds every mention.
fn stored_payload(body: &[u8]) -> Result<Box<RawValue>, AppError> {
    let invalid = || AppError::bad_request("invalid_json", "the webhook body is not valid JSON");
    if body.contains(&b'\\') {
        let v: Value = serde_json::from_slice(body).map_err(|_| invalid())?;
        serde_json::value::to_raw_value(&v).map_err(|_| invalid())
    } else {
        serde_json::from_slice(body).map_err(|_| invalid())
    }
}

fn unknown_shop() -> AppError {
    AppError::NotFoundCode {
        code: "unknown_shop",
        message: "no tenant is installed for this shop".into(),
    }
}

#[utoipa::path(
    post,
    path = "/webhooks/shopify",
    tag = "webhooks in",
    summary = "A Shopify webhook (signed with the app's secret)",
    params(
        ("x-shopify-hmac-sha256" = String, Header, description = "base64 HMAC-SHA256 of the raw body"),
        ("x-shopify-topic" = String, Header, description = "e.g. customers/create"),
        ("x-shopify-shop-domain" = String, Header, description = "the shop, *.myshopify.com"),
        ("x-shopify-webhook-id" = Option<String>, Header, description = "deduplicates redeliveries"),
        ("x-shopify-api-version" = Option<String>, Header, description = "the payload's API version; another than the pinned one is logged, never rejected"),
    ),
    request_body(content = Object, description = "Shopify's payload for the topic"),
    responses((status = 200, description = "stored (or a redelivery already stored); processing is queued"))
)]
pub async fn shopify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let secrets = shopify_secrets(&state);
    let refs: Vec<&SecretString> = secrets.iter().collect();
    if !signature::verify_shopify(header(&headers, "x-shopify-hmac-sha256"), &body, &refs) {
        return Err(rejected("shopify"));
    }
    let shop = header(&headers, "x-shopify-shop-domain")
        .and_then(|s| ShopDomain::parse(s).ok())
        .ok_or_else(unknown_shop)?;
    let topic = header(&headers, "x-shopify-topic")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t.len() <= 100)
        .ok_or_else(|| {
            AppError::bad_request("missing_topic", "the X-Shopify-Topic header is missing")
        })?;
    let payload = stored_payload(&body)?;
    let tenant = tenant_of_shop(&state, &shop).await?;
    // A subscription registered under another version (the Partner
    // Dashboard's, or one made before the pin moved) still gets processed:
    // handlers accept the older and the current shapes. Logged so the
    // operator can align it.
    if let Some(v) = header(&headers, "x-shopify-api-version")
        && v != state.config.shopify.api_version
    {
        tracing::info!(
            shop = shop.as_str(),
            topic = %topic,
            api_version = v,
            pinned = %state.config.shopify.api_version,
            "Shopify webhook sent with another API version than the pinned one"
        );
    }
    // Shopify always sends a webhook id; without one, the body's digest keeps
    // redeliveries idempotent.
    let external_id = header(&headers, "x-shopify-webhook-id")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&body))));
    let triggered_at = super::parse::time_ms(
        header(&headers, "x-shopify-triggered-at")
            .map(|s| json!(s))
            .as_ref(),
    );
    let stored = state
        .ingest
        .submit(
            tenant,
            Incoming {
                source: "shopify",
                process: topics::is_known_shopify(&topic),
                topic,
                external_id,
                origin: shop.as_str().to_owned(),
                payload,
                triggered_at,
                received_at: now_ms(&state),
            },
        )
        .await
        // The writer logged the cause; the platform retries a 503.
        .map_err(|_| AppError::unavailable_plain("the webhook could not be stored; retry later"))?;
    let outcome = stored.as_str();
    metrics::counter!("galantis_webhooks_received_total", "source" => "shopify", "outcome" => outcome).increment(1);
    metrics::histogram!("galantis_webhook_ingest_seconds", "source" => "shopify")
        .record(started.elapsed().as_secs_f64());
    Ok((StatusCode::OK, axum::Json(json!({ "status": outcome }))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription handshake: echo the raw challenge for the right token.
#[utoipa::path(
    get,
    path = "/webhooks/meta",
    tag = "webhooks in",
    summary = "Meta's subscription handshake",
    params(Handshake),
    responses((status = 200, description = "the challenge, echoed", body = String, content_type = "text/plain"))
)]
pub async fn meta_verify(State(state): State<AppState>, Query(q): Query<Handshake>) -> Response {
    let expected = state
        .config
        .meta_verify_token
        .clone()
        .unwrap_or_else(|| SecretString::from(DEV_META_VERIFY_TOKEN));
    let token_ok = q.verify_token.as_deref().is_some_and(|t| {
        use subtle::ConstantTimeEq;
        t.as_bytes()
            .ct_eq(expected.expose_secret().as_bytes())
            .into()
    });
    match (q.mode.as_deref(), token_ok, q.challenge) {
        (Some("subscribe"), true, Some(challenge)) => (StatusCode::OK, challenge).into_response(),
        _ => AppError::ForbiddenAction {
            code: "verification_failed",
            message: "wrong hub.mode or verify token".into(),
        }
        .into_response(),
    }
}

/// Meta batches at most 1,000 changes into one webhook: more is not Meta.
pub const MAX_META_CHANGES: usize = 1_000;

/// One change of a Meta payload, routed.
#[utoipa::path(
    post,
    path = "/webhooks/meta",
    tag = "webhooks in",
    summary = "A Meta (WhatsApp Cloud API) webhook (signed with the app secret)",
    params(("x-hub-signature-256" = String, Header, description = "sha256=<hex HMAC-SHA256 of the raw body>")),
    request_body(content = Object, description = "Meta's `whatsapp_business_account` payload"),
    responses((status = 200, description = "stored; processing is queued"))
)]
pub async fn meta(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let started = Instant::now();
    let signed = header(&headers, "x-hub-signature-256");
    // The mounted sandbox signs with its own secret: such a delivery may only
    // reach tenants whose connection is the sandbox (see `sandbox_only`).
    let from_sandbox = if signature::verify_meta(signed, &body, &meta_secret(&state)) {
        false
    } else if let Some(secret) = state.sending.sandbox_webhook_secret()
        && signature::verify_meta(signed, &body, secret)
    {
        true
    } else {
        return Err(rejected("meta"));
    };
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|_| AppError::bad_request("invalid_json", "the webhook body is not valid JSON"))?;
    let entries = payload
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let changes: usize = entries
        .iter()
        .filter_map(|e| e.get("changes").and_then(Value::as_array))
        .map(Vec::len)
        .sum();
    if changes > MAX_META_CHANGES {
        return Err(AppError::too_large(
            "too_many_changes",
            format!("a webhook carries at most {MAX_META_CHANGES} changes; this one has {changes}"),
        ));
    }
    let mut by_tenant: BTreeMap<TenantId, Vec<RoutedChange>> = BTreeMap::new();
    let mut unrouted = 0u64;
    // origin → (first field, first change, how many): one write per origin.
    let mut unrouted_by_origin: BTreeMap<String, (String, Value, u64)> = BTreeMap::new();
    for entry in &entries {
        let waba = entry
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for change in entry
            .get("changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = change
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            let digest = hex::encode(Sha256::digest(format!("{waba}|{change}").as_bytes()));
            let routed = json!({ "entry_id": waba, "change": change });
            // Per-number fields go to the number's owner; account-level ones
            // to every tenant on the WABA.
            let per_number = matches!(
                field.as_str(),
                "messages" | "user_preferences" | "smb_message_echoes"
            );
            let targets: Vec<TenantId> = if per_number {
                let pnid = change
                    .pointer("/value/metadata/phone_number_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tenants::phone_number_owner(&state.db, pnid)
                    .await?
                    .into_iter()
                    .collect()
            } else {
                tenants::tenants_for_waba(&state.db, &waba).await?
            };
            let targets = if from_sandbox {
                sandbox_only(&state, targets).await?
            } else {
                targets
            };
            if targets.is_empty() {
                unrouted += 1;
                let origin = change
                    .pointer("/value/metadata/phone_number_id")
                    .and_then(Value::as_str)
                    .unwrap_or(&waba);
                unrouted_by_origin
                    .entry(origin.to_owned())
                    .or_insert_with(|| (field.clone(), routed, 0))
                    .2 += 1;
                continue;
            }
            for t in targets {
                by_tenant.entry(t).or_default().push(RoutedChange {
                    field: field.clone(),
                    external_id: format!("{field}:{digest}"),
                    payload: routed.clone(),
                });
            }
        }
    }
    let now = now_ms(&state);
    for (origin, (field, sample, count)) in &unrouted_by_origin {
        tenants::record_unrouted_webhook(
            &state.db,
            "meta",
            field,
            origin,
            if from_sandbox {
                "sandbox delivery: no sandbox tenant has this phone number id or WABA"
            } else {
                "unknown phone number id or WABA"
            },
            sample,
            *count,
            now,
        )
        .await?;
    }
    let mut accepted = 0u64;
    for (tenant, changes) in by_tenant {
        accepted += state
            .meta_ingest
            .submit(
                tenant,
                MetaDelivery {
                    changes,
                    received_at: now,
                },
            )
            .await
            .and_then(|stored| stored)
            // The writer logged the cause; Meta retries a 503.
            .map_err(|_| {
                AppError::unavailable_plain("the webhook could not be stored; retry later")
            })?;
    }
    metrics::counter!("galantis_webhooks_received_total", "source" => "meta", "outcome" => "accepted").increment(accepted);
    metrics::histogram!("galantis_webhook_ingest_seconds", "source" => "meta")
        .record(started.elapsed().as_secs_f64());
    Ok(
        axum::Json(json!({ "status": "accepted", "changes": accepted, "unrouted": unrouted }))
            .into_response(),
    )
}

/// The tenants among `targets` that have no Meta credentials stored, i.e.
/// whose WhatsApp connection is the sandbox. A tenant with real credentials
/// never takes a sandbox event: otherwise whoever controls the sandbox could
/// write a real store's inbox and consent (issue 11). The delivery is still
/// acknowledged (recorded as unrouted) so the sandbox does not retry it.
async fn sandbox_only(state: &AppState, targets: Vec<TenantId>) -> Result<Vec<TenantId>, AppError> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let real = state
            .secrets
            .get(t, galantis_core::SecretName::MetaAccessToken)
            .await?
            .is_some();
        if real {
            tracing::warn!(tenant = %t, "sandbox-signed Meta webhook for a tenant with Meta credentials: ignored");
        } else {
            out.push(t);
        }
    }
    Ok(out)
}
