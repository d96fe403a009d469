//! API token values: `fsk_<lookup>_<secret>`. The lookup part (12 alphanumerics) finds the
//! token's row and may be shown; the secret (256 random bits, base64url) is stored only as an
//! HMAC-SHA256 under the server's pepper and compared in constant time.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto::Secret;

pub const PREFIX: &str = "fsk_";
const LOOKUP_LEN: usize = 12;
/// 256 bits in base64url; operator-made tokens (the chart's) may be longer.
const MIN_SECRET_LEN: usize = 43;
const MAX_TOKEN_LEN: usize = 512;

/// The key of token hashes: 32 random bytes the server makes once and keeps sealed in the
/// database (see `manage::pepper`). Never shown.
pub struct Pepper([u8; 32]);

impl Pepper {
    pub fn generate() -> Pepper {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Pepper(key)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Pepper> {
        <[u8; 32]>::try_from(bytes).ok().map(Pepper)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Pepper {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A token as presented: its lookup key and its secret part.
#[derive(Debug)]
pub struct Presented<'a> {
    pub lookup: &'a str,
    secret: &'a str,
}

/// A new random token; the value is shown once and never stored.
pub fn generate() -> (Secret, String) {
    let mut lookup_bytes = [0u8; LOOKUP_LEN];
    OsRng.fill_bytes(&mut lookup_bytes);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // A lookup key is not secret; the slight modulo bias does not matter.
    let lookup: String = lookup_bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let value = Secret::new(format!("{PREFIX}{lookup}_{}", B64.encode(secret)));
    (value, lookup)
}

/// Splits a presented token; None when it does not have the token shape.
pub fn parse(text: &str) -> Option<Presented<'_>> {
    if text.len() > MAX_TOKEN_LEN {
        return None;
    }
    let rest = text.strip_prefix(PREFIX)?;
    let lookup = rest.get(..LOOKUP_LEN)?;
    let secret = rest.get(LOOKUP_LEN..)?.strip_prefix('_')?;
    let ok_lookup = lookup.bytes().all(|b| b.is_ascii_alphanumeric());
    let ok_secret =
        secret.len() >= MIN_SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (ok_lookup && ok_secret).then_some(Presented { lookup, secret })
}

/// Why a token value given by an operator (the chart's bootstrap token) is not usable.
pub fn check_shape(text: &str) -> Result<(), String> {
    parse(text).map(|_| ()).ok_or_else(|| {
        format!("a token is {PREFIX}<{LOOKUP_LEN} letters or digits>_<at least {MIN_SECRET_LEN} of A-Z a-z 0-9 - _>")
    })
}

/// The stored form of a token's secret.
pub fn hash(pepper: &Pepper, presented: &Presented<'_>) -> Vec<u8> {
    mac(pepper, presented).finalize().into_bytes().to_vec()
}

/// Whether `presented` is the token whose stored hash is `expected` (constant time).
pub fn verify(pepper: &Pepper, presented: &Presented<'_>, expected: &[u8]) -> bool {
    mac(pepper, presented).verify_slice(expected).is_ok()
}

fn mac(pepper: &Pepper, presented: &Presented<'_>) -> Hmac<Sha256> {
    // HMAC takes keys of any length; 32 bytes cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&pepper.0).expect("HMAC accepts 32-byte keys");
    mac.update(presented.lookup.as_bytes());
    mac.update(b"_");
    mac.update(presented.secret.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_verify() {
        let key = Pepper([7u8; 32]);
        let (value, lookup) = generate();
        let presented = parse(value.expose()).expect("own shape");
        assert_eq!(presented.lookup, lookup);
        let stored = hash(&key, &presented);
        assert!(verify(&key, &presented, &stored));
        assert!(!verify(&Pepper([8u8; 32]), &presented, &stored), "another key");
        let (other, _) = generate();
        assert!(!verify(&key, &parse(other.expose()).unwrap(), &stored), "another token");
        // 256 bits of secret.
        assert!(value.expose().len() >= PREFIX.len() + LOOKUP_LEN + 1 + 43);
    }

    #[test]
    fn tampered_secret_fails() {
        let key = Pepper([1u8; 32]);
        let (value, _) = generate();
        let stored = hash(&key, &parse(value.expose()).unwrap());
        let mut tampered = value.expose().to_string();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!verify(&key, &parse(&tampered).unwrap(), &stored));
    }

    #[test]
    fn shapes() {
        let good = format!("fsk_abcDEF123456_{}", "x".repeat(48));
        assert!(parse(&good).is_some());
        for bad in [
            "".to_string(),
            "Bearer x".to_string(),
            format!("fsk_abc_{}", "x".repeat(48)),
            format!("fsk_abcdef123456_{}", "x".repeat(10)),
            format!("fsk_abcdef123456-{}", "x".repeat(48)),
            format!("fsk_abcdef12345!_{}", "x".repeat(48)),
            format!("fsk_abcdef123456_{}", "x".repeat(600)),
            format!("fsk_abcdef123456_{}é", "x".repeat(48)),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
        assert!(check_shape("nope").unwrap_err().contains("fsk_"));
    }
}
