-- The inbox (issue 18, I1). Times are epoch milliseconds.

-- Unread is derived from the messages newer than `last_read_at` (so a
-- redelivered inbound webhook never counts twice). `opened_at` starts the
-- current open period, for resolution times; `auto_assigned_at` makes the
-- automatic assignment to the first replier happen once.
ALTER TABLE conversations ADD COLUMN last_read_at BIGINT;
ALTER TABLE conversations ADD COLUMN opened_at BIGINT;
ALTER TABLE conversations ADD COLUMN first_reply_at BIGINT;
ALTER TABLE conversations ADD COLUMN auto_assigned_at BIGINT;
ALTER TABLE conversations ADD COLUMN resolved_at BIGINT;
CREATE INDEX conversations_activity ON conversations(last_message_at, id);

-- The member who sent an inbox reply (per-agent activity).
ALTER TABLE messages ADD COLUMN sent_by_member_id UUID;

-- Internal notes: seen by members, never sent.
CREATE TABLE conversation_notes (
    id UUID PRIMARY KEY NOT NULL,
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    member_id UUID NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX conversation_notes_conversation ON conversation_notes(conversation_id, created_at);

-- What members did in the inbox (`resolved`, `assigned`), for analytics.
CREATE TABLE conversation_activity (
    id UUID PRIMARY KEY NOT NULL,
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    member_id UUID,
    action TEXT NOT NULL,
    duration_ms BIGINT,
    at BIGINT NOT NULL
);
CREATE INDEX conversation_activity_at ON conversation_activity(at);

-- Saved snippets, per tenant.
CREATE TABLE quick_replies (
    id UUID PRIMARY KEY NOT NULL,
    shortcut TEXT NOT NULL,
    body TEXT NOT NULL,
    created_by UUID,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX quick_replies_shortcut ON quick_replies(shortcut);
