-- Inbound messages of every type (issue 13, M2). Times are epoch milliseconds.

-- Media kept for later download (Meta's media id is fetchable for 30 days).
ALTER TABLE messages ADD COLUMN media_id TEXT;
ALTER TABLE messages ADD COLUMN media_mime_type TEXT;
-- The contact's current reaction to this message (one per reactor on
-- WhatsApp), and when it was set or removed: a later reaction wins.
ALTER TABLE messages ADD COLUMN reaction TEXT;
ALTER TABLE messages ADD COLUMN reacted_at INTEGER;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
-- The sender deleted the message for everyone: its body is gone too.
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;

-- Reactions, edits and revokes: each is its own wamid that changes another
-- message. Kept once per wamid, and applied when the message they change is
-- known — at once, or when it arrives later (webhooks come out of order).
-- An applied edit keeps the text it replaced.
CREATE TABLE message_amendments (
    id BLOB PRIMARY KEY NOT NULL,
    wamid TEXT NOT NULL,
    target_wamid TEXT NOT NULL,
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    kind TEXT NOT NULL CHECK (kind IN ('reaction', 'edit', 'revoke')),
    payload TEXT NOT NULL DEFAULT '{}',
    previous_body TEXT,
    occurred_at INTEGER NOT NULL,
    applied_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX message_amendments_wamid ON message_amendments(wamid);
CREATE INDEX message_amendments_target ON message_amendments(target_wamid, occurred_at);

-- A contact's phone number changes (WhatsApp's `user_changed_number`), so the
-- conversation history stays with one contact and the old number is known.
CREATE TABLE contact_phone_changes (
    id BLOB PRIMARY KEY NOT NULL,
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    previous_phone TEXT,
    phone TEXT,
    source TEXT NOT NULL,
    reference TEXT,
    note TEXT,
    occurred_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX contact_phone_changes_contact ON contact_phone_changes(contact_id, occurred_at);
