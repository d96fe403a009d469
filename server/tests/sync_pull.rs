//! Pull syncs end to end: a real server, a real PostgreSQL, real Git repositories holding the
//! real Hedgehog lab fabric, and every kind of bad input.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::*;
use support::gitservers::{Answer, GitFixture, HttpGitServer, SilentServer};
use support::server::ServerProcess;
use support::sync::{
    counters, hnp_layout, lab_wiring, stages, status, Clients, LAB_CONNECTIONS, LAB_OBJECTS, LAB_VPC_OBJECTS,
};

fn policy() -> SyncPolicy {
    SyncPolicy::default()
}

/// A repository with the lab fabric in `fabric/`, split in two files (20 documents in the first).
fn lab_repo() -> GitFixture {
    let (head, tail) = split_documents(&lab_wiring(), 20);
    GitFixture::with_files(&[
        ("fabric/wiring-a.yaml", &head),
        ("fabric/more/wiring-b.yml", &tail),
        ("README.md", "# lab\n"),
    ])
}

/// The first `n` YAML documents and the rest.
fn split_documents(text: &str, n: usize) -> (String, String) {
    let docs: Vec<&str> = text.split("\n---").collect();
    let head = docs[..n].join("\n---");
    let tail = docs[n..].join("\n---");
    (head, tail)
}

#[tokio::test]
async fn pull_stores_the_lab_fabric_then_only_what_changed() {
    let repo = lab_repo();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", policy()).await;

    let run = c.sync(&fabric_id, "", false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.commit, repo.head());
    let n = counters(&run);
    assert_eq!(
        (n.files, n.documents, n.created, n.updated, n.deleted, n.errors),
        (2, LAB_OBJECTS, LAB_OBJECTS, 0, 0, 0),
        "{n:?}"
    );
    let kinds: i64 = run.kind_counts.iter().map(|k| k.count).sum();
    assert_eq!(kinds, LAB_OBJECTS);
    assert!(run.kind_counts.iter().any(|k| k.kind == "Switch" && k.group == "wiring.githedgehog.com"));

    // Listed page by page in key order, each resource once.
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let request = ListResourcesRequest {
            fabric_id: fabric_id.clone(),
            page_size: 7,
            page_token: token,
            ..Default::default()
        };
        let page = c.fabrics.list_resources(request).await.expect("list").into_inner();
        assert_eq!(i64::from(page.total_size), LAB_OBJECTS);
        keys.extend(
            page.resources
                .iter()
                .filter_map(|r| r.key.as_ref())
                .map(|k| (k.group.clone(), k.kind.clone(), k.namespace.clone(), k.name.clone())),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "not in (group, kind, namespace, name) order, or repeated");
    assert_eq!(keys.len() as i64, LAB_OBJECTS);

    // The stream of a finished run replays everything in order and ends.
    let events = c.events(&run.id, 0).await;
    let seen = stages(&events);
    assert_eq!(seen.first(), Some(&"queued"));
    assert_eq!(seen.last(), Some(&"finished"));
    for stage in ["fetching", "parsing", "validating", "persisting"] {
        assert!(seen.contains(&stage), "{stage} missing from {seen:?}");
    }
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(events.last().map(|e| e.sequence), Some(run.last_sequence));
    let Some(Payload::Parsing(last_parse)) =
        events.iter().rev().find_map(|e| e.payload.clone().filter(|p| matches!(p, Payload::Parsing(_))))
    else {
        panic!("no parsing event")
    };
    assert_eq!((last_parse.file_index, last_parse.file_count), (2, 2));
    // Resuming from the last sequence gives nothing more, and ends.
    assert!(c.events(&run.id, run.last_sequence).await.is_empty());

    let stored = c.stored(&fabric_id).await;
    assert_eq!(stored.len() as i64, LAB_OBJECTS);
    let fabric = c.get_fabric(&fabric_id).await;
    assert_eq!(fabric.last_synced_commit, repo.head());
    assert_eq!(fabric.sync_status, SyncStatus::Synced as i32);
    assert_eq!(fabric.resource_counts.iter().map(|k| k.count).sum::<i64>(), LAB_OBJECTS);

    // A resource carries its desired object, source and commit.
    let some_switch = stored.iter().find(|r| r.0 == "Switch").expect("a switch");
    let got = c
        .fabrics
        .get_resource(GetResourceRequest {
            fabric_id: fabric_id.clone(),
            resource: Some(get_resource_request::Resource::Key(ResourceKey {
                group: "wiring.githedgehog.com".into(),
                kind: "Switch".into(),
                name: some_switch.2.clone(),
                ..Default::default()
            })),
        })
        .await
        .expect("get resource")
        .into_inner()
        .resource
        .expect("resource");
    assert!(got.desired.as_ref().is_some_and(|d| d.fields.contains_key("spec")), "{got:?}");
    assert_eq!(got.commit, repo.head());
    assert!(got.source.as_ref().is_some_and(|s| s.file.starts_with("fabric/")));

    // Same commit again: nothing written.
    let again = c.sync(&fabric_id, "", false).await;
    let n = counters(&again);
    assert_eq!((n.created, n.updated, n.unchanged, n.deleted), (0, 0, LAB_OBJECTS, 0), "{again:?}");
    assert!(again.changes.is_empty());
    assert_eq!(n.files, 0, "the same source was read again");
    assert_eq!(c.stored(&fabric_id).await, stored);
    // `force` reads and parses it anyway, and still writes nothing.
    let request = StartSyncRequest {
        fabric_id: fabric_id.clone(),
        mode: SyncMode::Pull as i32,
        force: true,
        ..Default::default()
    };
    let forced_id = c.sync.start_sync(request).await.expect("force").into_inner().run.expect("run").id;
    let forced = c.wait(&forced_id, std::time::Duration::from_secs(60)).await;
    let n = counters(&forced);
    assert_eq!((n.files, n.unchanged, n.created + n.updated + n.deleted), (2, LAB_OBJECTS, 0), "{forced:?}");
    assert_eq!(c.stored(&fabric_id).await, stored);

    // Change one annotation of the first switch, delete the second file.
    let (head, _) = split_documents(&lab_wiring(), 20);
    let edited = head.replacen("type.hhfab.githedgehog.com: hw", "type.hhfab.githedgehog.com: vm", 1);
    assert_ne!(edited, head);
    repo.commit(&[("fabric/wiring-a.yaml", &edited)], "edit");
    repo.remove(&["fabric/more/wiring-b.yml"]);
    let changed = c.sync(&fabric_id, "", false).await;
    assert_eq!(status(&changed), SyncRunStatus::Succeeded, "{changed:?}");
    let n = counters(&changed);
    assert_eq!((n.created, n.updated, n.unchanged, n.deleted), (0, 1, 19, LAB_OBJECTS - 20), "{n:?}");
    let update = changed.changes.iter().find(|c| c.action == ChangeAction::Update as i32).expect("an update");
    assert_eq!(update.changed_fields, vec!["/metadata/annotations/type.hhfab.githedgehog.com"]);
    assert_eq!(c.stored(&fabric_id).await.len(), 20);
}

#[tokio::test]
async fn dry_run_and_plan_report_without_storing() {
    let repo = lab_repo();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", policy()).await;

    let dry = c.sync(&fabric_id, "", true).await;
    assert_eq!(status(&dry), SyncRunStatus::Succeeded);
    assert_eq!(counters(&dry).created, LAB_OBJECTS);
    assert_eq!(dry.changes.len() as i64, LAB_OBJECTS);
    assert!(c.stored(&fabric_id).await.is_empty(), "a dry run stored objects");
    assert_eq!(c.get_fabric(&fabric_id).await.sync_status, SyncStatus::NeverSynced as i32);

    c.sync(&fabric_id, "", false).await;
    // A branch that drops the second file: PlanSync says what merging it would do.
    repo.branch("shrink");
    repo.remove(&["fabric/more/wiring-b.yml"]);
    repo.checkout("main");
    let plan = c
        .sync
        .plan_sync(PlanSyncRequest { fabric_id: fabric_id.clone(), r#ref: "shrink".into() })
        .await
        .expect("plan")
        .into_inner();
    assert!(plan.valid);
    let n = plan.counters.expect("counters");
    assert_eq!((n.created, n.updated, n.deleted, n.unchanged), (0, 0, LAB_OBJECTS - 20, 20));
    assert!(plan.changes.iter().all(|c| c.action == ChangeAction::Delete as i32));
    assert_eq!(c.stored(&fabric_id).await.len() as i64, LAB_OBJECTS, "PlanSync stored something");

    let unknown =
        c.sync.plan_sync(PlanSyncRequest { fabric_id: fabric_id.clone(), r#ref: "no-such-branch".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::FailedPrecondition);
}

/// One bad input: committed on its own branch, synced, expected to fail with `code` at `file`.
struct Case {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    code: &'static str,
    file: &'static str,
    line: bool,
}

fn case(name: &'static str, file: &'static str, content: &[u8], code: &'static str, line: bool) -> Case {
    Case { name, files: vec![(file, content.to_vec())], code, file, line }
}

const SWITCH: &str =
    "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Switch\nmetadata:\n  name: s1\nspec:\n  role: server-leaf\n";

#[tokio::test]
async fn bad_input_fails_the_run_and_keeps_the_stored_state() {
    let repo = lab_repo();
    let server = ServerProcess::start_with(
        &support::fresh_database().await,
        &fabricsync::crypto::Keyring::generate_key_line("k"),
        &["--max-file-bytes", "65536"],
    )
    .await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", policy()).await;
    let good = c.sync(&fabric_id, "", false).await;
    assert_eq!(status(&good), SyncRunStatus::Succeeded);
    let before = c.stored(&fabric_id).await;

    let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
                b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
                d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n\
                f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    let cases = vec![
        case("malformed", "fabric/bad.yaml", b"apiVersion: v1\nkind: [unclosed\n", "yaml.syntax", true),
        case("alias-bomb", "fabric/bomb.yaml", bomb.as_bytes(), "yaml.alias_limit", false),
        case(
            "duplicate-key",
            "fabric/dup.yaml",
            format!("{SWITCH}  role: spine\n").as_bytes(),
            "yaml.duplicate_key",
            true,
        ),
        case(
            "not-utf8",
            "fabric/latin1.yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caf\xe9\n",
            "yaml.encoding",
            false,
        ),
        case(
            "secret",
            "fabric/secret.yaml",
            b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n",
            "policy.secret",
            false,
        ),
        case("schema", "fabric/s.yaml", SWITCH.replace("server-leaf", "not-a-role").as_bytes(), "schema.enum", true),
        case(
            "too-large",
            "fabric/huge.yaml",
            format!("# {}\n{SWITCH}", "x".repeat(70_000)).as_bytes(),
            "git.file_too_large",
            false,
        ),
    ];
    for case in &cases {
        repo.checkout("main");
        repo.branch(case.name);
        for (path, bytes) in &case.files {
            std::fs::write(repo.work().join(path), bytes).expect("write");
        }
        repo.commit(&[], case.name);
        let run = c.sync(&fabric_id, case.name, false).await;
        assert_failed(&mut c, &run, case.code, case.file, case.line).await;
        assert_eq!(c.stored(&fabric_id).await, before, "{}: stored state changed", case.name);
    }

    // A symlink out of the repository.
    repo.checkout("main");
    repo.branch("escape");
    repo.commit_symlink("fabric/passwd.yaml", "../../../../etc/passwd");
    let run = c.sync(&fabric_id, "escape", false).await;
    assert_failed(&mut c, &run, "git.symlink_escapes", "", false).await;

    // The directory missing at that ref, and an unknown ref.
    repo.checkout("main");
    repo.branch("moved");
    git_mv(&repo, "fabric", "elsewhere");
    let run = c.sync(&fabric_id, "moved", false).await;
    assert_failed(&mut c, &run, "git.directory_not_found", "", false).await;
    let run = c.sync(&fabric_id, "no-such-ref", false).await;
    assert_failed(&mut c, &run, "git.unknown_ref", "", false).await;

    // An empty directory is refused unless the fabric allows it.
    repo.checkout("main");
    repo.branch("emptied");
    repo.remove(&["fabric/wiring-a.yaml", "fabric/more/wiring-b.yml"]);
    repo.commit(&[("fabric/.keep.yaml", "")], "keep dir");
    let run = c.sync(&fabric_id, "emptied", false).await;
    assert_failed(&mut c, &run, "sync.empty", "", false).await;
    assert_eq!(c.stored(&fabric_id).await, before);

    // The server kept serving through all of it, and a good sync still works.
    let fabric = c.get_fabric(&fabric_id).await;
    assert_eq!(fabric.sync_status, SyncStatus::Failed as i32);
    assert_eq!(fabric.last_synced_commit, good.commit, "a failed run moved the last synced commit");
    repo.checkout("main");
    let ok = c.sync(&fabric_id, "main", false).await;
    assert_eq!(status(&ok), SyncRunStatus::Succeeded);
    assert_eq!(c.get_fabric(&fabric_id).await.sync_status, SyncStatus::Synced as i32);
}

#[tokio::test]
async fn allowed_empty_directory_empties_the_fabric() {
    let repo = lab_repo();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy { allow_empty: true, ..policy() }).await;
    c.sync(&fabric_id, "", false).await;
    repo.remove(&["fabric/wiring-a.yaml", "fabric/more/wiring-b.yml"]);
    repo.commit(&[("fabric/.keep.yaml", "")], "keep dir");
    let run = c.sync(&fabric_id, "", false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!(counters(&run).deleted, LAB_OBJECTS);
    assert!(c.stored(&fabric_id).await.is_empty());
}

#[tokio::test]
async fn unreachable_remote_and_wrong_credentials_fail_cleanly() {
    let repo = lab_repo();
    let http = HttpGitServer::start(&repo.srv_root());
    let server = ServerProcess::start_with(
        &support::fresh_database().await,
        &fabricsync::crypto::Keyring::generate_key_line("k"),
        &["--git-timeout-seconds", "5"],
    )
    .await;
    let mut c = Clients::new(server.channel().await);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = c.fabric("refused", &format!("http://127.0.0.1:{port}/fabric.git"), "fabric", policy()).await;
    let run = c.sync(&refused, "", false).await;
    assert_failed(&mut c, &run, "git.connection_refused", "", false).await;

    let anonymous = c.fabric("anonymous", &http.url("fabric.git"), "fabric", policy()).await;
    let run = c.sync(&anonymous, "", false).await;
    assert_failed(&mut c, &run, "git.authentication", "", false).await;
    assert!(c.stored(&anonymous).await.is_empty());

    // A remote that resets the connection or answers 500: the run names it, PlanSync is
    // UNAVAILABLE with the reason (it was INTERNAL).
    for (name, answer) in [("reset", Answer::Reset), ("failing", Answer::Status500)] {
        let remote = SilentServer::answering(answer);
        let fabric = c.fabric(name, &format!("http://127.0.0.1:{}/fabric.git", remote.port), "fabric", policy()).await;
        let run = c.sync(&fabric, "", false).await;
        assert_failed(&mut c, &run, "git.remote_failed", "", false).await;
        let plan = c.sync.plan_sync(PlanSyncRequest { fabric_id: fabric, r#ref: String::new() }).await;
        let err = plan.expect_err("the remote failed");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{name}: {err:?}");
        assert!(err.message().contains("the Git server failed"), "{name}: {}", err.message());
    }
}

#[tokio::test]
async fn an_hnp_managed_directory_is_read_as_hnp_wrote_it() {
    let files = hnp_layout("hnp-lab");
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let repo = GitFixture::with_files(&refs);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("hnp", &repo.file_url(), "hnp-lab", policy()).await;

    // Only the v1alpha2 objects fail, each named with the version that is served; `.hnp/` and
    // `unmanaged/` are not read, and the note in raw/ is a warning.
    let run = c.sync(&fabric_id, "", false).await;
    assert_eq!(status(&run), SyncRunStatus::Failed, "{run:?}");
    let errors: Vec<&Diagnostic> = run.diagnostics.iter().filter(|d| d.severity == Severity::Error as i32).collect();
    assert_eq!(errors.len(), LAB_CONNECTIONS, "{errors:#?}");
    for e in &errors {
        assert_eq!((e.code.as_str(), e.field_path.as_str()), ("version.unserved", "/apiVersion"), "{e:?}");
        assert!(e.line >= 2, "the header comment is line 1: {e:?}");
        assert!(e.file.starts_with("hnp-lab/managed/connections/"), "{e:?}");
        assert!(e.message.contains("serve wiring.githedgehog.com/v1beta1"), "{e:?}");
    }
    let warnings: Vec<(&str, &str)> = run
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning as i32)
        .map(|d| (d.code.as_str(), d.file.as_str()))
        .collect();
    // The attachments in raw/ name Connections that did not load: unresolved, for now.
    assert_eq!(warnings[0], ("doc.not_kubernetes", "hnp-lab/raw/notes.yaml"));
    assert!(warnings[1..].iter().all(|w| *w == ("ref.unresolved", "hnp-lab/raw/vpc-objects.yaml")), "{warnings:?}");
    assert!(run.diagnostics.iter().all(|d| !d.file.contains(".hnp/") && !d.file.contains("unmanaged/")));
    assert_eq!(c.get_fabric(&fabric_id).await.layout, Layout::Hnp as i32);

    // With the apiVersion lines moved to the served version the fabric pulls, warnings only.
    let migrated: Vec<(String, String)> = files
        .iter()
        .filter(|(p, _)| p.contains("/managed/connections/"))
        .map(|(p, c)| (p.clone(), c.replace("/v1alpha2", "/v1beta1")))
        .collect();
    repo.commit(&migrated.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect::<Vec<_>>(), "migrate");
    let run = c.sync(&fabric_id, "", false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    let n = counters(&run);
    assert_eq!((n.created, n.errors, n.warnings), (LAB_OBJECTS, 0, 1), "{n:?}");

    // The fabric's globs narrow what is read; PlanSync says what it read with.
    let fabric = c.get_fabric(&fabric_id).await;
    c.fabrics
        .update_fabric(UpdateFabricRequest {
            fabric: Some(Fabric { id: fabric_id.clone(), exclude_paths: vec!["raw/**".into()], ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["exclude_paths".into()] }),
            cluster: None,
            etag: fabric.etag,
        })
        .await
        .expect("update");
    let plan = c
        .sync
        .plan_sync(PlanSyncRequest { fabric_id: fabric_id.clone(), r#ref: String::new() })
        .await
        .expect("plan")
        .into_inner();
    assert_eq!((plan.exclude_paths.clone(), plan.layout), (vec!["raw/**".to_string()], Layout::Hnp as i32));
    let n = plan.counters.expect("counters");
    assert_eq!((n.deleted, n.unchanged, n.warnings), (LAB_VPC_OBJECTS, LAB_OBJECTS - LAB_VPC_OBJECTS, 0), "{n:?}");
    // A changed selection is a new source: the next pull reads again instead of skipping.
    let run = c.sync(&fabric_id, "", false).await;
    assert_eq!(counters(&run).deleted, LAB_VPC_OBJECTS, "{run:?}");
}

fn git_mv(repo: &GitFixture, from: &str, to: &str) {
    support::gitservers::git(&repo.work(), &["mv", from, to]);
    repo.commit(&[], "move");
}

/// The run failed, its failed event and stored diagnostics carry `code` (at `file`, with a line
/// when `line`), and the error message says what happened.
async fn assert_failed(c: &mut Clients, run: &SyncRun, code: &str, file: &str, line: bool) {
    assert_eq!(status(run), SyncRunStatus::Failed, "expected {code}: {run:?}");
    assert!(!run.error.is_empty());
    let found = run.diagnostics.iter().find(|d| d.code == code);
    let Some(d) = found else { panic!("no {code} diagnostic in {:#?}", run.diagnostics) };
    assert_eq!(d.severity, Severity::Error as i32);
    if !file.is_empty() {
        assert!(d.file == file || d.message.contains(file), "{file} not named in {d:?}");
    }
    if line {
        assert!(d.line > 0, "no line in {d:?}");
    }
    let events = c.events(&run.id, 0).await;
    let Some(Payload::Failed(failed)) = events.last().and_then(|e| e.payload.clone()) else {
        panic!("stream did not end with failed: {:?}", stages(&events))
    };
    assert!(failed.diagnostics.iter().any(|d| d.code == code));
}
