//! The kind registry: which apiVersion/kind pairs are Hedgehog objects and their schemas,
//! read from the CustomResourceDefinitions (data, not a type per kind).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::yaml;

/// One served version of a custom resource.
#[derive(Debug, Clone, PartialEq)]
pub struct KindDef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// The version's openAPIV3Schema.
    pub schema: Value,
}

#[derive(Debug, Default)]
pub struct KindRegistry {
    by_api: HashMap<(String, String), KindDef>,
}

static REGISTRY: OnceLock<KindRegistry> = OnceLock::new();

/// The Hedgehog CRDs this build knows (githedgehog/fabric, see server/tests/data/SOURCES.md),
/// gateway kinds included. The Agent kind is not here: it is read for rollout, never managed
/// (core/crds-observed).
const HEDGEHOG_CRDS: &[(&str, &str)] = &[
    (
        "gateway.githedgehog.com_gatewaygroups.yaml",
        include_str!("../../crds/gateway.githedgehog.com_gatewaygroups.yaml"),
    ),
    (
        "gateway.githedgehog.com_gatewaypeerings.yaml",
        include_str!("../../crds/gateway.githedgehog.com_gatewaypeerings.yaml"),
    ),
    ("gateway.githedgehog.com_gateways.yaml", include_str!("../../crds/gateway.githedgehog.com_gateways.yaml")),
    ("gateway.githedgehog.com_vpcinfos.yaml", include_str!("../../crds/gateway.githedgehog.com_vpcinfos.yaml")),
    (
        "vpc.githedgehog.com_externalattachments.yaml",
        include_str!("../../crds/vpc.githedgehog.com_externalattachments.yaml"),
    ),
    ("vpc.githedgehog.com_externalpeerings.yaml", include_str!("../../crds/vpc.githedgehog.com_externalpeerings.yaml")),
    ("vpc.githedgehog.com_externals.yaml", include_str!("../../crds/vpc.githedgehog.com_externals.yaml")),
    ("vpc.githedgehog.com_ipv4namespaces.yaml", include_str!("../../crds/vpc.githedgehog.com_ipv4namespaces.yaml")),
    ("vpc.githedgehog.com_vpcattachments.yaml", include_str!("../../crds/vpc.githedgehog.com_vpcattachments.yaml")),
    ("vpc.githedgehog.com_vpcpeerings.yaml", include_str!("../../crds/vpc.githedgehog.com_vpcpeerings.yaml")),
    ("vpc.githedgehog.com_vpcs.yaml", include_str!("../../crds/vpc.githedgehog.com_vpcs.yaml")),
    ("wiring.githedgehog.com_connections.yaml", include_str!("../../crds/wiring.githedgehog.com_connections.yaml")),
    (
        "wiring.githedgehog.com_serverprofiles.yaml",
        include_str!("../../crds/wiring.githedgehog.com_serverprofiles.yaml"),
    ),
    ("wiring.githedgehog.com_servers.yaml", include_str!("../../crds/wiring.githedgehog.com_servers.yaml")),
    ("wiring.githedgehog.com_switches.yaml", include_str!("../../crds/wiring.githedgehog.com_switches.yaml")),
    ("wiring.githedgehog.com_switchgroups.yaml", include_str!("../../crds/wiring.githedgehog.com_switchgroups.yaml")),
    (
        "wiring.githedgehog.com_switchprofiles.yaml",
        include_str!("../../crds/wiring.githedgehog.com_switchprofiles.yaml"),
    ),
    (
        "wiring.githedgehog.com_vlannamespaces.yaml",
        include_str!("../../crds/wiring.githedgehog.com_vlannamespaces.yaml"),
    ),
];

impl KindRegistry {
    /// The embedded Hedgehog CRDs (built once). The server passes its registry around
    /// (`Settings::kinds`), which may add CRDs with `with_extra`; tests use this one.
    pub fn hedgehog() -> &'static KindRegistry {
        // The embedded CRDs are tested to load; an empty registry would fail every sync loudly.
        REGISTRY.get_or_init(|| KindRegistry::from_crds(HEDGEHOG_CRDS).unwrap_or_default())
    }

    /// The embedded CRDs plus `files` (file name, YAML; e.g. of a newer Hedgehog release, or
    /// with list types declared), which add kinds or replace those of the same group, version
    /// and kind.
    pub fn with_extra(files: &[(String, String)]) -> Result<KindRegistry, String> {
        let mut registry = KindRegistry::from_crds(HEDGEHOG_CRDS)?;
        registry.add_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))?;
        Ok(registry)
    }

    /// Builds a registry from CRD documents, given as (file name, YAML).
    pub fn from_crds(files: &[(&str, &str)]) -> Result<KindRegistry, String> {
        let mut registry = KindRegistry::default();
        registry.add_files(files.iter().copied())?;
        Ok(registry)
    }

    fn add_files<'a>(&mut self, files: impl Iterator<Item = (&'a str, &'a str)>) -> Result<(), String> {
        let limits = yaml::Limits { max_alias_nodes: 100_000, max_depth: 256, max_documents: 100 };
        for (name, text) in files {
            let docs = yaml::parse(text, &limits).map_err(|e| format!("{name}: {}", e.message))?;
            for doc in docs.iter().filter(|d| !d.value.is_null()) {
                self.add(&doc.value).map_err(|e| format!("{name}: document {}: {e}", doc.index))?;
            }
        }
        Ok(())
    }

    fn add(&mut self, crd: &Value) -> Result<(), String> {
        if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            return Err("not a CustomResourceDefinition".into());
        }
        let spec = crd.get("spec").ok_or("no spec")?;
        let text =
            |v: Option<&Value>, what: &str| v.and_then(Value::as_str).map(str::to_owned).ok_or(format!("no {what}"));
        let group = text(spec.get("group"), "spec.group")?;
        let names = spec.get("names").ok_or("no spec.names")?;
        let kind = text(names.get("kind"), "spec.names.kind")?;
        let plural = text(names.get("plural"), "spec.names.plural")?;
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        let versions = spec.get("versions").and_then(Value::as_array).ok_or("no spec.versions")?;
        for v in versions {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let version = text(v.get("name"), "version name")?;
            let schema = v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(Value::Null);
            let def = KindDef {
                group: group.clone(),
                version: version.clone(),
                kind: kind.clone(),
                plural: plural.clone(),
                namespaced,
                schema,
            };
            self.by_api.insert((format!("{group}/{version}"), kind.clone()), def);
        }
        Ok(())
    }

    /// The kind of `key` in `version`.
    pub fn of_key(&self, key: &crate::ResourceKey, version: &str) -> Option<&KindDef> {
        self.lookup(&key.api_version(version), &key.kind)
    }

    /// The openAPIV3Schema of `key` in `version`; Null for an unknown kind (compared as
    /// plain JSON then).
    pub fn schema_of(&self, key: &crate::ResourceKey, version: &str) -> &Value {
        static UNKNOWN: Value = Value::Null;
        self.of_key(key, version).map_or(&UNKNOWN, |k| &k.schema)
    }

    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<&KindDef> {
        self.by_api.get(&(api_version.to_string(), kind.to_string()))
    }

    pub fn kinds(&self) -> impl Iterator<Item = &KindDef> {
        self.by_api.values()
    }

    /// Whether some served version of `group` defines `kind` (for "wrong version" messages).
    pub fn versions_of(&self, group: &str, kind: &str) -> Vec<String> {
        let mut found: Vec<String> =
            self.by_api.values().filter(|d| d.group == group && d.kind == kind).map(|d| d.version.clone()).collect();
        found.sort();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedgehog_kinds_are_all_known() {
        let registry = KindRegistry::hedgehog();
        assert_eq!(registry.kinds().count(), HEDGEHOG_CRDS.len());
        let vpc = registry.lookup("vpc.githedgehog.com/v1beta1", "VPC").expect("VPC");
        assert!(vpc.namespaced);
        assert_eq!(vpc.plural, "vpcs");
        assert!(vpc.schema.pointer("/properties/spec/properties/subnets").is_some());
        assert!(registry.lookup("wiring.githedgehog.com/v1beta1", "Switch").is_some());
        assert!(registry.lookup("v1", "Secret").is_none());
        assert_eq!(registry.versions_of("vpc.githedgehog.com", "VPC"), vec!["v1beta1"]);
    }

    #[test]
    fn a_later_crd_replaces_the_same_kind() {
        let crd = |description: &str| {
            format!(
                "kind: CustomResourceDefinition\nspec:\n  group: vpc.githedgehog.com\n  scope: Namespaced\n  names: {{kind: VPC, plural: vpcs}}\n  versions:\n  - name: v1beta1\n    schema:\n      openAPIV3Schema: {{description: {description}}}\n"
            )
        };
        let (first, second) = (crd("first"), crd("second"));
        let registry = KindRegistry::from_crds(&[("a.yaml", &first), ("b.yaml", &second)]).expect("crds");
        let vpc = registry.lookup("vpc.githedgehog.com/v1beta1", "VPC").expect("VPC");
        assert_eq!(vpc.schema["description"], "second");
        assert_eq!(registry.kinds().count(), 1);
    }

    #[test]
    fn bad_crds_are_reported_by_file() {
        let err = KindRegistry::from_crds(&[("x.yaml", "kind: ConfigMap\n")]).unwrap_err();
        assert!(err.contains("x.yaml") && err.contains("CustomResourceDefinition"), "{err}");
    }
}
