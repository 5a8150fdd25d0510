-- Store data synced from Shopify, webhook events and domain events.
-- Times are epoch milliseconds; money is kept as Shopify's decimal string plus
-- an integer amount × 100 for comparisons. `shopify_updated_at` orders
-- updates: an older one never overwrites a newer one.

CREATE TABLE webhook_events (
    id BLOB PRIMARY KEY NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('shopify', 'meta')),
    topic TEXT NOT NULL,
    external_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('received', 'processed', 'ignored', 'failed')),
    failure_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    triggered_at INTEGER,
    received_at INTEGER NOT NULL,
    processed_at INTEGER
);
CREATE UNIQUE INDEX webhook_events_dedup ON webhook_events(source, external_id);
CREATE INDEX webhook_events_status ON webhook_events(status, id);

CREATE TABLE domain_events (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    subject_id TEXT,
    payload TEXT NOT NULL,
    webhook_event_id BLOB,
    occurred_at INTEGER NOT NULL
);
CREATE INDEX domain_events_kind ON domain_events(kind, id);

CREATE TABLE contacts (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_customer_id INTEGER,
    first_name TEXT,
    last_name TEXT,
    email TEXT,
    phone TEXT,
    phone_raw TEXT,
    phone_status TEXT CHECK (phone_status IN ('valid', 'missing_calling_code', 'invalid')),
    locale TEXT,
    country TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    marketing_state TEXT NOT NULL DEFAULT 'UNKNOWN',
    exclude_from_galantis INTEGER NOT NULL DEFAULT 0,
    orders_count INTEGER NOT NULL DEFAULT 0,
    total_spent_cents INTEGER NOT NULL DEFAULT 0,
    first_order_at INTEGER,
    last_order_at INTEGER,
    last_message_received_at INTEGER,
    last_engaged_at INTEGER,
    shopify_updated_at INTEGER,
    deleted_at INTEGER,
    redacted_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX contacts_shopify_id ON contacts(shopify_customer_id) WHERE shopify_customer_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_phone ON contacts(phone) WHERE phone IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX contacts_email ON contacts(email);
CREATE INDEX contacts_state ON contacts(marketing_state, id);

CREATE TABLE consent_events (
    id BLOB PRIMARY KEY NOT NULL,
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    state TEXT NOT NULL,
    previous_state TEXT,
    source TEXT NOT NULL,
    reference TEXT,
    occurred_at INTEGER NOT NULL
);
CREATE INDEX consent_events_contact ON consent_events(contact_id, occurred_at);

CREATE TABLE orders (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_order_id INTEGER NOT NULL UNIQUE,
    contact_id BLOB REFERENCES contacts(id),
    shopify_customer_id INTEGER,
    order_number INTEGER,
    total_price TEXT,
    total_price_cents INTEGER NOT NULL DEFAULT 0,
    currency TEXT,
    financial_status TEXT,
    fulfillment_status TEXT,
    checkout_token TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    line_items TEXT NOT NULL DEFAULT '[]',
    cancelled_at INTEGER,
    cancel_reason TEXT,
    shipped_at INTEGER,
    payload TEXT NOT NULL,
    shopify_created_at INTEGER,
    shopify_updated_at INTEGER,
    deleted_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX orders_contact ON orders(contact_id, shopify_created_at);
CREATE INDEX orders_customer ON orders(shopify_customer_id);
CREATE INDEX orders_checkout_token ON orders(checkout_token);

CREATE TABLE products (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_product_id INTEGER NOT NULL UNIQUE,
    title TEXT,
    body_html TEXT,
    vendor TEXT,
    product_type TEXT,
    handle TEXT,
    status TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    images TEXT NOT NULL DEFAULT '[]',
    options TEXT NOT NULL DEFAULT '[]',
    payload TEXT NOT NULL,
    meta_sync_status TEXT NOT NULL DEFAULT 'PENDING',
    meta_sync_error TEXT,
    shopify_updated_at INTEGER,
    deleted_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE variants (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_variant_id INTEGER NOT NULL UNIQUE,
    product_id BLOB NOT NULL REFERENCES products(id),
    title TEXT,
    sku TEXT,
    price TEXT,
    compare_at_price TEXT,
    inventory_quantity INTEGER,
    inventory_item_id INTEGER,
    option1 TEXT,
    option2 TEXT,
    option3 TEXT,
    image_id INTEGER,
    position INTEGER,
    deleted_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX variants_product ON variants(product_id);
CREATE INDEX variants_inventory_item ON variants(inventory_item_id);

CREATE TABLE inventory_levels (
    inventory_item_id INTEGER NOT NULL,
    location_id INTEGER NOT NULL,
    available INTEGER NOT NULL,
    shopify_updated_at INTEGER,
    PRIMARY KEY (inventory_item_id, location_id)
);

CREATE TABLE collections (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_collection_id INTEGER NOT NULL UNIQUE,
    title TEXT,
    handle TEXT,
    products_count INTEGER,
    payload TEXT NOT NULL,
    shopify_updated_at INTEGER,
    deleted_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE checkouts (
    id BLOB PRIMARY KEY NOT NULL,
    shopify_checkout_id INTEGER NOT NULL UNIQUE,
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
    updated_at INTEGER NOT NULL
);
CREATE INDEX checkouts_token ON checkouts(token);

CREATE TABLE compliance_requests (
    id BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('customers_redact', 'shop_redact', 'customers_data_request')),
    shopify_customer_id INTEGER,
    webhook_event_id BLOB,
    received_at INTEGER NOT NULL,
    deadline_at INTEGER NOT NULL,
    completed_at INTEGER,
    export TEXT
);
