-- Credits are bought through Shopify, never typed in (issue 11): one-time
-- app purchases, and ledger kinds that say where credits came from
-- ('purchase' with the purchase as reference, 'operator_grant' with the
-- operator's reason). 'top_up' stays for entries written before.
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check
    CHECK (kind IN ('allowance', 'tier', 'top_up', 'charge', 'refund', 'expiry', 'adjustment', 'purchase', 'operator_grant'));

-- A credit pack bought through Shopify's billing API
-- (appPurchaseOneTimeCreate). Statuses are Shopify's: PENDING until the
-- merchant approves (ACTIVE), declines (DECLINED) or lets it lapse
-- (EXPIRED); a final status never changes. Credits are granted once, when
-- it becomes ACTIVE (ledger key purchase:<id>).
CREATE TABLE credit_purchases (
    id UUID PRIMARY KEY,
    shopify_id TEXT NOT NULL,
    pack TEXT NOT NULL,
    credits BIGINT NOT NULL CHECK (credits > 0),
    price_amount TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'DECLINED', 'EXPIRED')),
    confirmation_url TEXT NOT NULL,
    created_by UUID,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    granted_at BIGINT
);
CREATE UNIQUE INDEX credit_purchases_shopify_id ON credit_purchases(shopify_id);
