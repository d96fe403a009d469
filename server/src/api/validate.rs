//! Pure checks of request fields. Each returns `Err(description)`; descriptions never
//! quote a secret value.

use std::net::IpAddr;

use crate::outbound::valid_host;

pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_URL: usize = 2048;
pub const MAX_TOKEN: usize = 8 * 1024;
pub const MAX_PRIVATE_KEY: usize = 16 * 1024;
pub const MAX_KNOWN_HOSTS: usize = 64 * 1024;
pub const MAX_CA_PEM: usize = 64 * 1024;
pub const MAX_PATH: usize = 1024;
pub const MAX_REF: usize = 255;

/// RFC 1123 label, as Kubernetes names: lower-case alphanumerics and '-', 1..=63 chars.
pub fn dns1123_label(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err("must be a DNS-1123 label: 1 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit".into())
    }
}

/// A schedule's interval in whole seconds: unset or 0 is off, else from `min` to `max`.
pub fn interval_seconds(d: Option<&prost_types::Duration>, min: i64, max: i64) -> Result<i64, String> {
    let Some(d) = d else { return Ok(0) };
    if d.nanos != 0 || d.seconds < 0 || (d.seconds != 0 && !(min..=max).contains(&d.seconds)) {
        return Err(format!("must be 0 (off) or whole seconds from {min} to {max}"));
    }
    Ok(d.seconds)
}

/// Text that is stored or used in a query: bounded, and without NUL, which PostgreSQL text
/// cannot hold (it would come back as a database error). Every other check builds on this one.
pub fn max_len(value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("must be at most {max} bytes, got {}", value.len()));
    }
    crate::text::no_nul(value)
}

fn non_empty_max(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("is required".into());
    }
    max_len(value, max)
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Git remote URL: https, ssh (URL or scp-like `user@host:path`) and file; http and git://
/// (no transport security) only for loopback hosts. Credentials never go in the URL.
pub fn git_url(value: &str) -> Result<(), String> {
    non_empty_max(value, MAX_URL)?;
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    if !value.contains("://") {
        return scp_like(value);
    }
    let url = url::Url::parse(value).map_err(|e| format!("is not a valid URL: {e}"))?;
    if url.password().is_some() || (url.scheme() != "ssh" && !url.username().is_empty()) {
        return Err("must not contain credentials; set them in `auth`".into());
    }
    if url.username().starts_with('-') {
        return Err("user must not start with '-' (it would be read as an ssh option)".into());
    }
    if url.port() == Some(0) {
        return Err("port must be from 1 to 65535".into());
    }
    let host = url.host_str().unwrap_or_default();
    if !host.is_empty() && !valid_host(host) {
        return Err("must name a valid host name or IP address".into());
    }
    match url.scheme() {
        "https" | "ssh" if !host.is_empty() => Ok(()),
        "http" | "git" if is_loopback_host(host) => Ok(()),
        "http" | "git" => {
            Err(format!("{}:// is allowed only for loopback hosts; use https:// or ssh://", url.scheme()))
        }
        "file" if !url.path().is_empty() && url.path() != "/" => Ok(()),
        "https" | "ssh" | "file" => Err("must name a host and a path".into()),
        _ => Err(UNSUPPORTED.into()),
    }
}

// The scheme is not quoted: it is client input of any length.
const UNSUPPORTED: &str = "scheme is not supported; use https://, ssh://, file:// or scp-like user@host:path";

/// `[user@]host:path` as git reads it (ssh). Without a user, `word:rest` is what any other URI
/// looks like (`javascript:`, `data:`, `mailto:`): it counts as scp-like only when the host is
/// unmistakably one (a dotted name, an IP address, localhost), else it is an unknown scheme.
fn scp_like(value: &str) -> Result<(), String> {
    let shape = "must be a URL (https://, ssh://, file://) or scp-like user@host:path";
    // The user ends at the last '@' before the host's ':' (git's rule); '/' ends the host part.
    let head_end = value.find('/').unwrap_or(value.len());
    let (user, rest) = match value[..head_end].rfind('@') {
        Some(at) => (Some(&value[..at]), &value[at + 1..]),
        None => (None, value),
    };
    let (host, path) = if rest.starts_with('[') {
        let Some(close) = rest.find(']') else { return Err(shape.into()) };
        let (host, after) = rest.split_at(close + 1);
        let Some(path) = after.strip_prefix(':') else { return Err(shape.into()) };
        (host, path)
    } else {
        let Some((host, path)) = rest.split_once(':') else { return Err(shape.into()) };
        (host, path)
    };
    if host.contains('/') || path.is_empty() {
        return Err(shape.into());
    }
    if let Some(user) = user {
        if user.is_empty() || user.starts_with('-') || user.contains(':') {
            return Err("user must be non-empty and not start with '-' (it would be read as an ssh option)".into());
        }
    }
    let unmistakable = host.contains('.') || host.starts_with('[') || host.eq_ignore_ascii_case("localhost");
    if user.is_none() && !unmistakable {
        return Err(UNSUPPORTED.into());
    }
    // `fd::17/x`: an unbracketed IPv6 address, or a path git would read as a port.
    if !valid_host(host) || path.starts_with(':') {
        return Err("must name a valid host name or IP address (IPv6 in brackets) before ':'".into());
    }
    Ok(())
}

/// Kubernetes API server URL: https, or http for loopback only.
pub fn cluster_url(value: &str) -> Result<(), String> {
    max_len(value, MAX_URL)?;
    let url = url::Url::parse(value).map_err(|e| format!("is not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; set the bearer token instead".into());
    }
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if is_loopback_host(host) => Ok(()),
        "http" => Err("http:// is allowed only for loopback hosts; use https://".into()),
        _ => Err("scheme is not supported; use https://".into()),
    }
}

/// A directory inside the repository: relative, no `..`, "" or "." for the root.
pub fn gitops_path(value: &str) -> Result<(), String> {
    max_len(value, MAX_PATH)?;
    if value.starts_with('/') || value.starts_with('\\') {
        return Err("must be relative to the repository root, not absolute".into());
    }
    if value.chars().any(|c| c.is_control() || c == '\\') {
        return Err("must not contain control characters or backslashes".into());
    }
    if value.split('/').any(|part| part == "..") {
        return Err("must not contain `..`".into());
    }
    Ok(())
}

/// A branch, tag, full ref name or commit id, by git-check-ref-format's rules (with
/// `--allow-onelevel`), plus git's own rule for branch names: no leading '-', which git would
/// read as an option (`--upload-pack=...`). Create, Update and StartSync all check with this.
pub fn git_ref(value: &str) -> Result<(), String> {
    non_empty_max(value, MAX_REF)?;
    if value.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    let bad_char = value.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    let bad_component =
        value.split('/').any(|part| part.is_empty() || part.starts_with('.') || part.ends_with(".lock"));
    if bad_char || bad_component || value == "@" || value.contains("..") || value.contains("@{") || value.ends_with('.')
    {
        return Err("is not a valid branch, tag or commit name (see git check-ref-format)".into());
    }
    Ok(())
}

/// One or more PEM certificates that parse as X.509.
pub fn ca_certificate_pem(value: &str) -> Result<(), String> {
    max_len(value, MAX_CA_PEM)?;
    let mut rest = value.as_bytes();
    let mut count = 0;
    while rest.windows(11).any(|w| w == b"-----BEGIN ") {
        let (remaining, pem) = x509_parser::pem::parse_x509_pem(rest).map_err(|_| "is not valid PEM".to_string())?;
        if pem.label != "CERTIFICATE" {
            return Err(format!("holds a PEM block {}; expected CERTIFICATE", crate::text::quote(&pem.label)));
        }
        pem.parse_x509().map_err(|e| format!("certificate {} does not parse as X.509: {e}", count + 1))?;
        count += 1;
        rest = remaining;
    }
    if count == 0 {
        return Err("holds no PEM certificate".into());
    }
    Ok(())
}

/// A secret's shape: present and bounded. The description never quotes the value.
pub fn secret(value: &str, max: usize) -> Result<(), String> {
    non_empty_max(value, max)
}

/// An SSH private key in PEM or OpenSSH format.
pub fn ssh_private_key(value: &str) -> Result<(), String> {
    secret(value, MAX_PRIVATE_KEY)?;
    let trimmed = value.trim_start();
    if trimmed.starts_with("-----BEGIN ") && trimmed.contains("PRIVATE KEY-----") {
        Ok(())
    } else {
        Err("must be a PEM or OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)".into())
    }
}

/// A JSON pointer (RFC 6901) to a field, as used in ignore-differences.
pub fn json_pointer(value: &str) -> Result<(), String> {
    max_len(value, MAX_PATH)?;
    if !value.starts_with('/') {
        return Err("must be a JSON pointer starting with '/'".into());
    }
    let bad_escape = value.split('~').skip(1).any(|after| !(after.starts_with('0') || after.starts_with('1')));
    if bad_escape {
        return Err("has a '~' not followed by 0 or 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "fab-1", "x".repeat(63).as_str()] {
            assert!(dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "x".repeat(64).as_str(), "é"] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn git_urls() {
        for ok in [
            "https://github.com/org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "file:///srv/git/repo.git",
            "http://127.0.0.1:8080/repo.git",
            "http://localhost/repo.git",
            "git://127.0.0.1:9418/repo.git",
            "http://[::1]:80/r.git",
        ] {
            assert!(git_url(ok).is_ok(), "{ok}: {:?}", git_url(ok));
        }
        for (bad, why) in [
            ("", "required"),
            ("http://example.com/r.git", "loopback"),
            ("git://example.com/r.git", "loopback"),
            ("https://user:hunter2@github.com/r.git", "credentials"),
            ("ftp://host/r.git", "not supported"),
            ("ssh:///srv/r.git", "host"),
            ("file:///", "path"),
            ("just-words", "scp-like"),
            ("https://host/a b", "spaces"),
            // Issue 15: other URI schemes read as scp-like `host:path`, and ssh option hosts.
            ("javascript:alert(1)", "scheme"),
            ("data:text/plain,x", "scheme"),
            ("fd::17/foo", "scheme"),
            ("git@fd::17/foo", "host"),
            ("-oProxyCommand=x:foo", "scheme"),
            ("git@-oProxyCommand=x:foo", "host"),
            ("-oProxyCommand=x@host:foo", "user"),
            ("@host.example:foo", "user"),
            ("git@:foo", "host"),
            ("git@host.example:", "scp-like"),
            ("git@[::1:foo", "scp-like"),
            ("git@[nope]:foo", "host"),
            ("ssh://-oProxyCommand=x/r.git", "host"),
            ("ssh://-oProxyCommand=x@host/r.git", "user"),
            ("ssh://git@host:0/r.git", "port"),
            ("https://host:0/r.git", "port"),
            ("https://bad_host/r.git", "host"),
        ] {
            let err = git_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("hunter2"));
            assert!(!err.contains("alert") && !err.contains("ProxyCommand"), "input is not echoed: {err}");
        }
        for ok in ["deploy@gitea:org/r.git", "git@[::1]:r.git", "git@10.0.0.1:r.git", "localhost:r.git", "h.example:r"]
        {
            assert!(git_url(ok).is_ok(), "{ok}: {:?}", git_url(ok));
        }
    }

    #[test]
    fn text_has_no_nul() {
        assert!(max_len("plain", 10).is_ok());
        assert!(max_len("a\0b", 10).unwrap_err().contains("NUL"));
        assert!(secret("t\0k", 10).is_err());
    }

    #[test]
    fn cluster_urls() {
        assert!(cluster_url("https://10.0.0.1:6443").is_ok());
        assert!(cluster_url("http://127.0.0.1:6443").is_ok());
        assert!(cluster_url("http://10.0.0.1:6443").unwrap_err().contains("loopback"));
        assert!(cluster_url("https://admin:pw@k8s:6443").unwrap_err().contains("credentials"));
        assert!(cluster_url("not a url").is_err());
    }

    #[test]
    fn gitops_paths() {
        for ok in ["", ".", "fabric", "envs/lab-1/", "a/b.c/d"] {
            assert!(gitops_path(ok).is_ok(), "{ok}");
        }
        for bad in ["/abs", "..", "a/../b", "a/..", "a\\b", "\\x", "a\u{0}b"] {
            assert!(gitops_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn git_refs() {
        for ok in ["main", "release/1.0", "v1.2.3", "refs/heads/main", "0123abcd"] {
            assert!(git_ref(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a..b", "a~1", "a^", "x:y", "/main", "main/", "a.lock", "a@{1}"] {
            assert!(git_ref(bad).is_err(), "{bad}");
        }
        // Issue 15: option-shaped refs, and what check-ref-format forbids that was let through.
        for bad in ["-x", "--upload-pack=x", "a//b", ".hidden", "a/.b", "a.lock/b", "a.", "@", "a\u{7f}b", "a\0b"] {
            assert!(git_ref(bad).is_err(), "{bad:?}");
        }
        assert!(git_ref("a-b/-c").is_ok(), "a '-' inside a name is fine");
    }

    #[test]
    fn ca_pems() {
        let real = include_str!("../../tests/data/ca.pem");
        assert!(ca_certificate_pem(real).is_ok());
        assert!(ca_certificate_pem(&format!("{real}{real}")).is_ok());
        let err = ca_certificate_pem("hello").unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = ca_certificate_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err();
        assert!(err.contains("X.509") || err.contains("PEM"), "{err}");
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(ca_certificate_pem(key).unwrap_err().contains("CERTIFICATE"));
    }

    #[test]
    fn ssh_keys_and_pointers() {
        assert!(ssh_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----").is_ok());
        assert!(ssh_private_key("ssh-ed25519 AAAA public").is_err());
        assert!(ssh_private_key("").is_err());
        assert!(json_pointer("/spec/vlan").is_ok());
        assert!(json_pointer("/metadata/labels/a~1b").is_ok());
        assert!(json_pointer("spec").is_err());
        assert!(json_pointer("/a~2").is_err());
    }
}
