//! The trace spans of calls and runs, and the W3C trace context that links them: a span per
//! gRPC call (`rpc_span`, its parent the caller's `traceparent`), per run (its parent the call
//! that queued it, its `traceparent` kept in the run's row) and per run stage
//! (`metrics::StageTimer`). Exported only with `--otlp-endpoint` (`telemetry`); without it these
//! are plain `tracing` spans. A leaf: the others call it.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span of one gRPC call; its parent is the caller's `traceparent`, when it sent one. Named
/// by `method` (`package.Service/Method`) only when the path is one of ours (it is the caller's
/// text).
pub fn rpc_span(request: &http::Request<()>, method: Option<&'static str>) -> tracing::Span {
    let path = request.uri().path();
    let method = method.unwrap_or("unknown");
    let (service, name) = method.split_once('/').unwrap_or(("unknown", method));
    let span = tracing::info_span!(
        "grpc",
        method = %path,
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = name,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    let _ = span.set_parent(propagator().extract(&Headers(request.headers())));
    span
}

/// Records a call's end on its span: the gRPC code, and an error status for the codes that
/// mean the server failed (OpenTelemetry's rule for server spans).
pub fn rpc_ended(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    ) {
        span.record("otel.status_code", "error");
    }
}

/// The W3C `traceparent` of the current span, to carry into work done later (a queued run);
/// None when traces are off or the span is not sampled.
pub fn current_traceparent() -> Option<String> {
    let mut carrier = TraceParent(None);
    propagator().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier.0
}

/// Makes `span` a child of a stored `traceparent` (nothing when it is absent or malformed).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let _ = span.set_parent(propagator().extract(&TraceParent(Some(value.to_string()))));
    }
}

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// Request headers as a propagator's carrier.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

/// A lone `traceparent` as a carrier (W3C `tracestate` is not kept for runs).
struct TraceParent(Option<String>);

impl Injector for TraceParent {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

impl Extractor for TraceParent {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0.as_deref()).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a run keeps is what the call's context was, and nothing when it is not W3C's.
    #[test]
    fn a_traceparent_is_carried_unchanged_and_a_malformed_one_is_dropped() {
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = propagator().extract(&TraceParent(Some(sent.to_string())));
        let mut kept = TraceParent(None);
        propagator().inject_context(&cx, &mut kept);
        assert_eq!(kept.0.as_deref(), Some(sent));

        for malformed in ["", "00-xyz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
            let cx = propagator().extract(&TraceParent(Some(malformed.to_string())));
            let mut kept = TraceParent(None);
            propagator().inject_context(&cx, &mut kept);
            assert_eq!(kept.0, None, "{malformed:?}");
        }
    }

    #[test]
    fn without_an_exporter_there_is_no_context_to_carry() {
        assert_eq!(current_traceparent(), None);
    }
}
