-- Tenant database: one file per tenant. Everything here belongs to that tenant alone.
CREATE TABLE tenant_settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Encrypted with the tenant's data key (XChaCha20-Poly1305); the AAD binds each
-- ciphertext to its tenant and name, so a row copied elsewhere will not decrypt.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at TEXT NOT NULL
);
