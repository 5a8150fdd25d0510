//! Finding contacts: the `GET /contacts` filters and the audience search
//! (filters over lists, segments and languages, shared with the segment
//! rules so a filter and a segment never disagree).

use galantis_core::MarketingState;
use galantis_core::segment::Condition as Rule;
use sea_query::{Condition, Expr, ExprTrait, LikeExpr, Order, Query};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Contact, Row, get, to_contact};
use crate::db::{Engine, TenantTx};
use crate::error::StoreError;
use crate::on_tx;
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

pub(crate) fn in_segments(engine: Engine, ids: &[Uuid]) -> Expr {
    fragment(
        engine,
        "EXISTS (SELECT 1 FROM segment_members sm WHERE sm.contact_id = c.id AND ?)",
        "EXISTS (SELECT 1 FROM segment_members sm WHERE sm.contact_id = c.id AND $1)",
        Expr::col(("sm", "segment_id")).is_in(ids.iter().copied()),
    )
}

pub(crate) fn in_lists(engine: Engine, ids: &[Uuid]) -> Expr {
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
) -> Result<Vec<Contact>, StoreError> {
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
        if let Some(c) = get(tx, id).await? {
            out.push(c);
        }
    }
    Ok(out)
}

/// Filters for listing contacts.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub marketing_state: Option<MarketingState>,
    pub tag: Option<String>,
    pub country: Option<String>,
    pub search: Option<String>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

pub async fn list(tx: &mut TenantTx, f: &Filter) -> Result<Vec<Contact>, StoreError> {
    let search = f
        .search
        .as_ref()
        .map(|s| crate::like::like_contains(&s.to_lowercase()));
    // A whole tag, case-insensitively: the same test as the segment rule
    // `customer_tag`, so a filter and a segment never disagree.
    let tag = f.tag.as_ref().map(|t| t.trim().to_lowercase());
    let rows: Vec<Row> = on_tx!(
        tx.tx(),
        sqlite
            | c
            | {
                sqlx::query_as(concat!("SELECT ", columns!(), " FROM contacts
                WHERE deleted_at IS NULL AND ($1 IS NULL OR marketing_state = $1) AND ($2 IS NULL OR country = $2)
                  AND ($3 IS NULL OR lower(coalesce(first_name,'') || ' ' || coalesce(last_name,'') || ' ' || coalesce(email,'') || ' ' || coalesce(phone,'')) LIKE $3 ESCAPE '\\')
                  AND ($4 IS NULL OR EXISTS (SELECT 1 FROM json_each(tags) t WHERE lower(t.value) = $4))
                  AND ($5 IS NULL OR id < $5)
                ORDER BY id DESC LIMIT $6"))
                .bind(f.marketing_state.map(MarketingState::as_str)).bind(&f.country).bind(&search).bind(&tag).bind(f.before).bind(i64::from(f.limit))
                .fetch_all(&mut *c).await?
            },
        postgres
            | c
            | {
                sqlx::query_as(concat!("SELECT ", columns!(), " FROM contacts
                WHERE deleted_at IS NULL AND ($1::text IS NULL OR marketing_state = $1) AND ($2::text IS NULL OR country = $2)
                  AND ($3::text IS NULL OR lower(coalesce(first_name,'') || ' ' || coalesce(last_name,'') || ' ' || coalesce(email,'') || ' ' || coalesce(phone,'')) LIKE $3 ESCAPE '\\')
                  AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(tags) = 'array' THEN tags ELSE '[]'::jsonb END) AS t(v) WHERE lower(t.v) = $4))
                  AND ($5::uuid IS NULL OR id < $5)
                ORDER BY id DESC LIMIT $6"))
                .bind(f.marketing_state.map(MarketingState::as_str)).bind(&f.country).bind(&search).bind(&tag).bind(f.before).bind(i64::from(f.limit))
                .fetch_all(&mut *c).await?
            }
    );
    Ok(rows.into_iter().map(to_contact).collect())
}
