-- WhatsApp conversations, messages, their status history, and templates.
-- Times are epoch milliseconds.

CREATE TABLE conversations (
    id BLOB PRIMARY KEY NOT NULL,
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    phone_number_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('OPEN', 'PENDING', 'RESOLVED')),
    assigned_member_id BLOB,
    last_inbound_at INTEGER,
    window_expires_at INTEGER,
    last_message_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX conversations_contact_number ON conversations(contact_id, phone_number_id);
CREATE INDEX conversations_status ON conversations(status, last_message_at);

CREATE TABLE messages (
    id BLOB PRIMARY KEY NOT NULL,
    conversation_id BLOB REFERENCES conversations(id),
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    phone_number_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    wamid TEXT,
    idempotency_key TEXT,
    kind TEXT NOT NULL,
    body TEXT,
    content TEXT NOT NULL DEFAULT '{}',
    context_wamid TEXT,
    source TEXT,
    template_name TEXT,
    template_language TEXT,
    status TEXT NOT NULL,
    error_code INTEGER,
    error_reason TEXT,
    is_sandbox INTEGER NOT NULL DEFAULT 0,
    sent_at INTEGER,
    delivered_at INTEGER,
    read_at INTEGER,
    played_at INTEGER,
    failed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_wamid ON messages(wamid) WHERE wamid IS NOT NULL;
CREATE UNIQUE INDEX messages_idempotency ON messages(idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_conversation ON messages(conversation_id, created_at);
CREATE INDEX messages_contact ON messages(contact_id, created_at);

-- Every status event received, once per (wamid, status); kept even when the
-- message is not (yet) known, so a status that beats the send's own record is
-- not lost.
CREATE TABLE message_status_events (
    id BLOB PRIMARY KEY NOT NULL,
    wamid TEXT NOT NULL,
    status TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    error_code INTEGER,
    error_title TEXT,
    error_detail TEXT,
    applied INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX message_status_events_dedup ON message_status_events(wamid, status);

CREATE TABLE templates (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT 'MARKETING',
    status TEXT NOT NULL,
    rejection_reason TEXT,
    meta_template_id TEXT,
    components TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_name_language ON templates(name, language);
