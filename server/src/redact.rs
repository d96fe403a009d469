//! Scrubbing the secrets in use out of every message built from a remote's answer (git, cluster
//! errors, watch errors, run errors, diagnostics, event payloads), and bounding its length.
//!
//! A remote may echo what it was sent (an API server or proxy quoting the request's headers), so
//! a [`Redactor`] removes each secret in the forms a header or an encoder could carry it: plain,
//! base64 and hex. While a redactor lives, its secrets are also removed from every log line
//! (see [`scrub_live`]), which covers what libraries log of a remote's answer on their own.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine as _;

/// Longest message kept from a remote's answer.
pub const MAX_MESSAGE: usize = 2048;
const TRUNCATED: &str = "…(truncated)";
const MASK: &str = "***";

/// The secrets of every live redactor, by redactor, for the log writer.
static LIVE: LazyLock<Mutex<HashMap<u64, Arc<Vec<String>>>>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Removes a set of secrets from text. Cheap to clone; the secrets leave the log filter when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Redactor {
    registration: Arc<Registration>,
}

struct Registration {
    id: u64,
    /// Longest first, so that no form is left half-replaced by a shorter one inside it.
    forms: Arc<Vec<String>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE.lock() {
            live.remove(&self.id);
        }
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.registration.forms.len())
    }
}

/// The forms a secret may be echoed in: plain, base64 (standard and URL-safe, unpadded so that a
/// padded copy matches too) and hex.
fn forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    vec![
        secret.to_owned(),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        hex::encode(bytes),
        hex::encode_upper(bytes),
    ]
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut all: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).flat_map(|s| forms(&s)).collect();
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        let forms = Arc::new(all);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if !forms.is_empty() {
            if let Ok(mut live) = LIVE.lock() {
                live.insert(id, forms.clone());
            }
        }
        Redactor { registration: Arc::new(Registration { id, forms }) }
    }

    /// A redactor with no secrets: still strips URL userinfo and bounds the length.
    pub fn none() -> Redactor {
        Redactor::new(Vec::new())
    }

    /// `text` without URL userinfo and the secrets, on one line, at most [`MAX_MESSAGE`] bytes.
    pub fn clean(&self, text: &str) -> String {
        let mut text = strip_userinfo(&text.replace(['\n', '\r'], " "));
        mask(&mut text, &self.registration.forms);
        bound(text)
    }
}

fn mask(text: &mut String, forms: &[String]) {
    for form in forms {
        if text.contains(form.as_str()) {
            *text = text.replace(form.as_str(), MASK);
        }
    }
}

/// `text` cut to [`MAX_MESSAGE`] bytes (on a character boundary), marked when cut.
pub fn bound(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let keep = MAX_MESSAGE - TRUNCATED.len();
        let cut = (0..=keep).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(cut);
        text.push_str(TRUNCATED);
    }
    text
}

/// `text` without the secrets of any redactor alive now (for log lines).
pub fn scrub_live(text: &str) -> Cow<'_, str> {
    let forms: Vec<Arc<Vec<String>>> = match LIVE.lock() {
        Ok(live) if !live.is_empty() => live.values().cloned().collect(),
        _ => return Cow::Borrowed(text),
    };
    let mut all: Vec<&String> = forms.iter().flat_map(|f| f.iter()).collect();
    if !all.iter().any(|form| text.contains(form.as_str())) {
        return Cow::Borrowed(text);
    }
    all.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut owned = text.to_owned();
    for form in all {
        if owned.contains(form.as_str()) {
            owned = owned.replace(form.as_str(), MASK);
        }
    }
    Cow::Owned(owned)
}

/// Drops the `user:password@` part of every `scheme://user:password@host` in `text`.
pub fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end =
            tail.find(|c: char| c == '/' || c == '"' || c == '\'' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(&authority[userinfo_end + 1..]);
                rest = &tail[authority_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_from_every_url() {
        assert_eq!(
            strip_userinfo("fetch \"https://u:p%40ss@host:8443/r.git\" and http://tok@h/x then ssh://git@h:22/p"),
            "fetch \"https://host:8443/r.git\" and http://h/x then ssh://h:22/p"
        );
        assert_eq!(strip_userinfo("no url here @ all"), "no url here @ all");
        assert_eq!(strip_userinfo("trailing ://"), "trailing ://");
    }

    #[test]
    fn secrets_go_in_every_encoded_form() {
        let r = Redactor::new(vec!["hunter2".into(), String::new()]);
        assert_eq!(r.clean("password hunter2 rejected by https://a:hunter2@h/"), "password *** rejected by https://h/");
        let b64 = base64::engine::general_purpose::STANDARD.encode("hunter2");
        let cleaned = r.clean(&format!(
            "Authorization: Bearer hunter2\nX-Echo: {b64} {} {}",
            hex::encode("hunter2"),
            hex::encode_upper("hunter2")
        ));
        assert!(
            !cleaned.contains("hunter2") && !cleaned.contains(&b64[..8]) && !cleaned.contains(&hex::encode("hunter2")),
            "{cleaned}"
        );
        assert!(!cleaned.contains('\n'));
    }

    #[test]
    fn messages_are_bounded_on_a_character_boundary() {
        let r = Redactor::none();
        let long = "é".repeat(3000);
        let cleaned = r.clean(&long);
        assert!(cleaned.len() <= MAX_MESSAGE && cleaned.ends_with(TRUNCATED), "{}", cleaned.len());
        assert_eq!(r.clean("short"), "short");
    }

    #[test]
    fn live_secrets_leave_logs_until_the_redactor_is_dropped() {
        let r = Redactor::new(vec!["live-secret-4711".into()]);
        let copy = r.clone();
        drop(r);
        assert_eq!(scrub_live("x live-secret-4711 y"), "x *** y");
        drop(copy);
        assert_eq!(scrub_live("x live-secret-4711 y"), "x live-secret-4711 y");
    }
}
