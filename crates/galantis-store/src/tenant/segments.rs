//! Dynamic segments: rules (validated in galantis-core), materialised
//! membership in `segment_members`, and its re-evaluation — for one segment
//! over every contact, or for every segment over a few contacts (after a
//! webhook changed them). Re-evaluation reports who *entered* a segment, so
//! callers emit `USER_ADDED_TO_SEGMENT` on transitions only.

use galantis_core::segment::SegmentRules;
use sea_query::{Condition, Expr, ExprTrait, OnConflict, Order, Query};
use serde::Serialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;
use crate::tenant::segment_sql::{Plan, build, compile, eligible, fragment};

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub rules: Value,
    pub version: i64,
    /// Re-evaluated by the scheduler (time-relative rules).
    pub periodic: bool,
    pub member_count: i64,
    pub last_evaluated_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_used_in_campaign_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

type Row = (
    Uuid,
    String,
    Option<String>,
    Json<Value>,
    i64,
    bool,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

macro_rules! select_segment {
    ($where:literal) => {
        concat!(
            "SELECT s.id, s.name, s.description, s.rules, s.version, s.periodic,
                    (SELECT COUNT(*) FROM segment_members m WHERE m.segment_id = s.id),
                    s.last_evaluated_at, s.last_used_in_campaign_at, s.created_at, s.updated_at
             FROM segments s ",
            $where
        )
    };
}

fn to_segment(r: Row) -> Segment {
    Segment {
        id: r.0,
        name: r.1,
        description: r.2,
        rules: r.3.0,
        version: r.4,
        periodic: r.5,
        member_count: r.6,
        last_evaluated_at: r.7.map(from_ms),
        last_used_in_campaign_at: r.8.map(from_ms),
        created_at: from_ms(r.9),
        updated_at: from_ms(r.10),
    }
}

/// Someone entered a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entered {
    pub segment_id: Uuid,
    pub segment_name: String,
    pub contact_id: Uuid,
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Segment>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_segment!("WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(to_segment))
}

pub async fn list(
    tx: &mut TenantTx,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Segment>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_segment!(
            "WHERE ($1 IS NULL OR s.id < $1) ORDER BY s.id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_segment).collect())
}

async fn name_taken(
    tx: &mut TenantTx,
    name: &str,
    except: Option<Uuid>,
) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT COUNT(*) FROM segments WHERE lower(name) = lower($1) AND ($2 IS NULL OR id <> $2)")
            .bind(name)
            .bind(except)
            .fetch_one(&mut *c)
            .await?
    });
    Ok(n > 0)
}

/// Creates a segment and materialises its members. The first evaluation
/// emits nothing: nobody can be waiting on a segment that did not exist.
pub async fn create(
    tx: &mut TenantTx,
    name: &str,
    description: Option<&str>,
    rules_json: &Value,
    rules: &SegmentRules,
    now_ms: i64,
) -> Result<Segment, StoreError> {
    if name_taken(tx, name, None).await? {
        return Err(StoreError::Conflict("segment_name_taken"));
    }
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO segments (id, name, description, rules, version, periodic, referenced_lists, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $7)",
        )
        .bind(id)
        .bind(name)
        .bind(description)
        .bind(Json(rules_json))
        .bind(rules.needs_periodic_refresh())
        .bind(Json(rules.referenced_lists()))
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    evaluate(tx, id, rules, None, now_ms).await?;
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

/// What to change; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub name: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub rules: Option<(&'a Value, &'a SegmentRules)>,
}

/// Updates a segment. New rules bump the version and re-materialise the
/// membership; the returned list holds who entered under the new rules.
pub async fn update(
    tx: &mut TenantTx,
    id: Uuid,
    ch: &Changes<'_>,
    now_ms: i64,
) -> Result<(Segment, Vec<Entered>), StoreError> {
    let current = get(tx, id).await?.ok_or(StoreError::NotFound)?;
    if let Some(name) = ch.name
        && name_taken(tx, name, Some(id)).await?
    {
        return Err(StoreError::Conflict("segment_name_taken"));
    }
    let name = ch.name.unwrap_or(&current.name);
    let description = match ch.description {
        Some(d) => d,
        None => current.description.as_deref(),
    };
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE segments SET name = $1, description = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(name)
        .bind(description)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    let mut entered = Vec::new();
    if let Some((json, rules)) = ch.rules
        && *json != current.rules
    {
        on_tx!(tx.tx(), |c| {
            sqlx::query(
                "UPDATE segments SET rules = $1, version = version + 1, periodic = $2, referenced_lists = $3 WHERE id = $4",
            )
            .bind(Json(json))
            .bind(rules.needs_periodic_refresh())
            .bind(Json(rules.referenced_lists()))
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        entered = evaluate(tx, id, rules, None, now_ms)
            .await?
            .into_iter()
            .map(|contact_id| Entered {
                segment_id: id,
                segment_name: name.to_owned(),
                contact_id,
            })
            .collect();
    }
    let seg = get(tx, id).await?.ok_or(StoreError::NotFound)?;
    Ok((seg, entered))
}

pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM segment_members WHERE segment_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM segments WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Count and a sample (newest contacts first) of who matches `rules` now,
/// without saving anything.
pub async fn preview(
    tx: &mut TenantTx,
    rules: &SegmentRules,
    sample: u32,
    now_ms: i64,
) -> Result<(i64, Vec<Uuid>), StoreError> {
    let engine = tx.engine();
    let cond = compile(rules, engine, now_ms, Plan::Scan);
    // One pass: the window count is the total, the rows the newest matches.
    // The matches are a subquery so that PostgreSQL plans them for full
    // retrieval (the count needs every row): under the LIMIT it would cost
    // them as if a few rows sufficed and prefer per-contact nested loops.
    let matches = Query::select()
        .column(("c", "id"))
        .expr_as(Expr::cust("COUNT(*) OVER ()"), "n")
        .from_as("contacts", "c")
        .and_where(eligible())
        .cond_where(cond)
        .to_owned();
    let q = Query::select()
        .column(("m", "id"))
        .column(("m", "n"))
        .from_subquery(matches, "m")
        .order_by(("m", "id"), Order::Desc)
        .limit(u64::from(Ord::max(sample, 1)))
        .to_owned();
    let (sql, values) = build(engine, &q);
    let rows: Vec<(Uuid, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as_with(AssertSqlSafe(sql), values)
            .fetch_all(&mut *c)
            .await?
    });
    let n = rows.first().map_or(0, |r| r.1);
    let ids = rows
        .into_iter()
        .take(sample as usize)
        .map(|r| r.0)
        .collect();
    Ok((n, ids))
}

/// Re-evaluates one segment, over every contact (`scope: None`) or only the
/// given ones. Adds who matches and is not a member, removes members who no
/// longer match. Returns who entered.
pub async fn evaluate(
    tx: &mut TenantTx,
    segment: Uuid,
    rules: &SegmentRules,
    scope: Option<&[Uuid]>,
    now_ms: i64,
) -> Result<Vec<Uuid>, StoreError> {
    if scope.is_some_and(<[Uuid]>::is_empty) {
        return Ok(Vec::new());
    }
    let engine = tx.engine();
    // A handful of contacts (a webhook's) probe their own orders; a full
    // evaluation scans the orders once.
    let plan = match scope {
        Some(ids) if ids.len() <= 64 => Plan::Probe,
        _ => Plan::Scan,
    };
    let cond = compile(rules, engine, now_ms, plan);
    let in_scope = |col: (&'static str, &'static str)| {
        scope.map(|ids| Expr::col(col).is_in(ids.iter().copied()))
    };

    // Leavers first. Each member is re-checked through its primary key with
    // a scalar subquery, which no engine turns into a join: the cost stays
    // linear in the members whatever the planner's estimates (an anti-join
    // planned on stale statistics can go quadratic).
    let still_matches = Query::select()
        .expr(Expr::from(Condition::all().add(eligible()).add(compile(
            rules,
            engine,
            now_ms,
            Plan::Probe,
        ))))
        .from_as("contacts", "c")
        .and_where(Expr::col(("c", "id")).equals(("segment_members", "contact_id")))
        .to_owned();
    let delete = Query::delete()
        .from_table("segment_members")
        .and_where(Expr::col(("segment_members", "segment_id")).eq(segment))
        .and_where_option(in_scope(("segment_members", "contact_id")))
        .and_where(fragment(
            engine,
            "NOT COALESCE(?, FALSE)",
            "NOT COALESCE($1, FALSE)",
            Expr::SubQuery(None, Box::new(still_matches.into())),
        ))
        .to_owned();
    let (sql, values) = build(engine, &delete);
    on_tx!(tx.tx(), |c| {
        sqlx::query_with(AssertSqlSafe(sql), values)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });

    // Then newcomers.
    let member = Query::select()
        .expr(Expr::val(1))
        .from_as("segment_members", "sm")
        .and_where(Expr::col(("sm", "segment_id")).eq(segment))
        .and_where(Expr::col(("sm", "contact_id")).equals(("c", "id")))
        .to_owned();
    let select = Query::select()
        .expr(Expr::val(segment))
        .column(("c", "id"))
        .expr(Expr::val(now_ms))
        .from_as("contacts", "c")
        .and_where_option(in_scope(("c", "id")))
        .and_where(eligible())
        .cond_where(cond)
        .and_where(Expr::exists(member).not())
        .to_owned();
    let insert = Query::insert()
        .into_table("segment_members")
        .columns(["segment_id", "contact_id", "added_at"])
        .select_from(select)
        .map_err(|e| StoreError::Config(format!("segment insert: {e}")))?
        .on_conflict(
            OnConflict::columns(["segment_id", "contact_id"])
                .do_nothing()
                .to_owned(),
        )
        .returning_col("contact_id")
        .to_owned();
    let (sql, values) = build(engine, &insert);
    let entered: Vec<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar_with(AssertSqlSafe(sql), values)
            .fetch_all(&mut *c)
            .await?
    });
    if scope.is_none() {
        on_tx!(tx.tx(), |c| {
            sqlx::query("UPDATE segments SET last_evaluated_at = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(segment)
                .execute(&mut *c)
                .await?
                .rows_affected()
        });
    }
    Ok(entered)
}

/// A stored segment with its parsed rules.
pub struct Loaded {
    pub id: Uuid,
    pub name: String,
    pub rules: SegmentRules,
}

/// Every segment (optionally only those that refer to one of `lists`, or
/// only the periodic ones), with parsed rules. Rules were validated when
/// saved; one that no longer parses is skipped and logged.
pub async fn load(
    tx: &mut TenantTx,
    lists: Option<&[Uuid]>,
    periodic_only: bool,
) -> Result<Vec<Loaded>, StoreError> {
    let rows: Vec<(Uuid, String, Json<Value>, Json<Vec<Uuid>>, bool)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, name, rules, referenced_lists, periodic FROM segments ORDER BY id",
        )
        .fetch_all(&mut *c)
        .await?
    });
    let mut out = Vec::with_capacity(rows.len());
    for (id, name, rules, refs, periodic) in rows {
        if periodic_only && !periodic {
            continue;
        }
        if let Some(lists) = lists
            && !refs.0.iter().any(|l| lists.contains(l))
        {
            continue;
        }
        match SegmentRules::parse(&rules.0) {
            Ok(rules) => out.push(Loaded { id, name, rules }),
            Err(e) => {
                tracing::error!(segment = %id, error = %e, "stored segment rules no longer parse; skipped")
            }
        }
    }
    Ok(out)
}

/// Re-evaluates every segment for `contacts` (after their data, orders,
/// tags or consent changed). Returns who entered which segment.
pub async fn reevaluate_contacts(
    tx: &mut TenantTx,
    contacts: &[Uuid],
    now_ms: i64,
) -> Result<Vec<Entered>, StoreError> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    let segments = load(tx, None, false).await?;
    evaluate_many(tx, &segments, Some(contacts), now_ms).await
}

/// Re-evaluates the segments whose rules refer to one of `lists` (after
/// their membership changed), for `scope` or everyone.
pub async fn reevaluate_for_lists(
    tx: &mut TenantTx,
    lists: &[Uuid],
    scope: Option<&[Uuid]>,
    now_ms: i64,
) -> Result<Vec<Entered>, StoreError> {
    let segments = load(tx, Some(lists), false).await?;
    evaluate_many(tx, &segments, scope, now_ms).await
}

pub async fn evaluate_many(
    tx: &mut TenantTx,
    segments: &[Loaded],
    scope: Option<&[Uuid]>,
    now_ms: i64,
) -> Result<Vec<Entered>, StoreError> {
    let mut out = Vec::new();
    for s in segments {
        for contact_id in evaluate(tx, s.id, &s.rules, scope, now_ms).await? {
            out.push(Entered {
                segment_id: s.id,
                segment_name: s.name.clone(),
                contact_id,
            });
        }
    }
    Ok(out)
}

/// Records that a campaign used the segment.
pub async fn mark_used_in_campaign(
    tx: &mut TenantTx,
    id: Uuid,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE segments SET last_used_in_campaign_at = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// The segments a contact is in: (id, name).
pub async fn of_contact(
    tx: &mut TenantTx,
    contact: Uuid,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT s.id, s.name FROM segment_members m JOIN segments s ON s.id = m.segment_id
             WHERE m.contact_id = $1 ORDER BY s.name",
        )
        .bind(contact)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// Whether the contact is in the segment (materialised membership).
pub async fn is_member(
    tx: &mut TenantTx,
    segment: Uuid,
    contact: Uuid,
) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM segment_members WHERE segment_id = $1 AND contact_id = $2",
        )
        .bind(segment)
        .bind(contact)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(n > 0)
}
