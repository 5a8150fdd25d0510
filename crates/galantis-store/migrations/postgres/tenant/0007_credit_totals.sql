-- Running totals of the credit ledger, kept in the transaction of every
-- ledger insert, so sends never sum the ledger: the balance (always equal to
-- SUM(credit_ledger.credits)) and the current period's usage and grants.
ALTER TABLE billing_account ADD COLUMN balance BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_account ADD COLUMN period_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_account ADD COLUMN period_granted BIGINT NOT NULL DEFAULT 0;
UPDATE billing_account SET
    balance = (SELECT COALESCE(SUM(credits), 0) FROM credit_ledger),
    period_used = (SELECT COALESCE(-SUM(credits), 0) FROM credit_ledger
                   WHERE credit_ledger.period = billing_account.period AND kind IN ('charge', 'refund')),
    period_granted = (SELECT COALESCE(SUM(credits), 0) FROM credit_ledger
                      WHERE credit_ledger.period = billing_account.period
                        AND (kind IN ('allowance', 'tier', 'top_up') OR (kind = 'adjustment' AND credits > 0)));
