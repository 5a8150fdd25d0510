-- Webhook changes that belong to no tenant (unknown phone number id or WABA):
-- recorded as ignored for operators, never processed.
CREATE TABLE unrouted_webhook_events (
    id BLOB PRIMARY KEY NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
