//! TestClusterConnection: the server's version, the Hedgehog CRDs it serves, and whether the
//! fabric's credentials allow every verb the service needs (SelfSubjectAccessReview).

use std::collections::BTreeMap;

use futures::{stream, StreamExt};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use super::ClusterError;
use fabricsync_core::manifest::kinds::KindRegistry;

/// Verbs the service needs on every Hedgehog resource: read and watch live state, server-side
/// apply (create + patch), prune (delete).
pub const VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// Checks run at once; a cluster answers dozens of access reviews quickly.
const CONCURRENT_REVIEWS: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct Crd {
    pub group: String,
    pub kind: String,
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub allowed: bool,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub server_version: String,
    pub crds: Vec<Crd>,
    pub permissions: Vec<Permission>,
}

/// (group, plural) of every resource the service works on, sorted.
pub fn needed_resources(kinds: &KindRegistry) -> Vec<(String, String)> {
    let mut resources: Vec<(String, String)> = kinds.kinds().map(|k| (k.group.clone(), k.plural.clone())).collect();
    resources.sort();
    resources.dedup();
    resources
}

/// Runs the checks. Err when the server could not be asked at all (unreachable, TLS, 401).
pub async fn run(client: &Client, kinds: &KindRegistry) -> Result<Report, ClusterError> {
    let version = client.apiserver_version().await?;
    let crds = installed_crds(client, kinds).await?;
    let wanted: Vec<(String, String, String)> = needed_resources(kinds)
        .into_iter()
        .flat_map(|(group, resource)| VERBS.iter().map(move |verb| (group.clone(), resource.clone(), verb.to_string())))
        .collect();
    let reviews = Api::<SelfSubjectAccessReview>::all(client.clone());
    let permissions: Vec<Result<Permission, ClusterError>> = stream::iter(wanted)
        .map(|(group, resource, verb)| {
            let reviews = reviews.clone();
            async move {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            group: Some(group.clone()),
                            resource: Some(resource.clone()),
                            verb: Some(verb.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let answer = reviews.create(&PostParams::default(), &review).await?;
                let status = answer.status.unwrap_or_default();
                Ok(Permission {
                    group,
                    resource,
                    verb,
                    allowed: status.allowed,
                    reason: status.reason.unwrap_or_default(),
                })
            }
        })
        .buffered(CONCURRENT_REVIEWS)
        .collect()
        .await;
    Ok(Report {
        server_version: version.git_version,
        crds,
        permissions: permissions.into_iter().collect::<Result<_, _>>()?,
    })
}

/// The Hedgehog kinds the server serves, with their versions (API discovery, which every
/// authenticated user may read).
pub async fn installed_crds(client: &Client, kinds: &KindRegistry) -> Result<Vec<Crd>, ClusterError> {
    let groups: std::collections::BTreeSet<String> = kinds.kinds().map(|k| k.group.clone()).collect();
    let served = client.list_api_groups().await?;
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for group in served.groups.iter().filter(|g| groups.contains(&g.name)) {
        for version in &group.versions {
            let resources = client.list_api_group_resources(&version.group_version).await?;
            for r in resources.resources.iter().filter(|r| !r.name.contains('/')) {
                found.entry((group.name.clone(), r.kind.clone())).or_default().push(version.version.clone());
            }
        }
    }
    Ok(found.into_iter().map(|((group, kind), versions)| Crd { group, kind, versions }).collect())
}

/// What is wrong with a completed report, for the response's failure message: missing CRDs
/// and missing permissions, or None when nothing is.
pub fn problems(report: &Report, kinds: &KindRegistry) -> Option<String> {
    let mut problems = Vec::new();
    let mut known: Vec<(String, String)> = kinds.kinds().map(|k| (k.group.clone(), k.kind.clone())).collect();
    known.sort();
    known.dedup();
    let missing_crds: Vec<String> = known
        .iter()
        .filter(|(group, kind)| !report.crds.iter().any(|c| &c.group == group && &c.kind == kind))
        .map(|(group, kind)| format!("{kind}.{group}"))
        .collect();
    if !missing_crds.is_empty() {
        problems.push(format!("CRDs not installed: {}", missing_crds.join(", ")));
    }
    let denied: Vec<String> = report
        .permissions
        .iter()
        .filter(|p| !p.allowed)
        .map(|p| format!("{} {}.{}", p.verb, p.resource, p.group))
        .collect();
    if !denied.is_empty() {
        problems.push(format!("missing permissions: {}", denied.join(", ")));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_every_hedgehog_resource_once() {
        let resources = needed_resources(KindRegistry::hedgehog());
        assert!(resources.contains(&("vpc.githedgehog.com".into(), "vpcs".into())));
        assert!(resources.contains(&("wiring.githedgehog.com".into(), "connections".into())));
        let mut unique = resources.clone();
        unique.dedup();
        assert_eq!(unique.len(), resources.len());
    }

    #[test]
    fn problems_name_missing_crds_and_permissions() {
        let kinds = KindRegistry::hedgehog();
        let all_crds: Vec<Crd> = kinds
            .kinds()
            .map(|k| Crd { group: k.group.clone(), kind: k.kind.clone(), versions: vec![k.version.clone()] })
            .collect();
        let allowed = |verb: &str, ok: bool| Permission {
            group: "vpc.githedgehog.com".into(),
            resource: "vpcs".into(),
            verb: verb.into(),
            allowed: ok,
            reason: String::new(),
        };
        let fine =
            Report { server_version: "v1".into(), crds: all_crds.clone(), permissions: vec![allowed("get", true)] };
        assert_eq!(problems(&fine, kinds), None);

        let denied = Report { permissions: vec![allowed("get", true), allowed("patch", false)], ..fine };
        assert_eq!(problems(&denied, kinds).as_deref(), Some("missing permissions: patch vpcs.vpc.githedgehog.com"));

        let no_vpc = Report { crds: all_crds.into_iter().filter(|c| c.kind != "VPC").collect(), ..Report::default() };
        assert_eq!(problems(&no_vpc, kinds).as_deref(), Some("CRDs not installed: VPC.vpc.githedgehog.com"));
    }
}
