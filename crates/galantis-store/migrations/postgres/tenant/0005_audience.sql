-- Audience: static lists, dynamic segments with materialised membership,
-- collection contents (for "purchased collection" rules) and CSV imports.
-- Times are epoch milliseconds.

CREATE TABLE lists (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    last_used_in_campaign_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX lists_name ON lists(lower(name));

CREATE TABLE list_members (
    list_id UUID NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    source TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (list_id, contact_id)
);
CREATE INDEX list_members_contact ON list_members(contact_id);

-- `rules` is the validated JSON rule set; `version` grows with each change of
-- the rules; `periodic` marks rules that depend on time (or on data outside
-- contact and order changes) and are re-evaluated by the scheduler.
CREATE TABLE segments (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    rules JSONB NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    periodic BOOLEAN NOT NULL DEFAULT FALSE,
    referenced_lists JSONB NOT NULL DEFAULT '[]'::jsonb,
    last_evaluated_at BIGINT,
    last_used_in_campaign_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX segments_name ON segments(lower(name));

CREATE TABLE segment_members (
    segment_id UUID NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (segment_id, contact_id)
);
CREATE INDEX segment_members_contact ON segment_members(contact_id);

CREATE TABLE collection_products (
    shopify_collection_id BIGINT NOT NULL,
    shopify_product_id BIGINT NOT NULL,
    PRIMARY KEY (shopify_collection_id, shopify_product_id)
);
CREATE INDEX collection_products_product ON collection_products(shopify_product_id);

CREATE TABLE csv_imports (
    id UUID PRIMARY KEY,
    list_id UUID NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('uploading', 'queued', 'running', 'completed', 'failed')),
    filename TEXT,
    total_rows BIGINT NOT NULL DEFAULT 0,
    processed_rows BIGINT NOT NULL DEFAULT 0,
    created_count BIGINT NOT NULL DEFAULT 0,
    updated_count BIGINT NOT NULL DEFAULT 0,
    unchanged_count BIGINT NOT NULL DEFAULT 0,
    added_to_list_count BIGINT NOT NULL DEFAULT 0,
    rejected_count BIGINT NOT NULL DEFAULT 0,
    batch_count BIGINT NOT NULL DEFAULT 0,
    next_batch BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    created_by UUID,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX csv_imports_list ON csv_imports(list_id, id);

-- Validated rows waiting for the import job, in batches; deleted once applied.
CREATE TABLE csv_import_batches (
    import_id UUID NOT NULL REFERENCES csv_imports(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    rows JSONB NOT NULL,
    PRIMARY KEY (import_id, seq)
);

-- The row report: every row not imported, with its line and reason.
CREATE TABLE csv_import_rejects (
    import_id UUID NOT NULL REFERENCES csv_imports(id) ON DELETE CASCADE,
    line BIGINT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (import_id, line)
);
