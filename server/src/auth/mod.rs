//! Who may call the API: principals (API tokens, client certificates), their roles and fabric
//! scopes. The per-RPC rules live in `rules`; the tower layer that enforces them in `layer`.

pub mod audit;
pub mod authenticator;
pub mod cache;
pub mod certs;
pub mod layer;
pub mod limits;
pub mod manage;
pub mod rules;
pub mod token;

use std::fmt;
use std::str::FromStr;

/// What a principal may do, ordered: each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads everything in its scope, plans, streams.
    Viewer,
    /// Viewer + runs: sync, cancel, detect drift, remediate, connection tests.
    Operator,
    /// Everything: repositories, fabrics, credentials, RBAC manifests, tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; one of viewer, operator, admin"))
    }
}

/// The fabrics a principal may see: all, or those whose name matches one of its globs
/// (`*` any run of characters, `?` one character).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FabricScope {
    #[default]
    All,
    Globs(Vec<String>),
}

impl FabricScope {
    /// An empty list means every fabric.
    pub fn from_globs(globs: Vec<String>) -> FabricScope {
        if globs.is_empty() {
            FabricScope::All
        } else {
            FabricScope::Globs(globs)
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, FabricScope::All)
    }

    pub fn allows(&self, fabric_name: &str) -> bool {
        match self {
            FabricScope::All => true,
            FabricScope::Globs(globs) => globs.iter().any(|g| glob_matches(g, fabric_name)),
        }
    }

    pub fn globs(&self) -> &[String] {
        match self {
            FabricScope::All => &[],
            FabricScope::Globs(globs) => globs,
        }
    }
}

/// Glob match with `*` and `?` over characters (iterative, no backtracking blow-up).
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token, by its row id; open streams end when it expires.
    Token { id: uuid::Uuid, expires_at: Option<chrono::DateTime<chrono::Utc>> },
    /// A verified client certificate, by its subject.
    Certificate,
}

/// The person a trusted client (the NetBox plugin) says it acts for: metadata
/// `x-fabricsync-actor`, recorded in the audit log and on runs; it grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor(pub String);

/// An authenticated caller, put in each request's extensions by the auth layer.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name, or certificate subject.
    pub name: String,
    pub credential: Credential,
    pub role: Role,
    pub scope: FabricScope,
}

impl Principal {
    /// How runs and audit rows name who asked: `<actor> via <principal>` when an actor is given.
    pub fn requester(&self, actor: Option<&Actor>) -> String {
        match actor {
            Some(Actor(a)) if !a.is_empty() => format!("{a} via {}", self.name),
            _ => self.name.clone(),
        }
    }
}

impl FabricScope {
    /// The scope's globs as SQL LIKE patterns (for list queries); empty for every fabric.
    pub fn like_patterns(&self) -> Vec<String> {
        self.globs()
            .iter()
            .map(|g| {
                let mut p = String::with_capacity(g.len());
                for c in g.chars() {
                    match c {
                        '*' => p.push('%'),
                        '?' => p.push('_'),
                        '%' | '_' | '\\' => {
                            p.push('\\');
                            p.push(c);
                        }
                        c => p.push(c),
                    }
                }
                p
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (g, t, want) in [
            ("prod-*", "prod-east", true),
            ("prod-*", "staging", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-lab-*", "x-lab-y", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ] {
            assert_eq!(glob_matches(g, t), want, "{g} {t}");
        }
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!("operator".parse::<Role>().unwrap(), Role::Operator);
        assert!("root".parse::<Role>().is_err());
        assert!(FabricScope::from_globs(vec![]).is_all());
        assert!(!FabricScope::from_globs(vec!["a*".into()]).allows("b"));
        let scope = FabricScope::from_globs(vec!["prod-*".into(), "a_b?".into()]);
        assert_eq!(scope.like_patterns(), vec!["prod-%".to_string(), "a\\_b_".to_string()]);
        assert!(FabricScope::All.like_patterns().is_empty());
    }
}
