//! Git push webhooks end to end: `serve --webhook-listen` on loopback, deliveries signed the way
//! GitHub, GitLab and Gitea sign them, runs queued at once, refusals answered and audited.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use fabricsync::proto::access_service_client::AccessServiceClient;
use fabricsync::proto::*;
use serde_json::{json, Value};
use support::gitservers::{free_port, GitFixture};
use support::server::ServerProcess;
use support::sync::{lab_wiring, status, Clients};
use support::webhooks::{deliver, github, hmac_hex, push, SECRET};
use tonic::Code;

/// The run a delivery queued for `fabric`.
fn run_of(answer: &Value, fabric: &str) -> String {
    let runs = answer["runs"].as_array().unwrap();
    let run = runs.iter().find(|r| r["fabric"] == fabric).unwrap_or_else(|| panic!("no run for {fabric}: {answer}"));
    assert_eq!(run["already_active"], false, "{answer}");
    run["run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn signed_pushes_pull_at_once_and_refused_deliveries_are_audited() {
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let db = support::fresh_database().await;
    let keys = fabricsync::crypto::Keyring::generate_key_line("k1");
    let server = ServerProcess::start_with(&db, &keys, &["--webhook-listen", &listen]).await;
    let mut c = Clients::new(server.channel().await);

    // The secret is checked, sealed and never returned.
    let repository = |secret: &str| CreateRepositoryRequest {
        repository: Some(Repository { name: "lab".into(), url: repo.file_url(), ..Default::default() }),
        webhook_secret: secret.into(),
        ..Default::default()
    };
    let short = c.repos.create_repository(repository("short")).await.unwrap_err();
    assert_eq!(short.code(), Code::InvalidArgument);
    assert!(short.message().contains("webhook_secret"), "{}", short.message());
    let created = c.repos.create_repository(repository(SECRET)).await.unwrap().into_inner().repository.unwrap();
    assert!(created.has_webhook_secret && !format!("{created:?}").contains(SECRET));
    let hooks = format!("/webhooks/{}", created.id);
    let fabric = |name: &str, git_ref: &str| Fabric {
        name: name.into(),
        repository_id: created.id.clone(),
        git_ref: git_ref.into(),
        gitops_path: "fabric".into(),
        ..Default::default()
    };
    for (name, git_ref) in [("lab", "main"), ("lab-staging", "staging")] {
        let request = CreateFabricRequest { fabric: Some(fabric(name, git_ref)), cluster: None };
        c.fabrics.create_fabric(request).await.unwrap();
    }
    let lab = c.fabrics.list_fabrics(ListFabricsRequest { filter: "name=lab".into(), ..Default::default() });
    let lab_id = lab.await.unwrap().into_inner().fabrics[0].id.clone();

    // GitHub: a signed push to main queues the pull of the fabric on main only.
    let first = repo.head();
    let body = push("refs/heads/main", &first);
    let (code, answer) = deliver(port, &hooks, &github(&body), &body).await;
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["runs"].as_array().unwrap().len(), 1, "{answer}");
    let run = c.wait(&run_of(&answer, "lab"), Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!((run.trigger, run.mode), (SyncTrigger::Webhook as i32, SyncMode::Pull as i32));
    assert_eq!((run.commit.as_str(), run.requested_by.as_str()), (first.as_str(), "webhook:github"));

    // GitLab sends the secret itself; the new commit is pulled.
    let second = repo.commit(&[("fabric/extra.yaml", "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: pushed\n  namespace: default\n")], "a server");
    let body = push("refs/heads/main", &second);
    let gitlab = [("X-Gitlab-Event", "Push Hook".to_string()), ("X-Gitlab-Token", SECRET.to_string())];
    let (code, answer) = deliver(port, &hooks, &gitlab, &body).await;
    assert_eq!(code, 202, "{answer}");
    let run = c.wait(&run_of(&answer, "lab"), Duration::from_secs(60)).await;
    assert_eq!((status(&run), run.commit.as_str()), (SyncRunStatus::Succeeded, second.as_str()), "{run:?}");
    assert!(c.stored(&lab_id).await.iter().any(|(kind, _, name, _)| kind == "Server" && name == "pushed"));

    // Gitea (which sends GitHub's event header too) to the other branch: only that fabric.
    let body = push("refs/heads/staging", &second);
    let gitea = [
        ("X-GitHub-Event", "push".to_string()),
        ("X-Gitea-Event", "push".to_string()),
        ("X-Gitea-Signature", hmac_hex(&body)),
    ];
    let (code, answer) = deliver(port, &hooks, &gitea, &body).await;
    assert_eq!(code, 202, "{answer}");
    let run = c.wait(&run_of(&answer, "lab-staging"), Duration::from_secs(60)).await;
    assert_eq!(run.requested_by, "webhook:gitea");
    assert_eq!(status(&run), SyncRunStatus::Failed, "no staging branch: the run says so: {run:?}");

    // A ping is answered; a tag push of GitLab and other events are accepted and ignored.
    let ping = json!({ "zen": "hi" }).to_string();
    let headers =
        [("X-GitHub-Event", "ping".to_string()), ("X-Hub-Signature-256", format!("sha256={}", hmac_hex(&ping)))];
    assert_eq!(deliver(port, &hooks, &headers, &ping).await, (200, json!({ "ping": "ok" })));

    // Refused: a wrong or missing signature, a changed body, an unknown repository, a
    // repository without a secret; nothing is queued.
    let body = push("refs/heads/main", &second);
    let mut forged = github(&body);
    forged[1].1 = format!("sha256={}", "0".repeat(64));
    let refusals = [
        (hooks.clone(), forged, body.clone(), 401),
        (hooks.clone(), vec![("X-GitHub-Event", "push".to_string())], body.clone(), 401),
        (hooks.clone(), github(&body), push("refs/heads/evil", &second), 401),
        (hooks.clone(), vec![("X-Bitbucket-Event", "push".to_string())], body.clone(), 400),
        (format!("/webhooks/{}", uuid::Uuid::new_v4()), github(&body), body.clone(), 404),
    ];
    for (path, headers, sent, want) in refusals {
        let (code, answer) = deliver(port, &path, &headers, &sent).await;
        assert_eq!(code, want, "{path} {headers:?}: {answer}");
        assert!(answer["error"].is_string() && !answer.to_string().contains(SECRET), "{answer}");
    }
    let runs =
        c.sync.list_sync_runs(ListSyncRunsRequest { filter: format!("fabric_id={lab_id}"), ..Default::default() });
    assert_eq!(runs.await.unwrap().into_inner().runs.len(), 2, "a refused delivery queued a run");

    let mut access = AccessServiceClient::new(server.channel().await);
    let audited = |filter: &str| ListAuditEventsRequest { filter: filter.into(), ..Default::default() };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let events = access.list_audit_events(audited("rpc=webhook/push code=UNAUTHENTICATED")).await.unwrap();
        let events = events.into_inner().events;
        if events.len() >= 3 || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.len(), 3, "{refused:?}");
    let from_github =
        |e: &AuditEvent| e.principal == "webhook" && e.actor == "github" && e.peer.starts_with("127.0.0.1:");
    assert!(refused.iter().all(from_github), "{refused:?}");
    assert!(refused.iter().any(|e| e.message.contains("x-hub-signature-256")), "{refused:?}");
    let accepted = access.list_audit_events(audited("rpc=webhook/push code=OK")).await.unwrap().into_inner().events;
    assert!(accepted.iter().any(|e| e.actor == "gitlab"), "{accepted:?}");

    // Without a secret (removed), deliveries are refused as for an unknown repository.
    let current = c.repos.get_repository(GetRepositoryRequest { id: created.id.clone() }).await.unwrap();
    let removed = UpdateRepositoryRequest {
        repository: Some(Repository { id: created.id.clone(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["webhook_secret".into()] }),
        etag: current.into_inner().repository.unwrap().etag,
        ..Default::default()
    };
    let updated = c.repos.update_repository(removed).await.unwrap().into_inner().repository.unwrap();
    assert!(!updated.has_webhook_secret);
    assert_eq!(deliver(port, &hooks, &github(&body), &body).await.0, 404);
}
