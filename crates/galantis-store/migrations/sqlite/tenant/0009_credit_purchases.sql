-- Credits are bought through Shopify, never typed in (issue 11): one-time
-- app purchases, and ledger kinds that say where credits came from
-- ('purchase' with the purchase as reference, 'operator_grant' with the
-- operator's reason). 'top_up' stays for entries written before.

-- SQLite cannot change a CHECK in place: the ledger is rebuilt, same rows.
CREATE TABLE credit_ledger_new (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('allowance', 'tier', 'top_up', 'charge', 'refund', 'expiry', 'adjustment', 'purchase', 'operator_grant')),
    credits INTEGER NOT NULL,
    period TEXT NOT NULL,
    message_id BLOB,
    reason TEXT NOT NULL,
    reference TEXT,
    idempotency_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO credit_ledger_new (id, kind, credits, period, message_id, reason, reference, idempotency_key, created_at)
    SELECT id, kind, credits, period, message_id, reason, reference, idempotency_key, created_at FROM credit_ledger;
DROP TABLE credit_ledger;
ALTER TABLE credit_ledger_new RENAME TO credit_ledger;
CREATE UNIQUE INDEX credit_ledger_idempotency ON credit_ledger(idempotency_key);
CREATE INDEX credit_ledger_period ON credit_ledger(period, kind);
CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger
BEGIN SELECT RAISE(ABORT, 'credit_ledger is append-only'); END;
CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger
BEGIN SELECT RAISE(ABORT, 'credit_ledger is append-only'); END;

-- A credit pack bought through Shopify's billing API
-- (appPurchaseOneTimeCreate). Statuses are Shopify's: PENDING until the
-- merchant approves (ACTIVE), declines (DECLINED) or lets it lapse
-- (EXPIRED); a final status never changes. Credits are granted once, when
-- it becomes ACTIVE (ledger key purchase:<id>).
CREATE TABLE credit_purchases (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_id TEXT NOT NULL,
    pack TEXT NOT NULL,
    credits INTEGER NOT NULL CHECK (credits > 0),
    price_amount TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'DECLINED', 'EXPIRED')),
    confirmation_url TEXT NOT NULL,
    created_by BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    granted_at INTEGER
);
CREATE UNIQUE INDEX credit_purchases_shopify_id ON credit_purchases(shopify_id);
