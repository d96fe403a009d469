//! RepositoryService and FabricService against a real server process and a real PostgreSQL.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use fabricsync::proto::fabric_service_client::FabricServiceClient;
use fabricsync::proto::repository_auth::Method;
use fabricsync::proto::repository_service_client::RepositoryServiceClient;
use fabricsync::proto::*;
use support::server::ServerProcess;
use tonic::Code;
use tonic_types::StatusExt;

fn repo(name: &str, url: &str) -> CreateRepositoryRequest {
    CreateRepositoryRequest {
        repository: Some(Repository { name: name.into(), url: url.into(), ..Default::default() }),
        auth: None,
        ..Default::default()
    }
}

fn fabric(name: &str, repository_id: &str) -> CreateFabricRequest {
    CreateFabricRequest {
        fabric: Some(Fabric {
            name: name.into(),
            repository_id: repository_id.into(),
            gitops_path: "env/lab".into(),
            ..Default::default()
        }),
        cluster: None,
    }
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

/// The field names of an INVALID_ARGUMENT's google.rpc.BadRequest.
fn bad_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[tokio::test]
async fn repository_lifecycle() {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);

    let created = repos
        .create_repository(repo("fabric-git", "file:///srv/git/fabric.git"))
        .await
        .unwrap()
        .into_inner()
        .repository
        .unwrap();
    assert!(uuid::Uuid::parse_str(&created.id).is_ok());
    assert_eq!(created.provider, Provider::Generic as i32);
    assert_eq!(created.connection_status, ConnectionStatus::Unknown as i32);
    assert_eq!(created.auth.as_ref().unwrap().r#type, AuthType::None as i32);
    assert!(created.create_time.is_some() && !created.etag.is_empty());

    let got = repos
        .get_repository(GetRepositoryRequest { id: created.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .repository
        .unwrap();
    assert_eq!(got, created);

    let dup = repos.create_repository(repo("fabric-git", "file:///other")).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    // Update with the current etag, then the old etag is stale.
    let update = UpdateRepositoryRequest {
        repository: Some(Repository {
            id: created.id.clone(),
            description: "lab fabric".into(),
            provider: Provider::Gitea as i32,
            ..Default::default()
        }),
        update_mask: mask(&["description", "provider"]),
        auth: None,
        etag: created.etag.clone(),
        ..Default::default()
    };
    let updated = repos.update_repository(update.clone()).await.unwrap().into_inner().repository.unwrap();
    assert_eq!(updated.description, "lab fabric");
    assert_eq!(updated.provider, Provider::Gitea as i32);
    assert_eq!(updated.url, created.url, "fields outside the mask are kept");
    assert_ne!(updated.etag, created.etag);
    let stale = repos.update_repository(update).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let stale_delete = repos
        .delete_repository(DeleteRepositoryRequest { id: created.id.clone(), etag: created.etag.clone() })
        .await
        .unwrap_err();
    assert_eq!(stale_delete.code(), Code::Aborted);

    // A repository in use by a fabric cannot be deleted.
    let mut fabrics = FabricServiceClient::new(server.channel().await);
    let fab = fabrics.create_fabric(fabric("lab-1", &created.id)).await.unwrap().into_inner().fabric.unwrap();
    let refused = repos
        .delete_repository(DeleteRepositoryRequest { id: created.id.clone(), etag: String::new() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("lab-1"), "{}", refused.message());

    fabrics.delete_fabric(DeleteFabricRequest { id: fab.id.clone(), etag: fab.etag }).await.unwrap();
    repos.delete_repository(DeleteRepositoryRequest { id: created.id.clone(), etag: updated.etag }).await.unwrap();
    let gone = repos.get_repository(GetRepositoryRequest { id: created.id }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn lists_paginate_and_filter() {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    for name in ["r-c", "r-a", "r-e", "r-b", "r-d"] {
        repos.create_repository(repo(name, &format!("file:///srv/{name}"))).await.unwrap();
    }
    let token_req = CreateRepositoryRequest {
        auth: Some(RepositoryAuth {
            method: Some(Method::Token(TokenAuth { token: "tok".into(), username: String::new() })),
        }),
        ..repo("r-token", "https://git.example.org/fabric.git")
    };
    repos.create_repository(token_req).await.unwrap();

    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = repos
            .list_repositories(ListRepositoriesRequest { page_size: 2, page_token: token, filter: String::new() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 6);
        assert!(page.repositories.len() <= 2);
        names.extend(page.repositories.into_iter().map(|r| r.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["r-a", "r-b", "r-c", "r-d", "r-e", "r-token"]);

    let filtered = repos
        .list_repositories(ListRepositoriesRequest { filter: "auth_type=token".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.repositories.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["r-token"]);
    assert_eq!(filtered.total_size, 1);

    for (filter, page_token) in [("color=blue", ""), ("auth_type=kerberos", ""), ("", "garbage")] {
        let err = repos
            .list_repositories(ListRepositoriesRequest {
                filter: filter.into(),
                page_token: page_token.into(),
                page_size: 0,
            })
            .await
            .unwrap_err();
        let expected = if filter.is_empty() { "page_token" } else { "filter" };
        assert_eq!(bad_fields(&err), [expected]);
    }
}

#[tokio::test]
async fn bad_input_names_the_field_and_the_server_keeps_serving() {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    let mut fabrics = FabricServiceClient::new(server.channel().await);

    let cases: Vec<(CreateRepositoryRequest, Vec<&str>)> = vec![
        (repo("Bad_Name", "file:///x"), vec!["repository.name"]),
        (repo("ok", "https://user:pw@host/r.git"), vec!["repository.url"]),
        (repo("ok", "http://example.com/r.git"), vec!["repository.url"]),
        (repo("ok", "ftp://host/r.git"), vec!["repository.url"]),
        (repo(&"x".repeat(64), ""), vec!["repository.name", "repository.url"]),
        (
            CreateRepositoryRequest {
                repository: Some(Repository {
                    name: "ok".into(),
                    url: "file:///x".into(),
                    provider: 99,
                    description: "d".repeat(5000),
                    ..Default::default()
                }),
                auth: None,
                ..Default::default()
            },
            vec!["repository.description", "repository.provider"],
        ),
        (
            CreateRepositoryRequest {
                auth: Some(RepositoryAuth {
                    method: Some(Method::SshKey(SshKeyAuth {
                        private_key: "not a key".into(),
                        known_hosts: String::new(),
                    })),
                }),
                ..repo("ok", "ssh://git@127.0.0.1/r.git")
            },
            vec!["auth.ssh_key.private_key"],
        ),
        (
            CreateRepositoryRequest {
                auth: Some(RepositoryAuth {
                    method: Some(Method::Basic(BasicAuth { username: "u".into(), password: "p".into() })),
                }),
                ..repo("ok", "git@host:r.git")
            },
            vec!["auth"],
        ),
    ];
    for (request, fields) in cases {
        let err = repos.create_repository(request).await.unwrap_err();
        assert_eq!(bad_fields(&err), fields, "{}", err.message());
    }
    let missing = repos.create_repository(CreateRepositoryRequest::default()).await.unwrap_err();
    assert_eq!(bad_fields(&missing), ["repository"]);
    let bad_id = repos.get_repository(GetRepositoryRequest { id: "nope".into() }).await.unwrap_err();
    assert_eq!(bad_fields(&bad_id), ["id"]);
    let unknown =
        repos.get_repository(GetRepositoryRequest { id: uuid::Uuid::new_v4().to_string() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let repository =
        repos.create_repository(repo("good", "file:///srv/good")).await.unwrap().into_inner().repository.unwrap();
    let bad_mask = repos
        .update_repository(UpdateRepositoryRequest {
            repository: Some(Repository { id: repository.id.clone(), ..Default::default() }),
            update_mask: mask(&["connection_status"]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&bad_mask), ["update_mask"]);

    let fabric_cases: Vec<(CreateFabricRequest, Vec<&str>)> = vec![
        (fabric("lab", "not-a-uuid"), vec!["fabric.repository_id"]),
        (
            CreateFabricRequest {
                fabric: Some(Fabric {
                    name: "lab".into(),
                    repository_id: repository.id.clone(),
                    gitops_path: "../outside".into(),
                    git_ref: "bad ref".into(),
                    ..Default::default()
                }),
                cluster: Some(ClusterConnectionInput {
                    server_url: "http://10.1.1.1:6443".into(),
                    ca_certificate_pem: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".into(),
                    bearer_token: String::new(),
                    namespace: "Not_Valid".into(),
                }),
            },
            vec![
                "fabric.git_ref",
                "fabric.gitops_path",
                "cluster.server_url",
                "cluster.ca_certificate_pem",
                "cluster.namespace",
            ],
        ),
        (
            CreateFabricRequest {
                fabric: Some(Fabric {
                    name: "lab".into(),
                    repository_id: repository.id.clone(),
                    gitops_path: "/abs".into(),
                    ..Default::default()
                }),
                cluster: None,
            },
            vec!["fabric.gitops_path"],
        ),
    ];
    for (request, fields) in fabric_cases {
        let err = fabrics.create_fabric(request).await.unwrap_err();
        assert_eq!(bad_fields(&err), fields, "{}", err.message());
    }
    let no_repo = fabrics.create_fabric(fabric("lab", &uuid::Uuid::new_v4().to_string())).await.unwrap_err();
    assert_eq!(no_repo.code(), Code::NotFound);

    // Still serving after all of that.
    repos.list_repositories(ListRepositoriesRequest::default()).await.unwrap();
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test]
async fn fabric_lifecycle_with_update_masks() {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    let mut fabrics = FabricServiceClient::new(server.channel().await);
    let r1 = repos.create_repository(repo("one", "file:///srv/one")).await.unwrap().into_inner().repository.unwrap();
    let r2 = repos.create_repository(repo("two", "file:///srv/two")).await.unwrap().into_inner().repository.unwrap();

    let ca = include_str!("data/ca.pem");
    let created = fabrics
        .create_fabric(CreateFabricRequest {
            fabric: Some(Fabric {
                name: "lab-1".into(),
                repository_id: r1.id.clone(),
                gitops_path: "./env/lab/".into(),
                sync_policy: Some(SyncPolicy {
                    auto_sync_interval: Some(prost_types::Duration { seconds: 300, nanos: 0 }),
                    prune: true,
                    ignore_differences: vec![IgnoreDifference {
                        group: String::new(),
                        kind: "VPC".into(),
                        json_pointers: vec!["/spec/vlan".into()],
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            cluster: Some(ClusterConnectionInput {
                server_url: "https://127.0.0.1:6443".into(),
                ca_certificate_pem: ca.into(),
                bearer_token: "cluster-token".into(),
                namespace: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .fabric
        .unwrap();
    assert_eq!(created.git_ref, "main");
    assert_eq!(created.gitops_path, "env/lab");
    assert_eq!(created.sync_status, SyncStatus::NeverSynced as i32);
    assert_eq!(created.watch_status, WatchStatus::Inactive as i32);
    let cluster = created.cluster.clone().unwrap();
    assert!(cluster.has_bearer_token);
    assert_eq!(cluster.namespace, "default");
    let policy = created.sync_policy.clone().unwrap();
    assert_eq!(policy.auto_sync_interval.unwrap().seconds, 300);
    assert!(policy.prune && !policy.self_heal);
    assert_eq!(policy.ignore_differences[0].kind, "VPC");

    let updated = fabrics
        .update_fabric(UpdateFabricRequest {
            fabric: Some(Fabric {
                id: created.id.clone(),
                repository_id: r2.id.clone(),
                git_ref: "release/1.0".into(),
                sync_policy: Some(SyncPolicy { self_heal: true, ..Default::default() }),
                ..Default::default()
            }),
            update_mask: mask(&["repository_id", "git_ref", "sync_policy.self_heal", "cluster.bearer_token"]),
            cluster: Some(ClusterConnectionInput::default()),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .fabric
        .unwrap();
    assert_eq!(updated.repository_id, r2.id);
    assert_eq!(updated.git_ref, "release/1.0");
    let policy = updated.sync_policy.unwrap();
    assert!(policy.self_heal && policy.prune, "only the masked policy field changed");
    assert!(!updated.cluster.as_ref().unwrap().has_bearer_token, "an empty token clears it");
    assert_eq!(updated.cluster.unwrap().server_url, "https://127.0.0.1:6443");

    fabrics.create_fabric(fabric("lab-2", &r1.id)).await.unwrap();
    let renamed = fabrics
        .update_fabric(UpdateFabricRequest {
            fabric: Some(Fabric { id: created.id.clone(), name: "lab-2".into(), ..Default::default() }),
            update_mask: mask(&["name"]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(renamed.code(), Code::AlreadyExists);

    let listed = fabrics
        .list_fabrics(ListFabricsRequest { filter: format!("repository_id={}", r2.id), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.fabrics.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["lab-1"]);
    let never = fabrics
        .list_fabrics(ListFabricsRequest { filter: "sync_status=never_synced".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(never.total_size, 2);

    fabrics.delete_fabric(DeleteFabricRequest { id: created.id.clone(), etag: String::new() }).await.unwrap();
    let gone = fabrics.get_fabric(GetFabricRequest { id: created.id }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

/// Sends any bytes as the message of a call, and returns the response's bytes: a client that
/// speaks gRPC framing but not protobuf.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, n).to_vec()))
    }
}

#[tokio::test]
async fn sources_pause_and_watch_settings_are_stored_checked_and_shown() {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    let mut fabrics = FabricServiceClient::new(server.channel().await);
    let r = repos.create_repository(repo("one", "file:///srv/one")).await.unwrap().into_inner().repository.unwrap();

    // Defaults: every file, not paused, the watch on for every kind, no activity, layout unknown.
    let plain = fabrics.create_fabric(fabric("plain", &r.id)).await.unwrap().into_inner().fabric.unwrap();
    assert!(plain.include_paths.is_empty() && plain.exclude_paths.is_empty() && !plain.paused);
    assert_eq!(plain.layout, Layout::Unknown as i32);
    assert_eq!(plain.watch, Some(WatchSettings { enabled: true, kinds: vec![], scope: WatchScope::Cluster as i32 }));
    let activity = plain.watch_activity.unwrap();
    assert_eq!((activity.started_time, activity.event_count), (None, 0));

    let mut request = fabric("chosen", &r.id);
    let f = request.fabric.as_mut().unwrap();
    f.include_paths = vec!["managed/**".into()];
    f.exclude_paths = vec!["managed/drafts/**".into()];
    f.paused = true;
    f.watch = Some(WatchSettings {
        enabled: false,
        kinds: vec!["VPC".into(), "Switch".into(), "VPC".into()],
        ..Default::default()
    });
    let chosen = fabrics.create_fabric(request).await.unwrap().into_inner().fabric.unwrap();
    assert_eq!(
        (chosen.include_paths.clone(), chosen.exclude_paths.clone()),
        (vec!["managed/**".to_string()], vec!["managed/drafts/**".to_string()])
    );
    assert!(chosen.paused);
    assert_eq!(
        chosen.watch,
        Some(WatchSettings {
            enabled: false,
            kinds: vec!["Switch".into(), "VPC".into()],
            scope: WatchScope::Cluster as i32
        })
    );
    let got =
        fabrics.get_fabric(GetFabricRequest { id: chosen.id.clone() }).await.unwrap().into_inner().fabric.unwrap();
    assert_eq!(got, chosen);

    // Bad globs and unknown kinds are named, at create and at update; nothing is stored.
    let mut bad = fabric("bad", &r.id);
    let f = bad.fabric.as_mut().unwrap();
    f.include_paths = vec!["ok/**".into(), "/absolute/*.yaml".into()];
    f.exclude_paths = vec!["[z-a]".into()];
    f.watch =
        Some(WatchSettings { enabled: true, kinds: vec!["Switch".into(), "Swtich".into()], ..Default::default() });
    let err = fabrics.create_fabric(bad).await.unwrap_err();
    assert_eq!(
        bad_fields(&err),
        ["fabric.include_paths[1]", "fabric.exclude_paths[0]", "fabric.watch.kinds[1]"],
        "{err:?}"
    );
    let why = err.get_details_bad_request().unwrap().field_violations.pop().unwrap().description;
    assert!(why.contains("\"Swtich\" is not a kind") && why.contains("Switch, SwitchGroup"), "{why}");
    let update = |fabric: Fabric, paths: &[&str]| UpdateFabricRequest {
        fabric: Some(fabric),
        update_mask: mask(paths),
        cluster: None,
        etag: String::new(),
    };
    let err = fabrics
        .update_fabric(update(
            Fabric {
                id: chosen.id.clone(),
                exclude_paths: vec!["a/**".into(), "{unclosed".into()],
                ..Default::default()
            },
            &["exclude_paths"],
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["fabric.exclude_paths[1]"]);

    // Update one setting at a time; the others stay.
    let resumed = fabrics
        .update_fabric(update(
            Fabric {
                id: chosen.id.clone(),
                paused: false,
                watch: Some(WatchSettings { enabled: true, kinds: vec!["ignored".into()], ..Default::default() }),
                ..Default::default()
            },
            &["paused", "watch.enabled"],
        ))
        .await
        .unwrap()
        .into_inner()
        .fabric
        .unwrap();
    assert!(!resumed.paused);
    assert_eq!(
        resumed.watch,
        Some(WatchSettings {
            enabled: true,
            kinds: vec!["Switch".into(), "VPC".into()],
            scope: WatchScope::Cluster as i32
        })
    );
    assert_eq!(resumed.include_paths, chosen.include_paths);
    let all_kinds = fabrics
        .update_fabric(update(
            Fabric { id: chosen.id.clone(), ..Default::default() },
            &["watch.kinds", "include_paths"],
        ))
        .await
        .unwrap()
        .into_inner()
        .fabric
        .unwrap();
    assert_eq!(
        all_kinds.watch,
        Some(WatchSettings { enabled: true, kinds: vec![], scope: WatchScope::Cluster as i32 })
    );
    assert!(all_kinds.include_paths.is_empty());
    assert_eq!(all_kinds.exclude_paths, chosen.exclude_paths);
}

async fn raw_call(channel: support::server::AuthChannel, path: &str, body: &[u8]) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path: http::uri::PathAndQuery = path.parse().unwrap();
    grpc.unary(tonic::Request::new(body.to_vec()), path, RawCodec).await.map(tonic::Response::into_inner)
}

/// Issue 15: hostile input is INVALID_ARGUMENT naming the field (never INTERNAL), is not
/// stored, and is not echoed back at length.
#[tokio::test]
async fn hostile_input_is_invalid_argument_named_and_not_echoed() {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    let mut fabrics = FabricServiceClient::new(server.channel().await);

    // 1. Other URI schemes read as scp-like host:path, option-shaped hosts, port 0.
    for url in [
        "javascript:alert(1)",
        "data:text/plain,x",
        "fd::17/foo",
        "git@-oProxyCommand=x:r.git",
        "ssh://-oProxyCommand=x/r.git",
        "ssh://git@127.0.0.1:0/r.git",
    ] {
        let err = repos.create_repository(repo("hostile", url)).await.unwrap_err();
        assert_eq!(bad_fields(&err), ["repository.url"], "{url}: {}", err.message());
    }

    // 3. An auth message with no method set is not anonymous access.
    let empty_auth =
        CreateRepositoryRequest { auth: Some(RepositoryAuth { method: None }), ..repo("hostile", "file:///srv/h") };
    assert_eq!(bad_fields(&repos.create_repository(empty_auth).await.unwrap_err()), ["auth"]);

    // 4. NUL in stored text and in filters is the client's error, not a database error.
    let mut nul = repo("hostile", "file:///srv/h");
    nul.repository.as_mut().unwrap().description = "a\0b".into();
    assert_eq!(bad_fields(&repos.create_repository(nul).await.unwrap_err()), ["repository.description"]);
    let listed = repos
        .list_repositories(ListRepositoriesRequest { filter: "name=a\0b".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&listed), ["filter"]);
    assert!(repos
        .list_repositories(ListRepositoriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .repositories
        .is_empty());

    let repository =
        repos.create_repository(repo("good", "file:///srv/good")).await.unwrap().into_inner().repository.unwrap();

    // 2. Refs that git would take for options, at create and at update alike.
    let mut dash = fabric("lab", &repository.id);
    dash.fabric.as_mut().unwrap().git_ref = "-x".into();
    assert_eq!(bad_fields(&fabrics.create_fabric(dash).await.unwrap_err()), ["fabric.git_ref"]);
    let created = fabrics.create_fabric(fabric("lab", &repository.id)).await.unwrap().into_inner().fabric.unwrap();
    let update = |fabric: Fabric, paths: &[&str], cluster: Option<ClusterConnectionInput>| UpdateFabricRequest {
        fabric: Some(Fabric { id: created.id.clone(), ..fabric }),
        update_mask: mask(paths),
        cluster,
        ..Default::default()
    };
    let err = fabrics
        .update_fabric(update(Fabric { git_ref: "--upload-pack=x".into(), ..Default::default() }, &["git_ref"], None))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["fabric.git_ref"]);

    // 3. A bearer token is for an API server: none given, no token.
    let token_only = ClusterConnectionInput { bearer_token: "t0ken".into(), ..Default::default() };
    let mut no_server = fabric("lab-2", &repository.id);
    no_server.cluster = Some(token_only.clone());
    assert_eq!(bad_fields(&fabrics.create_fabric(no_server).await.unwrap_err()), ["cluster.bearer_token"]);
    let err = fabrics
        .update_fabric(update(Fabric::default(), &["cluster.bearer_token"], Some(token_only)))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["cluster.bearer_token"]);
    let stored = fabrics.get_fabric(GetFabricRequest { id: created.id.clone() }).await.unwrap().into_inner();
    let stored = stored.fabric.unwrap();
    assert_eq!(stored.git_ref, "main");
    assert!(!stored.cluster.unwrap().has_bearer_token);

    // 5. A 1 MiB key is refused without being echoed; a not-found key is quoted briefly.
    let get = |key: ResourceKey| GetResourceRequest {
        fabric_id: created.id.clone(),
        resource: Some(get_resource_request::Resource::Key(key)),
    };
    let huge = ResourceKey { kind: "K".repeat(1 << 20), name: "n".into(), ..Default::default() };
    let err = fabrics.get_resource(get(huge)).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["key.kind"]);
    assert!(err.message().len() < 200, "{}", err.message());
    let nul_key = ResourceKey { kind: "VPC".into(), name: "a\0b".into(), ..Default::default() };
    assert_eq!(bad_fields(&fabrics.get_resource(get(nul_key)).await.unwrap_err()), ["key.name"]);
    let long = ResourceKey { kind: "VPC".into(), name: "n".repeat(250), ..Default::default() };
    let err = fabrics.get_resource(get(long)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().len() < 120 && err.message().contains('…'), "{}", err.message());

    // 6. Bytes that are not the protobuf message (garbage; invalid UTF-8 in a string field),
    // through tonic's decoding (GetRepository) and through the auth layer's (CreateRepository).
    let bad_utf8 = [0x0a, 0x02, 0xc3, 0x28]; // field 1 (id), 2 bytes that are not UTF-8
    for (path, body) in [
        ("/fabricsync.v1.RepositoryService/GetRepository", &[0xff, 0xff, 0xff, 0xff][..]),
        ("/fabricsync.v1.RepositoryService/GetRepository", &bad_utf8[..]),
        ("/fabricsync.v1.FabricService/ListFabrics", &[0x0a, 0x7f, 0x01][..]),
        ("/fabricsync.v1.RepositoryService/CreateRepository", &[0xff, 0xff, 0xff, 0xff][..]),
    ] {
        let err = raw_call(server.channel().await, path, body).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path} {body:?}: {err:?}");
    }
    // A well-formed raw message still works: the raw client is not what fails.
    let id = repository.id.as_bytes();
    let mut ok = vec![0x0a, id.len() as u8];
    ok.extend_from_slice(id);
    raw_call(server.channel().await, "/fabricsync.v1.RepositoryService/GetRepository", &ok).await.unwrap();

    assert!(!server.log().contains("panicked"), "{}", server.log());
}
