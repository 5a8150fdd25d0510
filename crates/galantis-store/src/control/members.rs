//! Team members of a tenant. Each has one role; the OWNER is unique per
//! tenant (a partial unique index enforces it).

use chrono::{DateTime, Utc};
use galantis_core::{Email, MemberId, Role, TenantId};
use serde::Serialize;
use uuid::Uuid;

use crate::db::{ControlTx, Db};
use crate::error::StoreError;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: MemberId,
    pub tenant_id: TenantId,
    pub email: Option<Email>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type MemberRow = (
    Uuid,
    Uuid,
    Option<String>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);
macro_rules! member_columns {
    () => {
        "id, tenant_id, email, role, created_at, updated_at"
    };
}

fn to_member(r: MemberRow) -> Result<Member, StoreError> {
    Ok(Member {
        id: MemberId::from_uuid(r.0),
        tenant_id: TenantId::from_uuid(r.1),
        email: r
            .2
            .as_deref()
            .map(Email::parse)
            .transpose()
            .map_err(|_| corrupt(r.0))?,
        role: r.3.parse().map_err(|_| corrupt(r.0))?,
        created_at: r.4,
        updated_at: r.5,
    })
}

fn corrupt(id: Uuid) -> StoreError {
    StoreError::Config(format!("member {id} has an invalid stored email or role"))
}

pub async fn insert(
    tx: &mut ControlTx,
    tenant: TenantId,
    email: Option<Email>,
    role: Role,
) -> Result<Member, StoreError> {
    let now = tx.now();
    let id = MemberId::new();
    let r = on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "INSERT INTO members (id, tenant_id, email, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .bind(email.as_ref().map(|e| e.as_str()))
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
    });
    match r {
        Ok(_) => Ok(Member {
            id,
            tenant_id: tenant,
            email,
            role,
            created_at: now,
            updated_at: now,
        }),
        Err(e) if StoreError::is_unique_violation(&e) => {
            Err(StoreError::Conflict(if role == Role::Owner {
                "owner_exists"
            } else {
                "member_exists"
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds a member in its own transaction.
pub async fn add(
    db: &Db,
    tenant: TenantId,
    email: Email,
    role: Role,
) -> Result<Member, StoreError> {
    let mut tx = db.control_tx().await?;
    let m = insert(&mut tx, tenant, Some(email), role).await?;
    tx.commit().await?;
    Ok(m)
}

pub async fn list(db: &Db, tenant: TenantId) -> Result<Vec<Member>, StoreError> {
    let sql = concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE tenant_id = $1 ORDER BY id"
    );
    let mut tx = db.control_read().await?;
    let rows: Vec<MemberRow> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(sql)
            .bind(tenant.as_uuid())
            .fetch_all(&mut *c)
            .await?
    });
    tx.commit().await?;
    rows.into_iter().map(to_member).collect()
}

/// A member of `tenant` by id; another tenant's member is `None`.
pub async fn get(db: &Db, tenant: TenantId, id: MemberId) -> Result<Option<Member>, StoreError> {
    let sql = concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE tenant_id = $1 AND id = $2"
    );
    let mut tx = db.control_read().await?;
    let row: Option<MemberRow> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(sql)
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&mut *c)
            .await?
    });
    tx.commit().await?;
    row.map(to_member).transpose()
}

pub async fn find_by_email(
    db: &Db,
    tenant: TenantId,
    email: &Email,
) -> Result<Option<Member>, StoreError> {
    let sql = concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE tenant_id = $1 AND email = $2"
    );
    let mut tx = db.control_read().await?;
    let row: Option<MemberRow> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(sql)
            .bind(tenant.as_uuid())
            .bind(email.as_str())
            .fetch_optional(&mut *c)
            .await?
    });
    tx.commit().await?;
    row.map(to_member).transpose()
}

/// Changes a member's role. The owner's role cannot change and nobody becomes
/// owner this way.
pub async fn set_role(
    db: &Db,
    tenant: TenantId,
    id: MemberId,
    role: Role,
) -> Result<Member, StoreError> {
    let current = get(db, tenant, id).await?.ok_or(StoreError::NotFound)?;
    if current.role == Role::Owner || role == Role::Owner {
        return Err(StoreError::Conflict("owner_role_fixed"));
    }
    let now = db.now();
    let mut tx = db.control_tx().await?;
    on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "UPDATE members SET role = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(role.as_str())
        .bind(now)
        .bind(tenant.as_uuid())
        .bind(id.as_uuid())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    tx.commit().await?;
    db.auth_cache().invalidate_all();
    Ok(Member {
        role,
        updated_at: now,
        ..current
    })
}

/// Removes a member and, with it, their tokens. The owner cannot be removed.
pub async fn remove(db: &Db, tenant: TenantId, id: MemberId) -> Result<(), StoreError> {
    let current = get(db, tenant, id).await?.ok_or(StoreError::NotFound)?;
    if current.role == Role::Owner {
        return Err(StoreError::Conflict("owner_role_fixed"));
    }
    let mut tx = db.control_tx().await?;
    on_tx!(&mut tx.0, |c| {
        sqlx::query("DELETE FROM api_tokens WHERE tenant_id = $1 AND member_id = $2")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut *c)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM members WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    tx.commit().await?;
    db.auth_cache().invalidate_all();
    Ok(())
}
