-- Sending (issue 6): send attempts on outbound messages, the WhatsApp
-- connection and per-number pacing, template drafts, and the credit ledger.
-- Times are epoch milliseconds.

-- NULL: not tried yet; 'sending': a call to Meta was started and its outcome
-- is not recorded (a retry reconciles before sending again); 'accepted':
-- Meta returned a wamid; 'rejected': Meta or a pre-send check refused it.
ALTER TABLE messages ADD COLUMN send_state TEXT;
ALTER TABLE messages ADD COLUMN send_started_at INTEGER;
ALTER TABLE messages ADD COLUMN send_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN accepted_at INTEGER;
-- Whether Meta's acceptance consumes a credit.
ALTER TABLE messages ADD COLUMN billable INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_outbound_pending ON messages(billable, status, send_state);

-- The tenant's WhatsApp connection (one row). Without a row, a tenant with
-- numbers is connected through the sandbox.
CREATE TABLE whatsapp_connection (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    state TEXT NOT NULL CHECK (state IN ('connected', 'needs_attention', 'disconnected')),
    reason TEXT,
    error_code INTEGER,
    waba_id TEXT,
    credentials TEXT NOT NULL CHECK (credentials IN ('sandbox', 'meta')),
    verified_at INTEGER,
    halted_at INTEGER,
    updated_at INTEGER NOT NULL
);

-- Per-number details and pacing (the control table `phone_numbers` routes).
CREATE TABLE whatsapp_numbers (
    phone_number_id TEXT PRIMARY KEY NOT NULL,
    waba_id TEXT NOT NULL,
    display_phone_number TEXT,
    verified_name TEXT,
    quality_rating TEXT,
    messages_per_second INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

ALTER TABLE templates ADD COLUMN parameter_format TEXT NOT NULL DEFAULT 'POSITIONAL';
ALTER TABLE templates ADD COLUMN format TEXT;
ALTER TABLE templates ADD COLUMN submitted_at INTEGER;
ALTER TABLE templates ADD COLUMN synced_at INTEGER;

CREATE TABLE billing_account (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    plan TEXT NOT NULL,
    -- Extra monthly credits of an optional tier.
    tier_credits INTEGER NOT NULL DEFAULT 0,
    -- The period ('YYYY-MM') whose allowance was granted last.
    period TEXT NOT NULL,
    -- Highest usage warning sent in `period` (80, 90, 100).
    warned_level INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- Append-only: the balance is the sum of `credits`. One entry per
-- idempotency key (charge:<message>, refund:<message>, allowance:<period>,
-- expiry:<period>, top_up:<key>).
CREATE TABLE credit_ledger (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('allowance', 'tier', 'top_up', 'charge', 'refund', 'expiry', 'adjustment')),
    credits INTEGER NOT NULL,
    period TEXT NOT NULL,
    message_id BLOB,
    reason TEXT NOT NULL,
    reference TEXT,
    idempotency_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX credit_ledger_idempotency ON credit_ledger(idempotency_key);
CREATE INDEX credit_ledger_period ON credit_ledger(period, kind);
CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger
BEGIN SELECT RAISE(ABORT, 'credit_ledger is append-only'); END;
CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger
BEGIN SELECT RAISE(ABORT, 'credit_ledger is append-only'); END;
