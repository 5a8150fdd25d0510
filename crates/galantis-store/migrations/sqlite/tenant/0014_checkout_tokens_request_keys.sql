-- Checkouts from current Shopify API versions may carry only a `token`
-- (no numeric `id`): the id becomes optional and the token identifies them.
-- SQLite cannot drop NOT NULL in place, so the table is rebuilt.
CREATE TABLE checkouts_new (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_checkout_id INTEGER UNIQUE,
    token TEXT,
    contact_id BLOB REFERENCES contacts(id),
    email TEXT,
    phone TEXT,
    total_price TEXT,
    total_price_cents INTEGER NOT NULL DEFAULT 0,
    currency TEXT,
    abandoned_checkout_url TEXT,
    line_items TEXT NOT NULL DEFAULT '[]',
    completed_at INTEGER,
    payload TEXT NOT NULL,
    shopify_updated_at INTEGER,
    deleted_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (shopify_checkout_id IS NOT NULL OR token IS NOT NULL)
);
INSERT INTO checkouts_new SELECT id, shopify_checkout_id, token, contact_id, email, phone, total_price,
    total_price_cents, currency, abandoned_checkout_url, line_items, completed_at, payload, shopify_updated_at,
    deleted_at, created_at, updated_at FROM checkouts;
DROP TABLE checkouts;
ALTER TABLE checkouts_new RENAME TO checkouts;
CREATE INDEX checkouts_token ON checkouts(token);

-- One compliance request per Shopify request: a redelivered
-- `customers/data_request` (same `data_request.id`) or `customers/redact`
-- (same customer and orders) finds its key and is not answered twice.
ALTER TABLE compliance_requests ADD COLUMN request_key TEXT;
CREATE UNIQUE INDEX compliance_requests_key ON compliance_requests(kind, request_key) WHERE request_key IS NOT NULL;
