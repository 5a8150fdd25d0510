//! Shopify App Proxy signatures.
//!
//! Shopify forwards `https://{shop}/apps/galantis/…` to us with `shop`,
//! `logged_in_customer_id`, `path_prefix`, `timestamp` and `signature` added
//! to the query. Per Shopify's "Authenticate app proxies"
//! (https://shopify.dev/docs/apps/build/online-store/app-proxies/authenticate-app-proxies):
//! remove `signature`; decode each parameter; join the values of a repeated
//! key with `,`; sort the `key=value` strings; concatenate them with **no**
//! separator; the signature is the lowercase hex HMAC-SHA256 of that string
//! with the app's shared secret. The unit test below uses the example from
//! that page (secret `hush`).
//!
//! The signature covers the query only (not the body, not the client's IP).
//! `timestamp` is checked against the clock so a captured URL cannot be
//! replayed for long.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Decoded query pairs, in order, repeated keys kept.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    url_decode_pairs(query)
}

fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    fn hex_val(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The string Shopify signs: sorted `key=v1,v2` strings, concatenated.
pub fn message(pairs: &[(String, String)]) -> String {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        if k != "signature" {
            by_key.entry(k).or_default().push(v);
        }
    }
    let mut parts: Vec<String> = by_key
        .into_iter()
        .map(|(k, vs)| format!("{k}={}", vs.join(",")))
        .collect();
    parts.sort();
    parts.concat()
}

fn mac(secret: &SecretString, message: &str) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    m.update(message.as_bytes());
    m
}

/// Whether `pairs` carry a valid `signature` under one of `secrets`
/// (compared in constant time).
pub fn verify(pairs: &[(String, String)], secrets: &[&SecretString]) -> bool {
    let sigs: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "signature")
        .map(|(_, v)| v.as_str())
        .collect();
    let [sig] = sigs.as_slice() else {
        return false;
    };
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    let msg = message(pairs);
    secrets
        .iter()
        .any(|s| mac(s, &msg).verify_slice(&sig).is_ok())
}

/// The hex signature of `pairs` (for the sandbox demo page and tests).
pub fn sign(pairs: &[(String, String)], secret: &SecretString) -> String {
    hex::encode(mac(secret, &message(pairs)).finalize().into_bytes())
}

/// `pairs` plus their `signature`, as a query string.
pub fn signed_query(pairs: &[(&str, &str)], secret: &SecretString) -> String {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let sig = sign(&owned, secret);
    let mut q: Vec<String> = owned
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    q.push(format!("signature={sig}"));
    q.join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shopify's documented example: secret `hush`.
    const DOC_QUERY: &str = "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1&path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555";
    const DOC_SIGNATURE: &str = "4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb";

    #[test]
    fn shopify_documented_example_verifies() {
        let hush = SecretString::from("hush");
        let pairs = parse_query(&format!("{DOC_QUERY}&signature={DOC_SIGNATURE}"));
        assert_eq!(
            message(&pairs),
            "extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviewsshop=shop-name.myshopify.comtimestamp=1317327555"
        );
        assert!(verify(&pairs, &[&hush]));
        assert!(!verify(&pairs, &[&SecretString::from("other")]));
        // Any changed parameter breaks it.
        let tampered = parse_query(&format!(
            "{}&signature={DOC_SIGNATURE}",
            DOC_QUERY.replace("shop-name", "other-shop")
        ));
        assert!(!verify(&tampered, &[&hush]));
        // No signature, two signatures, non-hex: refused.
        assert!(!verify(&parse_query(DOC_QUERY), &[&hush]));
        assert!(!verify(
            &parse_query(&format!(
                "{DOC_QUERY}&signature={DOC_SIGNATURE}&signature={DOC_SIGNATURE}"
            )),
            &[&hush]
        ));
        assert!(!verify(
            &parse_query(&format!("{DOC_QUERY}&signature=zz")),
            &[&hush]
        ));
    }

    #[test]
    fn signed_queries_round_trip() {
        let s = SecretString::from("k");
        let q = signed_query(
            &[
                ("shop", "a.myshopify.com"),
                ("path_prefix", "/apps/galantis"),
                ("timestamp", "5"),
            ],
            &s,
        );
        assert!(verify(&parse_query(&q), &[&s]));
        assert_eq!(decode("%2Fa+b%zz"), "/a b%zz");
    }
}
