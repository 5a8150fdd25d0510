//! The back-in-stock API: widget settings, subscriptions (list with
//! filters, cancel, CSV export) and analytics.
//!
//! Permissions: settings follow `settings.*`; subscriptions hold contacts'
//! phone numbers, so they follow the audience (`audience.read` to list and
//! export, `audience.write` to cancel); analytics need `analytics.read`.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use galantis_core::back_in_stock::{SubscriptionStatus, WidgetSettings};
use galantis_store::tenant::back_in_stock::{
    self as store, Analytics, Cancelled, Filter, Subscription,
};
use galantis_store::tenant::settings;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

/// Rows one CSV export holds at most (newest first).
pub const MAX_EXPORT_ROWS: u32 = 100_000;

#[utoipa::path(
    get,
    path = "/settings/back-in-stock",
    tag = "back in stock",
    summary = "The widget's appearance and confirmation mode",
    responses((status = 200, description = "the settings", body = Object))
)]
pub async fn get_settings(
    State(state): State<AppState>,
    auth: Authed<perm::SettingsRead>,
) -> Result<axum::Json<WidgetSettings>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let v = settings::get(&mut tx, store::SETTINGS_KEY).await?;
    tx.commit().await?;
    Ok(axum::Json(WidgetSettings::from_stored(v.as_ref())))
}

#[utoipa::path(
    put,
    path = "/settings/back-in-stock",
    tag = "back in stock",
    summary = "Change the widget's settings (keys not given keep their value)",
    request_body(content = Object, description = "any of button_text, button_color, text_color (#rgb or #rrggbb), position (below_add_to_cart, above_add_to_cart, floating), confirmation_mode (none, whatsapp)"),
    responses((status = 200, description = "the settings", body = Object))
)]
pub async fn put_settings(
    State(state): State<AppState>,
    auth: Authed<perm::SettingsWrite>,
    Json(body): Json<Value>,
) -> Result<axum::Json<WidgetSettings>, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let current =
        WidgetSettings::from_stored(settings::get(&mut tx, store::SETTINGS_KEY).await?.as_ref());
    let next = current
        .merged(&body)
        .map_err(|e| AppError::unprocessable("invalid_field", e.to_string()))?;
    let v = serde_json::to_value(&next).map_err(anyhow::Error::from)?;
    settings::put(&mut tx, store::SETTINGS_KEY, &v).await?;
    tx.commit().await?;
    Ok(axum::Json(next))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    /// Shopify variant id.
    variant_id: Option<i64>,
    /// Shopify product id.
    product_id: Option<i64>,
    /// PENDING, ACTIVE, NOTIFIED or CANCELLED.
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

impl SubscriptionQuery {
    fn filter(&self) -> Result<Filter, AppError> {
        Ok(Filter {
            variant_id: self.variant_id,
            product_id: self.product_id,
            status: self
                .status
                .as_deref()
                .map(str::parse::<SubscriptionStatus>)
                .transpose()
                .map_err(|e| AppError::unprocessable("invalid_field", format!("status: {e}")))?,
        })
    }
}

#[utoipa::path(
    get,
    path = "/back-in-stock/subscriptions",
    tag = "back in stock",
    summary = "Back-in-stock subscriptions, newest first",
    params(SubscriptionQuery),
    responses((status = 200, description = "a page of subscriptions", body = crate::http::openapi::PageBody))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Query(q): Query<SubscriptionQuery>,
) -> Result<axum::Json<Page<Subscription>>, AppError> {
    let filter = q.filter()?;
    let before = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = store::list(&mut tx, &filter, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |s| s.id)))
}

#[utoipa::path(
    post,
    path = "/back-in-stock/subscriptions/{id}/cancel",
    tag = "back in stock",
    summary = "Cancel an open subscription (a cancelled one is returned unchanged)",
    params(("id" = uuid::Uuid, Path, description = "subscription id")),
    responses(
        (status = 200, description = "the subscription", body = Object),
        (status = 409, description = "already notified"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceWrite>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Subscription>, AppError> {
    let now = state.clock.now().timestamp_millis();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let outcome = store::cancel(&mut tx, id, now)
        .await?
        .ok_or(AppError::NotFound("subscription"))?;
    tx.commit().await?;
    match outcome {
        Cancelled::Cancelled(s) | Cancelled::Already(s) => Ok(axum::Json(s)),
        Cancelled::AlreadyNotified(_) => Err(AppError::conflict(
            "subscription_notified",
            "the subscriber was already notified; there is nothing to cancel",
        )),
    }
}

/// A CSV cell: quoted when needed; a leading `= + - @` is neutralised so a
/// spreadsheet never runs it as a formula.
fn cell(s: &str) -> String {
    let risky = s.starts_with(['=', '-', '@', '\t', '\r'])
        || (s.starts_with('+') && !s[1..].chars().all(|c| c.is_ascii_digit()));
    let s = if risky { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[utoipa::path(
    get,
    path = "/back-in-stock/subscriptions.csv",
    tag = "back in stock",
    summary = "Export subscriptions as CSV (same filters as the list)",
    params(SubscriptionQuery),
    responses((status = 200, description = "CSV", body = String, content_type = "text/csv"))
)]
pub async fn export(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Query(q): Query<SubscriptionQuery>,
) -> Result<Response, AppError> {
    let filter = q.filter()?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = store::list(&mut tx, &filter, None, MAX_EXPORT_ROWS).await?;
    tx.commit().await?;
    let mut out = String::from(
        "id,status,variant_id,product_id,options,phone,first_name,source,created_at,notified_at,cancelled_at\r\n",
    );
    for s in rows {
        let line = [
            s.id.to_string(),
            s.status.as_str().to_owned(),
            s.variant_id.to_string(),
            s.product_id.map(|p| p.to_string()).unwrap_or_default(),
            s.options.to_string(),
            s.contact_phone.unwrap_or_default(),
            s.contact_first_name.unwrap_or_default(),
            s.source,
            time(Some(s.created_at)),
            time(s.notified_at),
            time(s.cancelled_at),
        ]
        .iter()
        .map(|c| cell(c))
        .collect::<Vec<_>>()
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"back-in-stock-subscriptions.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Start (RFC 3339, or a date: its first instant, UTC). Default: 30 days before `to`.
    from: Option<String>,
    /// End, exclusive (RFC 3339, or a date: included whole). Default: now.
    to: Option<String>,
}

fn instant(s: &str, end: bool) -> Result<DateTime<Utc>, AppError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        AppError::unprocessable(
            "invalid_range",
            "from and to must be RFC 3339 timestamps or YYYY-MM-DD dates",
        )
    })?;
    let d = if end { d.succ_opt().unwrap_or(d) } else { d };
    Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

#[utoipa::path(
    get,
    path = "/back-in-stock/analytics",
    tag = "back in stock",
    summary = "Active subscriptions, notifications sent, click, conversion and revenue attributed (7 days), overall and per product",
    params(Range),
    responses((status = 200, description = "the figures", body = Object))
)]
pub async fn analytics(
    State(state): State<AppState>,
    auth: Authed<perm::AnalyticsRead>,
    Query(r): Query<Range>,
) -> Result<axum::Json<Analytics>, AppError> {
    let to = match &r.to {
        Some(s) => instant(s, true)?,
        None => state.clock.now(),
    };
    let from = match &r.from {
        Some(s) => instant(s, false)?,
        None => to - Duration::days(30),
    };
    if from >= to {
        return Err(AppError::unprocessable(
            "invalid_range",
            "from must be before to",
        ));
    }
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let a = store::analytics(&mut tx, from.timestamp_millis(), to.timestamp_millis()).await?;
    tx.commit().await?;
    Ok(axum::Json(a))
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(cell("+525512345678"), "+525512345678");
        assert_eq!(cell("+SUM(A1)"), "'+SUM(A1)");
        assert_eq!(cell("{\"Size\":\"M\"}"), "\"{\"\"Size\"\":\"\"M\"\"}\"");
    }
}
