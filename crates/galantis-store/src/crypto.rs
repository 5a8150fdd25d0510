//! Envelope encryption for tenant secrets.
//!
//! Each tenant has a random 32-byte data key. The data key is stored only
//! wrapped (encrypted) by the master key; secrets are encrypted by the data key.
//! Rotating the master key therefore re-wraps a few bytes per tenant and never
//! touches the secrets. Every ciphertext is `nonce (24) || XChaCha20-Poly1305
//! output`, with associated data binding it to its tenant and purpose.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use galantis_core::TenantId;
use zeroize::{Zeroize, ZeroizeOnDrop};

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const CHECK_PLAINTEXT: &[u8] = b"galantis master key check v1";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the master key is not the one this database was encrypted with (check GALANTIS_MASTER_KEY)"
    )]
    WrongMasterKey,
    #[error("GALANTIS_MASTER_KEY must be base64 of exactly 32 bytes")]
    InvalidMasterKey,
    #[error("a stored secret could not be decrypted (it was altered or belongs elsewhere)")]
    Undecryptable,
    #[error("the operating system's random source failed")]
    Random,
    #[error("could not {action} the master key file {path}: {source}")]
    KeyFile {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| CryptoError::Random)?;
    Ok(buf)
}

fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = random_bytes::<NONCE_LEN>()?;
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Random)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

/// The key that wraps every tenant's data key. Never printed: `Debug` shows a
/// fingerprint-free placeholder and the bytes are zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(random_bytes()?))
    }

    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let mut bytes = B64
            .decode(encoded.trim())
            .map_err(|_| CryptoError::InvalidMasterKey)?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::InvalidMasterKey)?;
        bytes.zeroize();
        Ok(Self(key))
    }

    /// Base64 form, for writing the key file or showing a freshly rotated key
    /// to the operator once. Callers must never log it.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Reads the key file, or creates it with a fresh key (mode 0600) when it
    /// does not exist. Returns whether it was created.
    pub fn load_or_create_file(path: &Path) -> Result<(Self, bool), CryptoError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::from_base64(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.write_file(path)?;
                Ok((key, true))
            }
            Err(source) => Err(CryptoError::KeyFile {
                action: "read",
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Writes the key to `path` with owner-only permissions, atomically
    /// (temporary file, then rename), so a crash never leaves half a key.
    pub fn write_file(&self, path: &Path) -> Result<(), CryptoError> {
        let err = |action, source| CryptoError::KeyFile {
            action,
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(|e| err("create", e))?;
            f.write_all(self.to_base64().as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| err("write", e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| err("install", e))
    }

    /// A value stored once in the control database; decrypting it proves this
    /// is the right master key before anything else is attempted.
    pub fn make_check(&self) -> Result<Vec<u8>, CryptoError> {
        seal(&self.0, b"galantis:master-check", CHECK_PLAINTEXT)
    }

    pub fn verify_check(&self, check: &[u8]) -> Result<(), CryptoError> {
        match open(&self.0, b"galantis:master-check", check) {
            Some(p) if p == CHECK_PLAINTEXT => Ok(()),
            _ => Err(CryptoError::WrongMasterKey),
        }
    }

    fn wrap_aad(tenant: TenantId) -> Vec<u8> {
        format!("galantis:data-key:v1:{tenant}").into_bytes()
    }

    pub fn wrap(&self, tenant: TenantId, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        seal(&self.0, &Self::wrap_aad(tenant), &key.0)
    }

    pub fn unwrap(&self, tenant: TenantId, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let mut plain =
            open(&self.0, &Self::wrap_aad(tenant), wrapped).ok_or(CryptoError::WrongMasterKey)?;
        let key: Result<[u8; KEY_LEN], _> = plain.as_slice().try_into();
        plain.zeroize();
        key.map(DataKey).map_err(|_| CryptoError::WrongMasterKey)
    }
}

/// One tenant's key for its secrets. Zeroed on drop; never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_LEN]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(random_bytes()?))
    }

    fn secret_aad(tenant: TenantId, name: &str) -> Vec<u8> {
        format!("galantis:secret:v1:{tenant}:{name}").into_bytes()
    }

    pub fn encrypt(
        &self,
        tenant: TenantId,
        name: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        seal(&self.0, &Self::secret_aad(tenant, name), plain)
    }

    pub fn decrypt(
        &self,
        tenant: TenantId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        open(&self.0, &Self::secret_aad(tenant, name), sealed).ok_or(CryptoError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trips_and_binds_to_tenant() {
        let master = MasterKey::generate().unwrap();
        let (a, b) = (TenantId::new(), TenantId::new());
        let dk = DataKey::generate().unwrap();
        let wrapped = master.wrap(a, &dk).unwrap();
        let back = master.unwrap(a, &wrapped).unwrap();
        assert_eq!(back.0, dk.0);
        assert!(
            master.unwrap(b, &wrapped).is_err(),
            "wrapped key must not move between tenants"
        );
        let other = MasterKey::generate().unwrap();
        assert!(matches!(
            other.unwrap(a, &wrapped),
            Err(CryptoError::WrongMasterKey)
        ));
    }

    #[test]
    fn secrets_round_trip_and_hide_plaintext() {
        let t = TenantId::new();
        let dk = DataKey::generate().unwrap();
        let sealed = dk
            .encrypt(t, "shopify_token", b"shpat_supersecret")
            .unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"supers"));
        assert_eq!(
            dk.decrypt(t, "shopify_token", &sealed).unwrap(),
            b"shpat_supersecret"
        );
        assert!(
            dk.decrypt(t, "meta_token", &sealed).is_err(),
            "name is bound"
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(dk.decrypt(t, "shopify_token", &tampered).is_err());
    }

    #[test]
    fn master_check_detects_a_wrong_key() {
        let k = MasterKey::generate().unwrap();
        let check = k.make_check().unwrap();
        k.verify_check(&check).unwrap();
        assert!(MasterKey::generate().unwrap().verify_check(&check).is_err());
    }

    #[test]
    fn master_key_parsing() {
        let k = MasterKey::generate().unwrap();
        let back = MasterKey::from_base64(&k.to_base64()).unwrap();
        assert_eq!(back.0, k.0);
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("!!!").is_err());
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (k, created) = MasterKey::load_or_create_file(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = MasterKey::load_or_create_file(&path).unwrap();
        assert!(!created);
        assert_eq!(again.0, k.0);
    }
}
