-- Store data synced from Shopify, webhook events and domain events.
-- Times are epoch milliseconds; money is kept as Shopify's decimal string plus
-- an integer amount × 100 for comparisons. `shopify_updated_at` orders
-- updates: an older one never overwrites a newer one.

CREATE TABLE webhook_events (
    id UUID PRIMARY KEY,
    source TEXT NOT NULL CHECK (source IN ('shopify', 'meta')),
    topic TEXT NOT NULL,
    external_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('received', 'processed', 'ignored', 'failed')),
    failure_reason TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    payload JSONB NOT NULL,
    triggered_at BIGINT,
    received_at BIGINT NOT NULL,
    processed_at BIGINT
);
CREATE UNIQUE INDEX webhook_events_dedup ON webhook_events(source, external_id);
CREATE INDEX webhook_events_status ON webhook_events(status, id);

CREATE TABLE domain_events (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    subject_id TEXT,
    payload JSONB NOT NULL,
    webhook_event_id UUID,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX domain_events_kind ON domain_events(kind, id);

CREATE TABLE contacts (
    id UUID PRIMARY KEY,
    shopify_customer_id BIGINT,
    first_name TEXT,
    last_name TEXT,
    email TEXT,
    phone TEXT,
    phone_raw TEXT,
    phone_status TEXT CHECK (phone_status IN ('valid', 'missing_calling_code', 'invalid')),
    locale TEXT,
    country TEXT,
    tags JSONB NOT NULL DEFAULT '[]'::jsonb,
    marketing_state TEXT NOT NULL DEFAULT 'UNKNOWN',
    exclude_from_galantis BOOLEAN NOT NULL DEFAULT FALSE,
    orders_count BIGINT NOT NULL DEFAULT 0,
    total_spent_cents BIGINT NOT NULL DEFAULT 0,
    first_order_at BIGINT,
    last_order_at BIGINT,
    last_message_received_at BIGINT,
    last_engaged_at BIGINT,
    shopify_updated_at BIGINT,
    deleted_at BIGINT,
    redacted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX contacts_shopify_id ON contacts(shopify_customer_id) WHERE shopify_customer_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_phone ON contacts(phone) WHERE phone IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX contacts_email ON contacts(email);
CREATE INDEX contacts_state ON contacts(marketing_state, id);

CREATE TABLE consent_events (
    id UUID PRIMARY KEY,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    state TEXT NOT NULL,
    previous_state TEXT,
    source TEXT NOT NULL,
    reference TEXT,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX consent_events_contact ON consent_events(contact_id, occurred_at);

CREATE TABLE orders (
    id UUID PRIMARY KEY,
    shopify_order_id BIGINT NOT NULL UNIQUE,
    contact_id UUID REFERENCES contacts(id),
    shopify_customer_id BIGINT,
    order_number BIGINT,
    total_price TEXT,
    total_price_cents BIGINT NOT NULL DEFAULT 0,
    currency TEXT,
    financial_status TEXT,
    fulfillment_status TEXT,
    checkout_token TEXT,
    tags JSONB NOT NULL DEFAULT '[]'::jsonb,
    line_items JSONB NOT NULL DEFAULT '[]'::jsonb,
    cancelled_at BIGINT,
    cancel_reason TEXT,
    shipped_at BIGINT,
    payload JSONB NOT NULL,
    shopify_created_at BIGINT,
    shopify_updated_at BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_contact ON orders(contact_id, shopify_created_at);
CREATE INDEX orders_customer ON orders(shopify_customer_id);
CREATE INDEX orders_checkout_token ON orders(checkout_token);

CREATE TABLE products (
    id UUID PRIMARY KEY,
    shopify_product_id BIGINT NOT NULL UNIQUE,
    title TEXT,
    body_html TEXT,
    vendor TEXT,
    product_type TEXT,
    handle TEXT,
    status TEXT,
    tags JSONB NOT NULL DEFAULT '[]'::jsonb,
    images JSONB NOT NULL DEFAULT '[]'::jsonb,
    options JSONB NOT NULL DEFAULT '[]'::jsonb,
    payload JSONB NOT NULL,
    meta_sync_status TEXT NOT NULL DEFAULT 'PENDING',
    meta_sync_error TEXT,
    shopify_updated_at BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE variants (
    id UUID PRIMARY KEY,
    shopify_variant_id BIGINT NOT NULL UNIQUE,
    product_id UUID NOT NULL REFERENCES products(id),
    title TEXT,
    sku TEXT,
    price TEXT,
    compare_at_price TEXT,
    inventory_quantity BIGINT,
    inventory_item_id BIGINT,
    option1 TEXT,
    option2 TEXT,
    option3 TEXT,
    image_id BIGINT,
    position BIGINT,
    deleted_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX variants_product ON variants(product_id);
CREATE INDEX variants_inventory_item ON variants(inventory_item_id);

CREATE TABLE inventory_levels (
    inventory_item_id BIGINT NOT NULL,
    location_id BIGINT NOT NULL,
    available BIGINT NOT NULL,
    shopify_updated_at BIGINT,
    PRIMARY KEY (inventory_item_id, location_id)
);

CREATE TABLE collections (
    id UUID PRIMARY KEY,
    shopify_collection_id BIGINT NOT NULL UNIQUE,
    title TEXT,
    handle TEXT,
    products_count BIGINT,
    payload JSONB NOT NULL,
    shopify_updated_at BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE checkouts (
    id UUID PRIMARY KEY,
    shopify_checkout_id BIGINT NOT NULL UNIQUE,
    token TEXT,
    contact_id UUID REFERENCES contacts(id),
    email TEXT,
    phone TEXT,
    total_price TEXT,
    total_price_cents BIGINT NOT NULL DEFAULT 0,
    currency TEXT,
    abandoned_checkout_url TEXT,
    line_items JSONB NOT NULL DEFAULT '[]'::jsonb,
    completed_at BIGINT,
    payload JSONB NOT NULL,
    shopify_updated_at BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX checkouts_token ON checkouts(token);

CREATE TABLE compliance_requests (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('customers_redact', 'shop_redact', 'customers_data_request')),
    shopify_customer_id BIGINT,
    webhook_event_id UUID,
    received_at BIGINT NOT NULL,
    deadline_at BIGINT NOT NULL,
    completed_at BIGINT,
    export JSONB
);
