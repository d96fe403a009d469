//! Principals of verified client certificates (mTLS), from `--client-cert-identities`:
//!
//! ```yaml
//! identities:
//!   - subject: "CN=netbox,O=example"     # RFC 4514, exact or glob (`*`, `?`)
//!     role: operator
//!     fabrics: ["prod-*", "lab"]          # optional; none: every fabric
//!   - san: "*.ops.example.com"            # any DNS, URI or e-mail SAN, exact or glob
//!     role: viewer
//! ```
//!
//! Entries are tried in order; the first that matches decides. A certificate no entry matches
//! gets no principal (the caller may still present a token). JSON is YAML, so a JSON file works too.

use std::path::Path;

use serde::Deserialize;

use super::{glob_matches, Credential, FabricScope, Principal, Role};
use crate::transport::ClientCert;

#[derive(Debug, thiserror::Error)]
pub enum CertIdentitiesError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: identities[{index}]: {message}")]
    Entry { path: String, index: usize, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Subject(String),
    San(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    matcher: Matcher,
    role: Role,
    scope: FabricScope,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentities {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    identities: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    subject: Option<String>,
    san: Option<String>,
    role: String,
    #[serde(default)]
    fabrics: Vec<String>,
}

impl CertIdentities {
    pub fn load(path: &Path) -> Result<CertIdentities, CertIdentitiesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CertIdentitiesError::Read { path: path.display().to_string(), source })?;
        CertIdentities::parse(&text, &path.display().to_string())
    }

    /// Parses the file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<CertIdentities, CertIdentitiesError> {
        let invalid = |message: String| CertIdentitiesError::Invalid { path: path.to_string(), message };
        let limits =
            fabricsync_core::manifest::yaml::Limits { max_alias_nodes: 10_000, max_depth: 16, max_documents: 1 };
        let docs = fabricsync_core::manifest::yaml::parse(text, &limits)
            .map_err(|e| invalid(format!("line {}: {}", e.position.line, e.message)))?;
        let [doc] = docs.as_slice() else {
            return Err(invalid("expected one YAML document with an `identities` list".into()));
        };
        let raw: RawFile = serde_json::from_value(doc.value.clone())
            .map_err(|e| invalid(format!("expected `identities: [...]`: {e}")))?;
        let entries = raw
            .identities
            .into_iter()
            .enumerate()
            .map(|(index, value)| {
                Entry::parse(value).map_err(|message| CertIdentitiesError::Entry {
                    path: path.to_string(),
                    index,
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(CertIdentities { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of the first entry matching `cert`, named by the certificate's subject.
    pub fn principal(&self, cert: &ClientCert) -> Option<Principal> {
        let entry = self.entries.iter().find(|e| match &e.matcher {
            Matcher::Subject(glob) => glob_matches(glob, &cert.subject),
            Matcher::San(glob) => cert.sans.iter().any(|san| glob_matches(glob, san)),
        })?;
        Some(Principal {
            name: cert.subject.clone(),
            credential: Credential::Certificate,
            role: entry.role,
            scope: entry.scope.clone(),
        })
    }
}

impl Entry {
    fn parse(value: serde_json::Value) -> Result<Entry, String> {
        let raw: RawEntry = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let matcher = match (raw.subject, raw.san) {
            (Some(s), None) if !s.is_empty() => Matcher::Subject(s),
            (None, Some(s)) if !s.is_empty() => Matcher::San(s),
            (Some(_), Some(_)) => return Err("give either subject or san, not both".into()),
            _ => return Err("subject or san is required (non-empty)".into()),
        };
        let role = raw.role.parse::<Role>().map_err(|e| format!("role: {e}"))?;
        if let Some(i) = raw.fabrics.iter().position(String::is_empty) {
            return Err(format!("fabrics[{i}]: empty glob"));
        }
        Ok(Entry { matcher, role, scope: FabricScope::from_globs(raw.fabrics) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &str, sans: &[&str]) -> ClientCert {
        ClientCert { subject: subject.into(), sans: sans.iter().map(|s| s.to_string()).collect() }
    }

    const FILE: &str = r#"
identities:
  - subject: "CN=netbox,O=example"
    role: operator
    fabrics: ["prod-*", lab]
  - san: "*.ops.example.com"
    role: viewer
  - subject: "CN=admin-*,O=example"
    role: admin
  - san: "spiffe://cluster.local/ns/ci/sa/runner"
    role: operator
"#;

    #[test]
    fn first_matching_entry_gives_role_and_scope() {
        let ids = CertIdentities::parse(FILE, "ids.yaml").unwrap();
        assert_eq!(ids.len(), 4);

        let p = ids.principal(&cert("CN=netbox,O=example", &["netbox.example.com"])).unwrap();
        assert_eq!(
            (p.name.as_str(), p.role, &p.credential),
            ("CN=netbox,O=example", Role::Operator, &Credential::Certificate)
        );
        assert!(p.scope.allows("prod-east") && p.scope.allows("lab") && !p.scope.allows("staging"));

        // By SAN glob; the name is still the subject; no fabrics: all.
        let p = ids.principal(&cert("CN=alice", &["x.example.com", "alice.ops.example.com"])).unwrap();
        assert_eq!((p.name.as_str(), p.role), ("CN=alice", Role::Viewer));
        assert!(p.scope.is_all());

        assert_eq!(ids.principal(&cert("CN=admin-bob,O=example", &[])).unwrap().role, Role::Admin);
        assert_eq!(
            ids.principal(&cert("CN=x", &["spiffe://cluster.local/ns/ci/sa/runner"])).unwrap().role,
            Role::Operator
        );

        // Order decides: netbox with an ops SAN is still the operator of entry 0.
        assert_eq!(ids.principal(&cert("CN=netbox,O=example", &["n.ops.example.com"])).unwrap().role, Role::Operator);
    }

    #[test]
    fn unmatched_certificates_get_no_principal() {
        let ids = CertIdentities::parse(FILE, "ids.yaml").unwrap();
        for c in [
            cert("CN=netbox,O=other", &[]),
            cert("CN=netbox,O=example,C=DE", &[]),
            cert("CN=mallory", &["ops.example.com.evil.net", "example.com"]),
            // A SAN pattern does not match the subject, nor a subject pattern a SAN.
            cert("CN=alice.ops.example.com", &["CN=netbox,O=example"]),
            cert("CN=x", &["spiffe://cluster.local/ns/ci/sa/runner2"]),
        ] {
            assert!(ids.principal(&c).is_none(), "{c:?}");
        }
        assert!(CertIdentities::default().principal(&cert("CN=x", &[])).is_none());
    }

    #[test]
    fn json_works_too() {
        let ids =
            CertIdentities::parse(r#"{"identities": [{"subject": "CN=a", "role": "viewer"}]}"#, "ids.json").unwrap();
        assert_eq!(ids.principal(&cert("CN=a", &[])).unwrap().role, Role::Viewer);
    }

    #[test]
    fn errors_name_the_file_and_entry() {
        for (text, want) in [
            (
                "identities:\n  - subject: CN=a\n    role: root\n",
                "ids.yaml: identities[0]: role: unknown role \"root\"",
            ),
            (
                "identities:\n  - {subject: CN=a, role: viewer}\n  - {role: viewer}\n",
                "ids.yaml: identities[1]: subject or san is required",
            ),
            (
                "identities:\n  - {subject: CN=a, san: b, role: viewer}\n",
                "ids.yaml: identities[0]: give either subject or san",
            ),
            (
                "identities:\n  - {subject: CN=a, role: viewer, fabric: [x]}\n",
                "ids.yaml: identities[0]: unknown field `fabric`",
            ),
            (
                "identities:\n  - {subject: CN=a, role: viewer, fabrics: [\"\"]}\n",
                "ids.yaml: identities[0]: fabrics[0]: empty glob",
            ),
            ("identities:\n  - {subject: \"\", role: viewer}\n", "ids.yaml: identities[0]: subject or san is required"),
            ("identity: []\n", "ids.yaml: expected `identities: [...]`"),
            ("identities: [\n", "ids.yaml: line"),
            ("", "ids.yaml: expected one YAML document"),
        ] {
            let e = CertIdentities::parse(text, "ids.yaml").unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
        let missing = CertIdentities::load(Path::new("/nonexistent/ids.yaml")).unwrap_err().to_string();
        assert!(missing.starts_with("/nonexistent/ids.yaml: "), "{missing}");
    }
}
