-- Campaigns (issue 17). Times are epoch milliseconds.
--
-- `resolve_cursor` is the last contact id resolved into recipients (the
-- audience is resolved at send time, in pages, resumably); `resolved_at`
-- marks the end of resolution, `dispatched_at` the end of queueing.
CREATE TABLE campaigns (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('DRAFT', 'SCHEDULED', 'PENDING', 'PAUSED', 'SENT',
        'PARTIALLY_SENT', 'FAILED', 'CANCELLED')),
    cancel_reason TEXT,
    template_id UUID NOT NULL,
    variables_mapping JSONB NOT NULL DEFAULT '{}'::jsonb,
    audience JSONB NOT NULL DEFAULT '{}'::jsonb,
    phone_number_id TEXT,
    scheduled_at BIGINT,
    send_window JSONB,
    campaign_type TEXT,
    launched_at BIGINT,
    resolve_cursor UUID,
    resolved_at BIGINT,
    dispatched_at BIGINT,
    completed_at BIGINT,
    recipients_total BIGINT NOT NULL DEFAULT 0,
    sent_count BIGINT NOT NULL DEFAULT 0,
    delivered_count BIGINT NOT NULL DEFAULT 0,
    read_count BIGINT NOT NULL DEFAULT 0,
    failed_count BIGINT NOT NULL DEFAULT 0,
    skipped_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX campaigns_status ON campaigns(status, id);

-- One row per (campaign, contact) and per (campaign, phone): a retried
-- resolution or two overlapping dispatchers cannot add anyone twice.
-- `message_id` is set when the recipient's message is queued.
CREATE TABLE campaign_recipients (
    id UUID PRIMARY KEY,
    campaign_id UUID NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL,
    phone TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('QUEUED', 'SENT', 'DELIVERED', 'READ', 'FAILED', 'SKIPPED')),
    message_id UUID,
    error_code TEXT,
    error_reason TEXT,
    queued_at BIGINT,
    sent_at BIGINT,
    delivered_at BIGINT,
    read_at BIGINT,
    failed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX campaign_recipients_contact ON campaign_recipients(campaign_id, contact_id);
CREATE UNIQUE INDEX campaign_recipients_phone ON campaign_recipients(campaign_id, phone);
CREATE INDEX campaign_recipients_status ON campaign_recipients(campaign_id, status, id);
CREATE INDEX campaign_recipients_message ON campaign_recipients(message_id) WHERE message_id IS NOT NULL;
