//! Campaign audiences over lists and segments: the reach estimate,
//! send-time resolution, unknown ids, and erasure of memberships. Contact
//! search and the contact writers live in [`crate::tenant::contacts`],
//! collection contents in [`crate::tenant::catalog`].

use galantis_core::MarketingState;
use sea_query::{Condition, Expr, ExprTrait, Order, Query};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::db::{Engine, TenantTx};
use crate::error::StoreError;
use crate::on_tx;
use crate::tenant::contacts::{in_lists, in_segments};
use crate::tenant::segment_sql::{build, fragment};

/// A campaign audience: lists and segments to include and to exclude
/// (exclusion wins).
#[derive(Debug, Clone, Default)]
pub struct AudienceSpec {
    pub include_lists: Vec<Uuid>,
    pub include_segments: Vec<Uuid>,
    pub exclude_lists: Vec<Uuid>,
    pub exclude_segments: Vec<Uuid>,
}

/// Reach estimate: `final_reach = included − duplicates − excluded −
/// not_subscribed − unreachable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// Memberships across the included lists and segments.
    pub included: i64,
    /// Memberships beyond the first for contacts in several included sets.
    pub duplicates: i64,
    /// Distinct included contacts that are in an excluded list or segment.
    pub excluded: i64,
    /// Of the rest, those whose consent is not `SUBSCRIBED`.
    pub not_subscribed: i64,
    /// Subscribed, but cannot be messaged: no valid phone (e.g. missing
    /// calling code), deleted, erased or excluded from Galantis.
    pub unreachable: i64,
    pub final_reach: i64,
}

fn included(engine: Engine, spec: &AudienceSpec) -> Condition {
    let mut any = Condition::any();
    if !spec.include_lists.is_empty() {
        any = any.add(in_lists(engine, &spec.include_lists));
    }
    if !spec.include_segments.is_empty() {
        any = any.add(in_segments(engine, &spec.include_segments));
    }
    if any.is_empty() {
        any = any.add(Expr::cust("1 = 0"));
    }
    any
}

fn excluded(engine: Engine, spec: &AudienceSpec) -> Condition {
    let mut any = Condition::any();
    if !spec.exclude_lists.is_empty() {
        any = any.add(in_lists(engine, &spec.exclude_lists));
    }
    if !spec.exclude_segments.is_empty() {
        any = any.add(in_segments(engine, &spec.exclude_segments));
    }
    if any.is_empty() {
        any = any.add(Expr::cust("1 = 0"));
    }
    any
}

fn reachable() -> Expr {
    Expr::col(("c", "phone"))
        .is_not_null()
        .and(Expr::col(("c", "phone_status")).eq("valid"))
        .and(Expr::col(("c", "deleted_at")).is_null())
        .and(Expr::col(("c", "redacted_at")).is_null())
        .and(Expr::cust("NOT c.exclude_from_galantis"))
}

fn subscribed() -> Expr {
    Expr::col(("c", "marketing_state")).eq(MarketingState::Subscribed.as_str())
}

fn count_if(engine: Engine, cond: Expr) -> Expr {
    fragment(
        engine,
        "CAST(COALESCE(SUM(CASE WHEN ? THEN 1 ELSE 0 END), 0) AS BIGINT)",
        "CAST(COALESCE(SUM(CASE WHEN $1 THEN 1 ELSE 0 END), 0) AS BIGINT)",
        cond,
    )
}

pub async fn estimate(tx: &mut TenantTx, spec: &AudienceSpec) -> Result<Estimate, StoreError> {
    let engine = tx.engine();
    let mut memberships = 0i64;
    if !spec.include_lists.is_empty() {
        let q = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from("list_members")
            .and_where(Expr::col("list_id").is_in(spec.include_lists.iter().copied()))
            .to_owned();
        let (sql, values) = build(engine, &q);
        let n: i64 = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar_with(AssertSqlSafe(sql), values)
                .fetch_one(&mut *c)
                .await?
        });
        memberships += n;
    }
    if !spec.include_segments.is_empty() {
        let q = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from("segment_members")
            .and_where(Expr::col("segment_id").is_in(spec.include_segments.iter().copied()))
            .to_owned();
        let (sql, values) = build(engine, &q);
        let n: i64 = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar_with(AssertSqlSafe(sql), values)
                .fetch_one(&mut *c)
                .await?
        });
        memberships += n;
    }
    let ex: Expr = excluded(engine, spec).into();
    let q = Query::select()
        .expr(Expr::cust("COUNT(*)"))
        .expr(count_if(engine, ex.clone()))
        .expr(count_if(engine, ex.clone().not().and(subscribed().not())))
        .expr(count_if(
            engine,
            ex.not().and(subscribed()).and(reachable().not()),
        ))
        .from_as("contacts", "c")
        .cond_where(included(engine, spec))
        .to_owned();
    let (sql, values) = build(engine, &q);
    let (distinct, excluded, not_subscribed, unreachable): (i64, i64, i64, i64) =
        on_tx!(tx.tx(), |c| {
            sqlx::query_as_with(AssertSqlSafe(sql), values)
                .fetch_one(&mut *c)
                .await?
        });
    Ok(Estimate {
        included: memberships,
        duplicates: memberships - distinct,
        excluded,
        not_subscribed,
        unreachable,
        final_reach: distinct - excluded - not_subscribed - unreachable,
    })
}

/// One recipient of a resolved audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub contact_id: Uuid,
    pub phone: String,
}

/// The final reach, resolved now (consent, reachability, exclusions; each
/// contact once — phones are unique among live contacts), in pages ordered
/// by contact id (`after` is the last id of the previous page).
pub async fn resolve(
    tx: &mut TenantTx,
    spec: &AudienceSpec,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Recipient>, StoreError> {
    let engine = tx.engine();
    let mut q = Query::select()
        .column(("c", "id"))
        .column(("c", "phone"))
        .from_as("contacts", "c")
        .cond_where(included(engine, spec))
        .and_where(Expr::from(excluded(engine, spec)).not())
        .and_where(subscribed())
        .and_where(reachable())
        .order_by(("c", "id"), Order::Asc)
        .limit(u64::from(limit))
        .to_owned();
    if let Some(a) = after {
        q.and_where(Expr::col(("c", "id")).gt(a));
    }
    let (sql, values) = build(engine, &q);
    let rows: Vec<(Uuid, String)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as_with(AssertSqlSafe(sql), values)
            .fetch_all(&mut *c)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|(contact_id, phone)| Recipient { contact_id, phone })
        .collect())
}

/// Which of the given list and segment ids exist (for 404s on unknown ids).
pub async fn missing_ids(
    tx: &mut TenantTx,
    lists: &[Uuid],
    segments: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let mut missing = Vec::new();
    for id in lists {
        if !crate::tenant::lists::exists(tx, *id).await? {
            missing.push(*id);
        }
    }
    for id in segments {
        let n: i64 = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM segments WHERE id = $1")
                .bind(*id)
                .fetch_one(&mut *c)
                .await?
        });
        if n == 0 {
            missing.push(*id);
        }
    }
    Ok(missing)
}

/// Erasure: the contact leaves every list and segment (and, being
/// REDACTED, is never added again).
pub async fn forget_contact(tx: &mut TenantTx, contact: uuid::Uuid) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM list_members WHERE contact_id = $1")
            .bind(contact)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM segment_members WHERE contact_id = $1")
            .bind(contact)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(())
}
