//! Cost of authentication and authorization: the same gRPC requests through the service with
//! and without the auth layer in front, in the same process and run, on a real PostgreSQL
//! (token rows come from it, then from the layer's cache, as in a server).
//! Run with `scripts/bench.sh auth`; prints a Markdown table.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabricsync::auth::layer::{AuthLayer, AuthSettings, Gate};
use fabricsync::auth::manage::{self, TokenSpec};
use fabricsync::auth::{authenticator, limits, Role};
use fabricsync::proto::*;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};

const CALLS: usize = 20_000;

/// Stands for the services: answers every request with an OK gRPC response after reading
/// its body, so both sides of the comparison do the same work but the layer's.
#[derive(Clone)]
struct Echo;

impl Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let _ = req.into_body().collect().await;
            let mut response = http::Response::new(Body::empty());
            response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
            Ok(response)
        })
    }
}

fn request(path: &str, token: &str, message: &impl Message) -> http::Request<Body> {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(bytes.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&bytes);
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(frame))))
        .expect("request");
    if !token.is_empty() {
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    }
    req.extensions_mut().insert(fabricsync::transport::PeerInfo {
        remote: Some("127.0.0.1:40000".parse().expect("addr")),
        client_cert: None,
    });
    req
}

/// Per-call latencies of `calls` requests made by `make`, through `service`.
async fn measure<S, B>(service: S, calls: usize, make: impl Fn() -> http::Request<Body>) -> Vec<Duration>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
{
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let req = make();
        let started = Instant::now();
        let response = service.clone().oneshot(req).await.expect("infallible");
        let ok = response.headers().get("grpc-status").is_none_or(|s| s == "0");
        times.push(started.elapsed());
        assert!(ok, "refused: {:?}", response.headers());
        drop(response);
    }
    times.sort();
    times
}

fn pct(times: &[Duration], p: f64) -> Duration {
    times[((times.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (_pg, url) = common::database().await;
    fabricsync::db::migrate(&url).await.expect("migrate");
    let pool = fabricsync::db::pool(&url, 4).expect("pool");
    let keyring =
        fabricsync::crypto::Keyring::parse(&fabricsync::crypto::Keyring::generate_key_line("bench")).expect("keys");
    let mut conn = fabricsync::db::connect(&pool).await.expect("connection");
    let pepper = Arc::new(manage::pepper(&mut conn, &keyring).await.expect("pepper"));
    let token = |name: &str, fabrics: Vec<String>| TokenSpec {
        name: name.into(),
        role: Some(Role::Admin),
        fabrics,
        ..Default::default()
    };
    let (_, admin) = manage::create(&mut conn, &pepper, &token("bench-admin", vec![]), "bench").await.expect("token");
    let (_, scoped) = manage::create(&mut conn, &pepper, &token("bench-scoped", vec!["bench-*".into()]), "bench")
        .await
        .expect("token");
    // A fabric for the scoped token's lookups.
    let repo = uuid::Uuid::new_v4();
    let fabric = uuid::Uuid::new_v4();
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!("INSERT INTO repositories (id, name, url, provider, auth_type) VALUES ('{repo}', 'bench', 'https://example.org/x.git', 'generic', 'none')"))
        .execute(&mut conn)
        .await
        .expect("repository");
    diesel::sql_query(format!("INSERT INTO fabrics (id, name, repository_id, git_ref, gitops_path) VALUES ('{fabric}', 'bench-1', '{repo}', 'main', 'fabric')"))
        .execute(&mut conn)
        .await
        .expect("fabric");
    drop(conn);

    let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let invalid = authenticator::spawn_invalid_refresher(pool.clone(), shutdown);
    let (audit, _writer) = fabricsync::auth::audit::AuditLog::spawn(pool.clone(), Duration::from_secs(86_400));
    let gate = Gate {
        authenticator: authenticator::Authenticator::new(pool.clone(), pepper, invalid, None),
        limits: limits::Limits::new(limits::LimitSettings { requests_per_second: 0, burst: 0, max_streams: 1_000_000 }),
        audit,
        pool: pool.clone(),
        settings: AuthSettings { public_reflection: false, max_message_bytes: 4 << 20 },
        fabric_names: Default::default(),
    };
    let guarded = AuthLayer::new(Arc::new(gate)).layer(Echo);
    let get = GetFabricRequest { id: fabric.to_string() };
    let watch = WatchFabricEventsRequest { fabric_id: fabric.to_string(), ..Default::default() };
    const GET: &str = "/fabricsync.v1.FabricService/GetFabric";
    const WATCH: &str = "/fabricsync.v1.SyncService/WatchFabricEvents";

    // Warm both paths (the token cache, the connection pool).
    measure(guarded.clone(), 200, || request(GET, admin.expose(), &get)).await;
    measure(guarded.clone(), 200, || request(GET, scoped.expose(), &get)).await;

    let cases: Vec<(&str, Vec<Duration>, Vec<Duration>)> = vec![
        (
            "unary GetFabric, unscoped admin token",
            measure(Echo, CALLS, || request(GET, "", &get)).await,
            measure(guarded.clone(), CALLS, || request(GET, admin.expose(), &get)).await,
        ),
        (
            "unary GetFabric, fabric-scoped token (reads the request, looks the fabric up)",
            measure(Echo, CALLS / 4, || request(GET, "", &get)).await,
            measure(guarded.clone(), CALLS / 4, || request(GET, scoped.expose(), &get)).await,
        ),
        (
            "stream open WatchFabricEvents, unscoped admin token",
            measure(Echo, CALLS, || request(WATCH, "", &watch)).await,
            measure(guarded.clone(), CALLS, || request(WATCH, admin.expose(), &watch)).await,
        ),
    ];
    println!(
        "| call ({CALLS} calls, scoped: {}) | without auth p50 / p99 | with auth p50 / p99 | added p50 / p99 |",
        CALLS / 4
    );
    println!("|---|---|---|---|");
    for (name, without, with) in cases {
        let (p50, p99) = (pct(&without, 0.5), pct(&without, 0.99));
        let (a50, a99) = (pct(&with, 0.5), pct(&with, 0.99));
        println!(
            "| {name} | {} / {} | {} / {} | {} / {} |",
            us(p50),
            us(p99),
            us(a50),
            us(a99),
            us(a50.saturating_sub(p50)),
            us(a99.saturating_sub(p99))
        );
    }
}
