-- Audience: static lists, dynamic segments with materialised membership,
-- collection contents (for "purchased collection" rules) and CSV imports.
-- Times are epoch milliseconds.

CREATE TABLE lists (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    last_used_in_campaign_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX lists_name ON lists(lower(name));

CREATE TABLE list_members (
    list_id BLOB NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    source TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (list_id, contact_id)
);
CREATE INDEX list_members_contact ON list_members(contact_id);

-- `rules` is the validated JSON rule set; `version` grows with each change of
-- the rules; `periodic` marks rules that depend on time (or on data outside
-- contact and order changes) and are re-evaluated by the scheduler.
CREATE TABLE segments (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    rules TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    periodic INTEGER NOT NULL DEFAULT 0,
    referenced_lists TEXT NOT NULL DEFAULT '[]',
    last_evaluated_at INTEGER,
    last_used_in_campaign_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX segments_name ON segments(lower(name));

CREATE TABLE segment_members (
    segment_id BLOB NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    contact_id BLOB NOT NULL REFERENCES contacts(id),
    added_at INTEGER NOT NULL,
    PRIMARY KEY (segment_id, contact_id)
);
CREATE INDEX segment_members_contact ON segment_members(contact_id);

CREATE TABLE collection_products (
    shopify_collection_id INTEGER NOT NULL,
    shopify_product_id INTEGER NOT NULL,
    PRIMARY KEY (shopify_collection_id, shopify_product_id)
);
CREATE INDEX collection_products_product ON collection_products(shopify_product_id);

CREATE TABLE csv_imports (
    id BLOB PRIMARY KEY NOT NULL,
    list_id BLOB NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('uploading', 'queued', 'running', 'completed', 'failed')),
    filename TEXT,
    total_rows INTEGER NOT NULL DEFAULT 0,
    processed_rows INTEGER NOT NULL DEFAULT 0,
    created_count INTEGER NOT NULL DEFAULT 0,
    updated_count INTEGER NOT NULL DEFAULT 0,
    unchanged_count INTEGER NOT NULL DEFAULT 0,
    added_to_list_count INTEGER NOT NULL DEFAULT 0,
    rejected_count INTEGER NOT NULL DEFAULT 0,
    batch_count INTEGER NOT NULL DEFAULT 0,
    next_batch INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_by BLOB,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX csv_imports_list ON csv_imports(list_id, id);

-- Validated rows waiting for the import job, in batches; deleted once applied.
CREATE TABLE csv_import_batches (
    import_id BLOB NOT NULL REFERENCES csv_imports(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    rows TEXT NOT NULL,
    PRIMARY KEY (import_id, seq)
);

-- The row report: every row not imported, with its line and reason.
CREATE TABLE csv_import_rejects (
    import_id BLOB NOT NULL REFERENCES csv_imports(id) ON DELETE CASCADE,
    line INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (import_id, line)
);
