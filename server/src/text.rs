//! Untrusted text, wherever it comes from (requests, the CLI): how messages quote it (bounded)
//! and what every stored text must not hold.

/// How much of a client-given value a message quotes.
pub const QUOTED_CHARS: usize = 64;

/// A client-given value as messages quote it: Debug-quoted (control characters escaped), cut
/// to its first [`QUOTED_CHARS`] characters with "…" after, so a message never echoes
/// unbounded input. Every message that quotes request input goes through this.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// PostgreSQL text cannot hold NUL: a NUL reaching a query comes back as a database error.
pub fn no_nul(value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    Ok(())
}
