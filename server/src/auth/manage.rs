//! Creating and revoking API tokens: shared by the AccessService, the `fabricsync token`
//! command line (bootstrap and recovery) and the first start's admin token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use ipnet::IpNet;
use uuid::Uuid;

use super::token::{self, Pepper};
use super::Role;
use crate::crypto::{Keyring, Secret};
use crate::db::tokens::TokenRow;
use crate::db::DbError;
use crate::text::quote;

/// The longest validity a token may be given.
const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// Name of the admin token made on first start.
pub const BOOTSTRAP_NAME: &str = "admin";
/// File under the data directory that receives the first admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// What a new token is to be, as asked.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    pub name: String,
    pub role: Option<Role>,
    pub fabrics: Vec<String>,
    pub ttl: Option<Duration>,
    pub allowed_networks: Vec<String>,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A field of the spec is not valid: (field, why).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("an active token named {} exists", quote(.0))]
    Exists(String),
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for TokenError {
    fn from(e: DbError) -> TokenError {
        TokenError::Db(e)
    }
}

/// A valid spec, with its networks in canonical CIDR form.
struct Checked {
    role: Role,
    networks: Vec<String>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn check(spec: &TokenSpec) -> Result<Checked, TokenError> {
    let name_ok = spec.name.len() <= 63
        && spec.name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && spec.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(TokenError::Invalid(
            "name",
            "must be 1-63 of a-z 0-9 . _ -, starting with a letter or digit".into(),
        ));
    }
    crate::text::no_nul(&spec.description).map_err(|e| TokenError::Invalid("description", e))?;
    let role = spec.role.ok_or_else(|| TokenError::Invalid("role", "is required: viewer, operator or admin".into()))?;
    for glob in &spec.fabrics {
        let ok = !glob.is_empty()
            && glob.len() <= 63
            && glob.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '*' | '?'));
        if !ok {
            return Err(TokenError::Invalid(
                "fabrics",
                format!("{} is not a fabric name glob (a-z 0-9 - with * and ?)", quote(glob)),
            ));
        }
    }
    let mut networks = Vec::new();
    for text in &spec.allowed_networks {
        let net =
            text.parse::<IpNet>().or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                TokenError::Invalid(
                    "allowed_networks",
                    format!("{} is not a CIDR (e.g. 10.0.0.0/8) or an address", quote(text)),
                )
            })?;
        networks.push(net.trunc().to_string());
    }
    let expires_at = match spec.ttl {
        None => None,
        Some(ttl) if ttl.is_zero() || ttl > MAX_TTL => {
            return Err(TokenError::Invalid("ttl", "must be more than 0 and at most 10 years".into()))
        }
        Some(ttl) => chrono::TimeDelta::from_std(ttl).ok().map(|d| crate::db::now() + d),
    };
    Ok(Checked { role, networks, expires_at })
}

fn row(
    spec: &TokenSpec,
    checked: Checked,
    pepper: &Pepper,
    value: &Secret,
    lookup: String,
    created_by: &str,
) -> TokenRow {
    // `value` has the token shape: it was generated, or checked by `token::check_shape`.
    let secret_hash = token::parse(value.expose()).map(|p| token::hash(pepper, &p)).unwrap_or_default();
    TokenRow {
        id: Uuid::new_v4(),
        name: spec.name.clone(),
        lookup_key: lookup,
        secret_hash,
        role: checked.role.as_str().to_string(),
        fabric_scope: spec.fabrics.clone(),
        allowed_networks: checked.networks,
        description: spec.description.chars().take(1024).collect(),
        created_by: created_by.to_string(),
        expires_at: checked.expires_at,
        revoked_at: None,
        last_used_at: None,
        created_at: crate::db::now(),
    }
}

/// Creates a token; returns its row and its value (shown once).
pub async fn create(
    conn: &mut AsyncPgConnection,
    pepper: &Pepper,
    spec: &TokenSpec,
    created_by: &str,
) -> Result<(TokenRow, Secret), TokenError> {
    let checked = check(spec)?;
    let (value, lookup) = token::generate();
    let row = row(spec, checked, pepper, &value, lookup, created_by);
    match crate::db::tokens::insert(conn, &row).await {
        Ok(()) => Ok((row, value)),
        Err(DbError::UniqueViolation(_)) => Err(TokenError::Exists(spec.name.clone())),
        Err(e) => Err(e.into()),
    }
}

/// On a database without any token: registers the first admin token, `given` (the chart's
/// FABRICSYNC_BOOTSTRAP_TOKEN) or a generated one written to `<data_dir>/admin-token` (0600).
/// Returns where the generated token was written.
pub async fn bootstrap(
    conn: &mut AsyncPgConnection,
    pepper: &Pepper,
    given: Option<&Secret>,
    data_dir: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    use anyhow::Context;
    let spec = TokenSpec {
        name: BOOTSTRAP_NAME.into(),
        role: Some(Role::Admin),
        description: "made on first start".into(),
        ..Default::default()
    };
    let checked = check(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (value, lookup) = match given {
        Some(value) => {
            token::check_shape(value.expose()).map_err(|why| anyhow::anyhow!("FABRICSYNC_BOOTSTRAP_TOKEN: {why}"))?;
            let lookup = token::parse(value.expose()).map(|p| p.lookup.to_string()).unwrap_or_default();
            (value.clone(), lookup)
        }
        None => token::generate(),
    };
    let row = row(&spec, checked, pepper, &value, lookup, "bootstrap");
    if !crate::db::tokens::insert_first(conn, &row).await? {
        return Ok(None);
    }
    if given.is_some() {
        return Ok(None);
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    crate::crypto::write_private_file(&path, format!("{}\n", value.expose()).as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

/// Name of the token pepper among the server keys.
pub const PEPPER_KEY: &str = "token-pepper";

/// The server's token pepper: made on first use (by whichever replica gets there first) and
/// kept sealed in the database, so it survives a rotation of the encryption keys.
pub async fn pepper(conn: &mut AsyncPgConnection, keyring: &Keyring) -> anyhow::Result<Pepper> {
    use anyhow::Context;
    let context = crate::crypto::server_key_context(PEPPER_KEY);
    let (blob, key_id) = match crate::db::server_keys::get(conn, PEPPER_KEY).await? {
        Some(stored) => stored,
        None => {
            let fresh = Pepper::generate();
            let sealed = keyring.seal(fresh.bytes(), &context);
            crate::db::server_keys::insert_if_absent(conn, PEPPER_KEY, &sealed.blob, &sealed.key_id).await?
        }
    };
    let mut plain = keyring
        .open(&crate::crypto::Sealed { key_id, blob }, &context)
        .context("opening the token pepper (are the encryption keys the ones it was sealed with?)")?;
    let pepper = Pepper::from_bytes(&plain).ok_or_else(|| anyhow::anyhow!("the stored token pepper is not 32 bytes"));
    zeroize::Zeroize::zeroize(&mut plain);
    pepper
}

/// Parses a validity such as `90d`, `12h`, `1h 30m` (for the command line).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{} is not a duration like 90d, 12h or 30m: {e}", quote(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> TokenSpec {
        TokenSpec { name: name.into(), role: Some(Role::Viewer), ..Default::default() }
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        assert!(check(&spec("ci.deploy-1")).is_ok());
        let field = |s: TokenSpec| match check(&s) {
            Err(TokenError::Invalid(field, _)) => field,
            other => panic!("expected an invalid field, got {:?}", other.map(|_| ())),
        };
        assert_eq!(field(spec("")), "name");
        assert_eq!(field(spec("Admin")), "name");
        assert_eq!(field(spec(&"a".repeat(64))), "name");
        assert_eq!(field(TokenSpec { role: None, ..spec("a") }), "role");
        assert_eq!(field(TokenSpec { fabrics: vec!["prod_%".into()], ..spec("a") }), "fabrics");
        assert_eq!(field(TokenSpec { fabrics: vec![String::new()], ..spec("a") }), "fabrics");
        assert_eq!(field(TokenSpec { allowed_networks: vec!["10.0.0.0/33".into()], ..spec("a") }), "allowed_networks");
        assert_eq!(field(TokenSpec { ttl: Some(Duration::ZERO), ..spec("a") }), "ttl");
        assert_eq!(field(TokenSpec { description: "a\0b".into(), ..spec("a") }), "description");
        let ok = check(&TokenSpec {
            allowed_networks: vec!["10.1.2.3/8".into(), "::1".into()],
            ttl: Some(Duration::from_secs(60)),
            ..spec("a")
        })
        .unwrap();
        assert_eq!(ok.networks, vec!["10.0.0.0/8".to_string(), "::1/128".to_string()]);
        assert!(ok.expires_at.is_some());
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90d").unwrap(), Duration::from_secs(90 * 86400));
        assert_eq!(parse_ttl("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_ttl("soon").unwrap_err().contains("soon"));
    }
}
