//! Credits: an append-only ledger per tenant whose sum is the balance, and
//! the billing account (plan, tier, current period, warnings sent).
//!
//! Every entry has an idempotency key under a unique index: a charge or
//! refund per message, an allowance and an expiry per period, a purchase
//! per Shopify one-time purchase, an operator grant per request key.
//! Writing an entry twice therefore changes nothing. Each entry's `kind`
//! says where its credits came from: the plan (`allowance`, `tier`,
//! `adjustment`), a Shopify purchase (`purchase`, referencing it), an
//! operator (`operator_grant`, with the operator's reason), or a message
//! (`charge`, `refund`). Nothing a tenant sends through the API adds
//! credits.
//!
//! Periods are calendar months. When a period ends, what is left of its
//! allowance (plan credits and tier) expires — no rollover — while bought
//! and granted credits stay: usage draws on the allowance first.

use chrono::{DateTime, Utc};
use galantis_core::billing::{Plan, PurchaseStatus, period_of};
use serde::Serialize;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::error::StoreError;
use crate::jobs::from_ms;
use crate::on_tx;

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub plan: String,
    pub tier_credits: i64,
    pub period: String,
    pub warned_level: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub kind: String,
    pub credits: i64,
    pub period: String,
    pub message_id: Option<Uuid>,
    pub reason: String,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One period's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Plan allowance, tier and positive adjustments granted for the period.
    pub granted: i64,
    /// Credits bought through Shopify this period (and top-ups written
    /// before purchases replaced them); they do not expire.
    pub purchased: i64,
    /// Credits operators granted this period; they do not expire.
    pub operator_granted: i64,
    /// Credits charged (a positive count).
    pub charged: i64,
    pub refunded: i64,
    /// Charged minus refunded.
    pub used: i64,
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut TenantTx,
    kind: &str,
    credits: i64,
    period: &str,
    message_id: Option<Uuid>,
    reason: &str,
    reference: Option<&str>,
    key: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO credit_ledger (id, kind, credits, period, message_id, reason, reference, idempotency_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(Uuid::now_v7()).bind(kind).bind(credits).bind(period).bind(message_id).bind(reason).bind(reference)
        .bind(key).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    if n == 1 {
        // The running totals move with the ledger, in the same transaction.
        let used = match kind {
            "charge" | "refund" => -credits,
            _ => 0,
        };
        let granted = match kind {
            "allowance" | "tier" | "top_up" | "purchase" | "operator_grant" => credits,
            "adjustment" if credits > 0 => credits,
            _ => 0,
        };
        on_tx!(tx.tx(), |c| {
            sqlx::query(
                "UPDATE billing_account SET balance = balance + $1,
                     period_used = period_used + CASE WHEN period = $2 THEN $3 ELSE 0 END,
                     period_granted = period_granted + CASE WHEN period = $2 THEN $4 ELSE 0 END
                 WHERE id = 1",
            )
            .bind(credits)
            .bind(period)
            .bind(used)
            .bind(granted)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
    }
    Ok(n == 1)
}

async fn read_account(tx: &mut TenantTx) -> Result<Option<Account>, StoreError> {
    let r: Option<(String, i64, String, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT plan, tier_credits, period, warned_level FROM billing_account WHERE id = 1",
        )
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(r.map(|r| Account {
        plan: r.0,
        tier_credits: r.1,
        period: r.2,
        warned_level: r.3,
    }))
}

async fn grant(tx: &mut TenantTx, a: &Account, now_ms: i64) -> Result<(), StoreError> {
    let plan: Plan = a.plan.parse().unwrap_or(Plan::Trial);
    insert(
        tx,
        "allowance",
        plan.monthly_credits(),
        &a.period,
        None,
        &format!("{} plan allowance", plan.as_str()),
        None,
        &format!("allowance:{}", a.period),
        now_ms,
    )
    .await?;
    if a.tier_credits > 0 {
        insert(
            tx,
            "tier",
            a.tier_credits,
            &a.period,
            None,
            "monthly tier credits",
            None,
            &format!("tier:{}", a.period),
            now_ms,
        )
        .await?;
    }
    Ok(())
}

/// The billing account, created on first use (TRIAL plan) and moved into
/// the current period: the old period's unused allowance expires and the
/// new allowance is granted. Safe to call on every read.
pub async fn account(tx: &mut TenantTx, now: DateTime<Utc>) -> Result<Account, StoreError> {
    let now_ms = now.timestamp_millis();
    let current = period_of(now);
    if let Some(a) = read_account(tx).await?
        && a.period >= current
    {
        return Ok(a);
    }
    // Creating the account or moving it into a new period: serialised with
    // every other tenant writer, and (PostgreSQL) with charges through the
    // account's row, which a charge updates only while its period is the
    // one it read (`charge_in`). So the old period's usage read below is
    // final. SQLite's single writer already serialises all of this.
    tx.serialize_tenant_writes().await?;
    on_tx!(
        tx.tx(),
        sqlite | _c | {},
        postgres | c | {
            sqlx::query("SELECT 1 FROM billing_account WHERE id = 1 FOR UPDATE")
                .execute(&mut *c)
                .await?;
        }
    );
    let account = match read_account(tx).await? {
        Some(a) => a,
        None => {
            on_tx!(tx.tx(), |c| {
                sqlx::query(
                    "INSERT INTO billing_account (id, plan, tier_credits, period, warned_level, updated_at)
                     VALUES (1, $1, 0, $2, 0, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(Plan::Trial.as_str())
                .bind(&current)
                .bind(now_ms)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            let a = read_account(tx).await?.ok_or(StoreError::NotFound)?;
            grant(tx, &a, now_ms).await?;
            a
        }
    };
    if account.period >= current {
        return Ok(account);
    }
    // A new period: expire the old allowance's remainder, grant the new one.
    let old = usage(tx, &account.period).await?;
    let unused = (old.granted - old.used).max(0);
    let expire = unused.min(balance(tx).await?.max(0));
    if expire > 0 {
        insert(
            tx,
            "expiry",
            -expire,
            &account.period,
            None,
            "unused monthly allowance expires (no rollover)",
            None,
            &format!("expiry:{}", account.period),
            now_ms,
        )
        .await?;
    }
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE billing_account SET period = $1, warned_level = 0, period_used = 0, period_granted = 0,
                 updated_at = $2 WHERE id = 1",
        )
        .bind(&current)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    let a = Account {
        period: current,
        warned_level: 0,
        ..account
    };
    grant(tx, &a, now_ms).await?;
    Ok(a)
}

/// The balance (the ledger's running total).
pub async fn balance(tx: &mut TenantTx) -> Result<i64, StoreError> {
    let v: Option<i64> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT balance FROM billing_account WHERE id = 1")
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(v.unwrap_or(0))
}

/// The sum of the whole ledger (what the running balance must equal).
pub async fn ledger_sum(tx: &mut TenantTx) -> Result<i64, StoreError> {
    let v: Option<i64> = on_tx!(
        tx.tx(),
        sqlite | c | {
            sqlx::query_scalar("SELECT SUM(credits) FROM credit_ledger")
                .fetch_one(&mut *c)
                .await?
        },
        postgres | c | {
            sqlx::query_scalar("SELECT SUM(credits)::BIGINT FROM credit_ledger")
                .fetch_one(&mut *c)
                .await?
        }
    );
    Ok(v.unwrap_or(0))
}

/// The figures of one period.
pub async fn usage(tx: &mut TenantTx, period: &str) -> Result<Usage, StoreError> {
    let rows: Vec<(String, i64)> = on_tx!(
        tx.tx(),
        sqlite | c | {
            sqlx::query_as(
                "SELECT kind, SUM(credits) FROM credit_ledger WHERE period = $1 GROUP BY kind",
            )
            .bind(period)
            .fetch_all(&mut *c)
            .await?
        },
        postgres
            | c
            | {
                sqlx::query_as(
                "SELECT kind, SUM(credits)::BIGINT FROM credit_ledger WHERE period = $1 GROUP BY kind",
            )
            .bind(period)
            .fetch_all(&mut *c)
            .await?
            }
    );
    let mut u = Usage::default();
    for (kind, sum) in rows {
        match kind.as_str() {
            "allowance" | "tier" => u.granted += sum,
            "adjustment" if sum > 0 => u.granted += sum,
            "top_up" | "purchase" => u.purchased += sum,
            "operator_grant" => u.operator_granted += sum,
            "charge" => u.charged += -sum,
            "refund" => u.refunded += sum,
            _ => {}
        }
    }
    u.used = u.charged - u.refunded;
    Ok(u)
}

/// The account's running totals right after a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// The period's credits used and granted (purchases and operator
    /// grants included).
    pub used: i64,
    pub granted: i64,
    /// The highest usage warning already raised this period.
    pub warned_level: i64,
}

/// Charges one credit for message `message_id` in `period`, the account's
/// current period as [`account`] returned it earlier in this transaction.
/// `None` when the message was charged already. The ledger entry and the
/// running totals move together; the totals come back from the same
/// statement, so a usage warning costs no extra read.
///
/// On PostgreSQL the account's row stays locked until commit, so charges
/// of one tenant serialise from here: call it last in the transaction.
/// If the period moved on since `period` was read (a rollover committed in
/// between), nothing is charged and `Conflict("billing_period_changed")`
/// asks the caller to roll back and retry.
pub async fn charge_in(
    tx: &mut TenantTx,
    message_id: Uuid,
    reference: &str,
    period: &str,
    now: DateTime<Utc>,
) -> Result<Option<Totals>, StoreError> {
    let now_ms = now.timestamp_millis();
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO credit_ledger (id, kind, credits, period, message_id, reason, reference, idempotency_key, created_at)
             VALUES ($1, 'charge', -1, $2, $3, 'template message accepted by Meta', $4, $5, $6)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(Uuid::now_v7()).bind(period).bind(message_id).bind(reference)
        .bind(format!("charge:{message_id}")).bind(now_ms)
        .execute(&mut *c).await?.rows_affected()
    });
    if n == 0 {
        return Ok(None);
    }
    let totals: Option<(i64, i64, i64)> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "UPDATE billing_account SET balance = balance - 1, period_used = period_used + 1
             WHERE id = 1 AND period = $1
             RETURNING period_used, period_granted, warned_level",
        )
        .bind(period)
        .fetch_optional(&mut *c)
        .await?
    });
    match totals {
        Some((used, granted, warned_level)) => Ok(Some(Totals {
            used,
            granted,
            warned_level,
        })),
        None => Err(StoreError::Conflict("billing_period_changed")),
    }
}

/// Gives back the credit of a message Meta reported `failed` without ever
/// delivering it. Only a charged message is refunded, and only once.
pub async fn refund(
    tx: &mut TenantTx,
    message_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let charged: Option<String> = on_tx!(tx.tx(), |c| {
        sqlx::query_scalar("SELECT period FROM credit_ledger WHERE idempotency_key = $1")
            .bind(format!("charge:{message_id}"))
            .fetch_optional(&mut *c)
            .await?
    });
    let Some(period) = charged else {
        return Ok(false);
    };
    insert(
        tx,
        "refund",
        1,
        &period,
        Some(message_id),
        reason,
        None,
        &format!("refund:{message_id}"),
        now.timestamp_millis(),
    )
    .await
}

impl Usage {
    /// Everything the period added: allowance, purchases, operator grants.
    pub fn total_granted(&self) -> i64 {
        self.granted + self.purchased + self.operator_granted
    }
}

/// Adds credits on an operator's say-so (`galantis billing grant`), with
/// the operator's `reason` in the entry. They do not expire with the
/// period. `key` makes a repeated request harmless.
pub async fn operator_grant(
    tx: &mut TenantTx,
    credits: i64,
    reason: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<LedgerEntry>, StoreError> {
    let a = account(tx, now).await?;
    let idempotency_key = format!("operator_grant:{key}");
    let added = insert(
        tx,
        "operator_grant",
        credits,
        &a.period,
        None,
        reason,
        None,
        &idempotency_key,
        now.timestamp_millis(),
    )
    .await?;
    if !added {
        return Ok(None);
    }
    entry_by_key(tx, &idempotency_key).await
}

/// `id, kind, credits, period, message_id, reason, reference, created_at`.
type LedgerRow = (
    Uuid,
    String,
    i64,
    String,
    Option<Uuid>,
    String,
    Option<String>,
    i64,
);

fn ledger_entry(r: LedgerRow) -> LedgerEntry {
    LedgerEntry {
        id: r.0,
        kind: r.1,
        credits: r.2,
        period: r.3,
        message_id: r.4,
        reason: r.5,
        reference: r.6,
        created_at: from_ms(r.7),
    }
}

async fn entry_by_key(tx: &mut TenantTx, key: &str) -> Result<Option<LedgerEntry>, StoreError> {
    let r: Option<LedgerRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, kind, credits, period, message_id, reason, reference, created_at
             FROM credit_ledger WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(r.map(ledger_entry))
}

/// A credit pack bought through Shopify (a one-time app purchase).
#[derive(Debug, Clone, Serialize)]
pub struct Purchase {
    pub id: Uuid,
    /// Shopify's `AppPurchaseOneTime` id (`gid://shopify/AppPurchaseOneTime/…`).
    pub shopify_id: String,
    pub pack: String,
    pub credits: i64,
    pub price_amount: String,
    pub currency_code: String,
    /// Shopify's status: PENDING, ACTIVE, DECLINED or EXPIRED.
    pub status: String,
    pub confirmation_url: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When its credits were added to the ledger (once, on ACTIVE).
    pub granted_at: Option<DateTime<Utc>>,
}

/// A purchase Shopify has just created (status PENDING).
#[derive(Debug, Clone)]
pub struct NewPurchase<'a> {
    pub id: Uuid,
    pub shopify_id: &'a str,
    pub pack: &'a str,
    pub credits: i64,
    pub price_amount: &'a str,
    pub currency_code: &'a str,
    pub confirmation_url: &'a str,
    pub created_by: Option<Uuid>,
}

/// A purchase query: the columns [`purchase_of`] reads, then `$rest`.
macro_rules! select_purchases {
    ($rest:literal) => {
        concat!(
            "SELECT id, shopify_id, pack, credits, price_amount, currency_code, status, confirmation_url,
                 created_by, created_at, updated_at, granted_at FROM credit_purchases ",
            $rest
        )
    };
}

type PurchaseRow = (
    Uuid,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    Option<Uuid>,
    i64,
    i64,
    Option<i64>,
);

fn purchase_of(r: PurchaseRow) -> Purchase {
    Purchase {
        id: r.0,
        shopify_id: r.1,
        pack: r.2,
        credits: r.3,
        price_amount: r.4,
        currency_code: r.5,
        status: r.6,
        confirmation_url: r.7,
        created_by: r.8,
        created_at: from_ms(r.9),
        updated_at: from_ms(r.10),
        granted_at: r.11.map(from_ms),
    }
}

pub async fn create_purchase(
    tx: &mut TenantTx,
    p: &NewPurchase<'_>,
    now: DateTime<Utc>,
) -> Result<Purchase, StoreError> {
    let now_ms = now.timestamp_millis();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "INSERT INTO credit_purchases (id, shopify_id, pack, credits, price_amount, currency_code, status,
                 confirmation_url, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7, $8, $9, $9)",
        )
        .bind(p.id)
        .bind(p.shopify_id)
        .bind(p.pack)
        .bind(p.credits)
        .bind(p.price_amount)
        .bind(p.currency_code)
        .bind(p.confirmation_url)
        .bind(p.created_by)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    purchase(tx, p.id).await?.ok_or(StoreError::NotFound)
}

pub async fn purchase(tx: &mut TenantTx, id: Uuid) -> Result<Option<Purchase>, StoreError> {
    let r: Option<PurchaseRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_purchases!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(r.map(purchase_of))
}

async fn purchase_by_shopify_id(
    tx: &mut TenantTx,
    shopify_id: &str,
) -> Result<Option<Purchase>, StoreError> {
    let r: Option<PurchaseRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_purchases!("WHERE shopify_id = $1"))
            .bind(shopify_id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(r.map(purchase_of))
}

/// Purchases, newest first.
pub async fn purchases(
    tx: &mut TenantTx,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Purchase>, StoreError> {
    let rows: Vec<PurchaseRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(select_purchases!(
            "WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(purchase_of).collect())
}

/// What a status report from Shopify did to a purchase.
#[derive(Debug, Clone)]
pub enum PurchaseUpdate {
    /// No purchase with that Shopify id: nothing is granted.
    Unknown,
    /// Already final, or the same status again: nothing changed.
    Unchanged(Purchase),
    /// The status moved; `granted` tells whether credits were added now.
    Updated { purchase: Purchase, granted: bool },
}

/// Applies Shopify's `status` for the purchase `shopify_id` (from the
/// `app_purchases_one_time/update` webhook or a reconciliation read).
/// PENDING moves to ACTIVE, DECLINED or EXPIRED and then never again
/// (Shopify's statuses are final), so a late or repeated report changes
/// nothing. Becoming ACTIVE adds the pack's credits once: the status
/// update is conditional and the ledger entry has the key
/// `purchase:<id>`, so two reports racing grant once.
pub async fn apply_purchase_status(
    tx: &mut TenantTx,
    shopify_id: &str,
    status: &str,
    now: DateTime<Utc>,
) -> Result<PurchaseUpdate, StoreError> {
    let Some(p) = purchase_by_shopify_id(tx, shopify_id).await? else {
        return Ok(PurchaseUpdate::Unknown);
    };
    let moves = match (
        PurchaseStatus::parse(status),
        PurchaseStatus::parse(&p.status),
    ) {
        (Some(to), Some(from)) => to.moves(from),
        _ => false,
    };
    if !moves {
        return Ok(PurchaseUpdate::Unchanged(p));
    }
    let status = PurchaseStatus::parse(status).map_or("PENDING", PurchaseStatus::as_str);
    let now_ms = now.timestamp_millis();
    let moved = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE credit_purchases SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'PENDING'",
        )
        .bind(status)
        .bind(now_ms)
        .bind(p.id)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if moved == 0 {
        let p = purchase(tx, p.id).await?.ok_or(StoreError::NotFound)?;
        return Ok(PurchaseUpdate::Unchanged(p));
    }
    let mut granted = false;
    if status == PurchaseStatus::Active.as_str() {
        let a = account(tx, now).await?;
        granted = insert(
            tx,
            "purchase",
            p.credits,
            &a.period,
            None,
            &format!("credit pack `{}` bought through Shopify", p.pack),
            Some(&p.shopify_id),
            &format!("purchase:{}", p.id),
            now_ms,
        )
        .await?;
        if granted {
            on_tx!(tx.tx(), |c| {
                sqlx::query("UPDATE credit_purchases SET granted_at = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(p.id)
                    .execute(&mut *c)
                    .await?
                    .rows_affected()
            });
        }
    }
    let purchase = purchase(tx, p.id).await?.ok_or(StoreError::NotFound)?;
    Ok(PurchaseUpdate::Updated { purchase, granted })
}

/// Changes the plan and tier. What the new plan grants beyond what this
/// period has already granted is added at once; a downgrade takes nothing
/// back. Measuring against the period's grants (not the old plan) means
/// switching down and up again within a month grants nothing twice.
pub async fn set_plan(
    tx: &mut TenantTx,
    plan: Plan,
    tier_credits: i64,
    now: DateTime<Utc>,
) -> Result<Account, StoreError> {
    let a = account(tx, now).await?;
    let granted = usage(tx, &a.period).await?.granted;
    let delta = (plan.monthly_credits() + tier_credits) - granted;
    let now_ms = now.timestamp_millis();
    on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE billing_account SET plan = $1, tier_credits = $2, updated_at = $3 WHERE id = 1",
        )
        .bind(plan.as_str())
        .bind(tier_credits)
        .bind(now_ms)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if delta > 0 {
        insert(
            tx,
            "adjustment",
            delta,
            &a.period,
            None,
            &format!(
                "plan changed to {} (+{tier_credits} tier credits)",
                plan.as_str()
            ),
            None,
            &format!(
                "plan:{}:{}:{tier_credits}:{}",
                a.period,
                plan.as_str(),
                Uuid::now_v7()
            ),
            now_ms,
        )
        .await?;
    }
    Ok(Account {
        plan: plan.as_str().to_owned(),
        tier_credits,
        ..a
    })
}

/// Records the highest warning sent this period; `false` if it was sent
/// already.
pub async fn raise_warning(tx: &mut TenantTx, level: i64) -> Result<bool, StoreError> {
    let n = on_tx!(tx.tx(), |c| {
        sqlx::query(
            "UPDATE billing_account SET warned_level = $1 WHERE id = 1 AND warned_level < $1",
        )
        .bind(level)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Ledger entries, newest first.
pub async fn ledger(
    tx: &mut TenantTx,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<LedgerEntry>, StoreError> {
    let rows: Vec<LedgerRow> = on_tx!(tx.tx(), |c| {
        sqlx::query_as(
            "SELECT id, kind, credits, period, message_id, reason, reference, created_at FROM credit_ledger
             WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await?
    });
    Ok(rows.into_iter().map(ledger_entry).collect())
}

/// Entries about one message (its charge and refund).
pub async fn entries_for_message(
    tx: &mut TenantTx,
    message_id: Uuid,
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(on_tx!(tx.tx(), |c| {
        sqlx::query_as("SELECT kind, credits FROM credit_ledger WHERE message_id = $1 ORDER BY id")
            .bind(message_id)
            .fetch_all(&mut *c)
            .await?
    }))
}
