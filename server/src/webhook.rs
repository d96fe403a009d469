//! The Git push webhook receiver on `--webhook-listen`: `POST /webhooks/<repository id>`.
//! A delivery is checked against that repository's sealed secret (core `webhook` tells the
//! forge and verifies), then every fabric on the repository whose ref the push moved gets a run
//! queued at once: a pull, or FULL with auto_apply, as auto-sync would. Every delivery is
//! audited (rpc `webhook/push`), refused ones too.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tonic::transport::server::Connected;
use tracing::{info, warn};
use uuid::Uuid;

use crate::auth::audit::AuditLog;
use crate::context::AppState;
use crate::db::audit::NewAuditEvent;
use crate::db::{self, fabrics, repositories};
use crate::sync::queue::{self, Enqueued};
use crate::transport::{self, tls::Reloading, Conn, PeerInfo};
use fabricsync_core::vocab::Trigger;
use fabricsync_core::webhook::{self as hook, Event, Rejection};

/// Push payloads list the commits pushed; GitHub caps deliveries at 25 MB, a fabric's pushes
/// are far smaller.
const MAX_BODY: usize = 4 << 20;
/// A client that sends its headers slower than this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const RPC: &str = "webhook/push";

/// Serves deliveries until shutdown: HTTPS with the server's certificate when it has one.
pub async fn serve(state: AppState, audit: AuditLog, listener: TcpListener, tls: Option<Arc<Reloading>>) {
    match tls {
        Some(tls) => accept(state, audit, transport::tls(listener, tls)).await,
        None => accept(state, audit, transport::plaintext(listener)).await,
    }
}

async fn accept<IO>(state: AppState, audit: AuditLog, incoming: impl Stream<Item = io::Result<Conn<IO>>>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = state.shutdown.clone();
    futures::pin_mut!(incoming);
    loop {
        let conn = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(conn)) => conn,
                Some(Err(e)) => {
                    warn!(error = %e, "webhook connection failed");
                    continue;
                }
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let peer = conn.connect_info();
        let (state, audit) = (state.clone(), audit.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (state, audit, peer) = (state.clone(), audit.clone(), peer.clone());
                async move { Ok::<_, Infallible>(handle(&state, &audit, &peer, request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(conn), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
    }
}

/// An answer: a status and a JSON body (`{"error": ...}` when refused).
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
}

impl Answer {
    fn refused(status: StatusCode, message: impl Into<String>) -> Answer {
        Answer { status, body: json!({ "error": message.into() }) }
    }
}

/// What the audit log records of a delivery.
struct Audited {
    forge: String,
    code: &'static str,
    message: String,
    targets: serde_json::Value,
}

async fn handle(
    state: &AppState,
    audit: &AuditLog,
    peer: &PeerInfo,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let (answer, audited) = match receive(state, request).await {
        Ok((answer, audited)) => (answer, Some(audited)),
        Err((answer, audited)) => (answer, audited),
    };
    if let Some(a) = audited {
        let event = NewAuditEvent {
            principal: "webhook".into(),
            actor: a.forge,
            rpc: RPC.into(),
            fabric_id: None,
            fabric_name: String::new(),
            targets: with_path(a.targets, &path),
            code: a.code.into(),
            message: a.message.chars().take(1024).collect(),
            peer: peer.remote.map(|r| r.to_string()).unwrap_or_default(),
        };
        // A flood of bad deliveries must not hold up the service (as refused gRPC calls).
        if event.code == "OK" {
            audit.record(event).await;
        } else {
            audit.record_or_drop(event);
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(answer.body.to_string())));
    *response.status_mut() = answer.status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// The audited targets with the URL path (naming the repository) the delivery came to.
fn with_path(mut targets: serde_json::Value, path: &str) -> serde_json::Value {
    if let Some(map) = targets.as_object_mut() {
        map.insert("path".into(), path.into());
    }
    targets
}

type Refusal = (Answer, Option<Audited>);

fn refusal(status: StatusCode, code: &'static str, forge: &str, message: String) -> Refusal {
    let audited = Audited { forge: forge.into(), code, message: message.clone(), targets: json!({}) };
    (Answer::refused(status, message), Some(audited))
}

/// Checks a delivery and queues its runs; what to answer and to audit.
async fn receive(state: &AppState, request: Request<Incoming>) -> Result<(Answer, Audited), Refusal> {
    // Requests that are not deliveries at all (scanners, a wrong URL) are answered, not audited.
    if request.method() != Method::POST {
        return Err((Answer::refused(StatusCode::METHOD_NOT_ALLOWED, "deliveries are POSTed"), None));
    }
    let Some(id) = request.uri().path().strip_prefix("/webhooks/").and_then(|id| Uuid::parse_str(id).ok()) else {
        return Err((Answer::refused(StatusCode::NOT_FOUND, "the webhook URL is /webhooks/<repository id>"), None));
    };
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let message = format!("the delivery is over {MAX_BODY} bytes or was cut off");
            return Err(refusal(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_ARGUMENT", "", message));
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = hook::delivery(header, &body).map_err(|e| match e {
        Rejection::Unsigned(forge) => refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", forge.word(), e.to_string()),
        e => refusal(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "", e.to_string()),
    })?;
    let forge = delivery.forge.word();

    let db_error = |e: db::DbError| {
        warn!(error = %e, "webhook: database unavailable");
        refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            forge,
            "the database is unavailable; redeliver later".into(),
        )
    };
    let mut conn = db::connect(&state.pool).await.map_err(db_error)?;
    let unknown = || refusal(StatusCode::NOT_FOUND, "NOT_FOUND", forge, format!("no repository {id} takes webhooks"));
    let repository = repositories::get(&mut conn, id).await.map_err(db_error)?.ok_or_else(unknown)?;
    let secret = match crate::credentials::webhook_secret(&repository, &state.keyring) {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(unknown()),
        Err(e) => {
            warn!(repository_id = %id, error = %e, "webhook: the repository's secret does not open");
            return Err(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                forge,
                "the webhook secret cannot be read".into(),
            ));
        }
    };
    hook::verify(&delivery, secret.expose().as_bytes()).map_err(|e| {
        warn!(repository_id = %id, forge, "webhook delivery refused: bad signature");
        refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", forge, e.to_string())
    })?;
    let (git_ref, after) = match hook::event(&delivery) {
        Ok(Event::Push { git_ref, after }) => (git_ref, after),
        Ok(Event::Ping) => {
            let targets = json!({ "repository": repository.name, "event": delivery.event });
            return Ok(ok(StatusCode::OK, forge, json!({ "ping": "ok" }), targets));
        }
        Ok(Event::Other) => {
            let targets = json!({ "repository": repository.name, "event": delivery.event });
            return Ok(ok(StatusCode::OK, forge, json!({ "ignored": delivery.event }), targets));
        }
        Err(e) => return Err(refusal(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", forge, e.to_string())),
    };

    let mut runs = Vec::new();
    for fabric in fabrics::using_repository(&mut conn, id).await.map_err(db_error)? {
        if fabric.paused || !hook::moves(&fabric.git_ref, &git_ref) {
            continue;
        }
        let request = queue::Request {
            fabric_id: fabric.id,
            mode: queue::automatic_mode(&fabric),
            trigger: Trigger::Webhook,
            dry_run: false,
            force: false,
            requested_ref: String::new(),
            targets: None,
            requested_by: format!("webhook:{forge}"),
            rollout_wait_seconds: 0,
        };
        let (run, already_active) = match queue::enqueue(&mut conn, &request).await.map_err(db_error)? {
            Enqueued::New(run) => (Some(run), false),
            Enqueued::AlreadyActive(run) => (run, true),
        };
        let run_id = run.map(|r| r.id.to_string()).unwrap_or_default();
        runs.push(json!({ "fabric": fabric.name, "run_id": run_id, "already_active": already_active }));
    }
    info!(repository_id = %id, forge, git_ref = %git_ref, runs = runs.len(), "webhook push");
    let queued: Vec<&str> = runs.iter().filter_map(|r| r["fabric"].as_str()).collect();
    let targets = json!({ "repository": repository.name, "ref": git_ref, "after": after, "fabrics": queued.join(",") });
    Ok(ok(StatusCode::ACCEPTED, forge, json!({ "ref": git_ref, "runs": runs }), targets))
}

fn ok(status: StatusCode, forge: &str, body: serde_json::Value, targets: serde_json::Value) -> (Answer, Audited) {
    (Answer { status, body }, Audited { forge: forge.into(), code: "OK", message: String::new(), targets })
}
