//! Runs the README's grpcurl session, line for line, with a real grpcurl against a real server.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::server::ServerProcess;

const BEGIN: &str = "<!-- grpcurl-session:begin -->";
const END: &str = "<!-- grpcurl-session:end -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shell lines between the session markers, without the code fence.
fn readme_session() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme.find(BEGIN).expect("README has the session begin marker") + BEGIN.len();
    let end = readme.find(END).expect("README has the session end marker");
    let block = readme[start..end].trim();
    let body = block.strip_prefix("```sh").and_then(|b| b.strip_suffix("```")).expect("a ```sh block");
    body.to_string()
}

fn grpcurl_on_path() {
    let found = Command::new("grpcurl").arg("-version").output().is_ok_and(|o| o.status.success());
    assert!(found, "grpcurl is not on PATH; scripts/setup.sh --test installs it into .tools/bin");
}

#[tokio::test]
async fn readme_grpcurl_session_runs() {
    grpcurl_on_path();
    let server = ServerProcess::start_first_run(
        &support::fresh_database().await,
        &fabricsync::crypto::Keyring::generate_key_line("k"),
    )
    .await;
    let demo = tempfile::tempdir().expect("tempdir");
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &readme_session()])
        .current_dir(repo_root())
        .env("ADDR", server.addr.to_string())
        .env("DEMO", demo.path().join("repo"))
        .env("TOKEN_FILE", server.data_dir().join("admin-token"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "session failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nlog:\n{}", server.log());

    for service in [
        "fabricsync.v1.RepositoryService",
        "fabricsync.v1.FabricService",
        "fabricsync.v1.SyncService",
        "fabricsync.v1.DriftService",
        "grpc.health.v1.Health",
        "fabricsync.v1.AccessService",
        "fabricsync.v1.WriteService",
    ] {
        assert!(stdout.contains(service), "`list` lacks {service}:\n{stdout}");
    }
    assert!(stdout.contains("\"reachable\": true"), "repository not reachable:\n{stdout}");
    assert!(stdout.contains("\"description\": \"demo fabric\""), "update not shown:\n{stdout}");
    assert!(stdout.contains("\"prune\": true"), "fabric update not shown:\n{stdout}");
    assert!(stdout.contains("\"hasBearerToken\": true"), "{stdout}");
    assert!(!stdout.contains("demo-token") && !server.log().contains("demo-token"), "bearer token echoed");
    assert!(stdout.contains("\"finished\""), "the sync did not stream to its end:\n{stdout}");
    assert!(stdout.contains("\"status\": \"SYNC_RUN_STATUS_SUCCEEDED\""), "{stdout}");
    assert!(stdout.contains("\"kind\": \"VPC\""), "no VPC listed:\n{stdout}");
    assert!(stdout.contains("\"valid\": true"), "PlanSync:\n{stdout}");
    let committed = stdout.find("\"outcome\": \"WRITE_OUTCOME_COMMITTED\"").expect("ChangeObjects committed");
    let unchanged = stdout.find("\"outcome\": \"WRITE_OUTCOME_UNCHANGED\"").expect("the same write again");
    assert!(committed < unchanged, "{stdout}");
    assert!(stdout.contains("demo-vpc-1: a smaller DHCP range (admin)"), "the commit:\n{stdout}");
    assert!(stdout.contains("+          end: 10.10.101.50"), "the commit's diff:\n{stdout}");
    assert!(stdout.contains("\"driftStatus\": \"DRIFT_STATUS_UNKNOWN\""), "GetFabricDrift:\n{stdout}");
    assert!(stdout.contains("\"status\": \"RESOURCE_DRIFT_STATUS_UNKNOWN\""), "ListDriftedResources:\n{stdout}");
    assert!(stderr.contains("FailedPrecondition"), "delete of a used repository was not refused:\n{stderr}");
    assert!(stdout.contains("\"principal\": \"admin\""), "WhoAmI:\n{stdout}");
    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("needs role operator"),
        "viewer StartSync:\n{stderr}"
    );
    assert!(
        stdout.contains("\"code\": \"PERMISSION_DENIED\"") && stdout.contains("\"principal\": \"demo-viewer\""),
        "audit:\n{stdout}"
    );
    let token = std::fs::read_to_string(server.data_dir().join("admin-token")).expect("admin-token");
    assert!(!server.log().contains(token.trim()), "the admin token is in the server log");
}
