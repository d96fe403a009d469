//! What a caller can make the server reach: the policy every outbound connection (git fetches
//! and probes, cluster clients) goes through. The decision on an address is pure; resolution is
//! checked when a connection is made, so a name that later resolves to a denied address is
//! refused too, and callers connect only to the addresses that were checked.
//!
//! The model: the deny list (link-local and metadata addresses, plus --deny-hosts) always applies,
//! and so does the refusal of unspecified addresses (0.0.0.0, ::, which reach this host); loopback
//! is allowed; when --allow-hosts is given, it is the only other set permitted. file:// repositories
//! need --allow-file-repositories and never reach into the server's data directory.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

/// Link-local (where cloud metadata services live) and the AWS IPv6 metadata address.
pub const DEFAULT_DENY: &[&str] = &["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];

/// How long a create/update waits for a name to resolve before it accepts the URL and leaves the
/// check to connect time.
const PRECHECK_RESOLVE: Duration = Duration::from_secs(2);

/// Why an address is not permitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Denied(IpNet),
    Unspecified,
    NotAllowed,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Denied(net) => {
                write!(f, "is in the denied range {net} (link-local/metadata defaults and --deny-hosts)")
            }
            Rule::Unspecified => f.write_str("is an unspecified address (it reaches this host)"),
            Rule::NotAllowed => f.write_str("is not loopback and not in --allow-hosts"),
        }
    }
}

/// A refusal. Messages name the host and the rule, and for file:// never tell file-system facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("file:// repositories are not enabled on this server (it needs --allow-file-repositories)")]
    FileRepositoriesDisabled,
    #[error("not a readable git repository")]
    Unreadable,
    #[error("the path is inside the server's data directory")]
    DataDirectory,
    #[error("outbound policy: {host} ({ip}) {rule}")]
    Address { host: String, ip: IpAddr, rule: Rule },
    #[error("cannot resolve {host}: {reason}")]
    Unresolved { host: String, reason: String },
}

/// The outbound policy of this server process.
#[derive(Debug, Clone)]
pub struct Outbound {
    allow_file_repositories: bool,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// Canonical; file:// paths inside it are refused (the mirrors of token-protected repositories).
    data_dir: PathBuf,
}

/// A CIDR or a single address (a /32 or /128), as --allow-hosts and --deny-hosts take them.
pub fn parse_net(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)"))
}

/// A host as git and ssh may be given it: a DNS name (letters, digits, '-', '.', no label
/// starting with '-'), an IPv4 address, or an IPv6 address in brackets. A leading '-' would be
/// read by ssh as an option (`-oProxyCommand=...`).
pub fn valid_host(value: &str) -> bool {
    if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if value.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = value.strip_suffix('.').unwrap_or(value);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Outbound {
    /// `data_dir` is created if missing so that it can be canonicalized.
    pub fn new(
        allow_file_repositories: bool,
        allow: Vec<IpNet>,
        deny: Vec<IpNet>,
        data_dir: &Path,
    ) -> std::io::Result<Outbound> {
        std::fs::create_dir_all(data_dir)?;
        let mut all_deny: Vec<IpNet> = DEFAULT_DENY.iter().filter_map(|n| n.parse().ok()).collect();
        all_deny.extend(deny);
        Ok(Outbound { allow_file_repositories, allow, deny: all_deny, data_dir: data_dir.canonicalize()? })
    }

    pub fn allows_file_repositories(&self) -> bool {
        self.allow_file_repositories
    }

    /// The pure decision on one address. IPv4-mapped IPv6 addresses are judged as IPv4.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Rule> {
        let ip = ip.to_canonical();
        if let Some(net) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Err(Rule::Denied(*net));
        }
        if ip.is_unspecified() {
            return Err(Rule::Unspecified);
        }
        if ip.is_loopback() || self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)) {
            Ok(())
        } else {
            Err(Rule::NotAllowed)
        }
    }

    /// Every address `host` resolved to must be permitted: one denied address refuses the name.
    pub fn check_addresses(&self, host: &str, addresses: &[SocketAddr]) -> Result<(), Refused> {
        for address in addresses {
            self.check_ip(address.ip()).map_err(|rule| Refused::Address {
                host: host.to_owned(),
                ip: address.ip(),
                rule,
            })?;
        }
        if addresses.is_empty() {
            return Err(Refused::Unresolved { host: host.to_owned(), reason: "no addresses".into() });
        }
        Ok(())
    }

    /// Resolves `host` (a name, or an address with or without brackets) and checks every address.
    pub fn resolve_blocking(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = bare_host(host);
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => (bare, port).to_socket_addrs().map_err(|e| unresolved(host, e))?.collect(),
        };
        self.check_addresses(host, &addresses)?;
        Ok(addresses)
    }

    /// Checks `host` when it is an address literal (a name is checked where it is resolved).
    pub fn check_literal(&self, host: &str) -> Result<(), Refused> {
        match bare_host(host).parse::<IpAddr>() {
            Ok(ip) => self.check_addresses(host, &[SocketAddr::new(ip, 0)]),
            Err(_) => Ok(()),
        }
    }

    /// [`Outbound::resolve_blocking`] on the async runtime.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = bare_host(host);
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port)).await.map_err(|e| unresolved(host, e))?.collect(),
        };
        self.check_addresses(host, &addresses)?;
        Ok(addresses)
    }

    /// The check of a create or update: a literal address, or a name that already resolves to a
    /// refused address, is refused; a name that does not resolve (yet) is left to connect time.
    pub async fn precheck(&self, host: &str, port: u16) -> Result<(), Refused> {
        match tokio::time::timeout(PRECHECK_RESOLVE, self.resolve(host, port)).await {
            Ok(Err(refused @ Refused::Address { .. })) => Err(refused),
            _ => Ok(()),
        }
    }

    /// The canonical form of a file:// repository path, if this server may read it: the flag is
    /// on, the path exists, and it is not inside the data directory (however it is spelled:
    /// symlinks, `..`, /proc/self/cwd). Every file-system failure reads the same.
    pub fn repository_path(&self, path: &Path) -> Result<PathBuf, Refused> {
        if !self.allow_file_repositories {
            return Err(Refused::FileRepositoriesDisabled);
        }
        let canonical = path.canonicalize().map_err(|_| Refused::Unreadable)?;
        if canonical.starts_with(&self.data_dir) {
            return Err(Refused::DataDirectory);
        }
        Ok(canonical)
    }
}

fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

fn unresolved(host: &str, e: std::io::Error) -> Refused {
    Refused::Unresolved { host: host.to_owned(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hosts() {
        for ok in ["a", "git.example.com", "git.example.com.", "10.0.0.1", "[::1]", "[fd::17]", "x-1.y"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "-oProxyCommand=x", "a..b", "-a.b", "a-.b", "a_b", "fd::17", "[10.0.0.1]", ".", "a b"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    fn policy(allow: &[&str], deny: &[&str]) -> (Outbound, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let nets = |list: &[&str]| list.iter().map(|n| parse_net(n).unwrap()).collect();
        (Outbound::new(true, nets(allow), nets(deny), dir.path()).unwrap(), dir)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_are_denied_by_default_in_every_spelling() {
        let (p, _dir) = policy(&[], &[]);
        for denied in ["169.254.169.254", "::ffff:169.254.169.254", "fe80::1", "fd00:ec2::254"] {
            assert!(matches!(p.check_ip(ip(denied)), Err(Rule::Denied(_))), "{denied}");
        }
        assert_eq!(p.check_ip(ip("0.0.0.0")), Err(Rule::Unspecified));
        assert_eq!(p.check_ip(ip("::")), Err(Rule::Unspecified));
        for allowed in ["127.0.0.1", "::1", "10.1.2.3", "140.82.112.3", "fd00:ec2::253"] {
            assert_eq!(p.check_ip(ip(allowed)), Ok(()), "{allowed}");
        }
    }

    #[test]
    fn allow_list_is_the_only_set_besides_loopback_and_deny_still_wins() {
        let (p, _dir) = policy(&["10.0.0.0/8"], &["10.9.0.0/16", "127.0.0.2"]);
        assert_eq!(p.check_ip(ip("10.1.2.3")), Ok(()));
        assert_eq!(p.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check_ip(ip("192.168.1.1")), Err(Rule::NotAllowed));
        assert!(matches!(p.check_ip(ip("10.9.1.1")), Err(Rule::Denied(n)) if n.to_string() == "10.9.0.0/16"));
        assert!(matches!(p.check_ip(ip("127.0.0.2")), Err(Rule::Denied(_))));
    }

    #[test]
    fn one_denied_address_refuses_the_name_and_the_message_names_host_and_rule() {
        let (p, _dir) = policy(&[], &[]);
        let addresses = [SocketAddr::new(ip("10.0.0.1"), 443), SocketAddr::new(ip("169.254.169.254"), 443)];
        let err = p.check_addresses("meta.example", &addresses).unwrap_err().to_string();
        assert!(
            err.contains("meta.example") && err.contains("169.254.169.254") && err.contains("169.254.0.0/16"),
            "{err}"
        );
        assert!(p.check_addresses("none.example", &[]).is_err());
        assert!(p.resolve_blocking("[fe80::1]", 22).is_err());
        assert_eq!(p.resolve_blocking("[::1]", 22).unwrap(), vec![SocketAddr::new(ip("::1"), 22)]);
    }

    #[test]
    fn nets_parse_as_cidrs_or_single_addresses() {
        assert_eq!(parse_net("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_net(" ::1 ").unwrap().to_string(), "::1/128");
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_net("example.com").unwrap_err().contains("example.com"));
    }

    #[test]
    fn file_paths_never_reach_into_the_data_directory() {
        let (p, dir) = policy(&[], &[]);
        let mirror = dir.path().join("git/abc.git");
        std::fs::create_dir_all(&mirror).unwrap();
        assert_eq!(p.repository_path(&mirror), Err(Refused::DataDirectory));
        assert_eq!(p.repository_path(&mirror.join("../../git/abc.git")), Err(Refused::DataDirectory));
        let outside = tempfile::tempdir().unwrap();
        let link = outside.path().join("link");
        std::os::unix::fs::symlink(&mirror, &link).unwrap();
        assert_eq!(p.repository_path(&link), Err(Refused::DataDirectory));
        assert_eq!(p.repository_path(outside.path()).unwrap(), outside.path().canonicalize().unwrap());
        let file = outside.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(p.repository_path(&outside.path().join("missing")), Err(Refused::Unreadable));
        assert_eq!(p.repository_path(&file.join("below")), Err(Refused::Unreadable));
        let off = Outbound::new(false, Vec::new(), Vec::new(), dir.path()).unwrap();
        assert_eq!(off.repository_path(outside.path()), Err(Refused::FileRepositoriesDisabled));
    }
}
