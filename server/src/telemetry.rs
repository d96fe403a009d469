//! Structured logs with `tracing`, pretty for people or JSON for collectors; and, with
//! `--otlp-endpoint`, the server's own spans (see `traces`) exported as OpenTelemetry traces
//! over OTLP/gRPC. Only spans of this crate are exported, never log events or the libraries'
//! spans: those may carry what a remote answered, and our spans' fields are ids, names and codes.

use std::io::Write;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogFormat, Otlp};

/// How long an export may take, and how long the end of the process waits for the last spans.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The installed subscriber; `shutdown` sends the spans still buffered.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub async fn shutdown(self) {
        let Some(provider) = self.traces else { return };
        // The SDK's shutdown blocks until the last batch is sent.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(EXPORT_TIMEOUT)).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("fabricsync: sending the last trace spans: {e}");
        }
    }
}

/// Installs the log subscriber, and the trace exporter when `otlp` is given. Runs inside the
/// Tokio runtime: the exporter's gRPC channel lives on it.
pub fn init(format: LogFormat, filter: &str, otlp: Option<&Otlp>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("--log {filter:?}: {e}"))?;
    let logs = tracing_subscriber::fmt::layer().with_writer(Stderr);
    let logs = match format {
        LogFormat::Pretty => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).boxed(),
    };
    let traces = otlp.map(tracer_provider).transpose()?;
    let exported = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("fabricsync"))
            .with_location(false)
            .with_threads(false)
            .with_filter(filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("fabricsync") && *meta.level() <= tracing::Level::INFO
            }))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(exported)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok(Telemetry { traces })
}

fn tracer_provider(otlp: &Otlp) -> anyhow::Result<SdkTracerProvider> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp.endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT);
    if otlp.endpoint.scheme() == "https" {
        let tls = tonic::transport::ClientTlsConfig::new();
        let tls = match &otlp.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("--otlp-ca-file {}: {e}", path.display()))?;
                tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
            }
            None => tls.with_webpki_roots(),
        };
        exporter = exporter.with_tls_config(tls);
    }
    let exporter = exporter.build().map_err(|e| anyhow::anyhow!("--otlp-endpoint {}: {e}", otlp.endpoint))?;
    let instance =
        format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "fabricsync".to_string()), std::process::id());
    let resource = Resource::builder()
        .with_service_name("fabricsync")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", instance),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(otlp.sample_ratio))))
        .with_resource(resource)
        .build())
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
