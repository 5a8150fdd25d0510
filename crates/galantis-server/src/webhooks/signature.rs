//! Webhook signatures, checked over the raw body bytes in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &SecretString, body: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    m.update(body);
    m
}

/// Shopify: `X-Shopify-Hmac-Sha256` is base64 of HMAC-SHA256(body, app
/// secret). Any of `secrets` (current, then previous during a rotation).
pub fn verify_shopify(header: Option<&str>, body: &[u8], secrets: &[&SecretString]) -> bool {
    let Some(sig) = header.and_then(|h| B64.decode(h.trim()).ok()) else {
        return false;
    };
    secrets
        .iter()
        .any(|s| mac(s, body).verify_slice(&sig).is_ok())
}

/// Meta: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body, app secret)>`.
pub fn verify_meta(header: Option<&str>, body: &[u8], secret: &SecretString) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, body).verify_slice(&sig).is_ok()
}

/// Signs like Shopify (for `galantis simulate` and tests).
pub fn sign_shopify(body: &[u8], secret: &SecretString) -> String {
    B64.encode(mac(secret, body).finalize().into_bytes())
}

/// Signs like Meta (for the sandbox and tests).
pub fn sign_meta(body: &[u8], secret: &SecretString) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shopify_round_trip_and_rotation() {
        let old = SecretString::from("old");
        let new = SecretString::from("new");
        let body = br#"{"id":1}"#;
        let sig = sign_shopify(body, &old);
        assert!(verify_shopify(Some(&sig), body, &[&new, &old]));
        assert!(!verify_shopify(Some(&sig), body, &[&new]));
        assert!(!verify_shopify(Some(&sig), b"{\"id\":2}", &[&old]));
        assert!(!verify_shopify(None, body, &[&old]));
        assert!(!verify_shopify(Some("not base64!"), body, &[&old]));
    }

    #[test]
    fn meta_round_trip() {
        let s = SecretString::from("meta");
        let body = b"{}";
        let sig = sign_meta(body, &s);
        assert!(verify_meta(Some(&sig), body, &s));
        assert!(!verify_meta(Some(&sig.replace("sha256=", "")), body, &s));
        assert!(!verify_meta(Some("sha256=zz"), body, &s));
        assert!(!verify_meta(Some(&sig), b"{ }", &s));
    }
}
