-- Campaigns (issue 17). Times are epoch milliseconds.
--
-- `resolve_cursor` is the last contact id resolved into recipients (the
-- audience is resolved at send time, in pages, resumably); `resolved_at`
-- marks the end of resolution, `dispatched_at` the end of queueing.
CREATE TABLE campaigns (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('DRAFT', 'SCHEDULED', 'PENDING', 'PAUSED', 'SENT',
        'PARTIALLY_SENT', 'FAILED', 'CANCELLED')),
    cancel_reason TEXT,
    template_id BLOB NOT NULL,
    variables_mapping TEXT NOT NULL DEFAULT '{}',
    audience TEXT NOT NULL DEFAULT '{}',
    phone_number_id TEXT,
    scheduled_at INTEGER,
    send_window TEXT,
    campaign_type TEXT,
    launched_at INTEGER,
    resolve_cursor BLOB,
    resolved_at INTEGER,
    dispatched_at INTEGER,
    completed_at INTEGER,
    recipients_total INTEGER NOT NULL DEFAULT 0,
    sent_count INTEGER NOT NULL DEFAULT 0,
    delivered_count INTEGER NOT NULL DEFAULT 0,
    read_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0,
    skipped_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX campaigns_status ON campaigns(status, id);

-- One row per (campaign, contact) and per (campaign, phone): a retried
-- resolution or two overlapping dispatchers cannot add anyone twice.
-- `message_id` is set when the recipient's message is queued.
CREATE TABLE campaign_recipients (
    id BLOB PRIMARY KEY NOT NULL,
    campaign_id BLOB NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    contact_id BLOB NOT NULL,
    phone TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('QUEUED', 'SENT', 'DELIVERED', 'READ', 'FAILED', 'SKIPPED')),
    message_id BLOB,
    error_code TEXT,
    error_reason TEXT,
    queued_at INTEGER,
    sent_at INTEGER,
    delivered_at INTEGER,
    read_at INTEGER,
    failed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX campaign_recipients_contact ON campaign_recipients(campaign_id, contact_id);
CREATE UNIQUE INDEX campaign_recipients_phone ON campaign_recipients(campaign_id, phone);
CREATE INDEX campaign_recipients_status ON campaign_recipients(campaign_id, status, id);
CREATE INDEX campaign_recipients_message ON campaign_recipients(message_id) WHERE message_id IS NOT NULL;
