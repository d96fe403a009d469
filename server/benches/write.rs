//! Write benchmark: ChangeObjects on a generated 10,000-object fabric, from the RPC to the push
//! done, over file:// and over HTTP (`git http-backend`), for one object and for 300; and the
//! peer a user would use instead in the same run: the git command in a clone (edit the file,
//! commit, push), which validates nothing. Run with `scripts/bench.sh write`; prints Markdown.
#![allow(clippy::unwrap_used)] // a panic in a bench is a failed bench

mod common;
#[path = "../tests/support/gitservers.rs"]
#[allow(dead_code)]
mod gitservers;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{connect, create_fabric_with, git, ms, run, start_server, Clients};
use fabricsync::convert::{json_struct, struct_json};
use fabricsync::proto::repository_auth::Method;
use fabricsync::proto::*;
use serde_json::Value;

const REPEAT: usize = 5;
const MANY: usize = 300;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// The desired objects of the first `n` servers.
async fn servers(c: &mut Clients, fabric_id: &str, n: usize) -> Vec<Value> {
    let request = ListResourcesRequest {
        fabric_id: fabric_id.into(),
        page_size: n as i32,
        filter: "kind=Server".into(),
        include_objects: true,
        ..Default::default()
    };
    let page = c.fabrics.list_resources(request).await.unwrap().into_inner();
    page.resources.into_iter().map(|r| struct_json(&r.desired.unwrap())).collect()
}

/// Sets the description of `objects` to `text`, commits them in one ChangeObjects, waits for the
/// pull that follows (not timed); returns the time from the RPC to the push done.
async fn write(c: &mut Clients, fabric_id: &str, objects: &mut [Value], text: &str) -> Duration {
    let changes = objects
        .iter_mut()
        .map(|o| {
            o["spec"]["description"] = Value::String(text.into());
            ObjectChange { change: Some(object_change::Change::Upsert(json_struct(o).unwrap())) }
        })
        .collect();
    let commit = Some(CommitOptions { message: text.into(), ..Default::default() });
    let started = Instant::now();
    let request = ChangeObjectsRequest { fabric_id: fabric_id.into(), changes, commit };
    let result = c.write.change_objects(request).await.expect("write").into_inner().result.unwrap();
    let took = started.elapsed();
    assert_eq!(result.outcome, WriteOutcome::Committed as i32, "{result:?}");
    wait_run(c, &result.run_id).await;
    took
}

async fn wait_run(c: &mut Clients, id: &str) {
    loop {
        let run = c.sync.get_sync_run(GetSyncRunRequest { id: id.into() }).await.unwrap().into_inner().run.unwrap();
        if !matches!(SyncRunStatus::try_from(run.status), Ok(SyncRunStatus::Queued | SyncRunStatus::Running)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The git command's way: in a clone, change one line of `file`, commit, push.
fn by_hand(clone: &Path, file: &str, i: usize) -> Duration {
    let started = Instant::now();
    git(clone, &["pull", "-q", "--ff-only"]);
    let path = clone.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("  description: ", &format!("  description: by hand {i} "), 1)).unwrap();
    git(clone, &["commit", "-q", "-am", &format!("by hand {i}")]);
    git(clone, &["push", "-q", "origin", "main"]);
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let work = tempfile::tempdir().expect("tempdir");
    let (_pg, database_url) = common::database().await;
    let source = work.path().join("source");
    let files = common::generated_repo(&source, 10_000);
    let servers_file = files.iter().find(|p| p.ends_with("servers.yaml")).cloned().expect("a servers file");
    // The remote: a bare repository, served over file:// and by git http-backend.
    let srv = work.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    git(work.path(), &["clone", "-q", "--bare", source.to_str().unwrap(), srv.join("fabric.git").to_str().unwrap()]);
    let http = gitservers::HttpGitServer::start(&srv);
    let clone = work.path().join("clone");
    git(work.path(), &["clone", "-q", srv.join("fabric.git").to_str().unwrap(), clone.to_str().unwrap()]);

    let data_dir = work.path().join("server");
    std::fs::create_dir_all(&data_dir).unwrap();
    let server = start_server(&database_url, &data_dir);
    let mut c = connect(&server.addr).await;
    let basic =
        Method::Basic(BasicAuth { username: gitservers::HTTP_USER.into(), password: gitservers::HTTP_PASSWORD.into() });
    let remotes = [
        ("file://", format!("file://{}", srv.join("fabric.git").display()), None),
        ("http", http.url("fabric.git"), Some(RepositoryAuth { method: Some(basic) })),
    ];
    println!("## Write benchmark (ChangeObjects on a 10,000-object fabric, RPC to push done)\n");
    println!("| remote | one object (median of {REPEAT}) | {MANY} objects (median of {REPEAT}) | goal |");
    println!("|---|---|---|---|");
    let mut one_on_file = Duration::ZERO;
    for (n, (name, url, auth)) in remotes.into_iter().enumerate() {
        let fabric_id = create_fabric_with(&mut c, &format!("bench-{n}"), &url, auth, None).await;
        run(&mut c, &fabric_id, SyncMode::Pull).await;
        let mut objects = servers(&mut c, &fabric_id, MANY).await;
        assert_eq!(objects.len(), MANY);
        let mut one = Vec::new();
        let mut many = Vec::new();
        for i in 0..REPEAT {
            one.push(write(&mut c, &fabric_id, &mut objects[..1], &format!("{name} one {i}")).await);
            many.push(write(&mut c, &fabric_id, &mut objects, &format!("{name} many {i}")).await);
        }
        let (one, many) = (median(one), median(many));
        if n == 0 {
            one_on_file = one;
        }
        let goal = if n == 0 { "<= 300 ms for one object" } else { "-" };
        println!("| {name} | {} | {} | {goal} |", ms(one), ms(many));
    }
    let hand = median((0..REPEAT).map(|i| by_hand(&clone, &servers_file, i)).collect());
    println!("\n## The git command's way, same run (pull, edit one line, commit, push over file://; no validation)\n");
    println!("| measurement | git command | fabricsync (file://, one object) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| one changed object | {} | {} | fabricsync takes {:.1}x the time |",
        ms(hand),
        ms(one_on_file),
        one_on_file.as_secs_f64() / hand.as_secs_f64()
    );
}
