//! Real faults: PostgreSQL restarted (fast, and immediate as a crash) under a running pull and an
//! open progress stream. Nothing stored is lost or half-written, the run ends in a defined state,
//! the stream resumes from its last sequence without a gap or a repeat, and the server recovers
//! by itself. The recovery times printed here are in BENCHMARKS.md.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::{Duration, Instant};

use fabricsync::embedded_pg::{EmbeddedPostgres, StopMode};
use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::*;
use support::gitservers::GitFixture;
use support::server::ServerProcess;
use support::sync::{lab_wiring, status, Clients};

/// A Server document of the fabric.
fn server_doc(name: &str) -> String {
    format!(
        "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: {name}\n  namespace: default\n"
    )
}

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
        let files: Vec<(String, String)> = (0..200)
            .map(|i| (format!("fabric/more-{round}/s-{i}.yaml"), server_doc(&format!("r{round}-s{i}"))))
            .collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        repo.commit(&files, "more servers");
        let run = c.start(&id, "", false).await.run.expect("run");
        // Restarted once the run works (its first event past QUEUED), its stream open.
        let request = StreamSyncProgressRequest { run_id: run.id.clone(), from_sequence: 0 };
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
