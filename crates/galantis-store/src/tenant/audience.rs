//! Audience queries that span contacts, lists and segments: contact search
//! (for adding or removing list members by search), the reach estimate and
//! send-time resolution of campaign audiences, contact fields the audience
//! features own (`exclude_from_galantis`, imported contacts), erasure of
//! memberships, and collection contents for "purchased collection" rules.

use galantis_core::MarketingState;
use galantis_core::segment::Condition as Rule;
use sea_query::{Condition, Expr, ExprTrait, LikeExpr, Order, Query};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::db::{Engine, TenantTx};
use crate::error::StoreError;
use crate::on_tx;
use crate::tenant::contacts;
use crate::tenant::segment_sql::{Plan, build, condition, fragment};

/// Contact search, as on `GET /contacts` (all given filters must hold).
#[derive(Debug, Clone, Default)]
pub struct ContactSearch {
    /// Text in name, email or phone.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub country: Option<String>,
    pub language: Option<String>,
    pub marketing_state: Option<MarketingState>,
    pub list_id: Option<Uuid>,
    pub segment_id: Option<Uuid>,
}

impl ContactSearch {
    pub fn is_empty(&self) -> bool {
        self.q.is_none()
            && self.tag.is_none()
            && self.country.is_none()
            && self.language.is_none()
            && self.marketing_state.is_none()
            && self.list_id.is_none()
            && self.segment_id.is_none()
    }
}

fn in_segments(engine: Engine, ids: &[Uuid]) -> Expr {
    fragment(
        engine,
        "EXISTS (SELECT 1 FROM segment_members sm WHERE sm.contact_id = c.id AND ?)",
        "EXISTS (SELECT 1 FROM segment_members sm WHERE sm.contact_id = c.id AND $1)",
        Expr::col(("sm", "segment_id")).is_in(ids.iter().copied()),
    )
}

fn in_lists(engine: Engine, ids: &[Uuid]) -> Expr {
    condition(
        &Rule::List {
            negate: false,
            lists: ids.to_vec(),
        },
        engine,
        0,
        Plan::Scan,
    )
}

fn search_condition(engine: Engine, s: &ContactSearch) -> Condition {
    let mut all = Condition::all()
        .add(Expr::col(("c", "deleted_at")).is_null())
        .add(Expr::col(("c", "redacted_at")).is_null());
    if let Some(q) = &s.q {
        let pattern = LikeExpr::new(crate::like::like_contains(&q.to_lowercase()))
            .escape(crate::like::LIKE_ESCAPE);
        all = all.add(
            Expr::cust(
                "LOWER(COALESCE(c.first_name, '') || ' ' || COALESCE(c.last_name, '') || ' ' || COALESCE(c.email, '') || ' ' || COALESCE(c.phone, ''))",
            )
            .like(pattern),
        );
    }
    if let Some(t) = &s.tag {
        all = all.add(condition(
            &Rule::CustomerTag {
                negate: false,
                tags: vec![t.trim().to_lowercase()],
            },
            engine,
            0,
            Plan::Scan,
        ));
    }
    if let Some(country) = &s.country {
        all = all.add(condition(
            &Rule::Country {
                negate: false,
                codes: vec![country.trim().to_ascii_uppercase()],
            },
            engine,
            0,
            Plan::Scan,
        ));
    }
    if let Some(lang) = &s.language {
        all = all.add(condition(
            &Rule::Language {
                negate: false,
                tags: vec![lang.trim().to_ascii_lowercase().replace('_', "-")],
            },
            engine,
            0,
            Plan::Scan,
        ));
    }
    if let Some(state) = s.marketing_state {
        all = all.add(Expr::col(("c", "marketing_state")).eq(state.as_str()));
    }
    if let Some(l) = s.list_id {
        all = all.add(in_lists(engine, &[l]));
    }
    if let Some(seg) = s.segment_id {
        all = all.add(in_segments(engine, &[seg]));
    }
    all
}

/// Ids of every contact matching the search (deleted and erased contacts
/// never match).
pub async fn search_ids(tx: &mut TenantTx, s: &ContactSearch) -> Result<Vec<Uuid>, StoreError> {
    let engine = tx.engine();
    let q = Query::select()
        .column(("c", "id"))
        .from_as("contacts", "c")
        .cond_where(search_condition(engine, s))
        .order_by(("c", "id"), Order::Asc)
        .to_owned();
    let (sql, values) = build(engine, &q);
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar_with(AssertSqlSafe(sql), values)
            .fetch_all(&mut *c)
            .await?
    }))
}

/// Contacts matching the search, newest first, one page (`before` is the
/// last id of the previous page).
pub async fn search(
    tx: &mut TenantTx,
    s: &ContactSearch,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<contacts::Contact>, StoreError> {
    let engine = tx.engine();
    let mut q = Query::select()
        .column(("c", "id"))
        .from_as("contacts", "c")
        .cond_where(search_condition(engine, s))
        .order_by(("c", "id"), Order::Desc)
        .limit(u64::from(limit))
        .to_owned();
    if let Some(b) = before {
        q.and_where(Expr::col(("c", "id")).lt(b));
    }
    let (sql, values) = build(engine, &q);
    let ids: Vec<Uuid> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar_with(AssertSqlSafe(sql), values)
            .fetch_all(&mut *c)
            .await?
    });
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(c) = contacts::get(tx, id).await? {
            out.push(c);
        }
    }
    Ok(out)
}

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

/// Sets `exclude_from_galantis`; returns whether it changed.
pub async fn set_excluded(
    tx: &mut TenantTx,
    contact: Uuid,
    excluded: bool,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET exclude_from_galantis = $1, updated_at = $2
             WHERE id = $3 AND exclude_from_galantis <> $1",
        )
        .bind(excluded)
        .bind(now_ms)
        .bind(contact)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Creates a contact from an imported row (valid E.164 phone).
pub async fn create_imported_contact(
    tx: &mut TenantTx,
    phone_e164: &str,
    first_name: Option<&str>,
    last_name: Option<&str>,
    email: Option<&str>,
    now_ms: i64,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO contacts (id, first_name, last_name, email, phone, phone_raw, phone_status, marketing_state,
                                   created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5, 'valid', 'UNKNOWN', $6, $6)",
        )
        .bind(id)
        .bind(first_name)
        .bind(last_name)
        .bind(email)
        .bind(phone_e164)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(id)
}

/// Fills or overwrites names and email from an imported row (only the
/// values the row gives). Returns whether anything changed.
pub async fn update_imported_contact(
    tx: &mut TenantTx,
    current: &contacts::Contact,
    first_name: Option<&str>,
    last_name: Option<&str>,
    email: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let differs =
        |new: Option<&str>, old: &Option<String>| new.is_some_and(|n| Some(n) != old.as_deref());
    if !(differs(first_name, &current.first_name)
        || differs(last_name, &current.last_name)
        || differs(email, &current.email))
    {
        return Ok(false);
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE contacts SET first_name = COALESCE($1, first_name), last_name = COALESCE($2, last_name),
                    email = COALESCE($3, email), updated_at = $4
             WHERE id = $5",
        )
        .bind(first_name)
        .bind(last_name)
        .bind(email)
        .bind(now_ms)
        .bind(current.id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(true)
}

/// Removes a deleted product from every collection; returns the
/// collections it was in (their segments need re-evaluation). The table
/// mirrors Shopify's current collection contents, and Shopify drops a
/// deleted product from its collections.
pub async fn remove_product_from_collections(
    tx: &mut TenantTx,
    product: i64,
) -> Result<Vec<i64>, StoreError> {
    let collections: Vec<i64> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "DELETE FROM collection_products WHERE shopify_product_id = $1
             RETURNING shopify_collection_id",
        )
        .bind(product)
        .fetch_all(&mut *c)
        .await?
    });
    let mut collections = collections;
    collections.sort_unstable();
    collections.dedup();
    Ok(collections)
}

/// Drops from a collection the products known to be deleted (a read from
/// Shopify that raced with a `products/delete` webhook may still list one).
pub async fn forget_deleted_products(
    tx: &mut TenantTx,
    collection: i64,
) -> Result<u64, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query(
            "DELETE FROM collection_products WHERE shopify_collection_id = $1
               AND shopify_product_id IN (SELECT shopify_product_id FROM products WHERE deleted_at IS NOT NULL)",
        )
        .bind(collection)
        .execute(&mut *c)
        .await?
        .rows_affected()
    }))
}

/// The product ids of a collection, ascending.
pub async fn collection_products(
    tx: &mut TenantTx,
    collection: i64,
) -> Result<Vec<i64>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT shopify_product_id FROM collection_products WHERE shopify_collection_id = $1
             ORDER BY shopify_product_id",
        )
        .bind(collection)
        .fetch_all(&mut *c)
        .await?
    }))
}

/// Replaces the products of a collection (for "purchased collection").
pub async fn set_collection_products(
    tx: &mut TenantTx,
    collection: i64,
    products: &[i64],
) -> Result<(), StoreError> {
    on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM collection_products WHERE shopify_collection_id = $1")
            .bind(collection)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    for p in products {
        on_tx!(tx.tx(), |c| {
            sqlx::query(
                "INSERT INTO collection_products (shopify_collection_id, shopify_product_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(collection)
            .bind(*p)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
    }
    Ok(())
}
