//! The gRPC server: services, health, reflection, per-request spans and graceful shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tracing::info;

use crate::api::{AccessApi, DriftApi, FabricApi, InventoryApi, RepositoryApi, SyncApi, WriteApi};
use crate::context::{AppState, Settings};
use crate::crypto::Keyring;
use crate::db::DbPool;
use crate::proto::access_service_server::AccessServiceServer;
use crate::proto::drift_service_server::DriftServiceServer;
use crate::proto::fabric_service_server::FabricServiceServer;
use crate::proto::inventory_service_server::InventoryServiceServer;
use crate::proto::repository_service_server::RepositoryServiceServer;
use crate::proto::sync_service_server::SyncServiceServer;
use crate::proto::write_service_server::WriteServiceServer;

/// Serves until SIGINT or SIGTERM; then stops accepting, ends open streams and lets
/// in-flight calls finish.
pub async fn serve(
    settings: Settings,
    database_url: &str,
    pool: DbPool,
    keyring: Arc<Keyring>,
    pepper: crate::auth::token::Pepper,
) -> anyhow::Result<()> {
    // Certificate problems stop the start, before anything runs.
    let tls = match &settings.tls {
        Some(files) => Some(crate::transport::tls::Reloading::load(files.clone()).await?),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut stopping = shutdown_rx.clone();
    let hub = crate::db::hub::Hub::start(database_url.to_string(), shutdown_rx.clone());
    let state = AppState {
        pool,
        keyring,
        token_pepper: Arc::new(pepper),
        shutdown: shutdown_rx,
        settings: Arc::new(settings.clone()),
        hub,
        parse_cache: Default::default(),
        process: format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]).into(),
        metrics: crate::metrics::global(),
    };
    let (gate, audit_writer) = gate(&settings, &state);
    let mut workers = crate::sync::worker::spawn(state.clone(), database_url).await?;
    workers.push(crate::sync::schedule::spawn(state.clone(), settings.auto_sync_tick));
    workers.push(crate::memory::spawn_trimmer(state.shutdown.clone()));
    workers.push(crate::sync::watch::spawn(state.clone(), database_url.to_string()));
    if let Some(addr) = settings.webhook_listen {
        let listener = TcpListener::bind(addr).await?;
        info!(address = %listener.local_addr()?, tls = tls.is_some(), "webhook receiver listening");
        let tls = tls.as_ref().map(|(tls, _)| tls.clone());
        workers.push(tokio::spawn(crate::webhook::serve(state.clone(), gate.audit.clone(), listener, tls)));
    }

    let metrics = match settings.metrics_listen {
        Some(addr) => bind_metrics(addr, settings.metrics_listen_defaulted).await?,
        None => None,
    };
    if let Some(listener) = metrics {
        let local = listener.local_addr()?;
        info!(address = %local, loopback = local.ip().is_loopback(), "metrics listening (GET /metrics, plaintext, unauthenticated)");
        let sampled = state.clone();
        let refresh: crate::metrics::Refresh = Arc::new(move || {
            let state = sampled.clone();
            Box::pin(async move { sample_gauges(&state).await })
        });
        workers.push(tokio::spawn(crate::metrics::serve(state.metrics, listener, refresh, state.shutdown.clone())));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, true).await;

    // grpcurl and older clients speak v1alpha, newer ones v1: serve both.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    if let Some((tls, loaded)) = &tls {
        workers.push(tls.clone().spawn_watch(*loaded, settings.tls_reload, state.shutdown.clone()));
    }
    if let Some(addr) = settings.health_listen {
        let listener = TcpListener::bind(addr).await?;
        info!(address = %listener.local_addr()?, "health service listening (plaintext)");
        // Reflection of the health service alone, so grpcurl can call it there too.
        let health_reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let health_only = Server::builder().add_service(health_service.clone()).add_service(health_reflection);
        let mut stopping = state.shutdown.clone();
        workers.push(tokio::spawn(async move {
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            if let Err(e) = health_only.serve_with_incoming_shutdown(crate::transport::plaintext(listener), stop).await
            {
                tracing::warn!(error = %e, "health listener stopped");
            }
        }));
    }

    let listener = TcpListener::bind(settings.listen).await?;
    info!(address = %listener.local_addr()?, tls = tls.is_some(), client_ca = settings.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "fabricsync listening");

    let shutdown = async move {
        wait_for_signal().await;
        info!("shutting down: finishing in-flight calls and closing streams");
        set_health(&health, false).await;
        let _ = shutdown_tx.send(true);
    };

    let max = settings.max_message_bytes;
    let router = Server::builder()
        .trace_fn(|request| {
            crate::traces::rpc_span(request, crate::auth::rules::rule(request.uri().path()).map(|rule| rule.method))
        })
        .timeout(settings.request_timeout)
        // Outermost: calls the auth layer refuses are counted too.
        .layer(crate::metrics::GrpcLayer::new(state.metrics, grpc_method))
        .layer(crate::auth::layer::AuthLayer::new(gate))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RepositoryServiceServer::new(RepositoryApi::new(state.clone())).max_decoding_message_size(max))
        .add_service(FabricServiceServer::new(FabricApi::new(state.clone())).max_decoding_message_size(max))
        .add_service(SyncServiceServer::new(SyncApi::new(state.clone())).max_decoding_message_size(max))
        .add_service(DriftServiceServer::new(DriftApi::new(state.clone())).max_decoding_message_size(max))
        .add_service(WriteServiceServer::new(WriteApi::new(state.clone())).max_decoding_message_size(max))
        .add_service(InventoryServiceServer::new(InventoryApi::new(state.clone())).max_decoding_message_size(max))
        .add_service(AccessServiceServer::new(AccessApi::new(state)).max_decoding_message_size(max));
    let serving = async move {
        match tls {
            Some((tls, _)) => router.serve_with_incoming_shutdown(crate::transport::tls(listener, tls), shutdown).await,
            None => router.serve_with_incoming_shutdown(crate::transport::plaintext(listener), shutdown).await,
        }
    };
    // Clients may keep idle connections open after GOAWAY; do not wait on them forever.
    let grace = settings.shutdown_grace;
    let drain_deadline = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = serving => served?,
        _ = drain_deadline => tracing::warn!(grace_seconds = grace.as_secs(), "connections still open after the grace period; stopping anyway"),
    }
    // Workers stop at their next safe point and hand an unfinished run back to the queue.
    // The audit writer ends once the server (holding its queue) is gone, after writing it out.
    workers.push(audit_writer);
    for worker in workers {
        let _ = tokio::time::timeout(grace, worker).await;
    }
    info!("fabricsync stopped");
    Ok(())
}

/// The auth layer's parts: token and certificate authentication, limits, the audit log.
fn gate(settings: &Settings, state: &AppState) -> (Arc<crate::auth::layer::Gate>, tokio::task::JoinHandle<()>) {
    use crate::auth::{authenticator, layer};
    let certificates = settings.client_cert_identities.clone();
    let invalid = authenticator::spawn_invalid_refresher(state.pool.clone(), state.shutdown.clone());
    let (audit, writer) = crate::auth::audit::AuditLog::spawn(state.pool.clone(), settings.audit_retention);
    let gate = layer::Gate {
        authenticator: authenticator::Authenticator::new(
            state.pool.clone(),
            state.token_pepper.clone(),
            invalid,
            certificates,
        ),
        limits: crate::auth::limits::Limits::new(settings.limits),
        audit,
        pool: state.pool.clone(),
        settings: layer::AuthSettings {
            public_reflection: settings.public_reflection,
            max_message_bytes: settings.max_message_bytes,
        },
        fabric_names: Default::default(),
    };
    (Arc::new(gate), writer)
}

/// The metric labels of a request path: the method as the rules table names it (so unknown
/// paths share one label), and whether it streams.
/// The metrics listener; None when the address is only the default and its port is taken
/// (another exporter on the host): the server runs without metrics and says so.
async fn bind_metrics(addr: std::net::SocketAddr, defaulted: bool) -> std::io::Result<Option<TcpListener>> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if defaulted => {
            tracing::warn!(address = %addr, error = %e, "the default metrics address is taken: no metrics (choose one with --metrics-listen)");
            Ok(None)
        }
        Err(e) => Err(std::io::Error::new(e.kind(), format!("--metrics-listen {addr}: {e}"))),
    }
}

fn grpc_method(path: &str) -> Option<(&'static str, crate::metrics::CallType)> {
    use crate::metrics::CallType;
    crate::auth::rules::rule(path)
        .map(|rule| (rule.method, if rule.streaming { CallType::Stream } else { CallType::Unary }))
}

/// What the metrics read at scrape time: the run queue and the fabrics (two queries), the
/// pool, the circuit breakers. A failed read leaves the last values and is logged.
async fn sample_gauges(state: &AppState) {
    let metrics = state.metrics;
    let status = state.pool.status();
    metrics.set_pool(crate::metrics::PoolGauges {
        max: status.max_size,
        in_use: status.size.saturating_sub(status.available),
        idle: status.available,
        waiting: status.waiting,
    });
    metrics.set_circuits_open(crate::cluster::breaker::breakers().open_count(std::time::Instant::now()));
    let read = async {
        let mut conn = crate::db::connect(&state.pool).await?;
        let queue = crate::db::runs::queue_gauges(&mut conn).await?;
        let fabrics = crate::db::fabrics::metric_gauges(&mut conn).await?;
        Ok::<_, crate::db::DbError>((queue, fabrics))
    };
    match read.await {
        Ok((queue, fabrics)) => {
            metrics.set_queue(queue);
            metrics.set_fabrics(&fabrics);
        }
        Err(e) => tracing::warn!(error = %e, "could not read the metrics' gauges from the database"),
    }
}

/// The overall status (`""`, what probes check) and every service's go together.
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
    for service in [
        "",
        <RepositoryServiceServer<RepositoryApi> as tonic::server::NamedService>::NAME,
        <FabricServiceServer<FabricApi> as tonic::server::NamedService>::NAME,
        <SyncServiceServer<SyncApi> as tonic::server::NamedService>::NAME,
        <DriftServiceServer<DriftApi> as tonic::server::NamedService>::NAME,
        <WriteServiceServer<WriteApi> as tonic::server::NamedService>::NAME,
        <AccessServiceServer<AccessApi> as tonic::server::NamedService>::NAME,
    ] {
        health.set_service_status(service, status).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_default_metrics_port_is_skipped_and_a_taken_given_one_is_an_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr");
        assert!(bind_metrics(addr, true).await.expect("defaulted").is_none());
        let err = bind_metrics(addr, false).await.expect_err("given");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&format!("--metrics-listen {addr}")), "{err}");
        drop(taken);
        assert!(bind_metrics(addr, false).await.expect("free again").is_some());
    }
}
