//! The authorization rule of every RPC, as data: who may call it, whether it is audited, and
//! where its request names a fabric (so a fabric-scoped principal can be checked). A test
//! enumerates the proto descriptors: an RPC without a rule fails the build's tests, and an RPC
//! without a rule is refused at run time (admin only) rather than open.

use prost::Message;

use super::Role;
use crate::proto;

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (health checks: probes need them).
    Open,
    /// Viewers, or anyone when the server runs with --public-reflection.
    Reflection,
    /// Principals with at least this role.
    Role(Role),
}

/// What a request is about, as far as scopes and the audit log care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Fabric(String),
    /// A fabric by the name a request gives it (create, rename).
    FabricName(String),
    Run(String),
    Repository(String),
    /// A name only recorded in the audit log (a repository's or token's name).
    Named(&'static str, String),
}

pub type Targets = fn(&[u8]) -> Result<Vec<Target>, prost::DecodeError>;

#[derive(Debug)]
pub struct Rule {
    /// `package.Service/Method`, as in the request path.
    pub method: &'static str,
    pub access: Access,
    /// Only principals without a fabric scope (creating repositories, managing tokens, reading
    /// the audit log): a scoped principal could otherwise reach beyond its fabrics.
    pub unscoped: bool,
    /// Recorded in the audit log (every call that changes something or starts work).
    pub audited: bool,
    /// Server-streaming: open streams end when the principal's token is revoked.
    pub streaming: bool,
    /// Decodes the request's targets; only called for scoped principals and audited calls.
    /// None: the request names nothing (or streams, like reflection, and is never buffered).
    pub targets: Option<Targets>,
}

/// `Option<message>` fields of requests: absent reads as empty.
fn fabric_targets(fabric: Option<&proto::Fabric>) -> Vec<Target> {
    fabric.map_or_else(Vec::new, |f| {
        vec![
            Target::Fabric(f.id.clone()),
            Target::FabricName(f.name.clone()),
            Target::Repository(f.repository_id.clone()),
        ]
    })
}

macro_rules! rule {
    ($method:literal, $access:expr, $request:ty, |$r:ident| $targets:expr $(, $flag:ident)*) => {
        Rule {
            method: $method,
            access: $access,
            targets: Some(|bytes| {
                let $r = <$request>::decode(bytes)?;
                Ok($targets)
            }),
            ..flags(&[$(stringify!($flag)),*])
        }
    };
    ($method:literal, $access:expr $(, $flag:ident)*) => {
        Rule { method: $method, access: $access, targets: None, ..flags(&[$(stringify!($flag)),*]) }
    };
}

const fn flags(names: &[&str]) -> Rule {
    let mut rule = Rule {
        method: "",
        access: Access::Role(Role::Admin),
        unscoped: false,
        audited: false,
        streaming: false,
        targets: None,
    };
    let mut i = 0;
    while i < names.len() {
        match names[i].as_bytes() {
            b"unscoped" => rule.unscoped = true,
            b"audited" => rule.audited = true,
            b"streaming" => rule.streaming = true,
            _ => panic!("unknown rule flag"),
        }
        i += 1;
    }
    rule
}

const VIEWER: Access = Access::Role(Role::Viewer);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);

use proto::*;

pub static RULES: &[Rule] = &[
    rule!("grpc.health.v1.Health/Check", Access::Open),
    rule!("grpc.health.v1.Health/Watch", Access::Open, streaming),
    rule!("grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Access::Reflection, streaming),
    rule!("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Access::Reflection, streaming),
    // RepositoryService: a scoped principal sees the repositories its fabrics use.
    rule!(
        "fabricsync.v1.RepositoryService/CreateRepository",
        ADMIN,
        CreateRepositoryRequest,
        |r| r.repository.map(|x| vec![Target::Named("name", x.name)]).unwrap_or_default(),
        unscoped,
        audited
    ),
    rule!("fabricsync.v1.RepositoryService/GetRepository", VIEWER, GetRepositoryRequest, |r| vec![Target::Repository(
        r.id
    )]),
    rule!("fabricsync.v1.RepositoryService/ListRepositories", VIEWER),
    rule!(
        "fabricsync.v1.RepositoryService/UpdateRepository",
        ADMIN,
        UpdateRepositoryRequest,
        |r| r.repository.map(|x| vec![Target::Repository(x.id)]).unwrap_or_default(),
        audited
    ),
    rule!(
        "fabricsync.v1.RepositoryService/DeleteRepository",
        ADMIN,
        DeleteRepositoryRequest,
        |r| vec![Target::Repository(r.id)],
        audited
    ),
    rule!(
        "fabricsync.v1.RepositoryService/TestRepositoryConnection",
        OPERATOR,
        TestRepositoryConnectionRequest,
        |r| vec![Target::Repository(r.id)],
        audited
    ),
    // FabricService
    rule!(
        "fabricsync.v1.FabricService/CreateFabric",
        ADMIN,
        CreateFabricRequest,
        |r| fabric_targets(r.fabric.as_ref()),
        audited
    ),
    rule!("fabricsync.v1.FabricService/GetFabric", VIEWER, GetFabricRequest, |r| vec![Target::Fabric(r.id)]),
    rule!("fabricsync.v1.FabricService/ListFabrics", VIEWER),
    rule!(
        "fabricsync.v1.FabricService/UpdateFabric",
        ADMIN,
        UpdateFabricRequest,
        |r| fabric_targets(r.fabric.as_ref()),
        audited
    ),
    rule!(
        "fabricsync.v1.FabricService/DeleteFabric",
        ADMIN,
        DeleteFabricRequest,
        |r| vec![Target::Fabric(r.id)],
        audited
    ),
    rule!(
        "fabricsync.v1.FabricService/TestClusterConnection",
        OPERATOR,
        TestClusterConnectionRequest,
        |r| vec![Target::Fabric(r.id)],
        audited
    ),
    rule!("fabricsync.v1.FabricService/GetFabricRollout", VIEWER, GetFabricRolloutRequest, |r| vec![Target::Fabric(
        r.fabric_id
    )]),
    rule!("fabricsync.v1.FabricService/ListResources", VIEWER, ListResourcesRequest, |r| vec![Target::Fabric(
        r.fabric_id
    )]),
    rule!("fabricsync.v1.FabricService/GetResource", VIEWER, GetResourceRequest, |r| vec![Target::Fabric(r.fabric_id)]),
    rule!("fabricsync.v1.FabricService/GenerateRbacManifests", ADMIN, GenerateRbacManifestsRequest, |r| vec![
        Target::Fabric(r.fabric_id)
    ]),
    // SyncService
    rule!(
        "fabricsync.v1.SyncService/StartSync",
        OPERATOR,
        StartSyncRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!("fabricsync.v1.SyncService/GetSyncRun", VIEWER, GetSyncRunRequest, |r| vec![Target::Run(r.id)]),
    rule!("fabricsync.v1.SyncService/ListSyncRuns", VIEWER),
    rule!(
        "fabricsync.v1.SyncService/CancelSyncRun",
        OPERATOR,
        CancelSyncRunRequest,
        |r| vec![Target::Run(r.id)],
        audited
    ),
    rule!(
        "fabricsync.v1.SyncService/StreamSyncProgress",
        VIEWER,
        StreamSyncProgressRequest,
        |r| vec![Target::Run(r.run_id)],
        streaming
    ),
    rule!(
        "fabricsync.v1.SyncService/WatchFabricEvents",
        VIEWER,
        WatchFabricEventsRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        streaming
    ),
    rule!("fabricsync.v1.SyncService/PlanSync", VIEWER, PlanSyncRequest, |r| vec![Target::Fabric(r.fabric_id)]),
    // DriftService
    rule!("fabricsync.v1.DriftService/GetFabricDrift", VIEWER, GetFabricDriftRequest, |r| vec![Target::Fabric(
        r.fabric_id
    )]),
    rule!("fabricsync.v1.DriftService/ListDriftedResources", VIEWER, ListDriftedResourcesRequest, |r| vec![
        Target::Fabric(r.fabric_id)
    ]),
    rule!("fabricsync.v1.DriftService/GetResourceDrift", VIEWER, GetResourceDriftRequest, |r| vec![Target::Fabric(
        r.fabric_id
    )]),
    rule!(
        "fabricsync.v1.DriftService/DetectDrift",
        OPERATOR,
        DetectDriftRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!(
        "fabricsync.v1.DriftService/StreamDrift",
        VIEWER,
        StreamDriftRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        streaming
    ),
    rule!(
        "fabricsync.v1.DriftService/Remediate",
        OPERATOR,
        RemediateRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    // WriteService: commits to a fabric's repository, with its credentials.
    rule!(
        "fabricsync.v1.WriteService/ChangeObjects",
        OPERATOR,
        ChangeObjectsRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!(
        "fabricsync.v1.WriteService/IngestRaw",
        OPERATOR,
        IngestRawRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!(
        "fabricsync.v1.WriteService/AdoptDrift",
        OPERATOR,
        AdoptDriftRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!(
        "fabricsync.v1.WriteService/MigrateVersions",
        OPERATOR,
        MigrateVersionsRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    // InventoryService: imports start work (operators, audited); the inventory is read by viewers.
    rule!(
        "fabricsync.v1.InventoryService/StartInventoryImport",
        OPERATOR,
        StartInventoryImportRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!("fabricsync.v1.InventoryService/ListInventoryObjects", VIEWER, ListInventoryObjectsRequest, |r| vec![
        Target::Fabric(r.fabric_id)
    ]),
    rule!("fabricsync.v1.InventoryService/GetInventoryObject", VIEWER, GetInventoryObjectRequest, |r| vec![
        Target::Fabric(r.fabric_id)
    ]),
    rule!("fabricsync.v1.InventoryService/ListBehindSwitchPort", VIEWER, ListBehindSwitchPortRequest, |r| vec![
        Target::Fabric(r.fabric_id)
    ]),
    rule!("fabricsync.v1.InventoryService/GetServerInventory", VIEWER, GetServerInventoryRequest, |r| vec![
        Target::Fabric(r.fabric_id)
    ]),
    // Inventory clusters are connections with credentials, as the fabric's own cluster: admins.
    rule!(
        "fabricsync.v1.InventoryService/PutInventoryCluster",
        ADMIN,
        PutInventoryClusterRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!(
        "fabricsync.v1.InventoryService/DeleteInventoryCluster",
        ADMIN,
        DeleteInventoryClusterRequest,
        |r| vec![Target::Fabric(r.fabric_id)],
        audited
    ),
    rule!("fabricsync.v1.InventoryService/ListInventoryClusters", VIEWER, ListInventoryClustersRequest, |r| vec![
        Target::Fabric(r.fabric_id)
    ]),
    // AccessService
    rule!(
        "fabricsync.v1.AccessService/CreateToken",
        ADMIN,
        CreateTokenRequest,
        |r| vec![Target::Named("name", r.name)],
        unscoped,
        audited
    ),
    rule!("fabricsync.v1.AccessService/ListTokens", ADMIN, unscoped),
    rule!(
        "fabricsync.v1.AccessService/RevokeToken",
        ADMIN,
        RevokeTokenRequest,
        |r| vec![Target::Named("name", r.name)],
        unscoped,
        audited
    ),
    rule!("fabricsync.v1.AccessService/WhoAmI", VIEWER),
    rule!("fabricsync.v1.AccessService/ListAuditEvents", ADMIN, unscoped),
];

/// The rule of a request path (`/package.Service/Method`).
pub fn rule(path: &str) -> Option<&'static Rule> {
    let method = path.strip_prefix('/').unwrap_or(path);
    RULES.iter().find(|r| r.method == method)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// Every RPC of every served descriptor, with whether it streams its response.
    fn served_methods() -> BTreeSet<(String, bool)> {
        let mut methods = BTreeSet::new();
        for set in [crate::proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
            let files = prost_types::FileDescriptorSet::decode(set).expect("descriptor set");
            for file in files.file {
                for service in &file.service {
                    for m in &service.method {
                        let name = format!("{}.{}/{}", file.package(), service.name(), m.name());
                        methods.insert((name, m.server_streaming()));
                    }
                }
            }
        }
        for v in ["v1", "v1alpha"] {
            methods.insert((format!("grpc.reflection.{v}.ServerReflection/ServerReflectionInfo"), true));
        }
        methods
    }

    #[test]
    fn every_rpc_has_exactly_one_rule() {
        let served = served_methods();
        let ruled: BTreeSet<(String, bool)> = RULES.iter().map(|r| (r.method.to_string(), r.streaming)).collect();
        let missing: Vec<_> = served.difference(&ruled).collect();
        let extra: Vec<_> = ruled.difference(&served).collect();
        assert!(missing.is_empty(), "RPCs without a rule (or with the wrong streaming flag): {missing:?}");
        assert!(extra.is_empty(), "rules for RPCs that are not served: {extra:?}");
        assert_eq!(RULES.len(), served.len(), "a method has two rules");
        assert!(served.len() > 30);
    }

    #[test]
    fn roles_follow_the_contract() {
        let role = |m: &str| rule(&format!("/fabricsync.v1.{m}")).map(|r| r.access);
        assert_eq!(role("FabricService/GetFabric"), Some(VIEWER));
        assert_eq!(role("SyncService/PlanSync"), Some(VIEWER));
        assert_eq!(role("SyncService/StartSync"), Some(OPERATOR));
        assert_eq!(role("DriftService/Remediate"), Some(OPERATOR));
        assert_eq!(role("WriteService/ChangeObjects"), Some(OPERATOR));
        assert_eq!(role("FabricService/TestClusterConnection"), Some(OPERATOR));
        assert_eq!(role("FabricService/GenerateRbacManifests"), Some(ADMIN));
        assert_eq!(role("RepositoryService/UpdateRepository"), Some(ADMIN));
        assert_eq!(rule("/grpc.health.v1.Health/Check").map(|r| r.access), Some(Access::Open));
        assert!(rule("/fabricsync.v1.Nope/Nope").is_none());
        // Every mutating RPC is audited.
        for r in RULES.iter().filter(|r| r.access == ADMIN || r.access == OPERATOR) {
            let reads = ["ListTokens", "ListAuditEvents", "GenerateRbacManifests"];
            assert!(r.audited || reads.iter().any(|m| r.method.ends_with(m)), "{} is not audited", r.method);
        }
    }

    #[test]
    fn targets_come_from_the_request() {
        let body = StartSyncRequest { fabric_id: "f-1".into(), ..Default::default() }.encode_to_vec();
        let r = rule("/fabricsync.v1.SyncService/StartSync").unwrap();
        assert_eq!((r.targets.unwrap())(&body).unwrap(), vec![Target::Fabric("f-1".into())]);
        let body = UpdateFabricRequest {
            fabric: Some(Fabric { id: "f-2".into(), name: "lab".into(), ..Default::default() }),
            ..Default::default()
        }
        .encode_to_vec();
        let r = rule("/fabricsync.v1.FabricService/UpdateFabric").unwrap();
        let decode = r.targets.unwrap();
        let targets = decode(&body).unwrap();
        assert!(targets.contains(&Target::Fabric("f-2".into())) && targets.contains(&Target::FabricName("lab".into())));
        assert!(decode(b"\xff\xff\xff").is_err());
        assert!(
            rule("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").unwrap().targets.is_none(),
            "a bidi stream is never buffered"
        );
    }
}
