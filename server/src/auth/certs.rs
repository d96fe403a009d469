//! Client certificates as principals: `--client-cert-identities FILE` maps a verified
//! certificate's subject or a subject alternative name to a role and fabric scope.
//!
//! The file is YAML: a list of entries, the first that matches wins:
//! ```yaml
//! - match: "CN=netbox,O=example"      # subject (RFC 4514), or a SAN; `*` and `?` as globs
//!   role: operator
//!   fabrics: ["prod-*"]                # optional; absent: every fabric
//! ```

use std::path::Path;

use super::{glob_matches, Credential, FabricScope, Principal, Role};
use crate::transport::ClientCert;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CertIdentitiesError {
    path: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: String,
    role: Role,
    scope: FabricScope,
}

#[derive(Debug, Clone, Default)]
pub struct CertIdentities {
    entries: Vec<Entry>,
}

impl CertIdentities {
    pub fn load(path: &Path) -> Result<CertIdentities, CertIdentitiesError> {
        let error = |reason: String| CertIdentitiesError { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        CertIdentities::parse(&text).map_err(error)
    }

    pub fn parse(text: &str) -> Result<CertIdentities, String> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
        let Some(list) = docs.first().map(|d| d.as_vec().cloned().unwrap_or_default()) else {
            return Ok(CertIdentities::default());
        };
        let mut entries = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let at = |field: &str, why: &str| format!("entry {i}: {field}: {why}");
            let pattern = item["match"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| at("match", "a subject or SAN is required"))?;
            let role = item["role"].as_str().ok_or_else(|| at("role", "required"))?.parse::<Role>().map_err(|e| at("role", &e))?;
            let fabrics = match &item["fabrics"] {
                yaml_rust2::Yaml::BadValue | yaml_rust2::Yaml::Null => Vec::new(),
                yaml_rust2::Yaml::Array(globs) => {
                    globs.iter().map(|g| g.as_str().map(str::to_string).ok_or_else(|| at("fabrics", "must be strings"))).collect::<Result<_, _>>()?
                }
                _ => return Err(at("fabrics", "must be a list of fabric name globs")),
            };
            entries.push(Entry { pattern: pattern.to_string(), role, scope: FabricScope::from_globs(fabrics) });
        }
        Ok(CertIdentities { entries })
    }

    /// The principal of `cert`: the first entry whose pattern matches its subject or a SAN.
    pub fn principal(&self, cert: &ClientCert) -> Option<Principal> {
        let names = std::iter::once(&cert.subject).chain(cert.sans.iter());
        let entry = self.entries.iter().find(|e| names.clone().any(|n| glob_matches(&e.pattern, n)))?;
        Some(Principal { name: cert.subject.clone(), credential: Credential::Certificate, role: entry.role, scope: entry.scope.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_entry_wins() {
        let map = CertIdentities::parse(
            "- match: 'CN=netbox,O=example'\n  role: operator\n  fabrics: [prod-*]\n- match: '*.ops.example'\n  role: admin\n",
        )
        .unwrap();
        let cert = |subject: &str, sans: &[&str]| ClientCert { subject: subject.into(), sans: sans.iter().map(|s| s.to_string()).collect() };
        let p = map.principal(&cert("CN=netbox,O=example", &[])).unwrap();
        assert_eq!((p.role, p.name.as_str()), (Role::Operator, "CN=netbox,O=example"));
        assert!(p.scope.allows("prod-1") && !p.scope.allows("lab"));
        let p = map.principal(&cert("CN=alice", &["alice.ops.example"])).unwrap();
        assert_eq!(p.role, Role::Admin);
        assert!(p.scope.is_all());
        assert!(map.principal(&cert("CN=mallory", &["mallory.example"])).is_none());
    }

    #[test]
    fn errors_name_the_entry() {
        assert!(CertIdentities::parse("- role: admin").unwrap_err().contains("entry 0: match"));
        assert!(CertIdentities::parse("- match: x\n  role: root").unwrap_err().contains("entry 0: role"));
        assert!(CertIdentities::parse("- match: x\n  role: viewer\n  fabrics: 3").unwrap_err().contains("fabrics"));
    }
}
