//! Campaign analytics: counts and rates, failures grouped by reason,
//! replies and button clicks attributed within 72 h of the campaign message,
//! the same over time (hour or day buckets), and the recipients with their
//! status, Meta error code and reason (cursor).

use galantis_core::campaign::RecipientStatus;
use galantis_store::tenant::campaigns::analytics::{self as engagement, Bucket, Engagement};
use galantis_store::tenant::campaigns::recipients::{self, FailureGroup, RecipientRow};
use galantis_store::tenant::campaigns::{self as store, Counts};

use super::*;

#[derive(Serialize)]
pub struct Stats {
    pub status: CampaignStatus,
    pub counts: Counts,
    /// Not yet accepted by Meta (queued, or not yet dispatched).
    pub pending: i64,
    /// delivered / sent.
    pub delivery_rate: f64,
    /// read / delivered.
    pub read_rate: f64,
    /// failed / (sent + failed).
    pub failure_rate: f64,
    pub failures_by_reason: Vec<FailureGroup>,
    /// Recipients who replied / pressed a button within 72 h of their
    /// campaign message.
    pub engagement: Engagement,
    /// replied / sent.
    pub reply_rate: f64,
    /// clicked / sent.
    pub click_rate: f64,
    pub timeline: Timeline,
}

/// Counts per interval, with the running rates at the end of each.
#[derive(Serialize)]
pub struct Timeline {
    /// `hour` or `day` (UTC).
    pub bucket: &'static str,
    pub points: Vec<Point>,
}

#[derive(Serialize)]
pub struct Point {
    #[serde(flatten)]
    pub counts: Bucket,
    /// Delivered / sent, cumulative up to the end of this interval.
    pub delivery_rate: f64,
    /// Read / delivered, cumulative.
    pub read_rate: f64,
    /// Replied / sent, cumulative.
    pub reply_rate: f64,
}

fn points(buckets: Vec<Bucket>) -> Vec<Point> {
    let (mut sent, mut delivered, mut read, mut replied) = (0, 0, 0, 0);
    buckets
        .into_iter()
        .map(|b| {
            sent += b.sent;
            delivered += b.delivered;
            read += b.read;
            replied += b.replied;
            Point {
                delivery_rate: ratio(delivered, sent),
                read_rate: ratio(read, delivered),
                reply_rate: ratio(replied, sent),
                counts: b,
            }
        })
        .collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct StatsQuery {
    /// `hour` (default) or `day`: the timeline's interval (UTC).
    bucket: Option<String>,
}

fn ratio(a: i64, b: i64) -> f64 {
    if b <= 0 { 0.0 } else { a as f64 / b as f64 }
}

#[utoipa::path(
    get,
    path = "/campaigns/{id}/stats",
    tag = "campaigns",
    summary = "Counts, rates, failures grouped by reason, attributed replies and clicks, and all of it over time",
    params(("id" = uuid::Uuid, Path, description = "campaign id"), StatsQuery),
    responses((status = 200, description = "the stats", body = Object))
)]
pub async fn stats(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<StatsQuery>,
) -> Result<axum::Json<Stats>, AppError> {
    let (bucket, bucket_ms) = match q.bucket.as_deref() {
        None | Some("hour") => ("hour", 3_600_000),
        Some("day") => ("day", 86_400_000),
        Some(_) => return Err(invalid("bucket: must be hour or day".into())),
    };
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let c = store::get(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound("campaign"))?;
    // Read live (the stored counts lag by one monitor interval).
    let t = recipients::tally(&mut tx, id).await?;
    let failures = recipients::failures_by_reason(&mut tx, id).await?;
    let e = engagement::engagement(&mut tx, id).await?;
    let buckets = engagement::timeline(&mut tx, id, bucket_ms).await?;
    tx.commit().await?;
    let k = t.counts;
    Ok(axum::Json(Stats {
        status: c.status,
        counts: k,
        pending: t.undispatched + t.in_flight,
        delivery_rate: ratio(k.delivered, k.sent),
        read_rate: ratio(k.read, k.delivered),
        failure_rate: ratio(k.failed, k.sent + k.failed),
        failures_by_reason: failures,
        engagement: e,
        reply_rate: ratio(e.replied, k.sent),
        click_rate: ratio(e.clicked, k.sent),
        timeline: Timeline {
            bucket,
            points: points(buckets),
        },
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RecipientsQuery {
    /// `QUEUED`, `SENT`, `DELIVERED`, `READ`, `FAILED` or `SKIPPED`.
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/campaigns/{id}/recipients",
    tag = "campaigns",
    summary = "Recipients with status, Meta error code, reason and timestamps",
    params(("id" = uuid::Uuid, Path, description = "campaign id"), RecipientsQuery),
    responses((status = 200, description = "a page of recipients", body = crate::http::openapi::PageBody))
)]
pub async fn list_recipients(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<RecipientsQuery>,
) -> Result<axum::Json<Page<RecipientRow>>, AppError> {
    let status = q
        .status
        .as_deref()
        .map(str::parse::<RecipientStatus>)
        .transpose()
        .map_err(|_| invalid("status: not a recipient status".into()))?;
    let after = q
        .cursor
        .as_deref()
        .map(Cursor::decode::<Uuid>)
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    if store::get(&mut tx, id).await?.is_none() {
        return Err(AppError::NotFound("campaign"));
    }
    let rows = recipients::list(&mut tx, id, status, after, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |r| r.id)))
}

/// One CSV cell: quoted when needed, and a leading `=`, `+`, `-`, `@`, tab
/// or carriage return neutralised with `'` (no formula runs when the file
/// is opened in a spreadsheet).
fn cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// Rows read per query while building the file.
const CSV_PAGE: u32 = 5000;

#[utoipa::path(
    get,
    path = "/campaigns/{id}/recipients.csv",
    tag = "campaigns",
    summary = "Every recipient as CSV (status, Meta error code and reason, timestamps)",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 200, description = "the CSV file", content_type = "text/csv", body = String))
)]
pub async fn recipients_csv(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsRead>,
    Path(id): Path<Uuid>,
) -> Result<Response, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    if store::get(&mut tx, id).await?.is_none() {
        return Err(AppError::NotFound("campaign"));
    }
    let mut out = String::from(
        "recipient_id,contact_id,phone,status,error_code,error_reason,queued_at,sent_at,delivered_at,read_at,failed_at\n",
    );
    let mut after = None;
    loop {
        let rows = recipients::list(&mut tx, id, None, after, CSV_PAGE).await?;
        for r in &rows {
            let line = [
                r.id.to_string(),
                r.contact_id.to_string(),
                cell(&r.phone),
                r.status.clone(),
                cell(r.error_code.as_deref().unwrap_or("")),
                cell(r.error_reason.as_deref().unwrap_or("")),
                time(r.queued_at),
                time(r.sent_at),
                time(r.delivered_at),
                time(r.read_at),
                time(r.failed_at),
            ]
            .join(",");
            out.push_str(&line);
            out.push('\n');
        }
        after = rows.last().map(|r| r.id);
        if rows.len() < CSV_PAGE as usize {
            break;
        }
    }
    tx.commit().await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"campaign-{id}-recipients.csv\""),
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_are_quoted_and_never_formulas() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("+34612000000"), "'+34612000000");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("a, b"), "\"a, b\"");
        assert_eq!(cell("-1"), "'-1");
    }
}
