-- Back in stock, storefront side (issue 16). Times are epoch milliseconds.
-- Widget settings live in tenant_settings under the key 'back_in_stock'.

-- A shopper's request to hear when a Shopify variant is back. At most one
-- open (PENDING or ACTIVE) subscription per contact and variant; NOTIFIED
-- and CANCELLED are kept as history.
CREATE TABLE back_in_stock_subscriptions (
    id BLOB PRIMARY KEY NOT NULL,
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    variant_id INTEGER NOT NULL,
    product_id INTEGER,
    options TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'NOTIFIED', 'CANCELLED')),
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    notified_at INTEGER,
    cancelled_at INTEGER
);
CREATE UNIQUE INDEX back_in_stock_open_per_contact_variant
    ON back_in_stock_subscriptions(contact_id, variant_id)
    WHERE status IN ('PENDING', 'ACTIVE');
CREATE INDEX back_in_stock_variant_status ON back_in_stock_subscriptions(variant_id, status);
CREATE INDEX back_in_stock_notified_at ON back_in_stock_subscriptions(notified_at)
    WHERE notified_at IS NOT NULL;

-- Tracked links (GET /r/{code}). The code starts with the tenant's id, so
-- the redirect finds its tenant without a control-database lookup.
CREATE TABLE short_links (
    id BLOB PRIMARY KEY NOT NULL,
    code TEXT NOT NULL UNIQUE,
    target_url TEXT NOT NULL,
    contact_id BLOB,
    subscription_id BLOB,
    message_id BLOB,
    clicks INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX short_links_subscription ON short_links(subscription_id)
    WHERE subscription_id IS NOT NULL;

CREATE TABLE short_link_clicks (
    id BLOB PRIMARY KEY NOT NULL,
    link_id BLOB NOT NULL REFERENCES short_links(id),
    clicked_at INTEGER NOT NULL
);
CREATE INDEX short_link_clicks_link ON short_link_clicks(link_id, clicked_at);
