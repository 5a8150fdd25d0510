//! Static lists of contacts. Adding someone already on the list changes
//! nothing and reports nothing, so `USER_ADDED_TO_LIST` is emitted once per
//! transition by the caller, from what these functions return.

use sea_query::{Expr, ExprTrait, OnConflict, Query};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;
use crate::tenant::segment_sql::build;

#[derive(Debug, Clone, Serialize)]
pub struct List {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub member_count: i64,
    pub last_used_in_campaign_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

type Row = (Uuid, String, Option<String>, i64, Option<i64>, i64, i64);

macro_rules! select_list {
    ($where:literal) => {
        concat!(
            "SELECT l.id, l.name, l.description,
                    (SELECT COUNT(*) FROM list_members m WHERE m.list_id = l.id),
                    l.last_used_in_campaign_at, l.created_at, l.updated_at
             FROM lists l ",
            $where
        )
    };
}

fn to_list(r: Row) -> List {
    List {
        id: r.0,
        name: r.1,
        description: r.2,
        member_count: r.3,
        last_used_in_campaign_at: r.4.map(from_ms),
        created_at: from_ms(r.5),
        updated_at: from_ms(r.6),
    }
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<List>, StoreError> {
    let row: Option<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_list!("WHERE l.id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(row.map(to_list))
}

pub async fn exists(tx: &mut TenantTx, id: Uuid) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT COUNT(*) FROM lists WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?
    });
    Ok(n > 0)
}

pub async fn list(
    tx: &mut TenantTx,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<List>, StoreError> {
    let rows: Vec<Row> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_list!(
            "WHERE ($1 IS NULL OR l.id < $1) ORDER BY l.id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(to_list).collect())
}

async fn name_taken(
    tx: &mut TenantTx,
    name: &str,
    except: Option<Uuid>,
) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM lists WHERE lower(name) = lower($1) AND ($2 IS NULL OR id <> $2)",
        )
        .bind(name)
        .bind(except)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(n > 0)
}

pub async fn create(
    tx: &mut TenantTx,
    name: &str,
    description: Option<&str>,
    now_ms: i64,
) -> Result<List, StoreError> {
    if name_taken(tx, name, None).await? {
        return Err(StoreError::Conflict("list_name_taken"));
    }
    let id = Uuid::now_v7();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO lists (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(description)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

/// Renames or re-describes a list (`None` keeps the stored value).
pub async fn update(
    tx: &mut TenantTx,
    id: Uuid,
    name: Option<&str>,
    description: Option<Option<&str>>,
    now_ms: i64,
) -> Result<List, StoreError> {
    let current = get(tx, id).await?.ok_or(StoreError::NotFound)?;
    if let Some(n) = name
        && name_taken(tx, n, Some(id)).await?
    {
        return Err(StoreError::Conflict("list_name_taken"));
    }
    let name = name.unwrap_or(&current.name);
    let description = match description {
        Some(d) => d,
        None => current.description.as_deref(),
    };
    on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE lists SET name = $1, description = $2, updated_at = $3 WHERE id = $4")
            .bind(name)
            .bind(description)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    get(tx, id).await?.ok_or(StoreError::NotFound)
}

/// Deletes a list with its members and imports. Refused (`list_in_use`)
/// while a segment's rules refer to it.
pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<bool, StoreError> {
    if !exists(tx, id).await? {
        return Ok(false);
    }
    let used = crate::tenant::segments::load(tx, Some(&[id]), false).await?;
    if !used.is_empty() {
        return Err(StoreError::Conflict("list_in_use"));
    }
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("DELETE FROM list_members WHERE list_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM csv_imports WHERE list_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM lists WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Adds contacts (unknown, deleted and erased ones are skipped). Returns the
/// contacts that were not members before.
pub async fn add_members(
    tx: &mut TenantTx,
    list: Uuid,
    contacts: &[Uuid],
    source: &str,
    now_ms: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let engine = tx.engine();
    let mut added = Vec::new();
    for chunk in contacts.chunks(1000) {
        let select = Query::select()
            .expr(Expr::val(list))
            .column(("c", "id"))
            .expr(Expr::val(source))
            .expr(Expr::val(now_ms))
            .from_as("contacts", "c")
            .and_where(Expr::col(("c", "id")).is_in(chunk.iter().copied()))
            .and_where(Expr::col(("c", "deleted_at")).is_null())
            .and_where(Expr::col(("c", "redacted_at")).is_null())
            .to_owned();
        let insert = Query::insert()
            .into_table("list_members")
            .columns(["list_id", "contact_id", "source", "added_at"])
            .select_from(select)
            .map_err(|e| StoreError::Config(format!("list insert: {e}")))?
            .on_conflict(
                OnConflict::columns(["list_id", "contact_id"])
                    .do_nothing()
                    .to_owned(),
            )
            .returning_col("contact_id")
            .to_owned();
        let (sql, values) = build(engine, &insert);
        let ids: Vec<Uuid> = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar_with(AssertSqlSafe(sql), values)
                .fetch_all(&mut *c)
                .await?
        });
        added.extend(ids);
    }
    Ok(added)
}

/// Removes contacts; returns those that were members.
pub async fn remove_members(
    tx: &mut TenantTx,
    list: Uuid,
    contacts: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let engine = tx.engine();
    let mut removed = Vec::new();
    for chunk in contacts.chunks(1000) {
        let delete = Query::delete()
            .from_table("list_members")
            .and_where(Expr::col("list_id").eq(list))
            .and_where(Expr::col("contact_id").is_in(chunk.iter().copied()))
            .returning_col("contact_id")
            .to_owned();
        let (sql, values) = build(engine, &delete);
        let ids: Vec<Uuid> = on_tx!(tx.tx(), |c| {
            sqlx::query_scalar_with(AssertSqlSafe(sql), values)
                .fetch_all(&mut *c)
                .await?
        });
        removed.extend(ids);
    }
    Ok(removed)
}

/// Records that a campaign used the list.
pub async fn mark_used_in_campaign(
    tx: &mut TenantTx,
    id: Uuid,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query("UPDATE lists SET last_used_in_campaign_at = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// The lists a contact is on: (id, name).
pub async fn of_contact(
    tx: &mut TenantTx,
    contact: Uuid,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT l.id, l.name FROM list_members m JOIN lists l ON l.id = m.list_id
             WHERE m.contact_id = $1 ORDER BY l.name",
        )
        .bind(contact)
        .fetch_all(&mut *c)
        .await?
    }))
}

pub async fn is_member(tx: &mut TenantTx, list: Uuid, contact: Uuid) -> Result<bool, StoreError> {
    let n: i64 = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM list_members WHERE list_id = $1 AND contact_id = $2",
        )
        .bind(list)
        .bind(contact)
        .fetch_one(&mut *c)
        .await?
    });
    Ok(n > 0)
}
