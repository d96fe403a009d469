//! Process memory: glibc keeps freed heap pages for reuse, so a process that once held a large
//! pull or import stays at its peak resident size while idle. After each run the freed pages
//! are handed back to the OS.

/// Returns free heap memory to the OS (glibc's `malloc_trim`); a no-op elsewhere.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
