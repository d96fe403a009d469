//! Structured logs with `tracing`, pretty for people or JSON for collectors.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("--log {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Stderr);
    let result = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// Log lines go to stderr without the secrets of the connections open now: libraries (the
/// Kubernetes client among them) log what remotes answered, and an answer may echo a token.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { bytes: Vec::new(), scrub: true }
    }

    /// The database client logs our own statements and their parameters at length (whole live
    /// objects): nothing a remote answered, and what we store is scrubbed before, so those lines
    /// are not searched (it would slow every write down).
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line { bytes: Vec::new(), scrub: !meta.target().starts_with("tokio_postgres") }
    }
}

/// One log line, written when the formatter is done with it.
struct Line {
    bytes: Vec<u8>,
    scrub: bool,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let mut stderr = std::io::stderr();
        let _ = match self.scrub {
            true => stderr.write_all(crate::redact::scrub_live(&String::from_utf8_lossy(&self.bytes)).as_bytes()),
            false => stderr.write_all(&self.bytes),
        };
    }
}
