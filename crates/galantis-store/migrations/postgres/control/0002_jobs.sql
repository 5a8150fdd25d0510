-- The one jobs table of the database, beside the tenant schemas, so that a
-- tenant transaction enqueues atomically with its business write. tenant_id is
-- NULL for global jobs. Times are epoch milliseconds, as on SQLite.
CREATE TABLE jobs (
    id UUID PRIMARY KEY,
    tenant_id UUID,
    kind TEXT NOT NULL,
    lane TEXT NOT NULL,
    priority BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('available', 'running', 'completed', 'dead')),
    payload JSONB NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    unique_key TEXT,
    unique_while_active BOOLEAN NOT NULL DEFAULT FALSE,
    claimed_by TEXT,
    heartbeat_at BIGINT,
    errors JSONB NOT NULL DEFAULT '[]',
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
-- Claiming reads only available rows in one lane, in priority then time order.
CREATE INDEX jobs_claim ON jobs(lane, priority, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_running ON jobs(heartbeat_at) WHERE state = 'running';
CREATE INDEX jobs_tenant_state ON jobs(tenant_id, state, id);
CREATE INDEX jobs_finished ON jobs(state, finished_at) WHERE state IN ('completed', 'dead');
-- Unique keys are prefixed with the tenant (or "global"), so one index serves all.
CREATE UNIQUE INDEX jobs_unique ON jobs(unique_key) WHERE unique_key IS NOT NULL;
