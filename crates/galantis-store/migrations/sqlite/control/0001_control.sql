-- Control database: who the tenants are, who may act for them, and the key check.
CREATE TABLE tenants (
    id BLOB PRIMARY KEY NOT NULL,
    shop_domain TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
    wrapped_data_key BLOB NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deactivated_at TEXT
);

CREATE TABLE members (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email TEXT,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX members_tenant_email ON members(tenant_id, email);
-- One owner per tenant, enforced by the database.
CREATE UNIQUE INDEX members_one_owner ON members(tenant_id) WHERE role = 'OWNER';

CREATE TABLE api_tokens (
    id BLOB PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    member_id BLOB NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    label TEXT,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX api_tokens_member ON api_tokens(member_id);

CREATE TABLE phone_numbers (
    phone_number_id TEXT PRIMARY KEY NOT NULL,
    tenant_id BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    waba_id TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX phone_numbers_tenant ON phone_numbers(tenant_id);
CREATE INDEX phone_numbers_waba ON phone_numbers(waba_id);

CREATE TABLE keyring (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    master_key_check BLOB NOT NULL,
    created_at TEXT NOT NULL,
    rotated_at TEXT
);
