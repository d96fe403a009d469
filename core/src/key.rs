//! The identity of an object within a fabric.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The API group of the fabric's wiring (Switch, Server, Connection, ...): the objects whose
/// names the rollout and the inventory join on.
pub const WIRING_GROUP: &str = "wiring.githedgehog.com";

/// (API group, kind, namespace, name): what makes an object of a fabric unique. The group is
/// empty for the core API group; the namespace is empty for cluster-scoped kinds. Stored (in
/// JSON columns) as the 4-element array `[group, kind, namespace, name]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(from = "(String, String, String, String)", into = "(String, String, String, String)")]
pub struct ResourceKey {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
    /// `group/version`, or `version` alone for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn new(
        group: impl Into<String>,
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> ResourceKey {
        ResourceKey { group: group.into(), kind: kind.into(), namespace: namespace.into(), name: name.into() }
    }
}

impl From<(String, String, String, String)> for ResourceKey {
    fn from((group, kind, namespace, name): (String, String, String, String)) -> ResourceKey {
        ResourceKey { group, kind, namespace, name }
    }
}

impl From<ResourceKey> for (String, String, String, String) {
    fn from(k: ResourceKey) -> Self {
        (k.group, k.kind, k.namespace, k.name)
    }
}

/// `kind.group/namespace/name`, with the empty parts left out: `VPC.vpc.githedgehog.com/default/vpc-1`.
impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if !self.namespace.is_empty() {
            write!(f, "/{}", self.namespace)?;
        }
        write!(f, "/{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_empty_parts() {
        assert_eq!(
            ResourceKey::new("vpc.githedgehog.com", "VPC", "default", "vpc-1").to_string(),
            "VPC.vpc.githedgehog.com/default/vpc-1"
        );
        assert_eq!(ResourceKey::new("", "Namespace", "", "fab").to_string(), "Namespace/fab");
    }

    #[test]
    fn stored_as_a_four_element_array() {
        let key = ResourceKey::new("g", "K", "ns", "n");
        let json = serde_json::to_value(&key).unwrap();
        assert_eq!(json, serde_json::json!(["g", "K", "ns", "n"]));
        assert_eq!(serde_json::from_value::<ResourceKey>(json).unwrap(), key);
    }
}
