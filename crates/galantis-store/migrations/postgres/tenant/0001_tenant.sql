-- Tenant schema: one per tenant, selected with search_path. Everything here belongs to that tenant alone.
CREATE TABLE tenant_settings (
    key TEXT PRIMARY KEY,
    value JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Encrypted with the tenant's data key (XChaCha20-Poly1305); the AAD binds each
-- ciphertext to its tenant and name, so a row copied elsewhere will not decrypt.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    ciphertext BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
