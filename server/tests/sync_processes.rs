//! Sync runs across server processes sharing one PostgreSQL: at most one active run per
//! fabric, cancel, takeover after a crash (kill -9), and streams served by a process other
//! than the one executing the run.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use fabricsync::crypto::Keyring;
use fabricsync::proto::*;
use support::gitservers::{GitFixture, SilentServer};
use support::server::ServerProcess;
use support::sync::{counters, lab_wiring, stages, status, Clients, LAB_OBJECTS};

fn lab_repo() -> GitFixture {
    GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())])
}

/// A server sharing `db` and `keys`, with `workers` sync workers and a short lease.
async fn server(db: &str, keys: &str, workers: &str) -> ServerProcess {
    ServerProcess::start_with(
        db,
        keys,
        &["--sync-workers", workers, "--sync-lease-seconds", "2", "--git-timeout-seconds", "30"],
    )
    .await
}

#[tokio::test]
async fn one_active_run_per_fabric_and_cancel_of_a_queued_run() {
    let repo = lab_repo();
    let db = support::fresh_database().await;
    let keys = Keyring::generate_key_line("k");
    // No workers: runs stay queued.
    let idle = server(&db, &keys, "0").await;
    let mut c = Clients::new(idle.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy::default()).await;

    let first = c.start(&fabric_id, "", false).await;
    assert!(!first.already_active);
    let run = first.run.expect("run");
    assert_eq!(status(&run), SyncRunStatus::Queued);
    let second = c.start(&fabric_id, "", true).await;
    assert!(second.already_active);
    assert_eq!(second.run.expect("run").id, run.id);

    let cancelled =
        c.sync.cancel_sync_run(CancelSyncRunRequest { id: run.id.clone() }).await.expect("cancel").into_inner();
    assert_eq!(status(&cancelled.run.expect("run")), SyncRunStatus::Cancelled);
    assert_eq!(stages(&c.events(&run.id, 0).await), vec!["queued", "cancelled"]);
    let again = c.sync.cancel_sync_run(CancelSyncRunRequest { id: run.id.clone() }).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);

    // A new run can start now; listing is newest first and filters by fabric and status.
    let next = c.start(&fabric_id, "", false).await;
    assert!(!next.already_active);
    let listed = c
        .sync
        .list_sync_runs(ListSyncRunsRequest {
            page_size: 1,
            page_token: String::new(),
            filter: format!("fabric_id={fabric_id}"),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total_size, 2);
    assert_eq!(listed.runs[0].id, next.run.expect("run").id);
    let page2 = c
        .sync
        .list_sync_runs(ListSyncRunsRequest {
            page_size: 1,
            page_token: listed.next_page_token,
            filter: format!("fabric_id={fabric_id}"),
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(page2.runs[0].id, run.id);
    assert!(page2.next_page_token.is_empty());
    let by_status = c
        .sync
        .list_sync_runs(ListSyncRunsRequest { filter: "status=cancelled".into(), ..Default::default() })
        .await
        .expect("filter")
        .into_inner();
    assert_eq!(by_status.runs.len(), 1);
    let bad =
        c.sync.list_sync_runs(ListSyncRunsRequest { filter: "status=sleeping".into(), ..Default::default() }).await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_client_of_one_process_follows_a_run_executed_by_another() {
    let repo = lab_repo();
    let db = support::fresh_database().await;
    let keys = Keyring::generate_key_line("k");
    let front = server(&db, &keys, "0").await;
    let mut c = Clients::new(front.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let run = c.start(&fabric_id, "", false).await.run.expect("run");

    // Follow from the start, before any worker exists: the stream must wait, then go live.
    let mut follower = Clients::new(front.channel().await);
    let run_id = run.id.clone();
    let following = tokio::spawn(async move { follower.events(&run_id, 0).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!following.is_finished(), "the stream ended before the run ran");

    let worker = server(&db, &keys, "2").await;
    let events = following.await.expect("follower");
    let seen = stages(&events);
    assert_eq!(seen.first(), Some(&"queued"));
    assert_eq!(seen.last(), Some(&"finished"), "{seen:?}");
    let done = c.run(&run.id).await;
    assert_eq!(status(&done), SyncRunStatus::Succeeded);
    assert!(!done.claimed_by.is_empty());
    assert!(worker.log().contains(&run.id), "the worker process did not log the run");
    assert!(!front.log().contains("sync run claimed"), "the worker-less process ran a run");
}

#[tokio::test]
async fn a_slow_client_does_not_hold_a_run_back() {
    let repo = lab_repo();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let run = c.start(&fabric_id, "", false).await.run.expect("run");
    // Open a stream and read nothing until the run has finished.
    let request = StreamSyncProgressRequest { run_id: run.id.clone(), from_sequence: 0 };
    let mut stream = c.sync.stream_sync_progress(request).await.expect("stream").into_inner();
    let done = c.wait(&run.id, Duration::from_secs(60)).await;
    assert_eq!(status(&done), SyncRunStatus::Succeeded);
    let mut count = 0;
    while let Some(message) = stream.message().await.expect("stream") {
        count += 1;
        assert!(message.event.is_some());
    }
    assert_eq!(count as i64, c.events(&run.id, 0).await.len() as i64);
}

#[tokio::test]
async fn a_run_survives_the_crash_of_its_process() {
    let repo = lab_repo();
    let tarpit = SilentServer::start();
    let db = support::fresh_database().await;
    let keys = Keyring::generate_key_line("k");
    // A lease far longer than the test waits: the run is taken over because its process died,
    // which PostgreSQL knows when the process's connections close, not because the lease ran out.
    let long_lease = ["--sync-workers", "1", "--sync-lease-seconds", "600", "--git-timeout-seconds", "30"];
    let mut doomed = ServerProcess::start_with(&db, &keys, &long_lease).await;
    let mut c = Clients::new(doomed.channel().await);
    // The remote never answers, so the run hangs in fetching inside the doomed process.
    let fabric_id =
        c.fabric("lab", &format!("git://127.0.0.1:{}/fabric.git", tarpit.port), "fabric", SyncPolicy::default()).await;
    let run = c.start(&fabric_id, "", false).await.run.expect("run");
    let claimed = loop {
        let now = c.run(&run.id).await;
        if status(&now) == SyncRunStatus::Running {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Point the repository at a working remote (the hanging fetch keeps the old one), kill the
    // process, then start a second one: it takes the run over and finishes it.
    let fabric = c.get_fabric(&fabric_id).await;
    c.repos
        .update_repository(UpdateRepositoryRequest {
            repository: Some(Repository {
                id: fabric.repository_id.clone(),
                url: repo.file_url(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["url".into()] }),
            ..Default::default()
        })
        .await
        .expect("repoint repository");
    doomed.kill_hard();
    let survivor = ServerProcess::start_with(&db, &keys, &long_lease).await;
    let mut c = Clients::new(survivor.channel().await);
    let done = c.wait(&run.id, Duration::from_secs(60)).await;
    assert_eq!(status(&done), SyncRunStatus::Succeeded, "{done:?}");
    assert_ne!(done.claimed_by, claimed.claimed_by, "not taken over");
    assert_eq!(counters(&done).created, LAB_OBJECTS);
    assert_eq!(c.stored(&fabric_id).await.len() as i64, LAB_OBJECTS);
    let seen = stages(&c.events(&run.id, 0).await);
    assert_eq!(seen.iter().filter(|s| **s == "finished").count(), 1, "{seen:?}");
}

#[tokio::test]
async fn cancel_stops_a_running_run_at_a_safe_point() {
    let tarpit = SilentServer::start();
    let server = ServerProcess::start_with(
        &support::fresh_database().await,
        &Keyring::generate_key_line("k"),
        &["--git-timeout-seconds", "3", "--sync-lease-seconds", "3"],
    )
    .await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id =
        c.fabric("lab", &format!("git://127.0.0.1:{}/fabric.git", tarpit.port), "fabric", SyncPolicy::default()).await;
    let run = c.start(&fabric_id, "", false).await.run.expect("run");
    loop {
        if status(&c.run(&run.id).await) == SyncRunStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.sync.cancel_sync_run(CancelSyncRunRequest { id: run.id.clone() }).await.expect("cancel");
    let done = c.wait(&run.id, Duration::from_secs(30)).await;
    // The fetch was under way; the run stops at the next safe point, never half-written.
    assert_eq!(status(&done), SyncRunStatus::Cancelled, "{done:?}");
    assert!(c.stored(&fabric_id).await.is_empty());
    assert_eq!(stages(&c.events(&run.id, 0).await).last(), Some(&"cancelled"));
    assert_eq!(c.get_fabric(&fabric_id).await.sync_status, SyncStatus::NeverSynced as i32);
}

#[tokio::test]
async fn auto_sync_pulls_on_schedule_only_when_the_ref_moved() {
    let repo = lab_repo();
    let server = ServerProcess::start_with(
        &support::fresh_database().await,
        &Keyring::generate_key_line("k"),
        &["--auto-sync-tick-seconds", "1"],
    )
    .await;
    let mut c = Clients::new(server.channel().await);
    let every_10s =
        SyncPolicy { auto_sync_interval: Some(prost_types::Duration { seconds: 10, nanos: 0 }), ..Default::default() };
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", every_10s).await;
    let runs = |c: &mut Clients| {
        let mut sync = c.sync.clone();
        let filter = format!("fabric_id={fabric_id}");
        async move {
            sync.list_sync_runs(ListSyncRunsRequest { filter, ..Default::default() })
                .await
                .expect("list")
                .into_inner()
                .runs
        }
    };
    // Never synced: the first check pulls at once.
    let first = wait_for_runs(&mut c, &runs, 1).await;
    assert_eq!(first[0].trigger, SyncTrigger::Schedule as i32);
    assert_eq!(status(&c.wait(&first[0].id, Duration::from_secs(30)).await), SyncRunStatus::Succeeded);
    // The next check (10 s later) finds the same commit: no run.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(runs(&mut c).await.len(), 1, "a run was queued for an unchanged ref");
    // A new commit is pulled at the following check.
    repo.commit(
        &[(
            "fabric/extra.yaml",
            "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: extra-server\nspec: {}\n",
        )],
        "add a server",
    );
    let second = wait_for_runs(&mut c, &runs, 2).await;
    let done = c.wait(&second[0].id, Duration::from_secs(30)).await;
    assert_eq!(status(&done), SyncRunStatus::Succeeded);
    assert_eq!(counters(&done).created, 1);
    assert_eq!(done.commit, repo.head());

    // Paused, a moved ref is not pulled; resumed, it is at the next check.
    let set_paused = |c: &mut Clients, paused: bool| {
        let mut fabrics = c.fabrics.clone();
        let id = fabric_id.clone();
        async move {
            let request = UpdateFabricRequest {
                fabric: Some(Fabric { id, paused, ..Default::default() }),
                update_mask: Some(prost_types::FieldMask { paths: vec!["paused".into()] }),
                cluster: None,
                etag: String::new(),
            };
            fabrics.update_fabric(request).await.expect("update paused");
        }
    };
    set_paused(&mut c, true).await;
    repo.commit(&[("fabric/extra.yaml", "")], "drop the server");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(runs(&mut c).await.len(), 2, "a paused fabric was pulled on schedule");
    set_paused(&mut c, false).await;
    let third = wait_for_runs(&mut c, &runs, 3).await;
    assert_eq!(third[0].trigger, SyncTrigger::Schedule as i32);
    assert_eq!(c.wait(&third[0].id, Duration::from_secs(30)).await.commit, repo.head());
}

/// Polls the run list (newest first) until it has `n` runs.
async fn wait_for_runs<F, Fut>(c: &mut Clients, runs: &F, n: usize) -> Vec<SyncRun>
where
    F: Fn(&mut Clients) -> Fut,
    Fut: std::future::Future<Output = Vec<SyncRun>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = runs(c).await;
        if found.len() >= n {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "only {} runs after 30 s", found.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_silent_git_server_holds_only_its_share_of_the_workers() {
    let tarpit = SilentServer::start();
    let repo = lab_repo();
    let server = ServerProcess::start_with(
        &support::fresh_database().await,
        &Keyring::generate_key_line("k"),
        &["--sync-workers", "3", "--fetches-per-remote", "2", "--git-timeout-seconds", "120"],
    )
    .await;
    let mut c = Clients::new(server.channel().await);
    // Three fabrics on one silent server: two of them fetch (and hang), the third waits queued.
    let mut stuck = Vec::new();
    for n in 0..3 {
        let url = format!("git://127.0.0.1:{}/fabric-{n}.git", tarpit.port);
        let fabric = c.fabric(&format!("silent-{n}"), &url, "fabric", SyncPolicy::default()).await;
        stuck.push(c.start(&fabric, "", false).await.run.expect("run").id);
    }
    let statuses = |runs: Vec<SyncRun>| runs.iter().map(status).collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut now = Vec::new();
        for id in &stuck {
            now.push(c.run(id).await);
        }
        let now = statuses(now);
        if now.iter().filter(|s| **s == SyncRunStatus::Running).count() == 2 {
            assert_eq!(now.iter().filter(|s| **s == SyncRunStatus::Queued).count(), 1, "{now:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The third worker is free: a healthy fabric's pull runs while the silent server hangs.
    let healthy = c.fabric("healthy", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let run = c.start(&healthy, "", false).await.run.expect("run");
    let done = c.wait(&run.id, Duration::from_secs(60)).await;
    assert_eq!(status(&done), SyncRunStatus::Succeeded, "{done:?}");
    let mut now = Vec::new();
    for id in &stuck {
        now.push(c.run(id).await);
    }
    let now = statuses(now);
    assert_eq!(now.iter().filter(|s| **s == SyncRunStatus::Running).count(), 2, "still fetching: {now:?}");
}

#[tokio::test]
async fn a_repositorys_git_server_is_its_host() {
    use diesel::sql_types::Text;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Remote {
        #[diesel(sql_type = Text)]
        remote: String,
    }
    let db = support::fresh_database().await;
    let mut conn = AsyncPgConnection::establish(&db).await.expect("connect");
    for (url, remote) in [
        ("https://user@Git.Example.com:8443/org/x.git", "git.example.com"),
        ("http://127.0.0.1:9418/x.git", "127.0.0.1"),
        ("ssh://git@gitea.lab:2222/org/x.git", "gitea.lab"),
        ("git@gitea.lab:org/x.git", "gitea.lab"),
        ("git@github.com:org/x.git", "github.com"),
        ("git://[::1]/x.git", "[::1]"),
        ("file:///srv/git/x.git", ""),
    ] {
        let got: Remote = diesel::sql_query("SELECT fabricsync_remote($1) AS remote")
            .bind::<Text, _>(url)
            .get_result(&mut conn)
            .await
            .expect("query");
        assert_eq!(got.remote, remote, "{url}");
    }
}
