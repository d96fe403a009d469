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
