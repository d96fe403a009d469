//! Writes to Git end to end: a real server and PostgreSQL, real repositories pushed to over
//! file://, `git daemon`, `git http-backend` behind basic and token auth, and sshd with a key.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use fabricsync::convert::{json_struct, struct_json};
use fabricsync::proto::repository_auth::Method;
use fabricsync::proto::*;
use serde_json::{json, Value};
use support::gitservers::{GitDaemon, GitFixture, HttpGitServer, SshServer, HTTP_PASSWORD, HTTP_TOKEN, HTTP_USER};
use support::server::ServerProcess;
use support::sync::{hnp_layout, lab_wiring, status, Clients, LAB_CONNECTIONS};
use tonic::Code;

fn lab_repo() -> GitFixture {
    GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())])
}

fn options(message: &str) -> Option<CommitOptions> {
    Some(CommitOptions { message: message.into(), ..Default::default() })
}

fn upsert(object: &Value) -> ObjectChange {
    ObjectChange { change: Some(object_change::Change::Upsert(json_struct(object).unwrap())) }
}

fn delete(kind: &str, name: &str) -> ObjectChange {
    let key = ResourceKey {
        group: "wiring.githedgehog.com".into(),
        kind: kind.into(),
        name: name.into(),
        ..Default::default()
    };
    ObjectChange { change: Some(object_change::Change::Delete(key)) }
}

async fn change(
    c: &mut Clients,
    fabric_id: &str,
    changes: Vec<ObjectChange>,
    commit: Option<CommitOptions>,
) -> Result<WriteResult, tonic::Status> {
    let request = ChangeObjectsRequest { fabric_id: fabric_id.into(), changes, commit };
    Ok(c.write.change_objects(request).await?.into_inner().result.unwrap())
}

fn outcome(result: &WriteResult) -> WriteOutcome {
    WriteOutcome::try_from(result.outcome).unwrap_or_default()
}

/// The desired object of a stored resource, as JSON.
async fn desired(c: &mut Clients, fabric_id: &str, kind: &str, name: &str) -> Value {
    let key = ResourceKey {
        group: "wiring.githedgehog.com".into(),
        kind: kind.into(),
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    };
    let request =
        GetResourceRequest { fabric_id: fabric_id.into(), resource: Some(get_resource_request::Resource::Key(key)) };
    let resource = c.fabrics.get_resource(request).await.unwrap().into_inner().resource.unwrap();
    struct_json(&resource.desired.unwrap())
}

/// The lines a unified diff removes and adds.
fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|l| (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++"))
        .collect()
}

fn commits(repo: &GitFixture, branch: &str) -> usize {
    repo.bare(&["rev-list", "--count", branch]).parse().unwrap()
}

async fn pulled_fabric(c: &mut Clients, repo: &GitFixture, auth: Option<RepositoryAuth>, url: &str) -> String {
    let id = c.fabric_with("lab", url, auth, "fabric", SyncPolicy::default(), None).await;
    let run = c.sync(&id, "", false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.commit, repo.bare(&["rev-parse", "main"]));
    id
}

#[tokio::test]
async fn a_change_is_committed_where_the_object_lives_once_and_pulled() {
    let repo = lab_repo();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = pulled_fabric(&mut c, &repo, None, &repo.file_url()).await;
    let before = commits(&repo, "main");

    // One scalar changed: one line of the 50-document file changes, comments and all else kept.
    let mut leaf = desired(&mut c, &id, "Switch", "ds3000-01").await;
    leaf["spec"]["description"] = json!("leaf-1, rack 2");
    let base = c.get_fabric(&id).await.last_synced_commit;
    let commit =
        Some(CommitOptions { message: "describe leaf-1".into(), base_commit: base.clone(), ..Default::default() });
    let result = change(&mut c, &id, vec![upsert(&leaf)], commit.clone()).await.unwrap();
    assert_eq!(outcome(&result), WriteOutcome::Committed, "{result:?}");
    assert_eq!((result.base_commit.as_str(), result.branch.as_str()), (base.as_str(), "main"));
    assert_eq!(result.files.len(), 1);
    assert_eq!(result.files[0].path, "fabric/wiring.yaml");
    assert_eq!(changed_lines(&result.files[0].diff), ["-  description: leaf-1", "+  description: \"leaf-1, rack 2\""]);
    assert_eq!(commits(&repo, "main"), before + 1);
    assert_eq!(repo.bare(&["rev-parse", "main"]), result.commit);
    assert_eq!(repo.bare(&["log", "-1", "--format=%cn|%s", "main"]), "fabricsync|describe leaf-1");
    assert!(!repo.bare(&["log", "-1", "--format=%an", "main"]).is_empty());
    let shown = repo.bare(&["show", "main:fabric/wiring.yaml"]);
    assert!(shown.contains("    link.hhfab.githedgehog.com/E1_2_2: pci@0000:9c:00.1 # not used"), "a comment was lost");

    // The pull that follows stores it.
    let run = c.wait(&result.run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!((run.commit.as_str(), run.counters.unwrap().updated), (result.commit.as_str(), 1));
    assert_eq!(desired(&mut c, &id, "Switch", "ds3000-01").await["spec"]["description"], "leaf-1, rack 2");

    // The same change again makes no commit, from the old base too.
    let again = change(&mut c, &id, vec![upsert(&leaf)], commit).await.unwrap();
    assert_eq!((outcome(&again), again.files.len(), again.run_id.as_str()), (WriteOutcome::Unchanged, 0, ""));
    assert_eq!(commits(&repo, "main"), before + 1);

    // A new object goes to <plural>/<name>.yaml: no header, no timestamp; a dry run writes nothing.
    let server_object = json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Server",
                               "metadata": {"name": "srv-new"}, "spec": {"description": "added in NetBox"}});
    let dry = CommitOptions { message: "add srv-new".into(), dry_run: true, ..Default::default() };
    let planned = change(&mut c, &id, vec![upsert(&server_object)], Some(dry)).await.unwrap();
    assert_eq!(outcome(&planned), WriteOutcome::DryRun);
    assert_eq!(
        (planned.files[0].path.as_str(), planned.files[0].action),
        ("fabric/servers/srv-new.yaml", ChangeAction::Create as i32)
    );
    assert_eq!(commits(&repo, "main"), before + 1);
    let added = change(&mut c, &id, vec![upsert(&server_object)], options("add srv-new")).await.unwrap();
    assert_eq!(outcome(&added), WriteOutcome::Committed);
    assert_eq!(
        repo.bare(&["show", "main:fabric/servers/srv-new.yaml"]),
        "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: srv-new\nspec:\n  description: added in NetBox"
    );
    let removed = change(&mut c, &id, vec![delete("Server", "srv-new")], options("drop srv-new")).await.unwrap();
    assert_eq!((outcome(&removed), removed.files[0].action), (WriteOutcome::Committed, ChangeAction::Delete as i32));
    assert!(repo.bare(&["ls-tree", "-r", "--name-only", "main"]).lines().all(|p| p != "fabric/servers/srv-new.yaml"));
    let count = commits(&repo, "main");

    // Bad changes: named, nothing written.
    let mut bad = leaf.clone();
    bad["spec"]["role"] = json!("core");
    let err = change(
        &mut c,
        &id,
        vec![upsert(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})), upsert(&bad)],
        options("bad"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("changes[0]"), "{err:?}");
    let err = change(&mut c, &id, vec![upsert(&bad)], options("bad")).await.unwrap_err();
    assert!(err.message().contains("changes[0]") && err.message().contains("/spec/role"), "{err:?}");
    let err = change(&mut c, &id, vec![delete("Server", "nope")], options("bad")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = change(&mut c, &id, vec![upsert(&leaf)], None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Validated as a pull would: with strict references, removing a switch that connections
    // name is an error, so the whole write is rejected.
    let fabric = c.get_fabric(&id).await;
    c.fabrics
        .update_fabric(UpdateFabricRequest {
            fabric: Some(Fabric {
                id: id.clone(),
                sync_policy: Some(SyncPolicy { strict_references: true, ..Default::default() }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["sync_policy.strict_references".into()] }),
            cluster: None,
            etag: fabric.etag,
        })
        .await
        .unwrap();
    let rejected = change(&mut c, &id, vec![delete("Switch", "ds3000-01")], options("drop leaf-1")).await.unwrap();
    assert_eq!(outcome(&rejected), WriteOutcome::Rejected);
    assert!(
        rejected.diagnostics.iter().any(|d| d.code == "ref.unresolved" && d.severity == Severity::Error as i32),
        "{:?}",
        rejected.diagnostics
    );
    assert_eq!(commits(&repo, "main"), count);
}

#[tokio::test]
async fn concurrent_writers_land_in_order_or_are_aborted_never_lost() {
    let repo = GitFixture::with_files(&[
        ("fabric/a.yaml", &lab_wiring()),
        ("fabric/b.yaml", "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: srv-b\nspec:\n  description: b\n"),
    ]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = pulled_fabric(&mut c, &repo, None, &repo.file_url()).await;
    let base = c.get_fabric(&id).await.last_synced_commit;
    let mut srv_b = desired(&mut c, &id, "Server", "srv-b").await;

    // Someone else commits to another file: the write lands on top of it.
    repo.pull("main");
    let theirs = repo.commit(
        &[(
            "fabric/c.yaml",
            "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: srv-c\nspec: {}\n",
        )],
        "theirs",
    );
    srv_b["spec"]["description"] = json!("b, edited");
    let stale = CommitOptions { message: "edit b".into(), base_commit: base.clone(), ..Default::default() };
    let ours = change(&mut c, &id, vec![upsert(&srv_b)], Some(stale.clone())).await.unwrap();
    assert_eq!(outcome(&ours), WriteOutcome::Committed, "{ours:?}");
    assert_eq!(ours.base_commit, theirs);
    assert_eq!(repo.bare(&["rev-parse", &format!("{}^", ours.commit)]), theirs);

    // Someone else changed the very file since the base: ABORTED naming the new head.
    repo.pull("main");
    let theirs = repo.commit(&[("fabric/b.yaml", "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: srv-b\nspec:\n  description: theirs\n")], "theirs again");
    srv_b["spec"]["description"] = json!("b, mine");
    let err = change(&mut c, &id, vec![upsert(&srv_b)], Some(stale)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains(&theirs) && err.message().contains("fabric/b.yaml"), "{err:?}");
    assert_eq!(repo.bare(&["rev-parse", "main"]), theirs);

    // Two writers at once: both land, one after the other; the history holds both.
    let before = commits(&repo, "main");
    let mut other = Clients::new(server.channel().await);
    let leaf = {
        let mut leaf = desired(&mut c, &id, "Switch", "ds3000-01").await;
        leaf["spec"]["description"] = json!("leaf-1, concurrently");
        leaf
    };
    let (first, second) = tokio::join!(
        change(&mut c, &id, vec![upsert(&srv_b)], options("writer 1")),
        change(&mut other, &id, vec![upsert(&leaf)], options("writer 2"))
    );
    for result in [first.unwrap(), second.unwrap()] {
        assert_eq!(outcome(&result), WriteOutcome::Committed, "{result:?}");
    }
    assert_eq!(commits(&repo, "main"), before + 2);
    let subjects = repo.bare(&["log", "-2", "--format=%s", "main"]);
    assert!(subjects.contains("writer 1") && subjects.contains("writer 2"), "{subjects}");
    assert!(repo.bare(&["show", "main:fabric/b.yaml"]).contains("b, mine"));
    assert!(repo.bare(&["show", "main:fabric/a.yaml"]).contains("leaf-1, concurrently"));
}

#[tokio::test]
async fn a_review_branch_gets_the_commit_and_the_fabric_ref_stays() {
    let repo = lab_repo();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = pulled_fabric(&mut c, &repo, None, &repo.file_url()).await;
    let main = repo.bare(&["rev-parse", "main"]);
    let mut leaf = desired(&mut c, &id, "Switch", "ds3000-01").await;
    leaf["spec"]["description"] = json!("for review");
    let review = CommitOptions { message: "review me".into(), branch: "review/leaf-1".into(), ..Default::default() };
    let result = change(&mut c, &id, vec![upsert(&leaf)], Some(review.clone())).await.unwrap();
    assert_eq!(
        (outcome(&result), result.branch.as_str(), result.run_id.as_str()),
        (WriteOutcome::Committed, "review/leaf-1", "")
    );
    assert_eq!(repo.bare(&["rev-parse", "review/leaf-1"]), result.commit);
    assert_eq!(repo.bare(&["rev-parse", "main"]), main);
    let err = change(&mut c, &id, vec![upsert(&leaf)], Some(review)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
}

#[tokio::test]
async fn every_transport_pushes_and_wrong_credentials_fail_cleanly() {
    let repo = lab_repo();
    let http = HttpGitServer::start(&repo.srv_root());
    let daemon = GitDaemon::start(&repo.srv_root());
    let ssh = SshServer::start();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let auth = |method: Method| Some(RepositoryAuth { method: Some(method) });
    let mut remotes = vec![
        (
            "basic",
            http.url("fabric.git"),
            auth(Method::Basic(BasicAuth { username: HTTP_USER.into(), password: HTTP_PASSWORD.into() })),
        ),
        (
            "token",
            http.url("fabric.git"),
            auth(Method::Token(TokenAuth { token: HTTP_TOKEN.into(), username: String::new() })),
        ),
        ("daemon", daemon.url("fabric.git"), None),
    ];
    if let Some(ssh) = &ssh {
        let key = Method::SshKey(SshKeyAuth {
            private_key: ssh.client.private_key.clone(),
            known_hosts: ssh.known_hosts.clone(),
        });
        remotes.push(("ssh", ssh.url(&repo.bare_path()), auth(key)));
    }
    for (n, (name, url, auth)) in remotes.into_iter().enumerate() {
        let id = c.fabric_with(name, &url, auth, "fabric", SyncPolicy::default(), None).await;
        let mut leaf = desired_after_pull(&mut c, &id).await;
        leaf["spec"]["description"] = json!(format!("pushed over {name}"));
        let result = change(&mut c, &id, vec![upsert(&leaf)], options(&format!("over {name}")))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}\n{}", server.log()));
        assert_eq!(outcome(&result), WriteOutcome::Committed, "{name}: {result:?}");
        assert_eq!(repo.bare(&["rev-parse", "main"]), result.commit, "{name}");
        assert_eq!(repo.bare(&["log", "-1", "--format=%s", "main"]), format!("over {name}"), "{name} (#{n})");
    }

    let wrong = Some(RepositoryAuth {
        method: Some(Method::Basic(BasicAuth { username: HTTP_USER.into(), password: "wrong-Horse-0000".into() })),
    });
    let id = c.fabric_with("wrong", &http.url("fabric.git"), wrong, "fabric", SyncPolicy::default(), None).await;
    let leaf = json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Server", "metadata": {"name": "x"}, "spec": {}});
    let err = change(&mut c, &id, vec![upsert(&leaf)], options("nope")).await.unwrap_err();
    assert!(matches!(err.code(), Code::Unavailable | Code::FailedPrecondition), "{err:?}");
    assert!(!err.message().contains("wrong-Horse-0000"), "{err:?}");
}

/// Pulls the fabric and returns its ds3000-01 switch.
async fn desired_after_pull(c: &mut Clients, id: &str) -> Value {
    let run = c.sync(id, "", false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    desired(c, id, "Switch", "ds3000-01").await
}

#[tokio::test]
async fn an_hnp_repository_is_migrated_in_one_commit_of_apiversion_lines() {
    let files = hnp_layout("hnp-lab");
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let repo = GitFixture::with_files(&refs);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c.fabric("hnp", &repo.file_url(), "hnp-lab", SyncPolicy::default()).await;
    assert_eq!(status(&c.sync(&id, "", false).await), SyncRunStatus::Failed);

    let migrate = |dry_run: bool| MigrateVersionsRequest {
        fabric_id: id.clone(),
        commit: Some(CommitOptions { message: "migrate to v1beta1".into(), dry_run, ..Default::default() }),
    };
    let planned = c.write.migrate_versions(migrate(true)).await.unwrap().into_inner();
    let result = planned.result.unwrap();
    assert_eq!(outcome(&result), WriteOutcome::DryRun, "{result:?}");
    assert_eq!(result.files.len(), LAB_CONNECTIONS);
    for file in &result.files {
        assert!(file.path.starts_with("hnp-lab/managed/connections/"), "{}", file.path);
        assert_eq!(
            changed_lines(&file.diff),
            ["-apiVersion: wiring.githedgehog.com/v1alpha2", "+apiVersion: wiring.githedgehog.com/v1beta1"]
        );
    }
    assert_eq!(planned.migrations.len(), LAB_CONNECTIONS);
    assert!(planned.migrations.iter().all(|m| m.to == "wiring.githedgehog.com/v1beta1"));

    let done = c.write.migrate_versions(migrate(false)).await.unwrap().into_inner().result.unwrap();
    assert_eq!(outcome(&done), WriteOutcome::Committed, "{done:?}");
    let stat = repo.bare(&["show", "--numstat", "--format=", "main"]);
    assert_eq!(stat.lines().count(), LAB_CONNECTIONS);
    assert!(stat.lines().all(|l| l.starts_with("1\t1\t")), "{stat}");
    let run = c.wait(&done.run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.counters.unwrap().errors, 0);
    let again = c.write.migrate_versions(migrate(false)).await.unwrap().into_inner().result.unwrap();
    assert_eq!(outcome(&again), WriteOutcome::Unchanged);

    // HNP's ingest: raw/'s objects move to managed/, the original is archived (not read).
    let ingest = IngestRawRequest { fabric_id: id.clone(), archive: true, commit: options("ingest raw/") };
    let result = c.write.ingest_raw(ingest).await.unwrap().into_inner().result.unwrap();
    assert_eq!(outcome(&result), WriteOutcome::Committed, "{result:?}");
    let tree = repo.bare(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(!tree.contains("hnp-lab/raw/vpc-objects.yaml") && tree.contains("hnp-lab/raw/notes.yaml"), "{tree}");
    assert!(tree.contains("hnp-lab/.hnp/archive/raw/vpc-objects.yaml"), "{tree}");
    let vpc_dirs =
        ["hnp-lab/managed/ipv4namespaces/", "hnp-lab/managed/externals/", "hnp-lab/managed/externalattachments/"];
    assert_eq!(tree.lines().filter(|p| vpc_dirs.iter().any(|d| p.starts_with(d))).count(), 8, "{tree}");
    let run = c.wait(&result.run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    let n = run.counters.unwrap();
    assert_eq!((n.created, n.deleted, n.errors), (0, 0, 0), "{n:?}");

    // New objects go where HNP keeps them.
    let added = json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Server", "metadata": {"name": "srv-hnp"}, "spec": {}});
    let result = change(&mut c, &id, vec![upsert(&added)], options("add srv-hnp")).await.unwrap();
    assert_eq!(result.files[0].path, "hnp-lab/managed/servers/srv-hnp.yaml", "{result:?}");
}
