//! Pure checks of request fields. Each returns `Err(description)`; descriptions never
//! quote a secret value.

use std::net::IpAddr;

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

pub fn max_len(value: &str, max: usize) -> Result<(), String> {
    if value.len() <= max {
        Ok(())
    } else {
        Err(format!("must be at most {max} bytes, got {}", value.len()))
    }
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
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" | "ssh" if !host.is_empty() => Ok(()),
        "http" | "git" if is_loopback_host(host) => Ok(()),
        "http" | "git" => {
            Err(format!("{}:// is allowed only for loopback hosts; use https:// or ssh://", url.scheme()))
        }
        "file" if !url.path().is_empty() && url.path() != "/" => Ok(()),
        "https" | "ssh" | "file" => Err("must name a host and a path".into()),
        other => Err(format!("scheme {other:?} is not supported; use https, ssh or file")),
    }
}

fn scp_like(value: &str) -> Result<(), String> {
    let Some((user_host, path)) = value.split_once(':') else {
        return Err("must be a URL (https://, ssh://, file://) or scp-like user@host:path".into());
    };
    let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
    if host.is_empty() || path.is_empty() || user_host.contains('/') {
        return Err("must be a URL (https://, ssh://, file://) or scp-like user@host:path".into());
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
        other => Err(format!("scheme {other:?} is not supported; use https")),
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

/// A branch, tag, full ref name or commit id, per git-check-ref-format's rules that matter here.
pub fn git_ref(value: &str) -> Result<(), String> {
    non_empty_max(value, MAX_REF)?;
    let bad_char = value.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad_char
        || value.contains("..")
        || value.contains("@{")
        || value.starts_with('/')
        || value.ends_with('/')
        || value.ends_with(".lock")
    {
        return Err("is not a valid branch, tag or commit name".into());
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
            return Err(format!("holds a PEM block {:?}; expected CERTIFICATE", pem.label));
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
        ] {
            let err = git_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("hunter2"));
        }
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
