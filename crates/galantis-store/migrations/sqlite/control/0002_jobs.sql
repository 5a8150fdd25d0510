-- Global (not tenant-scoped) jobs: periodic sweeps, pruning. Times are epoch
-- milliseconds so comparisons and ordering are exact on both engines.
CREATE TABLE jobs (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    lane TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('available', 'running', 'completed', 'dead')),
    payload TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    unique_key TEXT,
    unique_while_active INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,
    heartbeat_at INTEGER,
    errors TEXT NOT NULL DEFAULT '[]',
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX jobs_claim ON jobs(lane, state, priority, run_at, id);
CREATE INDEX jobs_state ON jobs(state, heartbeat_at);
CREATE UNIQUE INDEX jobs_unique ON jobs(unique_key) WHERE unique_key IS NOT NULL;
