//! Least-privilege RBAC for one fabric: a ServiceAccount, a ClusterRole with exactly the verbs
//! the service uses on the Hedgehog resources (and read on the switches' agents), a reader
//! ClusterRole for the cluster's inventory, their bindings, and a token Secret.

use std::collections::BTreeMap;

use super::check::{needed_resources, VERBS};
use super::FABRIC_LABEL;
use fabricsync_core::manifest::kinds::KindRegistry;
use fabricsync_core::vocab::{InventoryKind, Word};

pub struct Manifests {
    pub yaml: String,
    pub token_secret_name: String,
}

/// The manifests for `fabric`, its ServiceAccount `account` in `namespace`. Names are
/// validated DNS-1123 names, so they go into the YAML unquoted.
pub fn manifests(kinds: &KindRegistry, fabric: &str, account: &str, namespace: &str) -> Manifests {
    let role = format!("fabricsync-{fabric}");
    let secret = format!("{account}-token");
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, resource) in needed_resources(kinds) {
        by_group.entry(group).or_default().push(resource);
    }
    let list = |items: &[String]| items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ");
    let rule_lines = |groups: &BTreeMap<String, Vec<String>>, verbs: &[String]| -> String {
        groups
            .iter()
            .map(|(group, resources)| {
                format!(
                    "  - apiGroups: [\"{group}\"]\n    resources: [{}]\n    verbs: [{}]\n",
                    list(resources),
                    list(verbs)
                )
            })
            .collect()
    };
    let verbs: Vec<String> = VERBS.iter().map(|v| v.to_string()).collect();
    let read = |verbs: &[&str]| verbs.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    // Agents are read for rollout and health, never written.
    let agents = BTreeMap::from([(super::agents::GROUP.to_string(), vec![super::agents::PLURAL.to_string()])]);
    let rules = rule_lines(&by_group, &verbs) + &rule_lines(&agents, &read(&["get", "list", "watch"]));
    // The inventory is read (listed), never written: nodes, namespaces, workloads, KubeVirt's VMs.
    let mut readable: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &kind in InventoryKind::ALL {
        let (group, resource) = super::inventory::group_resource(kind);
        readable.entry(group).or_default().push(resource);
    }
    let inventory_rules = rule_lines(&readable, &read(&["get", "list"]));
    let labels = format!("  labels:\n    {FABRIC_LABEL}: {fabric}\n");
    let binding = |role: &str| {
        format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {role}\n{labels}\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\n\
             subjects:\n  - kind: ServiceAccount\n    name: {account}\n    namespace: {namespace}\n"
        )
    };
    let reader = format!("{role}-inventory");
    let yaml = format!(
        "# Least-privilege access for fabricsync to fabric {fabric}. Apply with an admin account, then set\n\
         # the fabric's bearer token to the token in Secret {namespace}/{secret}.\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {account}\n  namespace: {namespace}\n{labels}\
         ---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\nmetadata:\n  name: {secret}\n  namespace: {namespace}\n{labels}\
         \x20 annotations:\n    kubernetes.io/service-account.name: {account}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\n{labels}rules:\n{rules}\
         {}\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {reader}\n{labels}rules:\n{inventory_rules}\
         {}",
        binding(&role),
        binding(&reader),
    );
    Manifests { yaml, token_secret_name: secret }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabricsync_core::manifest::yaml;

    #[test]
    fn manifests_parse_and_grant_exactly_the_needed_verbs() {
        let kinds = KindRegistry::hedgehog();
        let m = manifests(kinds, "lab", "fabricsync", "fab-system");
        assert_eq!(m.token_secret_name, "fabricsync-token");
        let limits = yaml::Limits { max_alias_nodes: 100, max_depth: 20, max_documents: 10 };
        let docs = yaml::parse(&m.yaml, &limits).expect("valid YAML");
        let kinds_of: Vec<&str> = docs.iter().filter_map(|d| d.value.get("kind").and_then(|k| k.as_str())).collect();
        assert_eq!(
            kinds_of,
            ["ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding", "ClusterRole", "ClusterRoleBinding"]
        );
        let role = &docs[2].value;
        let rules = role["rules"].as_array().expect("rules");
        let (agents, managed) = rules.split_last().expect("rules");
        let granted: usize = managed.iter().map(|r| r["resources"].as_array().map_or(0, Vec::len)).sum();
        assert_eq!(granted, needed_resources(kinds).len());
        for rule in managed {
            assert_eq!(rule["verbs"], serde_json::json!(VERBS));
        }
        assert_eq!(agents["apiGroups"], serde_json::json!(["agent.githedgehog.com"]));
        assert_eq!(
            (&agents["resources"], &agents["verbs"]),
            (&serde_json::json!(["agents"]), &serde_json::json!(["get", "list", "watch"]))
        );
        assert_eq!(docs[1].value["metadata"]["annotations"]["kubernetes.io/service-account.name"], "fabricsync");
        assert_eq!(docs[3].value["subjects"][0]["namespace"], "fab-system");
        assert_eq!(docs[0].value["metadata"]["labels"][FABRIC_LABEL], "lab");
        // The inventory reader: get and list on exactly the inventory's kinds, bound to the account.
        let reader = &docs[4].value;
        assert_eq!(reader["metadata"]["name"], "fabricsync-lab-inventory");
        let mut read: Vec<String> = Vec::new();
        for rule in reader["rules"].as_array().expect("rules") {
            assert_eq!(rule["verbs"], serde_json::json!(["get", "list"]));
            let group = rule["apiGroups"][0].as_str().unwrap_or_default();
            for r in rule["resources"].as_array().expect("resources") {
                read.push(format!("{group}/{}", r.as_str().unwrap_or_default()));
            }
        }
        read.sort();
        assert_eq!(
            read,
            [
                "/namespaces",
                "/nodes",
                "/pods",
                "/services",
                "apps/daemonsets",
                "apps/deployments",
                "apps/statefulsets",
                "kubevirt.io/virtualmachineinstances",
                "kubevirt.io/virtualmachines"
            ]
        );
        assert_eq!(docs[5].value["roleRef"]["name"], "fabricsync-lab-inventory");
        assert_eq!(docs[5].value["subjects"][0]["name"], "fabricsync");
    }
}
