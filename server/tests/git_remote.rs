//! The git layer against real git servers on loopback: file://, git daemon, HTTP basic auth in
//! front of git http-backend, and sshd with keys.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use fabricsync::git::{self, Auth, FailureKind, FetchProgress, GitError, Mirror, ReadLimits, Wanted};
use fabricsync::outbound::Outbound;
use fabricsync_core::sources::Selection;
use fabricsync_core::vocab::Layout;
use support::gitservers::{
    Answer, GitDaemon, GitFixture, HttpGitServer, SilentServer, SshServer, HTTP_PASSWORD, HTTP_TOKEN, HTTP_USER,
};
use support::proxy::{Fault, Proxy};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A fixture with two branches and two tags: main (2 commits), feature; v1 (light), v2 (annotated).
fn fabric_repo() -> GitFixture {
    let repo = GitFixture::with_files(&[("fabric/switches.yaml", "kind: Switch\n"), ("README.md", "# fabric\n")]);
    repo.tag("v1", false);
    repo.commit(&[("fabric/vpcs/vpc-1.yaml", "kind: VPC\n")], "add vpc");
    repo.tag("v2", true);
    repo.branch("feature");
    repo.commit(&[("fabric/feature.yml", "kind: VPC\n")], "feature");
    repo.checkout("main");
    repo
}

/// The default policy (loopback allowed) with file:// repositories on, and a data directory of
/// its own that no test reads from.
fn outbound() -> Outbound {
    static DATA_DIR: std::sync::LazyLock<tempfile::TempDir> =
        std::sync::LazyLock::new(|| tempfile::tempdir().expect("tempdir"));
    Outbound::new(true, Vec::new(), Vec::new(), DATA_DIR.path()).expect("outbound policy")
}

fn token(value: &str) -> Auth {
    Auth::Token { username: String::new(), token: value.into() }
}

fn basic(password: &str) -> Auth {
    Auth::Basic { username: HTTP_USER.into(), password: password.into() }
}

fn ssh_key(key: &str, known_hosts: Option<&str>) -> Auth {
    Auth::SshKey { private_key: key.into(), known_hosts: known_hosts.map(str::to_owned) }
}

/// Asserts the failure kind, that no secret shows in Display or Debug, and returns the error.
fn expect_failure(result: Result<impl std::fmt::Debug, GitError>, kind: FailureKind, secrets: &[&str]) -> GitError {
    let err = result.expect_err("the operation should fail");
    eprintln!("{kind:?}: {err}");
    assert_eq!(err.kind(), kind, "{err}");
    let shown = format!("{err} {err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "secret leaked into {shown}");
    }
    err
}

fn refused_port() -> u16 {
    // Bound then closed: nothing listens there any more.
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind").port()
}

// ---- probe: success ----

#[test]
fn probe_file_url_lists_refs_and_default_branch() {
    let repo = fabric_repo();
    let report = git::probe(&outbound(), &repo.file_url(), &Auth::None, TIMEOUT).expect("probe");
    assert_eq!(report.default_branch.as_deref(), Some("main"));
    assert_eq!(report.ref_count, 4, "main, feature, v1, v2");
    assert!(report.latency > Duration::ZERO && report.latency < TIMEOUT);
}

#[test]
fn probe_git_daemon() {
    let repo = fabric_repo();
    let daemon = GitDaemon::start(&repo.srv_root());
    let report = git::probe(&outbound(), &daemon.url("fabric.git"), &Auth::None, TIMEOUT).expect("probe");
    assert_eq!(report.default_branch.as_deref(), Some("main"));
    assert_eq!(report.ref_count, 4);
}

#[test]
fn probe_http_with_token_and_with_basic_credentials() {
    let repo = fabric_repo();
    let http = HttpGitServer::start(&repo.srv_root());
    let url = http.url("fabric.git");
    for auth in
        [token(HTTP_TOKEN), Auth::Token { username: "oauth2".into(), token: HTTP_TOKEN.into() }, basic(HTTP_PASSWORD)]
    {
        let report = git::probe(&outbound(), &url, &auth, TIMEOUT).unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        assert_eq!(report.default_branch.as_deref(), Some("main"));
        assert_eq!(report.ref_count, 4);
    }
}

#[test]
fn probe_ssh_with_key_and_known_hosts() {
    let Some(ssh) = SshServer::start() else { return };
    let repo = fabric_repo();
    let url = ssh.url(&repo.bare_path());
    let auth = ssh_key(&ssh.client.private_key, Some(&ssh.known_hosts));
    let report =
        git::probe(&outbound(), &url, &auth, TIMEOUT).unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", ssh.log()));
    assert_eq!(report.default_branch.as_deref(), Some("main"));
    assert_eq!(report.ref_count, 4);
    // Without known_hosts the presented host key is accepted.
    let auth = ssh_key(&ssh.client.private_key, None);
    assert_eq!(git::probe(&outbound(), &url, &auth, TIMEOUT).expect("probe without known_hosts").ref_count, 4);
}

// ---- probe: failures ----

#[test]
fn wrong_http_credentials_fail_as_authentication_quickly() {
    let repo = fabric_repo();
    let http = HttpGitServer::start(&repo.srv_root());
    let url = http.url("fabric.git");
    let cases = [
        (token("tok-wrong-0a1b2c3d"), "tok-wrong-0a1b2c3d"),
        (basic("pw-wrong-9z8y7x"), "pw-wrong-9z8y7x"),
        (Auth::Token { username: HTTP_USER.into(), token: format!("{HTTP_PASSWORD}x") }, "pw-Correct-Horse-7731x"),
    ];
    for (auth, secret) in cases {
        let started = Instant::now();
        expect_failure(git::probe(&outbound(), &url, &auth, TIMEOUT), FailureKind::Authentication, &[secret]);
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    }
    expect_failure(git::probe(&outbound(), &url, &Auth::None, TIMEOUT), FailureKind::Authentication, &[]);
    // Credentials in the URL itself are scrubbed as well.
    let with_userinfo = url.replace("http://", "http://someone:url-secret-77@");
    expect_failure(
        git::probe(&outbound(), &with_userinfo, &Auth::None, TIMEOUT),
        FailureKind::Authentication,
        &["url-secret-77"],
    );
}

#[test]
fn wrong_ssh_key_fails_as_authentication_and_wrong_host_key_as_host_key() {
    let Some(ssh) = SshServer::start() else { return };
    let repo = fabric_repo();
    let url = ssh.url(&repo.bare_path());
    let other = ssh.other_key();
    let started = Instant::now();
    let secret_line = other.private_key.lines().nth(1).expect("key body").to_owned();
    expect_failure(
        git::probe(&outbound(), &url, &ssh_key(&other.private_key, Some(&ssh.known_hosts)), TIMEOUT),
        FailureKind::Authentication,
        &[&secret_line],
    );
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // known_hosts naming another key for this host.
    let forged = format!(
        "[127.0.0.1]:{} {}",
        ssh.port,
        other.public_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    );
    expect_failure(
        git::probe(&outbound(), &url, &ssh_key(&ssh.client.private_key, Some(&forged)), TIMEOUT),
        FailureKind::HostKey,
        &[],
    );
}

#[test]
fn refused_ports_fail_as_connection_refused() {
    let port = refused_port();
    let cases = [
        (format!("http://127.0.0.1:{port}/fabric.git"), token("tok-refused-1")),
        (format!("git://127.0.0.1:{port}/fabric.git"), Auth::None),
        (
            format!("ssh://git@127.0.0.1:{port}/fabric.git"),
            Auth::SshKey { private_key: "not-a-key".into(), known_hosts: None },
        ),
    ];
    for (url, auth) in cases {
        let started = Instant::now();
        expect_failure(
            git::probe(&outbound(), &url, &auth, TIMEOUT),
            FailureKind::ConnectionRefused,
            &["tok-refused-1", "not-a-key"],
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{url} took {:?}", started.elapsed());
    }
}

#[test]
fn unresolvable_hosts_fail_as_dns() {
    // .invalid never resolves (RFC 6761).
    for url in
        ["https://nonexistent.invalid/x.git", "ssh://git@nonexistent.invalid/x.git", "git://nonexistent.invalid/x.git"]
    {
        expect_failure(git::probe(&outbound(), url, &Auth::None, TIMEOUT), FailureKind::Dns, &[]);
    }
}

#[test]
fn paths_that_are_not_repositories_fail_as_not_a_repository() {
    let repo = fabric_repo();
    let not_a_repo = repo.srv_root().join("not-a-repo");
    expect_failure(
        git::probe(&outbound(), &format!("file://{}", not_a_repo.display()), &Auth::None, TIMEOUT),
        FailureKind::NotARepository,
        &[],
    );
    expect_failure(
        git::probe(&outbound(), &format!("file://{}/missing.git", repo.srv_root().display()), &Auth::None, TIMEOUT),
        FailureKind::NotARepository,
        &[],
    );
    let daemon = GitDaemon::start(&repo.srv_root());
    expect_failure(
        git::probe(&outbound(), &daemon.url("not-a-repo"), &Auth::None, TIMEOUT),
        FailureKind::NotARepository,
        &[],
    );
    let http = HttpGitServer::start(&repo.srv_root());
    expect_failure(
        git::probe(&outbound(), &http.url("missing.git"), &token(HTTP_TOKEN), TIMEOUT),
        FailureKind::NotARepository,
        &[HTTP_TOKEN],
    );
    if let Some(ssh) = SshServer::start() {
        let auth = ssh_key(&ssh.client.private_key, Some(&ssh.known_hosts));
        expect_failure(
            git::probe(&outbound(), &ssh.url(&not_a_repo), &auth, TIMEOUT),
            FailureKind::NotARepository,
            &[],
        );
    }
}

#[test]
fn untrusted_certificate_fails_as_tls() {
    let repo = fabric_repo();
    let https = HttpGitServer::start_tls(&repo.srv_root());
    expect_failure(
        git::probe(&outbound(), &https.url("fabric.git"), &token(HTTP_TOKEN), TIMEOUT),
        FailureKind::Tls,
        &[HTTP_TOKEN],
    );
}

#[test]
fn silent_servers_fail_as_timeout_within_the_deadline() {
    let silent = SilentServer::start();
    let timeout = Duration::from_secs(2);
    for url in [format!("http://127.0.0.1:{}/x.git", silent.port), format!("git://127.0.0.1:{}/x.git", silent.port)] {
        let started = Instant::now();
        expect_failure(git::probe(&outbound(), &url, &Auth::None, timeout), FailureKind::Timeout, &[]);
        assert!(started.elapsed() < timeout + Duration::from_secs(1), "{url} took {:?}", started.elapsed());
    }
}

#[test]
fn a_server_that_resets_or_fails_is_a_remote_failure_not_an_internal_error() {
    for answer in [Answer::Reset, Answer::Status500] {
        let server = SilentServer::answering(answer);
        let url = format!("http://127.0.0.1:{}/x.git", server.port);
        expect_failure(git::probe(&outbound(), &url, &Auth::None, TIMEOUT), FailureKind::RemoteFailed, &[]);
    }
}

#[test]
fn invalid_urls_are_rejected_before_connecting() {
    for url in ["", "not a url", "/srv/local/path", "ftp://127.0.0.1/x.git", "http://user:url-pass-1@example.com/x.git"]
    {
        expect_failure(git::probe(&outbound(), url, &Auth::None, TIMEOUT), FailureKind::InvalidUrl, &["url-pass-1"]);
    }
    // Credentials never travel over plain http to a non-loopback host.
    expect_failure(
        git::probe(&outbound(), "http://example.com/x.git", &token("tok-plain-1"), TIMEOUT),
        FailureKind::InvalidUrl,
        &["tok-plain-1"],
    );
}

// ---- mirror ----

fn limits() -> ReadLimits {
    ReadLimits { max_file_bytes: 1 << 20, max_total_bytes: 16 << 20, max_files: 1000 }
}

fn fetch(mirror: &Mirror, url: &str, auth: &Auth) -> (git::FetchReport, Vec<FetchProgress>) {
    let mut seen = Vec::new();
    let report = mirror
        .fetch(&outbound(), url, auth, Wanted::Everything, TIMEOUT, &mut |p| seen.push(p))
        .unwrap_or_else(|e| panic!("fetch {url}: {e}"));
    (report, seen)
}

/// A fresh mirror cache (kept alive by the returned directory) holding `repo` fetched over file://.
fn mirrored(repo: &GitFixture) -> (tempfile::TempDir, Mirror) {
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_init(cache.path(), "fabric").expect("mirror");
    fetch(&mirror, &repo.file_url(), &Auth::None);
    (cache, mirror)
}

#[test]
fn first_fetch_clones_and_later_fetches_are_incremental() {
    let repo = fabric_repo();
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_init(cache.path(), "repo-1").expect("mirror");

    let (first, seen) = fetch(&mirror, &repo.file_url(), &Auth::None);
    assert!(first.initial);
    assert_eq!(first.ref_count, 4);
    assert_eq!(first.refs_updated, 4);
    assert!(first.objects_received >= 10, "{first:?}");
    assert!(first.bytes_received > 0, "{first:?}");
    let last = seen.last().expect("progress reported");
    assert_eq!(last.bytes_received, first.bytes_received);
    assert!(seen.windows(2).all(|w| w[0].bytes_received <= w[1].bytes_received), "{seen:?}");

    let (unchanged, _) = fetch(&mirror, &repo.file_url(), &Auth::None);
    assert!(!unchanged.initial);
    assert_eq!(
        (unchanged.refs_updated, unchanged.objects_received, unchanged.bytes_received),
        (0, 0, 0),
        "{unchanged:?}"
    );

    let new_commit = repo.commit(&[("fabric/vpcs/vpc-2.yaml", "kind: VPC\n")], "vpc 2");
    let (second, _) = fetch(&mirror, &repo.file_url(), &Auth::None);
    assert!(!second.initial);
    assert_eq!(second.refs_updated, 1, "{second:?}");
    // One commit, its root tree, two subtrees, one blob: only what is new travels.
    assert!(second.objects_received > 0 && second.objects_received <= 5, "{second:?}");
    assert!(second.bytes_received < first.bytes_received, "{second:?} vs {first:?}");
    assert_eq!(mirror.resolve("main").expect("main"), new_commit);
}

#[test]
fn a_fetch_for_one_branch_leaves_another_branchs_huge_file_on_the_remote() {
    let repo = fabric_repo();
    repo.branch("media");
    let big = vec![b'x'; 64 << 20];
    std::fs::write(repo.work().join("video.bin"), &big).expect("write");
    repo.commit(&[], "a huge file on another branch");
    let blob = support::gitservers::git(&repo.work(), &["rev-parse", "media:video.bin"]);
    repo.checkout("main");
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_init(cache.path(), "narrow").expect("mirror");
    let present = |id: &str| {
        std::process::Command::new("git")
            .args(["--git-dir", &mirror.git_dir().display().to_string(), "cat-file", "-e", id])
            .status()
            .expect("git cat-file")
            .success()
    };

    let report = mirror
        .fetch(&outbound(), &repo.file_url(), &Auth::None, Wanted::Refs(&["main"]), TIMEOUT, &mut |_| {})
        .expect("fetch main");
    assert_eq!(report.refs_updated, 1, "only main: {report:?}");
    assert!(report.bytes_received < 1 << 20, "{report:?}");
    assert_eq!(mirror.resolve("main").expect("main"), repo.head());
    assert_eq!(mirror.resolve("media").map_err(|e| e.kind()), Err(FailureKind::UnknownRef));
    assert!(!present(&blob), "the other branch's file was fetched");
    // Refs it did not ask for are not pruned; the branch it asked for is, once deleted.
    mirror
        .fetch(&outbound(), &repo.file_url(), &Auth::None, Wanted::Refs(&["feature"]), TIMEOUT, &mut |_| {})
        .expect("feature");
    support::gitservers::git(&repo.bare_path(), &["branch", "-D", "feature"]);
    let report = mirror
        .fetch(&outbound(), &repo.file_url(), &Auth::None, Wanted::Refs(&["feature"]), TIMEOUT, &mut |_| {})
        .expect("feature again");
    assert_eq!(report.refs_updated, 1, "{report:?}");
    assert_eq!(mirror.resolve("feature").map_err(|e| e.kind()), Err(FailureKind::UnknownRef));
    assert!(mirror.resolve("main").is_ok());
    // Asked for, it comes.
    mirror
        .fetch(&outbound(), &repo.file_url(), &Auth::None, Wanted::Refs(&["media"]), TIMEOUT, &mut |_| {})
        .expect("fetch media");
    assert!(present(&blob));
}

#[test]
fn fetch_mirrors_deleted_branches_and_moved_tags() {
    let repo = fabric_repo();
    let (_cache, mirror) = mirrored(&repo);
    assert!(mirror.resolve("feature").is_ok());
    support::gitservers::git(&repo.bare_path(), &["branch", "-D", "feature"]);
    let (report, _) = fetch(&mirror, &repo.file_url(), &Auth::None);
    assert_eq!(report.ref_count, 3);
    assert_eq!(report.refs_updated, 1);
    assert_eq!(mirror.resolve("feature").map_err(|e| e.kind()), Err(FailureKind::UnknownRef));
}

#[test]
fn fetch_over_http_and_ssh_with_credentials() {
    let repo = fabric_repo();
    let cache = tempfile::tempdir().expect("tempdir");
    let http = HttpGitServer::start(&repo.srv_root());
    let mirror = Mirror::open_or_init(cache.path(), "over-http").expect("mirror");
    let (report, _) = fetch(&mirror, &http.url("fabric.git"), &token(HTTP_TOKEN));
    assert!(report.initial && report.ref_count == 4 && report.objects_received > 0, "{report:?}");
    expect_failure(
        mirror.fetch(
            &outbound(),
            &http.url("fabric.git"),
            &token("tok-bad-fetch"),
            Wanted::Everything,
            TIMEOUT,
            &mut |_| {},
        ),
        FailureKind::Authentication,
        &["tok-bad-fetch"],
    );
    let daemon = GitDaemon::start(&repo.srv_root());
    let mirror = Mirror::open_or_init(cache.path(), "over-daemon").expect("mirror");
    assert_eq!(fetch(&mirror, &daemon.url("fabric.git"), &Auth::None).0.ref_count, 4);
    let Some(ssh) = SshServer::start() else { return };
    let mirror = Mirror::open_or_init(cache.path(), "over-ssh").expect("mirror");
    let auth = ssh_key(&ssh.client.private_key, Some(&ssh.known_hosts));
    let (report, _) = fetch(&mirror, &ssh.url(&repo.bare_path()), &auth);
    assert!(report.initial && report.ref_count == 4, "{report:?}");
}

#[test]
fn fetches_of_one_mirror_serialize_and_different_mirrors_run_together() {
    let repo = fabric_repo();
    let cache = tempfile::tempdir().expect("tempdir");
    let url = repo.file_url();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["same", "same", "same", "other"]
            .into_iter()
            .map(|id| {
                let (root, url) = (cache.path(), url.clone());
                scope.spawn(move || {
                    let mirror = Mirror::open_or_init(root, id)?;
                    mirror
                        .fetch(&outbound(), &url, &Auth::None, Wanted::Everything, TIMEOUT, &mut |_| {})
                        .map(|r| (id, r))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let reports: Vec<_> = results.into_iter().map(|r| r.expect("fetch")).collect();
    // Exactly one of the fetches of the shared mirror cloned; the others found it up to date.
    let same: Vec<_> = reports.iter().filter(|(id, _)| *id == "same").map(|(_, r)| r).collect();
    assert_eq!(same.iter().filter(|r| r.initial).count(), 1, "{same:?}");
    assert_eq!(same.iter().filter(|r| r.objects_received > 0).count(), 1, "{same:?}");
    assert!(reports.iter().any(|(id, r)| *id == "other" && r.initial));
}

#[test]
fn bad_repository_ids_are_rejected() {
    let cache = tempfile::tempdir().expect("tempdir");
    for id in ["", "../escape", "a/b", ".hidden"] {
        expect_failure(Mirror::open_or_init(cache.path(), id), FailureKind::InvalidPath, &[]);
    }
}

#[test]
fn resolve_branches_tags_full_refs_and_commit_ids() {
    let repo = fabric_repo();
    let main = repo.head();
    let v1 = support::gitservers::git(&repo.work(), &["rev-parse", "v1^{commit}"]);
    let v2 = support::gitservers::git(&repo.work(), &["rev-parse", "v2^{commit}"]);
    let feature = support::gitservers::git(&repo.work(), &["rev-parse", "feature"]);
    let (_cache, mirror) = mirrored(&repo);
    let cases = [
        ("main", &main),
        ("feature", &feature),
        ("refs/heads/feature", &feature),
        ("v1", &v1),
        ("v2", &v2),
        ("refs/tags/v2", &v2),
        (main.as_str(), &main),
        (&main[..7], &main),
        (&v1[..12], &v1),
    ];
    for (name, expected) in cases {
        assert_eq!(&mirror.resolve(name).unwrap_or_else(|e| panic!("{name}: {e}")), expected, "{name}");
    }
    for unknown in
        ["nope", "refs/heads/nope", "0000000000000000000000000000000000000000", "abc", "", "main~1", "../main", "a\nb"]
    {
        let err = expect_failure(mirror.resolve(unknown), FailureKind::UnknownRef, &[]);
        assert!(matches!(err, GitError::UnknownRef(ref name) if name == unknown));
    }
}

fn paths(files: &[git::SourceFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

/// The files a default selection reads.
fn read(mirror: &Mirror, commit: &str, dir: &str, limits: &ReadLimits) -> Result<Vec<git::SourceFile>, GitError> {
    mirror.read_dir(commit, dir, limits, &Selection::default()).map(|sources| sources.files)
}

#[test]
fn read_dir_skips_hidden_entries_and_reads_an_hnp_layout_as_hnp_wrote_it() {
    let repo = GitFixture::with_files(&[
        ("plain/a.yaml", "kind: A\n"),
        ("plain/.github/workflows/ci.yaml", "on: push\n"),
        ("plain/.pre-commit-config.yaml", "repos: []\n"),
        ("plain/drafts/d.yaml", "kind: D\n"),
        ("hnp/.hnp/manifest.yaml", "version: 1\n"),
        ("hnp/.hnp/archive-log.yaml", "archived: []\n"),
        ("hnp/managed/switches/leaf-1.yaml", "kind: Switch\n"),
        ("hnp/raw/new.yaml", "kind: VPC\n"),
        ("hnp/unmanaged/ours.yaml", "kind: Other\n"),
        ("hnp/top.yaml", "kind: Top\n"),
    ]);
    let commit = repo.head();
    let (_cache, mirror) = mirrored(&repo);
    let plain = mirror.read_dir(&commit, "plain", &limits(), &Selection::default()).expect("plain");
    assert_eq!((paths(&plain.files), plain.layout), (vec!["plain/a.yaml", "plain/drafts/d.yaml"], Layout::Plain));
    let hnp = mirror.read_dir(&commit, "hnp", &limits(), &Selection::default()).expect("hnp");
    assert_eq!(
        (paths(&hnp.files), hnp.layout),
        (vec!["hnp/managed/switches/leaf-1.yaml", "hnp/raw/new.yaml"], Layout::Hnp)
    );
    let no_drafts = Selection::new(&[], &["drafts/**".to_string()]).expect("globs");
    let narrowed = mirror.read_dir(&commit, "plain", &limits(), &no_drafts).expect("narrowed");
    assert_eq!(paths(&narrowed.files), ["plain/a.yaml"]);
    // Excluded files do not count against the limits.
    let one = ReadLimits { max_files: 1, ..limits() };
    assert_eq!(mirror.read_dir(&commit, "plain", &one, &no_drafts).expect("one file").files.len(), 1);
}

#[test]
fn read_dir_reads_yaml_recursively_at_any_commit_without_checkout() {
    let repo = GitFixture::with_files(&[
        ("fabric/b.yaml", "kind: B\n"),
        ("fabric/a.yml", "kind: A\n"),
        ("fabric/notes.txt", "not yaml"),
        ("fabric/sub/deeper/c.yaml", "kind: C\n"),
        ("fabric/sub.yaml.bak", "no"),
        ("fabric-other/x.yaml", "kind: X\n"),
        ("top.yaml", "kind: Top\n"),
    ]);
    let old = repo.head();
    let new = repo.commit(&[("fabric/a.yml", "kind: A2\n")], "change a");
    let (_cache, mirror) = mirrored(&repo);

    let files = read(&mirror, &new, "fabric", &limits()).expect("read");
    assert_eq!(paths(&files), ["fabric/a.yml", "fabric/b.yaml", "fabric/sub/deeper/c.yaml"]);
    assert_eq!(files[0].bytes, b"kind: A2\n");
    let files = read(&mirror, &old, "./fabric/", &limits()).expect("read old");
    assert_eq!(files[0].bytes, b"kind: A\n");
    for root in ["", "."] {
        let files = read(&mirror, &new, root, &limits()).expect("read root");
        assert_eq!(files.len(), 5, "{:?}", paths(&files));
        assert_eq!(files.last().map(|f| f.path.as_str()), Some("top.yaml"));
    }
    assert_eq!(paths(&read(&mirror, &new, "fabric/sub", &limits()).expect("sub")), ["fabric/sub/deeper/c.yaml"]);
    // No worktree was ever checked out in the cache.
    assert!(!mirror.git_dir().join("fabric").exists());
}

#[test]
fn read_dir_reports_missing_directories_and_bad_input() {
    let repo = GitFixture::with_files(&[("fabric/a.yaml", "a: 1\n")]);
    let commit = repo.head();
    let (_cache, mirror) = mirrored(&repo);
    for dir in ["nope", "fabric/a.yaml", "fabric/nope"] {
        let err = expect_failure(read(&mirror, &commit, dir, &limits()), FailureKind::DirectoryNotFound, &[]);
        assert!(err.to_string().contains(dir), "{err}");
    }
    for dir in ["/etc", "../x", "fabric/../../x"] {
        expect_failure(read(&mirror, &commit, dir, &limits()), FailureKind::InvalidPath, &[]);
    }
    for commit in ["main", "0000000000000000000000000000000000000000", "zz"] {
        expect_failure(read(&mirror, commit, "fabric", &limits()), FailureKind::UnknownRef, &[]);
    }
    // An empty directory cannot exist in git; an empty result comes from a directory without YAML.
    let commit = repo.commit(&[("docs/readme.md", "hi")], "docs");
    fetch(&mirror, &repo.file_url(), &Auth::None);
    assert!(read(&mirror, &commit, "docs", &limits()).expect("docs").is_empty());
}

#[test]
fn read_dir_enforces_limits_naming_the_file() {
    let big = "x: ".to_string() + &"y".repeat(2000) + "\n";
    let repo = GitFixture::with_files(&[("f/small.yaml", "a: 1\n"), ("f/big.yaml", &big), ("f/other.yaml", "b: 2\n")]);
    let commit = repo.head();
    let (_cache, mirror) = mirrored(&repo);
    let err = read(&mirror, &commit, "f", &ReadLimits { max_file_bytes: 1000, ..limits() }).expect_err("too large");
    match err {
        GitError::FileTooLarge { path, size, limit } => {
            assert_eq!((path.as_str(), size, limit), ("f/big.yaml", big.len() as u64, 1000));
        }
        other => panic!("{other}"),
    }
    expect_failure(
        read(&mirror, &commit, "f", &ReadLimits { max_files: 2, ..limits() }),
        FailureKind::LimitExceeded,
        &[],
    );
    expect_failure(
        read(&mirror, &commit, "f", &ReadLimits { max_total_bytes: 2005, ..limits() }),
        FailureKind::LimitExceeded,
        &[],
    );
    assert_eq!(
        read(&mirror, &commit, "f", &ReadLimits { max_files: 3, max_total_bytes: 2100, ..limits() })
            .expect("fits")
            .len(),
        3
    );
}

#[test]
fn read_dir_follows_symlinks_inside_and_rejects_escapes() {
    let repo = GitFixture::with_files(&[("shared/base.yaml", "kind: Base\n"), ("fabric/a.yaml", "kind: A\n")]);
    repo.commit_symlink("fabric/linked.yaml", "../shared/base.yaml");
    repo.commit_symlink("fabric/chain.yaml", "linked.yaml");
    let inside = repo.commit_symlink("fabric/shared-dir", "../shared");
    let (_cache, mirror) = mirrored(&repo);
    let files = read(&mirror, &inside, "fabric", &limits()).expect("read");
    assert_eq!(paths(&files), ["fabric/a.yaml", "fabric/chain.yaml", "fabric/linked.yaml"]);
    assert_eq!(files[1].bytes, b"kind: Base\n");
    assert_eq!(files[2].bytes, b"kind: Base\n");

    let escaping = repo.commit_symlink("fabric/passwd.yaml", "../../../../etc/passwd");
    let dangling = {
        repo.remove(&["fabric/passwd.yaml"]);
        repo.commit_symlink("fabric/dangling.yaml", "missing.yaml")
    };
    let dir_escape = {
        repo.remove(&["fabric/dangling.yaml"]);
        repo.commit_symlink("fabric/etc", "/etc")
    };
    fetch(&mirror, &repo.file_url(), &Auth::None);
    match read(&mirror, &escaping, "fabric", &limits()) {
        Err(GitError::SymlinkEscapes { path, target }) => {
            assert_eq!((path.as_str(), target.as_str()), ("fabric/passwd.yaml", "../../../../etc/passwd"));
        }
        other => panic!("{other:?}"),
    }
    expect_failure(read(&mirror, &dangling, "fabric", &limits()), FailureKind::BrokenSymlink, &[]);
    let err = expect_failure(read(&mirror, &dir_escape, "fabric", &limits()), FailureKind::SymlinkEscapes, &[]);
    assert!(err.to_string().contains("fabric/etc"), "{err}");
}

#[test]
fn read_dir_skips_submodules() {
    let repo = GitFixture::with_files(&[("fabric/a.yaml", "a: 1\n")]);
    let target = repo.head();
    support::gitservers::git(
        &repo.work(),
        &["update-index", "--add", "--cacheinfo", &format!("160000,{target},fabric/module.yaml")],
    );
    support::gitservers::git(&repo.work(), &["commit", "-q", "-m", "submodule"]);
    support::gitservers::git(&repo.work(), &["push", "-q", "origin", "main"]);
    let commit = repo.head();
    let (_cache, mirror) = mirrored(&repo);
    assert_eq!(paths(&read(&mirror, &commit, "fabric", &limits()).expect("read")), ["fabric/a.yaml"]);
}

#[test]
fn the_outbound_policy_refuses_before_connecting_on_every_transport() {
    let repo = fabric_repo();
    let http = HttpGitServer::start(&repo.srv_root());
    let daemon = GitDaemon::start(&repo.srv_root());
    let ssh = SshServer::start();
    let by_name = |url: String| url.replace("127.0.0.1", "localhost");
    let dir = tempfile::tempdir().expect("tempdir");
    let deny = Outbound::new(true, Vec::new(), vec!["127.0.0.1/32".parse().unwrap()], dir.path()).expect("policy");
    // By name: the HTTP client's resolver, git:// and ssh resolve and check before connecting.
    let mut refused = vec![
        (by_name(http.url("fabric.git")), token(HTTP_TOKEN)),
        (by_name(daemon.url("fabric.git")), Auth::None),
        ("https://169.254.169.254/fabric.git".to_string(), token(HTTP_TOKEN)),
    ];
    if let Some(ssh) = &ssh {
        refused.push((by_name(ssh.url(&repo.bare_path())), ssh_key(&ssh.client.private_key, Some(&ssh.known_hosts))));
    }
    for (url, auth) in refused {
        let err = expect_failure(git::probe(&deny, &url, &auth, TIMEOUT), FailureKind::Refused, &[HTTP_TOKEN]);
        assert!(err.to_string().contains("outbound policy"), "{err}");
    }
    // The same servers by name, allowed: ssh checks the host key under the name (HostKeyAlias).
    assert_eq!(
        git::probe(&outbound(), &by_name(http.url("fabric.git")), &token(HTTP_TOKEN), TIMEOUT).expect("http").ref_count,
        4
    );
    if let Some(ssh) = &ssh {
        let known_hosts = ssh.known_hosts.replace("127.0.0.1", "localhost");
        let key = ssh_key(&ssh.client.private_key, Some(&known_hosts));
        assert_eq!(
            git::probe(&outbound(), &by_name(ssh.url(&repo.bare_path())), &key, TIMEOUT).expect("ssh").ref_count,
            4
        );
    }
}

#[test]
fn a_git_server_that_dies_or_stalls_mid_fetch_fails_the_fetch_and_leaves_the_mirror_whole() {
    let repo = fabric_repo();
    // Incompressible bytes: a pack of several MB, received in many reads.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::create_dir_all(repo.work().join("blobs")).expect("mkdir");
    std::fs::write(repo.work().join("blobs/noise.bin"), &noise).expect("write");
    let head = repo.commit(&[], "a large file");
    let http = HttpGitServer::start(&repo.srv_root());
    let proxy = Proxy::start(http.port);
    let url = format!("http://127.0.0.1:{}/fabric.git", proxy.port);
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_init(cache.path(), "faulty").expect("mirror");
    let fetch = |timeout: Duration| {
        mirror.fetch(&outbound(), &url, &token(HTTP_TOKEN), Wanted::Refs(&["main"]), timeout, &mut |_| {})
    };

    // The server dies 256 KiB into its answer.
    proxy.set(Fault::CutAfter(256 << 10));
    let cut = fetch(TIMEOUT).expect_err("a cut fetch");
    assert_eq!(cut.kind(), FailureKind::RemoteFailed, "{cut}");
    assert!(!cut.to_string().contains(HTTP_TOKEN), "{cut}");
    assert_eq!(mirror.resolve("main").map_err(|e| e.kind()), Err(FailureKind::UnknownRef), "nothing half-fetched");

    // It stalls: the fetch's deadline ends it.
    proxy.set(Fault::Stall);
    let started = std::time::Instant::now();
    let stalled = fetch(Duration::from_secs(3)).expect_err("a stalled fetch");
    assert_eq!(stalled.kind(), FailureKind::Timeout, "{stalled}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    // Back to health, the same mirror fetches the whole commit.
    proxy.set(Fault::Pass);
    let report = fetch(TIMEOUT).expect("a healthy fetch");
    assert!(report.bytes_received > 4 << 20, "{report:?}");
    assert_eq!(mirror.resolve("main").expect("main"), head);
}
