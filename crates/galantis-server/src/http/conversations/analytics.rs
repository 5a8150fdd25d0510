//! `GET /inbox/analytics`: first response time, volume, resolution time
//! and per-agent activity over a date range.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use galantis_store::tenant::conversations as store;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Start (RFC 3339, or a date: its first instant, UTC). Default: 7 days before `to`.
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

/// Count, mean and median of durations, in milliseconds.
fn summary(mut v: Vec<i64>) -> Value {
    if v.is_empty() {
        return json!({"count": 0, "avg_ms": null, "median_ms": null});
    }
    v.sort_unstable();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    let avg = v.iter().sum::<i64>() / n as i64;
    json!({"count": n, "avg_ms": avg, "median_ms": median})
}

#[derive(Default)]
struct Agent {
    replies: u64,
    first_responses: u64,
    resolved: u64,
    notes: i64,
}

#[utoipa::path(
    get,
    path = "/inbox/analytics",
    tag = "inbox",
    summary = "Inbox analytics: first response time, volume, resolution time, per-agent activity",
    params(Range),
    responses((status = 200, description = "the figures", body = Object))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed<perm::AnalyticsRead>,
    Query(r): Query<Range>,
) -> Result<axum::Json<Value>, AppError> {
    let to = match &r.to {
        Some(s) => instant(s, true)?,
        None => state.clock.now(),
    };
    let from = match &r.from {
        Some(s) => instant(s, false)?,
        None => to - Duration::days(7),
    };
    if from >= to || to - from > Duration::days(366) {
        return Err(AppError::unprocessable(
            "invalid_range",
            "from must be before to, at most 366 days apart",
        ));
    }
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let traffic = store::traffic(&mut tx, from_ms, to_ms).await?;
    let activity = store::activity_between(&mut tx, from_ms, to_ms).await?;
    let notes = store::notes_between(&mut tx, from_ms, to_ms).await?;
    tx.commit().await?;

    let mut agents: BTreeMap<Uuid, Agent> = BTreeMap::new();
    // Per conversation: the first inbound in the range, then the first
    // reply after it.
    let mut waiting: HashMap<(Uuid, &str), Option<i64>> = HashMap::new();
    let mut first_responses = Vec::new();
    let (mut inbound, mut replies, mut other_outbound) = (0_u64, 0_u64, 0_u64);
    for m in &traffic {
        let key = (m.contact_id, m.phone_number_id.as_str());
        if m.inbound {
            inbound += 1;
            waiting.entry(key).or_insert(Some(m.at_ms));
        } else if m.reply {
            replies += 1;
            let agent = m.member.map(|id| agents.entry(id).or_default());
            let first = waiting.get_mut(&key).and_then(Option::take);
            if let Some(a) = agent {
                a.replies += 1;
                if first.is_some() {
                    a.first_responses += 1;
                }
            }
            if let Some(t0) = first {
                first_responses.push(m.at_ms - t0);
            }
        } else {
            other_outbound += 1;
        }
    }
    let unanswered = waiting.values().filter(|w| w.is_some()).count();
    let mut resolutions = Vec::new();
    for (member, action, took) in activity {
        if action == "resolved" {
            resolutions.push(took.unwrap_or(0));
            if let Some(m) = member {
                agents.entry(m).or_default().resolved += 1;
            }
        }
    }
    for (m, n) in notes {
        agents.entry(m).or_default().notes = n;
    }
    let mut first = summary(first_responses);
    first["unanswered"] = json!(unanswered);
    Ok(axum::Json(json!({
        "from": from,
        "to": to,
        "volume": {
            "conversations": waiting.len(),
            "inbound_messages": inbound,
            "replies": replies,
            "other_outbound_messages": other_outbound,
        },
        "first_response": first,
        "resolution": summary(resolutions),
        "agents": agents.iter().map(|(id, a)| json!({
            "member_id": id,
            "replies": a.replies,
            "first_responses": a.first_responses,
            "resolved": a.resolved,
            "notes": a.notes,
        })).collect::<Vec<_>>(),
    })))
}
