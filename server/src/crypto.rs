//! Sealing of secrets at rest with AES-256-GCM.
//!
//! Every value gets a fresh random 96-bit nonce and is bound (as associated data) to the
//! row and column it belongs to, so a sealed value copied into another row does not open.
//! The key id is stored beside the ciphertext: old keys keep decrypting after a rotation,
//! and `rotate-keys` re-seals everything with the primary key.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroize;

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("encryption key: {0}")]
    BadKey(String),
    #[error("no encryption key with id {0:?} is loaded")]
    UnknownKeyId(String),
    #[error("sealed value could not be opened (wrong key or tampered data)")]
    Open,
}

/// A secret in memory. Its Debug and Display never show the value, so it cannot leak into
/// logs or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A sealed value as stored: `nonce || ciphertext+tag`, and the id of the key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

/// The loaded keys. The first key of the file (or the only key of the environment variable)
/// is the primary: it seals; all keys open.
pub struct Keyring {
    primary: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring").field("primary", &self.primary).field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses keys, one per line: `<key-id> <base64 of 32 bytes>`; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Keyring, CryptoError> {
        let mut primary = None;
        let mut keys = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, encoded) = line
                .split_once(char::is_whitespace)
                .or_else(|| line.split_once(':'))
                .ok_or_else(|| CryptoError::BadKey(format!("line {}: expected `<key-id> <base64 key>`", index + 1)))?;
            let (id, encoded) = (id.trim(), encoded.trim());
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
                return Err(CryptoError::BadKey(format!("line {}: key id must be [A-Za-z0-9._-]+", index + 1)));
            }
            let raw = B64
                .decode(encoded)
                .map_err(|_| CryptoError::BadKey(format!("line {}: key is not valid base64", index + 1)))?;
            if raw.len() != KEY_LEN {
                return Err(CryptoError::BadKey(format!(
                    "line {}: key must be {KEY_LEN} bytes, got {}",
                    index + 1,
                    raw.len()
                )));
            }
            if keys.insert(id.to_string(), Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&raw))).is_some() {
                return Err(CryptoError::BadKey(format!("line {}: duplicate key id {id:?}", index + 1)));
            }
            primary.get_or_insert_with(|| id.to_string());
        }
        let primary = primary.ok_or_else(|| CryptoError::BadKey("no key found".into()))?;
        Ok(Keyring { primary, keys })
    }

    pub fn load(path: &Path) -> Result<Keyring, CryptoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CryptoError::KeyFile { path: path.display().to_string(), reason: e.to_string() })?;
        Keyring::parse(&text)
            .map_err(|e| CryptoError::KeyFile { path: path.display().to_string(), reason: e.to_string() })
    }

    /// A new key line `<key-id> <base64>` with 32 random bytes.
    pub fn generate_key_line(key_id: &str) -> String {
        let key = Aes256Gcm::generate_key(OsRng);
        format!("{key_id} {}\n", B64.encode(key))
    }

    /// Generates a key file with one fresh key unless the file exists; returns the keyring.
    pub fn load_or_create(path: &Path) -> Result<Keyring, CryptoError> {
        if !path.exists() {
            let key_file_error =
                |e: std::io::Error| CryptoError::KeyFile { path: path.display().to_string(), reason: e.to_string() };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(key_file_error)?;
            }
            let id = format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            write_private_file(path, Keyring::generate_key_line(&id).as_bytes()).map_err(key_file_error)?;
        }
        Keyring::load(path)
    }

    pub fn primary_key_id(&self) -> &str {
        &self.primary
    }

    /// Seals `plaintext`, bound to `context` (e.g. "repositories.secret:<id>").
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Sealed {
        let cipher = &self.keys[&self.primary];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and in-memory buffers cannot fail short of OOM.
        let ciphertext = cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Sealed { key_id: self.primary.clone(), blob }
    }

    pub fn seal_secret(&self, secret: &Secret, context: &str) -> Sealed {
        self.seal(secret.expose().as_bytes(), context)
    }

    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Vec<u8>, CryptoError> {
        let cipher = self.keys.get(&sealed.key_id).ok_or_else(|| CryptoError::UnknownKeyId(sealed.key_id.clone()))?;
        if sealed.blob.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| CryptoError::Open)
    }

    pub fn open_secret(&self, sealed: &Sealed, context: &str) -> Result<Secret, CryptoError> {
        let bytes = self.open(sealed, context)?;
        String::from_utf8(bytes).map(Secret).map_err(|_| CryptoError::Open)
    }

    /// Whether `sealed` needs re-sealing to be under the primary key.
    pub fn is_stale(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.primary
    }
}

/// Associated data binding a repository's sealed credential to its row.
pub fn repository_secret_context(id: uuid::Uuid) -> String {
    format!("repositories.secret:{id}")
}

/// Associated data binding a repository's sealed webhook secret to its row.
pub fn repository_webhook_context(id: uuid::Uuid) -> String {
    format!("repositories.webhook_secret:{id}")
}

/// Associated data binding a fabric's sealed cluster bearer token to its row.
pub fn fabric_token_context(id: uuid::Uuid) -> String {
    format!("fabrics.cluster_token:{id}")
}

pub fn inventory_cluster_token_context(fabric_id: uuid::Uuid, name: &str) -> String {
    format!("inventory_clusters.token:{fabric_id}:{name}")
}

pub fn server_key_context(name: &str) -> String {
    format!("server_keys.secret:{name}")
}

/// Writes a file readable by its owner only (keys, passwords).
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[&str]) -> Keyring {
        let text: String = lines.iter().map(|id| Keyring::generate_key_line(id)).collect();
        Keyring::parse(&text).unwrap()
    }

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let keys = ring(&["a"]);
        let one = keys.seal(b"hunter2", "repositories.secret:1");
        let two = keys.seal(b"hunter2", "repositories.secret:1");
        assert_ne!(one.blob, two.blob, "each seal uses a fresh nonce");
        assert!(!one.blob.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keys.open(&one, "repositories.secret:1").unwrap(), b"hunter2");
    }

    #[test]
    fn sealed_value_is_bound_to_its_context() {
        let keys = ring(&["a"]);
        let sealed = keys.seal(b"token", "repositories.secret:1");
        assert!(matches!(keys.open(&sealed, "repositories.secret:2"), Err(CryptoError::Open)));
    }

    #[test]
    fn tampered_or_short_blobs_do_not_open() {
        let keys = ring(&["a"]);
        let mut sealed = keys.seal(b"token", "c");
        let last = sealed.blob.len() - 1;
        sealed.blob[last] ^= 1;
        assert!(matches!(keys.open(&sealed, "c"), Err(CryptoError::Open)));
        let short = Sealed { key_id: "a".into(), blob: vec![1, 2, 3] };
        assert!(matches!(keys.open(&short, "c"), Err(CryptoError::Open)));
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let old_line = Keyring::generate_key_line("old");
        let old = Keyring::parse(&old_line).unwrap();
        let sealed = old.seal(b"pw", "c");
        let rotated = Keyring::parse(&format!("{}{old_line}", Keyring::generate_key_line("new"))).unwrap();
        assert_eq!(rotated.primary_key_id(), "new");
        assert!(rotated.is_stale(&sealed));
        assert_eq!(rotated.open(&sealed, "c").unwrap(), b"pw");
        let resealed = rotated.seal(b"pw", "c");
        assert_eq!(resealed.key_id, "new");
        assert!(matches!(old.open(&resealed, "c"), Err(CryptoError::UnknownKeyId(id)) if id == "new"));
    }

    #[test]
    fn bad_key_files_are_rejected_without_echoing_the_key() {
        for (text, expect) in
            [("", "no key"), ("a notbase64!!", "base64"), ("a AAAA", "32 bytes"), ("bad/id AAAA", "key id")]
        {
            let err = Keyring::parse(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(!err.contains("AAAA") && !err.contains("notbase64"), "{err}");
        }
        let line = Keyring::generate_key_line("a");
        let err = Keyring::parse(&format!("{line}{line}")).unwrap_err().to_string();
        assert!(err.contains("duplicate"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::new("s3cr3t");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
