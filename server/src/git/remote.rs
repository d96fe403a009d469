//! Talking to remotes: URL checks, an isolated gix configuration with our credentials and ssh
//! command, the deadline every network operation runs under, and the connection probe.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use gix::protocol::handshake::Ref;
use gix::protocol::transport::client::blocking_io::{http, Transport};
use gix::remote::{Connection, Direction};
use gix::url::Scheme;

use super::error::{Evidence, FailureKind, GitError};
use super::write::Pushed;
use super::Auth;
use crate::outbound::Outbound;
use crate::redact::{strip_userinfo, Redactor};

/// What a successful probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Short name of the branch the remote HEAD points to, if it advertises one.
    pub default_branch: Option<String>,
    /// Refs advertised by the remote, HEAD excluded.
    pub ref_count: usize,
    /// Wall time of the whole probe: connect, authenticate, list refs.
    pub latency: Duration,
}

/// Lists the refs of the remote at `url` (V2 ls-refs, or the V1 advertisement), within `timeout`,
/// connecting only where `outbound` permits.
pub fn probe(outbound: &Outbound, url: &str, auth: &Auth, timeout: Duration) -> Result<ProbeReport, GitError> {
    let started = Instant::now();
    let session = Session::new(outbound, url, auth, timeout)?;
    let (default_branch, ref_count) =
        with_deadline(timeout, "listing the remote refs", || (), move |_cancel| session.list_refs())?;
    Ok(ProbeReport { default_branch, ref_count, latency: started.elapsed() })
}

/// (default branch, number of refs) of an advertisement, HEAD excluded from the count.
fn summarize(refs: &[Ref]) -> (Option<String>, usize) {
    let default_branch = refs.iter().find_map(|r| match r {
        Ref::Symbolic { full_ref_name, target, .. } | Ref::Unborn { full_ref_name, target }
            if full_ref_name == "HEAD" =>
        {
            let target = target.to_string();
            Some(target.strip_prefix("refs/heads/").map(str::to_owned).unwrap_or(target))
        }
        _ => None,
    });
    let count = refs.iter().filter(|r| ref_name(r) != "HEAD").count();
    (default_branch, count)
}

pub(crate) fn ref_name(r: &Ref) -> &gix::bstr::BStr {
    match r {
        Ref::Peeled { full_ref_name, .. }
        | Ref::Direct { full_ref_name, .. }
        | Ref::Symbolic { full_ref_name, .. }
        | Ref::Unborn { full_ref_name, .. } => full_ref_name.as_ref(),
    }
}

/// Runs `work` on a thread of its own and waits at most `timeout` for its result, calling `tick`
/// about every 100 ms meanwhile. On timeout `cancel` is raised for `work` to notice (gix checks it
/// while receiving a pack) and the caller gets `Timeout` at once; the thread ends on its own, bounded
/// by the transport's own timeouts. A panic inside gix becomes `Other`, never a panic here.
pub(crate) fn with_deadline<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    mut tick: impl FnMut(),
    work: impl FnOnce(&AtomicBool) -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    const TICK: Duration = Duration::from_millis(100);
    let (send, receive) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let worker_cancel = cancel.clone();
    std::thread::Builder::new()
        .name("fabricsync-git".into())
        .spawn(move || {
            // The receiver is gone after a timeout; nobody needs the late result.
            send.send(work(&worker_cancel)).ok();
        })
        .map_err(|e| GitError::local("cannot start a git worker thread", e))?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            cancel.store(true, Ordering::Relaxed);
            return Err(GitError::Timeout(format!("{what} took longer than {timeout:?}")));
        }
        match receive.recv_timeout(left.min(TICK)) {
            Ok(result) => {
                tick();
                return result;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => tick(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(GitError::Other(format!("{what}: the git worker stopped unexpectedly")))
            }
        }
    }
}

/// Checks a repository URL before anything connects: supported scheme, a host where one is
/// needed, and no credentials over plain http except to loopback (test servers).
pub(crate) fn parse_url(url: &str, auth: &Auth) -> Result<gix::Url, GitError> {
    let shown = strip_userinfo(url);
    let invalid = |reason: &str| GitError::InvalidUrl(format!("{shown:?}: {reason}"));
    if url.is_empty() || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("empty, or contains whitespace or control characters"));
    }
    let parsed = gix::url::parse(gix::bstr::BStr::new(url)).map_err(|_| invalid("not a git URL"))?;
    if parsed.port == Some(0) {
        return Err(invalid("port 0"));
    }
    let host = parsed.host().map(str::to_owned);
    let has_host = host.as_deref().is_some_and(|h| !h.is_empty());
    match &parsed.scheme {
        Scheme::File if parsed.serialize_alternative_form => {
            return Err(invalid("local repositories need a file:// URL"))
        }
        Scheme::File => {}
        Scheme::Ssh | Scheme::Http | Scheme::Https | Scheme::Git if !has_host => return Err(invalid("no host")),
        // Not a valid host name or address (`-oProxyCommand=...`, `fd::17`): ssh could take it
        // for an option, and an API-checked URL never has one.
        Scheme::Ssh | Scheme::Http | Scheme::Https | Scheme::Git
            if !host.as_deref().is_some_and(|h| host_ok(h, url)) =>
        {
            return Err(invalid("the host is not a valid host name or IP address"))
        }
        // `javascript:x`, `data:x` read as scp-like `host:path`: without a user, only a dotted
        // name, an address or localhost counts as a host (as api::validate::git_url has it).
        Scheme::Ssh
            if parsed.serialize_alternative_form
                && parsed.user().is_none()
                && !host.as_deref().is_some_and(|h| h.contains('.') || h.contains(':') || is_loopback(h)) =>
        {
            return Err(invalid("not a git URL (unsupported scheme)"))
        }
        Scheme::Ssh if parsed.user().is_some_and(|u| u.starts_with('-')) || parsed.path.starts_with(b":") => {
            return Err(invalid("user or path could be taken for an ssh option or a port"))
        }
        Scheme::Ssh | Scheme::Https | Scheme::Git => {}
        Scheme::Http => {
            let sends_credentials = auth.http_identity().is_some() || parsed.password().is_some();
            if sends_credentials && !host.as_deref().is_some_and(is_loopback) {
                return Err(invalid("credentials are only sent over https (plain http only to loopback hosts)"));
            }
        }
        other => {
            return Err(invalid(&format!("scheme {:?} is not supported (https, http, ssh, git, file)", other.as_str())))
        }
    }
    Ok(parsed)
}

/// A host name or address. gix gives ssh's IPv6 hosts without their brackets; the URL must
/// have had them (in `fd::17/x`, git's host is `fd`).
fn host_ok(host: &str, url: &str) -> bool {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => url.contains('['),
        Err(_) => crate::outbound::valid_host(host),
    }
}

/// Where a repository URL leads, for the outbound policy's check before anything connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    File(PathBuf),
    Host { host: String, port: u16 },
}

/// The endpoint of `url`, if it parses as a git URL.
pub fn endpoint(url: &str) -> Option<Endpoint> {
    let parsed = gix::url::parse(gix::bstr::BStr::new(url)).ok()?;
    Some(match parsed.scheme {
        Scheme::File => Endpoint::File(gix::path::from_bstr(gix::bstr::BStr::new(&parsed.path)).ok()?.into_owned()),
        _ => Endpoint::Host { host: parsed.host()?.to_owned(), port: parsed.port_or_default()? },
    })
}

/// Whether two repository URLs lead to the same repository: same scheme, host, port and path.
/// Stored credentials stay bound to it; URLs that do not parse are never the same.
pub fn same_repository(a: &str, b: &str) -> bool {
    let parse = |url: &str| gix::url::parse(gix::bstr::BStr::new(url)).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => {
            a.scheme == b.scheme
                && a.host().map(str::to_ascii_lowercase) == b.host().map(str::to_ascii_lowercase)
                && a.port_or_default() == b.port_or_default()
                && a.path == b.path
        }
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Quotes `path` for the POSIX shell that gix runs `core.sshCommand` with.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Where ssh connects: the address the outbound policy checked, and the name host keys are
/// looked up under (`[host]:port` off port 22, as known_hosts writes it).
struct SshPin {
    address: IpAddr,
    host_key_alias: String,
}

/// The ssh invocation: nothing from the machine's ssh setup (config, agent, default keys), no
/// prompts, host keys checked against our file, stderr kept for classifying failures, and the
/// checked address pinned so that ssh does not resolve the name again. The git command appends
/// the host and remote command itself (`"$@"`); gix needs them spelled out (`Session::ssh`).
fn ssh_command(
    key: Option<&Path>,
    known_hosts: &Path,
    strict: bool,
    stderr: &Path,
    timeout: Duration,
    pin: &SshPin,
) -> String {
    let seconds = timeout.as_secs().max(1);
    let identity = key.map_or_else(|| "none".to_string(), shell_quote);
    let checking = if strict { "yes" } else { "accept-new" };
    format!(
        "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o IdentityFile={identity} \
         -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking={checking} \
         -o UpdateHostKeys=no -o ConnectTimeout={seconds} -o ServerAliveInterval={seconds} -o ServerAliveCountMax=2 \
         -o HostName={address} -o HostKeyAlias={alias} -o LogLevel=ERROR 2>>{stderr}",
        known_hosts = shell_quote(known_hosts),
        stderr = shell_quote(stderr),
        address = pin.address,
        alias = shell_quote(Path::new(&pin.host_key_alias)),
    )
}

/// One network operation's setup: the checked URL, credentials, an isolated gix configuration,
/// and the temporary files ssh needs (key, known_hosts, its stderr), removed on drop.
pub(crate) struct Session {
    url: gix::Url,
    outbound: Outbound,
    auth: Auth,
    timeout: Duration,
    redactor: Redactor,
    overrides: Vec<String>,
    /// `ssh_command`'s invocation, when the remote is reached over ssh.
    ssh: Option<String>,
    ssh_stderr: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Session {
    pub(crate) fn new(outbound: &Outbound, url: &str, auth: &Auth, timeout: Duration) -> Result<Session, GitError> {
        let mut parsed = parse_url(url, auth)?;
        match parsed.scheme {
            // Read the path as checked, not as given: a symlink swapped afterwards changes nothing.
            Scheme::File => {
                let path = gix::path::from_bstr(gix::bstr::BStr::new(&parsed.path))
                    .map_err(|_| GitError::unreadable())?
                    .into_owned();
                parsed.path = gix::path::into_bstr(outbound.repository_path(&path)?)
                    .map_err(|_| GitError::unreadable())?
                    .into_owned();
            }
            // Names are checked by the HTTP client's resolver, git:// and ssh resolve below.
            _ => outbound.check_literal(parsed.host().unwrap_or_default())?,
        }
        let dir = tempfile::Builder::new()
            .prefix("fabricsync-git-")
            .tempdir()
            .map_err(|e| GitError::local("cannot create a temporary directory", e))?;
        // A password in the URL itself is a secret too (userinfo is stripped anyway).
        let mut secrets = auth.secrets();
        secrets.extend(parsed.password().map(str::to_owned));
        let mut session = Session {
            url: parsed,
            outbound: outbound.clone(),
            auth: auth.clone(),
            timeout,
            redactor: Redactor::new(secrets),
            overrides: Vec::new(),
            ssh: None,
            ssh_stderr: None,
            dir,
        };
        match session.url.scheme {
            Scheme::Ssh => session.prepare_ssh()?,
            // A redirect could lead anywhere, literal addresses included.
            Scheme::Http | Scheme::Https => session.overrides.push("http.followRedirects=false".into()),
            _ => {}
        }
        Ok(session)
    }

    fn prepare_ssh(&mut self) -> Result<(), GitError> {
        let write = |name: &str, content: &str| self.write_private(name, content);
        let (key, known_hosts) = match &self.auth {
            Auth::SshKey { private_key, known_hosts } => {
                // ssh rejects keys with CRLF line ends or without a final newline ("invalid format").
                let mut key = private_key.replace("\r\n", "\n");
                if !key.ends_with('\n') {
                    key.push('\n');
                }
                (Some(write("id_key", &key)?), known_hosts.clone())
            }
            _ => (None, None),
        };
        let strict = known_hosts.as_deref().is_some_and(|k| !k.trim().is_empty());
        let known_hosts = write("known_hosts", known_hosts.as_deref().unwrap_or_default())?;
        let stderr = write("ssh_stderr", "")?;
        let host = self.url.host().unwrap_or_default().to_owned();
        let port = self.url.port.unwrap_or(22);
        let address = self.outbound.resolve_blocking(&host, port)?[0].ip();
        // gix keeps an IPv6 host in brackets; known_hosts names it bare (bracketed with a port).
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host_key_alias = if port == 22 { bare.to_owned() } else { format!("[{bare}]:{port}") };
        let command = ssh_command(
            key.as_deref(),
            &known_hosts,
            strict,
            &stderr,
            self.timeout,
            &SshPin { address, host_key_alias },
        );
        self.ssh = Some(command);
        self.overrides.push("ssh.variant=ssh".into());
        self.ssh_stderr = Some(stderr);
        Ok(())
    }

    /// Options that ignore system, global and environment configuration, plus our overrides.
    pub(crate) fn open_options(&self) -> gix::open::Options {
        let mut overrides = self.overrides.clone();
        overrides.extend(self.ssh.as_ref().map(|ssh| format!("core.sshCommand={ssh} \"$@\"")));
        gix::open::Options::isolated().config_overrides(overrides)
    }

    /// Turns a gix failure into a classified, scrubbed error, using what ssh printed too.
    pub(crate) fn fail(&self, err: &gix::Error) -> GitError {
        self.classified(Evidence::from_gix(err))
    }

    fn classified(&self, mut evidence: Evidence) -> GitError {
        // The mirror's own disk, not the remote: told as it is for every scheme (`Mirror::fetch`
        // names the mirror), without the remote's words, which may quote a file:// path.
        if evidence.classify() == FailureKind::DiskFull {
            return GitError::DiskFull("no space left on device while receiving the pack".into());
        }
        if self.url.scheme == Scheme::File {
            return GitError::unreadable();
        }
        if let Some(path) = &self.ssh_stderr {
            let printed = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<_> = printed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            // ssh's and the remote git's own last words are the precise cause; put them first.
            let tail = lines[lines.len().saturating_sub(2)..].iter().map(|l| l.to_string());
            evidence.texts.splice(0..0, tail);
        }
        evidence.into_error(&self.redactor)
    }

    /// A git:// connection whose socket reads and writes time out, unlike gix's own, so a silent
    /// daemon cannot hold the worker thread forever.
    fn git_daemon_transport(&self) -> Result<Box<dyn Transport + Send>, GitError> {
        use gix::protocol::transport::client::git;
        let host = self.url.host().unwrap_or_default();
        let io_failure = |context: &str, err: std::io::Error| {
            self.classified(Evidence {
                texts: vec![context.to_owned(), err.to_string()],
                io_kinds: vec![err.kind()],
                ..Evidence::default()
            })
        };
        let address: SocketAddr = self.outbound.resolve_blocking(host, self.url.port.unwrap_or(9418))?[0];
        let stream = TcpStream::connect_timeout(&address, self.timeout)
            .map_err(|e| io_failure("could not connect to the git server", e))?;
        let read = stream.try_clone().map_err(|e| io_failure("could not use the connection", e))?;
        for result in [stream.set_read_timeout(Some(self.timeout)), stream.set_write_timeout(Some(self.timeout))] {
            result.map_err(|e| io_failure("could not set socket timeouts", e))?;
        }
        Ok(Box::new(git::blocking_io::Connection::new(
            read,
            stream,
            gix::protocol::transport::Protocol::V2,
            self.url.path.clone(),
            Some((host, self.url.port)),
            git::ConnectMode::Daemon,
            false,
        )))
    }

    /// A throwaway bare repository in the session's temporary directory, for listing refs.
    fn scratch_repo(&self) -> Result<gix::Repository, GitError> {
        gix::ThreadSafeRepository::init_opts(
            self.dir.path().join("probe.git"),
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            self.open_options(),
        )
        .map(|repo| repo.to_thread_local())
        .map_err(|e| GitError::local("cannot create a scratch repository", e))
    }

    pub(crate) fn remote<'r>(&self, repo: &'r gix::Repository) -> Result<gix::Remote<'r>, GitError> {
        repo.remote_at(self.url.clone()).map_err(|e| self.fail(&e))
    }

    /// Connects `remote` for fetching with our credentials and HTTP timeouts.
    pub(crate) fn connect<'s, 'r>(
        &'s self,
        remote: &'s gix::Remote<'r>,
    ) -> Result<Connection<'s, 's, 'r, Box<dyn Transport + Send>>, GitError> {
        let connection = match self.url.scheme {
            Scheme::Git => remote.to_connection_with_transport(self.git_daemon_transport()?),
            _ => remote.connect(Direction::Fetch).map_err(|e| self.fail(&e))?,
        };
        let url = self.url.to_bstring();
        let mut options =
            remote.repo().transport_options(AsRef::<gix::bstr::BStr>::as_ref(&url), None).map_err(|e| self.fail(&e))?;
        if let Some(http) = options.as_mut().and_then(|o| o.downcast_mut::<http::Options>()) {
            let timeout = self.timeout;
            let outbound = self.outbound.clone();
            // Every name the client resolves is checked, and no proxy resolves it for us.
            let backend = http::reqwest::Options {
                configure_client: Some(Box::new(move |builder| {
                    let resolver = Arc::new(CheckedResolver(outbound.clone()));
                    Ok(builder.timeout(timeout).connect_timeout(timeout).no_proxy().dns_resolver(resolver))
                })),
                configure_request: None,
            };
            http.backend = Some(Arc::new(std::sync::Mutex::new(backend)));
        }
        let connection = match options {
            Some(options) => connection.with_transport_options(options),
            None => connection,
        };
        let identity = self.auth.http_identity();
        Ok(connection.with_credentials(move |action| credentials(identity, action)))
    }

    /// `git push --porcelain <url> <refspec>` from `git_dir`, isolated as fetches are: nothing
    /// from the machine's configuration or environment, no prompts, the address the outbound
    /// policy checked pinned (curl's resolve for http, the URL itself for git://, ssh's HostName),
    /// HTTP credentials from a 0600 file read by a credential helper (never on a command line
    /// or in an environment), and the session's deadline.
    pub(crate) fn push(&self, git_dir: &Path, refspec: &str) -> Result<Pushed, GitError> {
        let mut config = self.overrides.clone();
        config.extend(self.ssh.as_ref().map(|ssh| format!("core.sshCommand={ssh}")));
        let host = self.url.host().unwrap_or_default().to_owned();
        let pinned =
            |port: u16| -> Result<IpAddr, GitError> { Ok(self.outbound.resolve_blocking(&host, port)?[0].ip()) };
        let bracketed = |ip: IpAddr| if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
        // The push runs no hooks: neither the mirror's nor, over file://, the target's.
        config.push("core.hooksPath=/dev/null".into());
        let url = match self.url.scheme {
            Scheme::Http | Scheme::Https => {
                check_git_pins_http()?;
                let port = self.url.port_or_default().unwrap_or(443);
                if host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_err() {
                    config.push(format!("http.curloptResolve={host}:{port}:{}", bracketed(pinned(port)?)));
                }
                strip_userinfo(&self.url.to_bstring().to_string())
            }
            Scheme::Git => {
                let port = self.url.port.unwrap_or(9418);
                format!("git://{}:{port}{}", bracketed(pinned(port)?), self.url.path)
            }
            _ => self.url.to_bstring().to_string(),
        };
        if let Some((username, password)) = self.auth.http_identity() {
            let file = self.write_private("credentials", &format!("username={username}\npassword={password}\n"))?;
            config.push("credential.helper=".into());
            config.push(format!("credential.helper=!f() {{ test \"$1\" = get && cat {}; }}; f", shell_quote(&file)));
        }
        let stdout = self.write_private("push_stdout", "")?;
        let stderr = self.write_private("push_stderr", "")?;
        let open = |path: &Path| std::fs::OpenOptions::new().append(true).open(path);
        let mut command = git_command();
        command
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .arg("--git-dir")
            .arg(git_dir);
        for entry in &config {
            command.arg("-c").arg(entry);
        }
        command.args(["push", "--porcelain", "--quiet", "--no-verify"]).arg(&url).arg(refspec);
        let io_failure = |context: &str, err: std::io::Error| {
            self.classified(Evidence {
                texts: vec![context.to_owned(), err.to_string()],
                io_kinds: vec![err.kind()],
                ..Evidence::default()
            })
        };
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(open(&stdout).map_err(|e| io_failure("cannot capture git's output", e))?)
            .stderr(open(&stderr).map_err(|e| io_failure("cannot capture git's output", e))?)
            .spawn()
            .map_err(|e| io_failure("cannot run git", e))?;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait().map_err(|e| io_failure("cannot wait for git", e))? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "the push timed out");
                    return Err(io_failure("pushing", timed_out));
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        if status.success() {
            return Ok(Pushed::Done);
        }
        // `!<tab>src:dst<tab>[rejected] (fetch first)`: the branch moved; so it does when the
        // remote's ref update lost a race (`[remote rejected] (failed to update ref)`, `(cannot
        // lock ref ...)`): another push is moving it right now. Any other `[remote rejected]` is
        // the server refusing (a hook, permissions), a failure like any other.
        if branch_moved(&read(&stdout)) {
            return Ok(Pushed::Moved);
        }
        let mut texts: Vec<String> =
            read(&stderr).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        texts.extend(read(&stdout).lines().filter(|l| l.starts_with('!')).map(str::to_owned));
        texts.insert(0, "the push failed".into());
        Err(self.classified(Evidence { texts, ..Evidence::default() }))
    }

    /// A file only we may read, in the session's temporary directory (removed with it).
    fn write_private(&self, name: &str, content: &str) -> Result<PathBuf, GitError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.dir.path().join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .map_err(|e| GitError::local(&format!("cannot write the temporary {name}"), e))?;
        Ok(path)
    }

    fn list_refs(&self) -> Result<(Option<String>, usize), GitError> {
        let repo = self.scratch_repo()?;
        let remote = self.remote(&repo)?;
        let options =
            gix::remote::ref_map::Options { prefix_from_spec_as_filter_on_remote: false, ..Default::default() };
        let (ref_map, _handshake) =
            self.connect(&remote)?.ref_map(gix::progress::Discard, options).map_err(|e| self.fail(&e))?;
        Ok(summarize(&ref_map.remote_refs))
    }
}

/// Whether `git push --porcelain` says the branch moved, or was being moved, meanwhile.
fn branch_moved(porcelain: &str) -> bool {
    const MOVED: [&str; 3] = ["\t[rejected]", "(failed to update ref)", "(cannot lock ref"];
    porcelain.lines().any(|l| l.starts_with('!') && MOVED.iter().any(|m| l.contains(m)))
}

/// The git command with nothing of the machine's environment but PATH: every use adds its own.
fn git_command() -> std::process::Command {
    let mut command = std::process::Command::new("git");
    command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("LC_ALL", "C");
    command
}

/// Older git ignores `http.curloptResolve` without a word, and curl would then resolve the name
/// itself, past the outbound policy: refuse to push over HTTP with such a git. The machine's git
/// does not change while the server runs: asked once.
fn check_git_pins_http() -> Result<(), GitError> {
    static VERSION: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let text = VERSION
        .get_or_init(|| {
            let out = git_command().arg("--version").output().map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .as_ref()
        .map_err(|e| GitError::local("cannot run git", e))?;
    let version: Vec<u32> =
        text.split_whitespace().nth(2).unwrap_or_default().split('.').take(2).map(|n| n.parse().unwrap_or(0)).collect();
    if version.as_slice() >= [2, 37].as_slice() {
        Ok(())
    } else {
        Err(GitError::Other(format!("pushing over http(s) needs git 2.37 or newer; this machine has {text}")))
    }
}

/// The HTTP client's resolver: the outbound policy's, so a refused address is never connected to.
struct CheckedResolver(Outbound);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let outbound = self.0.clone();
        Box::pin(async move {
            let addresses = outbound.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Our credentials "helper": answers with the configured identity, never prompts, and ignores
/// store/erase. A rejected identity makes the handshake fail as unauthenticated.
fn credentials(
    identity: Option<(&str, &str)>,
    action: gix::credentials::helper::Action,
) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
    match (action, identity) {
        (gix::credentials::helper::Action::Get(context), Some((username, password))) => {
            Ok(Some(gix::credentials::protocol::Outcome {
                identity: gix::sec::identity::Account {
                    username: username.to_owned(),
                    password: password.to_owned(),
                    oauth_refresh_token: None,
                },
                next: context.into(),
            }))
        }
        (gix::credentials::helper::Action::Get(_), None) => {
            Err(gix::error::Message::new("the remote requires credentials and none are configured")
                .unauthenticated_error())
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Auth {
        Auth::Token { username: String::new(), token: "t0ken".into() }
    }

    #[test]
    fn a_push_that_lost_a_race_is_a_moved_branch_and_a_refusal_is_not() {
        for line in [
            "!\trefs/heads/w:refs/heads/main\t[rejected] (fetch first)",
            "!\trefs/heads/w:refs/heads/main\t[remote rejected] (failed to update ref)",
            "!\trefs/heads/w:refs/heads/main\t[remote rejected] (cannot lock ref 'refs/heads/main': unable to create lock)",
        ] {
            assert!(branch_moved(&format!("To /srv/r.git\n{line}\nDone\n")), "{line}");
        }
        assert!(!branch_moved("!\trefs/heads/w:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n"));
        assert!(!branch_moved("=\trefs/heads/w:refs/heads/main\t[up to date]\nDone\n"));
    }

    #[test]
    fn urls_of_supported_schemes_pass() {
        for url in [
            "https://example.com/org/fabric.git",
            "http://127.0.0.1:8080/fabric.git",
            "ssh://git@example.com:2222/org/fabric.git",
            "git@example.com:org/fabric.git",
            "git://example.com/fabric.git",
            "file:///srv/git/fabric.git",
            "ssh://git@[fe80::1]/x.git",
            "https://[::1]:8443/x.git",
        ] {
            assert!(parse_url(url, &Auth::None).is_ok(), "{url}: {:?}", parse_url(url, &Auth::None));
        }
        assert!(parse_url("http://localhost:1/x.git", &token()).is_ok());
        assert!(parse_url("http://[::1]:1/x.git", &token()).is_ok());
    }

    #[test]
    fn bad_urls_are_invalid_without_echoing_secrets() {
        for (url, auth) in [
            ("", Auth::None),
            ("/srv/git/fabric.git", Auth::None),
            ("ext::sh -c evil", Auth::None),
            ("ftp://example.com/x.git", Auth::None),
            ("https:///x.git", Auth::None),
            ("ssh://-oProxyCommand=evil/x", Auth::None),
            // Issue 15: what the API now refuses is refused here too (rows stored before).
            ("javascript:alert(1)", Auth::None),
            ("data:text/plain,x", Auth::None),
            ("fd::17/foo", Auth::None),
            ("git@-oProxyCommand=x:foo", Auth::None),
            ("ssh://git@example.com:0/x.git", Auth::None),
            ("https://example.com:0/x.git", Auth::None),
            ("http://example.com/x.git", token()),
            ("http://user:pa55word@example.com/x.git", Auth::None),
            ("https://example.com/x.git\n", Auth::None),
        ] {
            let err = parse_url(url, &auth).expect_err(url);
            assert_eq!(err.kind(), FailureKind::InvalidUrl, "{url}");
            assert!(!err.to_string().contains("pa55word"), "{err}");
        }
    }

    #[test]
    fn a_repository_is_the_same_only_at_the_same_scheme_host_port_and_path() {
        let url = "https://git.example/org/fabric.git";
        assert!(same_repository(url, "https://GIT.example:443/org/fabric.git"));
        for other in [
            "http://git.example/org/fabric.git",
            "https://evil.example/org/fabric.git",
            "https://git.example:8443/org/fabric.git",
            "https://git.example/org/other.git",
            "not a url",
        ] {
            assert!(!same_repository(url, other), "{other}");
        }
        assert!(same_repository("git@h:org/r.git", "git@h:org/r.git"));
        assert!(!same_repository("git@h:org/r.git", "git@h:org/s.git"));
        assert_eq!(endpoint("git@h:org/r.git"), Some(Endpoint::Host { host: "h".into(), port: 22 }));
        assert_eq!(endpoint("https://[::1]:8443/r.git"), Some(Endpoint::Host { host: "[::1]".into(), port: 8443 }));
        assert_eq!(endpoint("file:///srv/r.git"), Some(Endpoint::File("/srv/r.git".into())));
    }

    #[test]
    fn ssh_command_is_isolated_and_quoted() {
        let pin = SshPin { address: "::1".parse().unwrap(), host_key_alias: "[git.example]:2222".into() };
        let cmd = ssh_command(
            Some(Path::new("/tmp/a b/key")),
            Path::new("/tmp/it's/known_hosts"),
            true,
            Path::new("/tmp/e"),
            Duration::from_millis(2500),
            &pin,
        );
        assert!(cmd.starts_with("ssh -F /dev/null -o BatchMode=yes"), "{cmd}");
        assert!(cmd.contains("IdentityFile='/tmp/a b/key'"), "{cmd}");
        assert!(cmd.contains(r"UserKnownHostsFile='/tmp/it'\''s/known_hosts'"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=yes") && cmd.contains("ConnectTimeout=2"), "{cmd}");
        assert!(cmd.contains("-o HostName=::1 -o HostKeyAlias='[git.example]:2222'"), "{cmd}");
        assert!(cmd.ends_with(" 2>>'/tmp/e'"), "{cmd}");
        let cmd = ssh_command(None, Path::new("/k"), false, Path::new("/e"), Duration::ZERO, &pin);
        assert!(cmd.contains("IdentityFile=none") && cmd.contains("accept-new") && cmd.contains("ConnectTimeout=1"));
    }

    #[test]
    fn summary_names_the_default_branch_and_counts_refs_without_head() {
        let id = gix::ObjectId::null(gix::hash::Kind::Sha1);
        let refs = vec![
            Ref::Symbolic { full_ref_name: "HEAD".into(), target: "refs/heads/main".into(), tag: None, object: id },
            Ref::Direct { full_ref_name: "refs/heads/main".into(), object: id },
            Ref::Peeled { full_ref_name: "refs/tags/v1".into(), tag: id, object: id },
        ];
        assert_eq!(summarize(&refs), (Some("main".into()), 2));
        assert_eq!(summarize(&[]), (None, 0));
    }

    #[test]
    fn deadline_reports_timeout_and_survives_panics() {
        let slow = with_deadline(
            Duration::from_millis(50),
            "sleeping",
            || (),
            |cancel| {
                while !cancel.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            },
        );
        assert_eq!(slow.map_err(|e| e.kind()), Err(FailureKind::Timeout));
        let panicked: Result<(), _> = with_deadline(Duration::from_secs(5), "panicking", || (), |_| panic!("boom"));
        assert_eq!(panicked.map_err(|e| e.kind()), Err(FailureKind::Other));
        let mut ticks = 0;
        let ok = with_deadline(Duration::from_secs(5), "quick", || ticks += 1, |_| Ok(7));
        assert_eq!(ok.ok(), Some(7));
        assert_eq!(ticks, 1);
    }
}
