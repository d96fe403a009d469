//! Process memory: glibc keeps freed heap pages for reuse, so a process that once held a large
//! pull or import, or served a burst of calls, stays at its peak resident size while idle. After
//! each run, and once a minute, the freed pages are handed back to the OS.

/// Returns free heap memory to the OS (glibc's `malloc_trim`; it may take a while on a large
/// heap: call it off the async threads); a no-op elsewhere.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hands free heap back once a minute (the memory of a burst of calls, not only of runs), until
/// the server shuts down.
pub fn spawn_trimmer(mut shutdown: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => drop(tokio::task::spawn_blocking(release_free_heap)),
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    })
}
