-- This tenant's jobs, in the tenant's own file so that enqueueing commits
-- atomically with the business write. Times are epoch milliseconds.
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

-- Effects of the queue's probe job (`galantis jobs probe`): one row per job,
-- with how many times its effect was applied; anything but 1 is a bug.
CREATE TABLE queue_probes (
    job_id BLOB PRIMARY KEY NOT NULL,
    runs INTEGER NOT NULL,
    ran_at INTEGER NOT NULL
);
