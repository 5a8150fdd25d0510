//! Tenants: one per installed Shopify store.

use chrono::{DateTime, Utc};
use galantis_core::{Email, ShopDomain, TenantId};
use serde::Serialize;
use uuid::Uuid;

use crate::control::members::{self, Member};
use crate::control::tokens::{self, IssuedToken};
use crate::crypto::{DataKey, MasterKey};
use crate::db::{ControlTx, Db};
use crate::error::StoreError;
use crate::migrate::migrate_tenant_storage;
use crate::on_tx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Deactivated,
}

impl TenantStatus {
    fn parse(s: &str) -> Self {
        if s == "active" {
            TenantStatus::Active
        } else {
            TenantStatus::Deactivated
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub shop: ShopDomain,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
}

type TenantRow = (
    Uuid,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

macro_rules! tenant_columns {
    () => {
        "id, shop_domain, status, created_at, updated_at, deactivated_at"
    };
}

fn to_tenant(row: TenantRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::from_uuid(row.0),
        shop: ShopDomain::parse(&row.1).map_err(|_| {
            StoreError::Config(format!("stored shop domain of tenant {} is invalid", row.0))
        })?,
        status: TenantStatus::parse(&row.2),
        created_at: row.3,
        updated_at: row.4,
        deactivated_at: row.5,
    })
}

/// A WhatsApp number to connect at creation.
#[derive(Debug, Clone)]
pub struct PhoneNumberLink {
    pub phone_number_id: String,
    pub waba_id: String,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub shop: ShopDomain,
    pub owner_email: Option<Email>,
    pub phone: Option<PhoneNumberLink>,
}

/// A new tenant with its owner and the owner's first token (shown once).
#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub owner: Member,
    pub token: IssuedToken,
}

/// Creates a tenant: its storage (file or schema, migrated), its wrapped data
/// key, its OWNER member and a first token. Either all of it exists afterwards
/// or none of it does.
pub async fn create(
    db: &Db,
    master: &MasterKey,
    new: NewTenant,
) -> Result<CreatedTenant, StoreError> {
    if find_by_shop(db, &new.shop).await?.is_some() {
        return Err(StoreError::Conflict("shop_exists"));
    }
    if let Some(link) = &new.phone
        && phone_number_owner(db, &link.phone_number_id)
            .await?
            .is_some()
    {
        return Err(StoreError::Conflict("phone_number_taken"));
    }
    let id = TenantId::new();
    let version = migrate_tenant_storage(db, id, true).await?;
    match insert_rows(db, master, id, version, &new).await {
        Ok(created) => Ok(created),
        Err(e) => {
            // Lost a race for the shop, or the control write failed: the
            // storage made above belongs to nobody, so remove it.
            if let Err(cleanup) = db.drop_tenant_storage(id).await {
                tracing::warn!(tenant = %id, error = %cleanup, "could not remove storage of a tenant that was not created");
            }
            Err(e)
        }
    }
}

async fn insert_rows(
    db: &Db,
    master: &MasterKey,
    id: TenantId,
    version: i64,
    new: &NewTenant,
) -> Result<CreatedTenant, StoreError> {
    let now = db.now();
    let wrapped = master.wrap(id, &DataKey::generate()?)?;
    let mut tx = db.control_tx().await?;
    let inserted = on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "INSERT INTO tenants (id, shop_domain, status, wrapped_data_key, schema_version, created_at, updated_at)
             VALUES ($1, $2, 'active', $3, $4, $5, $5)",
        )
        .bind(id.as_uuid())
        .bind(new.shop.as_str())
        .bind(&wrapped)
        .bind(version)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
    });
    if let Err(e) = inserted {
        return Err(if StoreError::is_unique_violation(&e) {
            StoreError::Conflict("shop_exists")
        } else {
            e.into()
        });
    }
    if let Some(link) = &new.phone {
        link_phone_number(&mut tx, id, link, true).await?;
    }
    let owner = members::insert(
        &mut tx,
        id,
        new.owner_email.clone(),
        galantis_core::Role::Owner,
    )
    .await?;
    let token = tokens::issue(&mut tx, id, owner.id, Some("owner (created with tenant)")).await?;
    tx.commit().await?;
    Ok(CreatedTenant {
        tenant: Tenant {
            id,
            shop: new.shop.clone(),
            status: TenantStatus::Active,
            created_at: now,
            updated_at: now,
            deactivated_at: None,
        },
        owner,
        token,
    })
}

/// Connects a WhatsApp phone number to a tenant (routing key for Meta webhooks).
pub async fn link_phone_number(
    tx: &mut ControlTx,
    tenant: TenantId,
    link: &PhoneNumberLink,
    is_default: bool,
) -> Result<(), StoreError> {
    let r = on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "INSERT INTO phone_numbers (phone_number_id, tenant_id, waba_id, is_default, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&link.phone_number_id)
        .bind(tenant.as_uuid())
        .bind(&link.waba_id)
        .bind(is_default)
        .bind(tx.1.now())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
    });
    match r {
        Ok(_) => Ok(()),
        Err(e) if StoreError::is_unique_violation(&e) => {
            Err(StoreError::Conflict("phone_number_taken"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Which tenant owns a WhatsApp phone number id.
pub async fn phone_number_owner(
    db: &Db,
    phone_number_id: &str,
) -> Result<Option<TenantId>, StoreError> {
    let mut tx = db.control_read().await?;
    let id: Option<Uuid> = on_tx!(&mut tx.0, |c| {
        sqlx::query_scalar("SELECT tenant_id FROM phone_numbers WHERE phone_number_id = $1")
            .bind(phone_number_id)
            .fetch_optional(&mut *c)
            .await?
    });
    tx.commit().await?;
    Ok(id.map(TenantId::from_uuid))
}

pub async fn get(db: &Db, id: TenantId) -> Result<Option<Tenant>, StoreError> {
    let sql = concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1");
    let mut tx = db.control_read().await?;
    let row: Option<TenantRow> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(sql)
            .bind(id.as_uuid())
            .fetch_optional(&mut *c)
            .await?
    });
    tx.commit().await?;
    row.map(to_tenant).transpose()
}

pub async fn find_by_shop(db: &Db, shop: &ShopDomain) -> Result<Option<Tenant>, StoreError> {
    let sql = concat!(
        "SELECT ",
        tenant_columns!(),
        " FROM tenants WHERE shop_domain = $1"
    );
    let mut tx = db.control_read().await?;
    let row: Option<TenantRow> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(sql)
            .bind(shop.as_str())
            .fetch_optional(&mut *c)
            .await?
    });
    tx.commit().await?;
    row.map(to_tenant).transpose()
}

/// All tenants, oldest first.
pub async fn list(db: &Db) -> Result<Vec<Tenant>, StoreError> {
    let sql = concat!("SELECT ", tenant_columns!(), " FROM tenants ORDER BY id");
    let mut tx = db.control_read().await?;
    let rows: Vec<TenantRow> = on_tx!(&mut tx.0, |c| sqlx::query_as(sql)
        .fetch_all(&mut *c)
        .await?);
    tx.commit().await?;
    rows.into_iter().map(to_tenant).collect()
}

/// Marks a tenant deactivated: its tokens stop working and nothing is sent
/// for it. Data is kept (until `shop/redact`). Idempotent.
pub async fn deactivate(db: &Db, shop: &ShopDomain) -> Result<Tenant, StoreError> {
    set_status(db, shop, TenantStatus::Deactivated).await
}

/// Reactivates a deactivated tenant (a reinstall). Idempotent.
pub async fn reactivate(db: &Db, shop: &ShopDomain) -> Result<Tenant, StoreError> {
    set_status(db, shop, TenantStatus::Active).await
}

async fn set_status(
    db: &Db,
    shop: &ShopDomain,
    status: TenantStatus,
) -> Result<Tenant, StoreError> {
    let now = db.now();
    let (status_text, deactivated_at) = match status {
        TenantStatus::Active => ("active", None),
        TenantStatus::Deactivated => ("deactivated", Some(now)),
    };
    let mut tx = db.control_tx().await?;
    let changed = on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "UPDATE tenants SET status = $1, deactivated_at = $2, updated_at = $3
             WHERE shop_domain = $4 AND status <> $1",
        )
        .bind(status_text)
        .bind(deactivated_at)
        .bind(now)
        .bind(shop.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    tx.commit().await?;
    if changed > 0 {
        db.auth_cache().invalidate_all();
    }
    let tenant = find_by_shop(db, shop).await?.ok_or(StoreError::NotFound)?;
    if changed > 0 {
        tracing::info!(tenant = %tenant.id, status = status_text, "tenant status changed");
    }
    Ok(tenant)
}

/// Tenants connected to a WhatsApp Business Account (template events are
/// addressed by WABA id).
pub async fn tenants_for_waba(db: &Db, waba_id: &str) -> Result<Vec<TenantId>, StoreError> {
    let mut tx = db.control_read().await?;
    let ids: Vec<Uuid> = on_tx!(&mut tx.0, |c| {
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM phone_numbers WHERE waba_id = $1")
            .bind(waba_id)
            .fetch_all(&mut *c)
            .await?
    });
    tx.commit().await?;
    Ok(ids.into_iter().map(TenantId::from_uuid).collect())
}

/// Records `count` webhook changes that belong to no tenant, as ignored: one
/// row per (source, origin, hour) that counts them, with the first change's
/// payload as a sample — a flood for an unknown number grows a counter, not
/// the table.
#[allow(clippy::too_many_arguments)]
pub async fn record_unrouted_webhook(
    db: &Db,
    source: &str,
    topic: &str,
    origin: &str,
    reason: &str,
    sample: &serde_json::Value,
    count: u64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let hour_start = now_ms - now_ms.rem_euclid(3_600_000);
    let mut tx = db.control_tx().await?;
    on_tx!(&mut tx.0, |c| {
        sqlx::query(
            "INSERT INTO unrouted_webhook_events
                 (id, source, topic, origin, reason, payload, received_at, hour_start, change_count, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7)
             ON CONFLICT (source, origin, hour_start) DO UPDATE SET
                 change_count = unrouted_webhook_events.change_count + excluded.change_count,
                 last_seen_at = excluded.last_seen_at",
        )
        .bind(Uuid::now_v7())
        .bind(source)
        .bind(topic)
        .bind(origin)
        .bind(reason)
        .bind(sqlx::types::Json(sample))
        .bind(now_ms)
        .bind(hour_start)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    tx.commit().await
}

/// One hour of unrouted webhook changes from one origin, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct UnroutedWebhook {
    pub source: String,
    /// The first change's field (`messages`, `message_template_status_update`, …).
    pub topic: String,
    /// Phone number id, or WABA id for changes without one.
    pub origin: String,
    pub reason: String,
    pub hour_start: DateTime<Utc>,
    pub count: i64,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The first change of the hour, as received.
    pub sample: serde_json::Value,
}

/// The latest hours of unrouted webhook changes, newest first.
pub async fn unrouted_webhooks(db: &Db, limit: u32) -> Result<Vec<UnroutedWebhook>, StoreError> {
    type Row = (
        String,
        String,
        String,
        String,
        i64,
        i64,
        i64,
        i64,
        sqlx::types::Json<serde_json::Value>,
    );
    let mut tx = db.control_read().await?;
    let rows: Vec<Row> = on_tx!(&mut tx.0, |c| {
        sqlx::query_as(
            "SELECT source, topic, origin, reason, hour_start, change_count, received_at, last_seen_at, payload
             FROM unrouted_webhook_events ORDER BY hour_start DESC, origin LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    tx.commit().await?;
    let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Ok(rows
        .into_iter()
        .map(
            |(source, topic, origin, reason, hour, count, first, last, sample)| UnroutedWebhook {
                source,
                topic,
                origin,
                reason,
                hour_start: at(hour),
                count,
                first_seen_at: at(first),
                last_seen_at: at(last),
                sample: sample.0,
            },
        )
        .collect())
}
