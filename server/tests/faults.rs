//! Real faults: PostgreSQL restarted (fast, and immediate as a crash) under a running pull and an
//! open progress stream; the server's connections to PostgreSQL cut or stalled by a TCP proxy
//! (`support::proxy`) under a pull; the file system of the git mirrors full. Nothing stored is
//! lost or half-written, the run ends in a defined state, the stream resumes from its last
//! sequence without a gap or a repeat, calls answer with a reason in bounded time, and the server
//! recovers by itself. The recovery times printed here are in BENCHMARKS.md.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::{Duration, Instant};

use fabricsync::embedded_pg::{EmbeddedPostgres, StopMode};
use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::*;
use support::gitservers::GitFixture;
use support::proxy::{Fault, Proxy};
use support::server::ServerProcess;
use support::sync::{lab_wiring, server_files, status, Clients};

/// Follows a run's progress after `events` to its end as a client would: after a broken stream
/// it opens a new one after the last sequence it saw. Returns every event, in order.
async fn follow(c: &mut Clients, run_id: &str, mut events: Vec<SyncProgressEvent>) -> Vec<SyncProgressEvent> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the run's stream never ended: {events:?}");
        let from = events.last().map_or(0, |e| e.sequence);
        let request = StreamSyncProgressRequest { run_id: run_id.into(), from_sequence: from };
        let Ok(response) = c.sync.stream_sync_progress(request).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = response.into_inner();
        loop {
            match stream.message().await {
                Ok(Some(message)) => events.extend(message.event),
                Ok(None) => {
                    let ended = events.last().and_then(|e| e.payload.as_ref());
                    if matches!(ended, Some(Payload::Finished(_) | Payload::Failed(_) | Payload::Cancelled(_))) {
                        return events;
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Time until GetFabric answers again.
async fn answering(c: &mut Clients, id: &str) -> Duration {
    let started = Instant::now();
    loop {
        if c.fabrics.get_fabric(GetFabricRequest { id: id.into() }).await.is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn resource_count(c: &mut Clients, id: &str) -> i32 {
    let request = ListResourcesRequest { fabric_id: id.into(), page_size: 1, ..Default::default() };
    c.fabrics.list_resources(request).await.unwrap().into_inner().total_size
}

#[tokio::test]
async fn postgres_restarts_under_a_pull_and_a_stream_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pg = EmbeddedPostgres::start(&dir.path().join("pg")).await.expect("a PostgreSQL of its own");
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let keys = fabricsync::crypto::Keyring::generate_key_line("faults");
    let server = ServerProcess::start_with(&pg.url("postgres"), &keys, &[]).await;
    let mut c = Clients::new(server.channel().await);
    let id = c.fabric_on_cluster("lab", &repo.file_url(), "fabric", SyncPolicy::default(), None).await;
    let first = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&first), SyncRunStatus::Succeeded, "{first:?}");
    let base = resource_count(&mut c, &id).await;

    for (round, mode) in [StopMode::Fast, StopMode::Immediate].into_iter().enumerate() {
        // A commit with more servers, its pull started, then the database restarted under it.
        repo.commit_files(&server_files(&format!("fabric/more-{round}"), &format!("r{round}-s"), 200), "more servers");
        let run = c.start(&id, "", false).await.run.expect("run");
        // Restarted once the run works (its first event past QUEUED), its stream open.
        let (stream, seen) = until_working(&mut c, &run.id).await;
        let restarted = Instant::now();
        pg.restart(mode).await.expect("restart PostgreSQL");
        let down = restarted.elapsed();
        let recovered = answering(&mut c, &id).await;

        // The stream, resumed as needed, tells the run to its end once, in order.
        let events = follow(&mut c, &run.id, seen).await;
        drop(stream);
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{mode:?}: repeated or out of order: {sequences:?}");
        let ended = c.wait(&run.id, Duration::from_secs(120)).await;
        let run_ended = restarted.elapsed();
        let (before, after) = (base + round as i32 * 200, base + (round as i32 + 1) * 200);
        let stored = match status(&ended) {
            SyncRunStatus::Succeeded => after,
            SyncRunStatus::Failed => {
                assert!(!ended.error.is_empty(), "{mode:?}: failed without a reason");
                before
            }
            other => panic!("{mode:?}: the run ended {other:?}: {ended:?}"),
        };
        // What is stored is one commit's state or the other's, never in between.
        assert_eq!(resource_count(&mut c, &id).await, stored, "{mode:?}: {ended:?}");
        // And the next pull brings the commit in.
        let again = c.sync_mode(&id, SyncMode::Pull, false, false).await;
        assert_eq!(status(&again), SyncRunStatus::Succeeded, "{mode:?}: {again:?}");
        assert_eq!(resource_count(&mut c, &id).await, after, "{mode:?}");
        println!(
            "PostgreSQL {mode:?} restart: down {:.2} s, RPCs answered {:.2} s after it was back, the run ended {:?} {:.2} s after the restart began",
            down.as_secs_f64(),
            recovered.as_secs_f64(),
            status(&ended),
            run_ended.as_secs_f64()
        );
    }
}

/// The port of a loopback database URL (`postgres://user:password@127.0.0.1:port/name`).
fn port_of(url: &str) -> u16 {
    let authority = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let host_port = authority.split('/').next().expect("host:port");
    let (host, port) = host_port.rsplit_once(':').expect("a port in the database URL");
    assert!(matches!(host, "127.0.0.1" | "localhost"), "the proxy forwards to loopback only: {host}");
    port.parse().expect("numeric port")
}

/// `url` going through `proxy` instead.
fn via(url: &str, proxy: &Proxy) -> String {
    url.replacen(&format!(":{}/", port_of(url)), &format!(":{}/", proxy.port), 1)
}

/// Opens the run's progress stream and reads it until the run works (its first event after
/// QUEUED); returns the stream, still open, and what it read.
async fn until_working(
    c: &mut Clients,
    run_id: &str,
) -> (tonic::Streaming<StreamSyncProgressResponse>, Vec<SyncProgressEvent>) {
    let request = StreamSyncProgressRequest { run_id: run_id.into(), from_sequence: 0 };
    let mut stream = c.sync.stream_sync_progress(request).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        let event = message.event.unwrap();
        let working = !matches!(event.payload, Some(Payload::Queued(_)));
        seen.push(event);
        if working {
            break;
        }
    }
    (stream, seen)
}

/// After a fault under `run`: the stream, followed as a client does from `seen`, tells the run
/// to its end once and in order; the run ended in a defined state; what is stored is the state
/// of the commit before (`before` objects, the run failed with a reason) or after (`after`,
/// it succeeded); and the next pull brings the commit in. Returns the run as it ended.
async fn settles(
    c: &mut Clients,
    id: &str,
    run_id: &str,
    seen: Vec<SyncProgressEvent>,
    (before, after): (i32, i32),
    fault: &str,
) -> SyncRun {
    let events = follow(c, run_id, seen).await;
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{fault}: repeated or out of order: {sequences:?}");
    let ended = c.wait(run_id, Duration::from_secs(120)).await;
    let stored = match status(&ended) {
        SyncRunStatus::Succeeded => after,
        SyncRunStatus::Failed => {
            assert!(!ended.error.is_empty(), "{fault}: failed without a reason");
            before
        }
        other => panic!("{fault}: the run ended {other:?}: {ended:?}"),
    };
    assert_eq!(resource_count(c, id).await, stored, "{fault}: {ended:?}");
    let again = c.sync_mode(id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&again), SyncRunStatus::Succeeded, "{fault}: {again:?}");
    assert_eq!(resource_count(c, id).await, after, "{fault}");
    ended
}

/// A server whose DATABASE_URL goes through a proxy, with a fabric pulled once: (proxy, its
/// database, server, clients, fabric id, its objects, repository).
async fn behind_a_database_proxy() -> (Proxy, support::TestDatabase, ServerProcess, Clients, String, i32, GitFixture) {
    let db = support::fresh_database().await;
    let proxy = Proxy::start(port_of(&db));
    let server = ServerProcess::start(&via(&db, &proxy)).await;
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let mut c = Clients::new(server.channel().await);
    let id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let first = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&first), SyncRunStatus::Succeeded, "{first:?}");
    let base = resource_count(&mut c, &id).await;
    (proxy, db, server, c, id, base, repo)
}

#[tokio::test]
async fn database_connections_cut_under_a_pull_lose_nothing() {
    let (proxy, _db, server, mut c, id, base, repo) = behind_a_database_proxy().await;
    repo.commit_files(&server_files("fabric/more", "cut", 200), "more servers");
    let run = c.start(&id, "", false).await.run.expect("run");
    let (_, seen) = until_working(&mut c, &run.id).await;

    // Every connection cut, and new ones refused for a second, as when the database's host or
    // the network path to it goes away for a moment.
    let cut = Instant::now();
    proxy.set(Fault::Refuse);
    let mut connections = proxy.cut_all();
    while cut.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        connections += proxy.cut_all();
    }
    proxy.set(Fault::Pass);
    let recovered = answering(&mut c, &id).await;
    let ended = settles(&mut c, &id, &run.id, seen, (base, base + 200), "cut").await;
    let run_ended = cut.elapsed();
    println!(
        "PostgreSQL connections cut ({connections}) and refused for 1 s under a pull: RPCs answered {:.2} s after the database was reachable again; the run ended {:?} ({}) {:.2} s after the cut",
        recovered.as_secs_f64(),
        status(&ended),
        ended.error,
        run_ended.as_secs_f64()
    );
    drop(server);
}

#[tokio::test]
async fn a_stalled_database_answers_unavailable_in_bounded_time_and_recovers() {
    let (proxy, _db, server, mut c, id, base, repo) = behind_a_database_proxy().await;
    repo.commit_files(&server_files("fabric/more", "stall", 200), "more servers");
    let run = c.start(&id, "", false).await.run.expect("run");
    let (_, seen) = until_working(&mut c, &run.id).await;

    // The database's connections stay open and forward nothing (a peer that stopped answering
    // while its kernel still acknowledges): calls must not hang on it.
    proxy.set(Fault::Stall);
    let stalled = Instant::now();
    let mut answered = Vec::new();
    for call in 0..2 {
        let started = Instant::now();
        let request = GetFabricRequest { id: id.clone() };
        let answer = tokio::time::timeout(Duration::from_secs(90), c.fabrics.get_fabric(request))
            .await
            .unwrap_or_else(|_| panic!("GetFabric {call} hung for 90 s on a stalled database"));
        let refused = answer.expect_err("GetFabric answered from a stalled database");
        assert!(
            matches!(refused.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded),
            "GetFabric {call}: {refused:?}"
        );
        assert!(!refused.message().is_empty(), "{refused:?}");
        answered.push((started.elapsed(), refused.code()));
    }
    let request = StartSyncRequest { fabric_id: id.clone(), mode: SyncMode::Pull as i32, ..Default::default() };
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(90), c.sync.start_sync(request))
        .await
        .expect("StartSync hung for 90 s on a stalled database");
    let refused = answer.expect_err("StartSync answered from a stalled database");
    assert!(matches!(refused.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded), "{refused:?}");
    answered.push((started.elapsed(), refused.code()));
    let stall = stalled.elapsed();

    // Passing again: the server serves without a restart, the run ends, nothing is lost.
    proxy.set(Fault::Pass);
    let recovered = answering(&mut c, &id).await;
    let ended = settles(&mut c, &id, &run.id, seen, (base, base + 200), "stall").await;
    let answers: Vec<String> =
        answered.iter().map(|(t, code)| format!("{:?} in {:.2} s", code, t.as_secs_f64())).collect();
    println!(
        "PostgreSQL stalled {:.1} s under a pull: calls answered {}; RPCs answered {:.2} s after it passed again; the run ended {:?} ({}) {:.2} s after the stall began",
        stall.as_secs_f64(),
        answers.join(", "),
        recovered.as_secs_f64(),
        status(&ended),
        ended.error,
        stalled.elapsed().as_secs_f64()
    );
    drop(server);
}

/// A tmpfs mounted on a directory for one test; unmounted when dropped (also on a panic).
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create the mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs on {} and needs root (CAP_SYS_ADMIN) for it: mount failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { path: path.to_path_buf() }
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount {}: {}", self.path.display(), String::from_utf8_lossy(&out.stderr));
    }

    /// Bytes used on it.
    fn used(&self) -> u64 {
        fn walk(dir: &std::path::Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        }
        walk(&self.path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, should the server still hold a file open on it.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `bytes` of text that does not compress (random letters, digits and `+/`).
fn incompressible(bytes: usize, seed: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed | 1;
    let mut out = String::with_capacity(bytes + bytes / 76);
    for i in 0..bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(ALPHABET[(x % 64) as usize] as char);
        if i % 76 == 75 {
            out.push('\n');
        }
    }
    out
}

#[tokio::test]
async fn a_full_disk_under_the_git_mirrors_fails_the_pull_with_the_reason_and_recovers() {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    // The git mirrors (the only part of --data-dir a pull writes; the tests' PostgreSQL is apart)
    // on a file system of 4 MiB.
    let disk = Tmpfs::mount(&server.data_dir().join("git"), "4m");
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let mut c = Clients::new(server.channel().await);
    let id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let first = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&first), SyncRunStatus::Succeeded, "{first:?}");
    let base = resource_count(&mut c, &id).await;

    // A commit of 200 Servers and 12 MiB that does not compress (outside the fabric's directory:
    // the mirror fetches it all the same).
    let mut files = server_files("fabric/more", "disk", 200);
    for i in 0..3 {
        files.push((format!("blobs/blob-{i}.txt"), incompressible(4 << 20, 0x9e37_79b9 + i)));
    }
    repo.commit_files(&files, "more servers, and blobs");
    let started = Instant::now();
    let full = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    let failed_after = started.elapsed();
    assert_eq!(status(&full), SyncRunStatus::Failed, "a pull into a full disk: {full:?}");
    let reason = full.error.to_lowercase();
    assert!(reason.contains("no space") || reason.contains("disk full"), "the reason names the full disk: {full:?}");
    assert!(reason.contains("mirror") || reason.contains("git"), "the reason names the mirror: {full:?}");
    // Nothing stored half-written: the first commit's state, and the server serves.
    assert_eq!(resource_count(&mut c, &id).await, base);
    let fabric = c.get_fabric(&id).await;
    assert!(!fabric.last_error.is_empty(), "{fabric:?}");
    let left = disk.used();

    // Space freed: the next pull succeeds.
    disk.resize("64m");
    let freed = Instant::now();
    let again = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&again), SyncRunStatus::Succeeded, "{again:?}");
    let recovered = freed.elapsed();
    assert_eq!(resource_count(&mut c, &id).await, base + 200);
    println!(
        "git mirrors' disk full (4 MiB tmpfs, 12 MiB commit): the pull failed in {:.2} s ({}), {} KiB left on the disk; after it grew to 64 MiB the next pull succeeded in {:.2} s",
        failed_after.as_secs_f64(),
        full.error,
        left >> 10,
        recovered.as_secs_f64()
    );
    drop(disk);
}
