//! `POST /storefront/back-in-stock`: a storefront visitor asks to hear on
//! WhatsApp when a sold-out variant is back. Reached through the Shopify
//! App Proxy (`/apps/galantis/back-in-stock` on the shop's domain).
//!
//! Steps, in order (each refusal stores nothing):
//! 1. the App Proxy `signature` verifies and `timestamp` is fresh (401);
//! 2. `shop` names an installed tenant (404 `unknown_shop`);
//! 3. the client IP is under its submission pace (429 with `Retry-After`);
//! 4. the body parses (400 `invalid_json`, 422 `invalid_field`), the phone
//!    is a valid number with its country calling code (422 `invalid_phone`,
//!    `missing_calling_code`), `consent` is literally `true` (422
//!    `consent_required`), the variant is in the catalog (422
//!    `unknown_variant`);
//! 5. in one tenant transaction: the contact (found by phone or created),
//!    its consent with proof source `back_in_stock_widget`, and the
//!    subscription (`ACTIVE`, or `PENDING` awaiting WhatsApp confirmation);
//!    a repeat returns the open subscription with 200, a new one is 201.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use galantis_core::back_in_stock::{ConfirmationMode, SubscriptionStatus, WidgetSettings};
use galantis_core::phone::InvalidPhone;
use galantis_core::{ConsentSource, MarketingState, PhoneE164, ShopDomain, TenantId};
use galantis_store::tenant::back_in_stock::{self as bis, NewSubscription, Subscribed};
use galantis_store::tenant::{contacts, settings};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::proxy;
use crate::error::AppError;
use crate::state::AppState;
use crate::webhooks::ingress::{shopify_secrets, tenant_of_shop};

const SOURCE: &str = "back_in_stock_widget";
const MAX_OPTIONS: usize = 10;
const MAX_OPTION_CHARS: usize = 100;
const MAX_FIRST_NAME_CHARS: usize = 100;

/// The query Shopify's App Proxy adds (all signed).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ProxyParams {
    /// `*.myshopify.com`: selects the tenant.
    shop: String,
    /// Unix seconds when Shopify forwarded the request.
    timestamp: String,
    /// Hex HMAC-SHA256 of the other parameters (see the module docs).
    signature: String,
    path_prefix: Option<String>,
    logged_in_customer_id: Option<String>,
}

/// What the widget posts.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    /// The Shopify variant id (number, or digits as a string).
    #[schema(value_type = i64)]
    variant_id: Value,
    /// With its country calling code, e.g. `+52 55 1234 5678`.
    phone: String,
    /// Must be literally `true`: the visitor ticked the consent box.
    #[schema(value_type = bool)]
    #[serde(default)]
    consent: Option<Value>,
    #[serde(default)]
    first_name: Option<String>,
    /// The selected options, e.g. `{"Size": "M"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    options: Option<Value>,
}

/// The client's IP: Shopify's proxy passes the visitor's address in
/// `X-Forwarded-For` (first entry); otherwise the TCP peer.
pub(crate) fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .or(peer.map(|p| p.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Checks the App Proxy signature and timestamp; returns the tenant.
pub(crate) async fn verified_tenant(
    state: &AppState,
    query: Option<&str>,
) -> Result<TenantId, AppError> {
    let pairs = proxy::parse_query(query.unwrap_or(""));
    let secrets: Vec<SecretString> = shopify_secrets(state);
    let refs: Vec<&SecretString> = secrets.iter().collect();
    if !proxy::verify(&pairs, &refs) {
        metrics::counter!("galantis_storefront_rejected_total", "reason" => "signature")
            .increment(1);
        return Err(AppError::RejectedSignature);
    }
    let one = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let fresh = one("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|t| {
            let max =
                i64::try_from(state.config.storefront.signature_max_age_secs).unwrap_or(i64::MAX);
            (state.clock.now().timestamp() - t).abs() <= max
        });
    if !fresh {
        metrics::counter!("galantis_storefront_rejected_total", "reason" => "timestamp")
            .increment(1);
        return Err(AppError::RejectedSignature);
    }
    let shop = one("shop")
        .and_then(|s| ShopDomain::parse(s).ok())
        .ok_or_else(|| AppError::NotFoundCode {
            code: "unknown_shop",
            message: "no tenant is installed for this shop".into(),
        })?;
    tenant_of_shop(state, &shop).await
}

fn field(message: impl Into<String>) -> AppError {
    AppError::unprocessable("invalid_field", message)
}

fn variant_id(v: &Value) -> Result<i64, AppError> {
    let id = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    id.filter(|i| *i > 0)
        .ok_or_else(|| field("variant_id: expected a Shopify variant id"))
}

fn options(v: Option<&Value>) -> Result<Value, AppError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(json!({}));
    };
    let obj = v
        .as_object()
        .ok_or_else(|| field("options: expected an object like {\"Size\": \"M\"}"))?;
    if obj.len() > MAX_OPTIONS {
        return Err(field(format!("options: at most {MAX_OPTIONS} options")));
    }
    for (k, val) in obj {
        let s = val
            .as_str()
            .ok_or_else(|| field(format!("options.{k}: expected a string")))?;
        galantis_core::text::check_field(k, k, MAX_OPTION_CHARS)
            .and_then(|_| galantis_core::text::check_field(k, s, MAX_OPTION_CHARS))
            .map_err(|e| field(format!("options: {e}")))?;
    }
    Ok(v.clone())
}

fn parse_body(body: &[u8]) -> Result<SubscribeBody, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        if e.inner().is_data() {
            field(format!("{}: {}", e.path(), e.inner()))
        } else {
            AppError::bad_request("invalid_json", "the request body is not valid JSON")
        }
    })
}

#[utoipa::path(
    post,
    path = "/storefront/back-in-stock",
    tag = "storefront",
    summary = "Subscribe a storefront visitor to a sold-out variant (through the Shopify App Proxy)",
    params(ProxyParams),
    request_body = SubscribeBody,
    responses(
        (status = 201, description = "subscribed", body = Object),
        (status = 200, description = "already subscribed: the open subscription", body = Object),
        (status = 401, description = "bad or stale App Proxy signature"),
        (status = 422, description = "invalid phone, no consent, unknown variant"),
        (status = 429, description = "too many submissions from this IP"),
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, AppError> {
    let tenant = verified_tenant(&state, query.as_deref()).await?;
    let ip = client_ip(&headers, peer.map(|p| p.0.0));
    if let Err(retry_after_secs) = state.storefront_limiter.check(ip) {
        metrics::counter!("galantis_storefront_rejected_total", "reason" => "rate_limited")
            .increment(1);
        return Err(AppError::RateLimited { retry_after_secs });
    }
    let body = parse_body(&body)?;
    let variant = variant_id(&body.variant_id)?;
    let phone = PhoneE164::parse(&body.phone).map_err(|e| match e {
        InvalidPhone::MissingCallingCode => AppError::unprocessable(
            "missing_calling_code",
            "the phone number needs its country calling code, e.g. +52 55 1234 5678",
        ),
        InvalidPhone::Malformed => {
            AppError::unprocessable("invalid_phone", "the phone number is not a valid number")
        }
    })?;
    if body.consent != Some(Value::Bool(true)) {
        return Err(AppError::unprocessable(
            "consent_required",
            "tick the box to agree to receive the WhatsApp message",
        ));
    }
    let first_name = match body
        .first_name
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(n) => Some(
            galantis_core::text::check_field("first_name", n, MAX_FIRST_NAME_CHARS)
                .map_err(|e| field(e.to_string()))?,
        ),
        None => None,
    };
    let options = options(body.options.as_ref())?;

    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let info = bis::variant_info(&mut tx, variant).await?.ok_or_else(|| {
        AppError::unprocessable(
            "unknown_variant",
            "this variant is not in the store's catalog",
        )
    })?;
    let settings =
        WidgetSettings::from_stored(settings::get(&mut tx, bis::SETTINGS_KEY).await?.as_ref());
    // Contact lookups and creation must not interleave with webhook
    // processing of the same tenant (which may create the same contact).
    tx.serialize_tenant_writes().await?;
    let contact = match contacts::by_phone(&mut tx, phone.as_str()).await? {
        Some(c) => c,
        None => contacts::create_from_whatsapp(&mut tx, phone.as_str(), first_name, now).await?,
    };
    let reference = format!("variant:{variant}");
    let status = match settings.confirmation_mode {
        ConfirmationMode::None => {
            contacts::set_marketing_state(
                &mut tx,
                contact.id,
                MarketingState::Subscribed,
                ConsentSource::BackInStockWidget,
                Some(&reference),
                now,
                now,
            )
            .await?;
            SubscriptionStatus::Active
        }
        // Already subscribed: nothing to confirm.
        ConfirmationMode::Whatsapp if contact.marketing_state == MarketingState::Subscribed => {
            SubscriptionStatus::Active
        }
        ConfirmationMode::Whatsapp => {
            contacts::set_marketing_state(
                &mut tx,
                contact.id,
                MarketingState::Pending,
                ConsentSource::BackInStockWidget,
                Some(&reference),
                now,
                now,
            )
            .await?;
            SubscriptionStatus::Pending
        }
    };
    let outcome = bis::subscribe(
        &mut tx,
        NewSubscription {
            contact_id: contact.id,
            variant_id: variant,
            product_id: Some(info.shopify_product_id),
            options: &options,
            status,
            source: SOURCE,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    let (code, sub) = match outcome {
        Subscribed::Created(s) => (StatusCode::CREATED, s),
        Subscribed::Existing(s) => (StatusCode::OK, s),
    };
    metrics::counter!("galantis_storefront_subscriptions_total", "outcome" => if code == StatusCode::CREATED { "created" } else { "existing" }).increment(1);
    // Public endpoint: nothing about the contact goes back.
    Ok((
        code,
        axum::Json(json!({
            "subscription": {
                "id": sub.id,
                "status": sub.status,
                "variant_id": sub.variant_id,
                "product_id": sub.product_id,
                "created_at": sub.created_at,
            }
        })),
    )
        .into_response())
}
