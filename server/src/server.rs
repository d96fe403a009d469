//! The gRPC server: services, health, reflection, per-request spans and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tracing::info;

use crate::api::{AppState, DriftApi, FabricApi, RepositoryApi, SyncApi};
use crate::config::{Common, ServeArgs};
use crate::crypto::Keyring;
use crate::db::DbPool;
use crate::proto::drift_service_server::DriftServiceServer;
use crate::proto::fabric_service_server::FabricServiceServer;
use crate::proto::repository_service_server::RepositoryServiceServer;
use crate::proto::sync_service_server::SyncServiceServer;

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: std::net::SocketAddr,
    pub git_timeout: Duration,
    pub shutdown_grace: Duration,
    pub sync_workers: usize,
    pub sync_lease: Duration,
    pub auto_sync_tick: Duration,
    pub self_heal_max_reverts: usize,
    pub self_heal_window: Duration,
    pub read_limits: crate::git::ReadLimits,
    pub data_dir: std::path::PathBuf,
    pub outbound: crate::outbound::Outbound,
}

impl Settings {
    pub fn new(args: &ServeArgs, common: &Common, outbound: crate::outbound::Outbound) -> Settings {
        Settings {
            listen: args.listen,
            git_timeout: Duration::from_secs(args.git_timeout_seconds),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            sync_workers: args.sync_workers,
            sync_lease: Duration::from_secs(args.sync_lease_seconds.max(1)),
            auto_sync_tick: Duration::from_secs(args.auto_sync_tick_seconds.max(1)),
            self_heal_max_reverts: args.self_heal_max_reverts.max(1),
            self_heal_window: Duration::from_secs(args.self_heal_window_seconds.max(1)),
            read_limits: crate::git::ReadLimits {
                max_file_bytes: args.max_file_bytes,
                max_total_bytes: args.max_total_bytes,
                max_files: args.max_files,
            },
            data_dir: common.data_dir.clone(),
            outbound,
        }
    }
}

/// Serves until SIGINT or SIGTERM; then stops accepting, ends open streams and lets
/// in-flight calls finish.
pub async fn serve(settings: Settings, database_url: &str, pool: DbPool, keyring: Arc<Keyring>) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut stopping = shutdown_rx.clone();
    let hub = crate::sync::hub::Hub::start(database_url.to_string(), shutdown_rx.clone());
    let state = AppState { pool, keyring, shutdown: shutdown_rx, settings: Arc::new(settings.clone()), hub, parse_cache: Default::default() };
    let mut workers = crate::sync::worker::spawn(state.clone());
    workers.push(crate::sync::schedule::spawn(state.clone(), settings.auto_sync_tick));
    workers.push(crate::watch::spawn(state.clone(), database_url.to_string()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RepositoryServiceServer<RepositoryApi>>().await;
    health.set_serving::<FabricServiceServer<FabricApi>>().await;
    health.set_serving::<SyncServiceServer<SyncApi>>().await;
    health.set_serving::<DriftServiceServer<DriftApi>>().await;

    // grpcurl and older clients speak v1alpha, newer ones v1: serve both.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let listener = TcpListener::bind(settings.listen).await?;
    info!(address = %listener.local_addr()?, "fabricsync listening");

    let shutdown = async move {
        wait_for_signal().await;
        info!("shutting down: finishing in-flight calls and closing streams");
        health.set_not_serving::<RepositoryServiceServer<RepositoryApi>>().await;
        let _ = shutdown_tx.send(true);
    };

    let serving = Server::builder()
        .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RepositoryServiceServer::new(RepositoryApi::new(state.clone())))
        .add_service(FabricServiceServer::new(FabricApi::new(state.clone())))
        .add_service(SyncServiceServer::new(SyncApi::new(state.clone())))
        .add_service(DriftServiceServer::new(DriftApi::new(state)))
        .serve_with_incoming_shutdown(crate::transport::plaintext(listener), shutdown);
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
    // Workers stop at their next safe point; an unfinished run is taken over after its lease.
    for worker in workers {
        let _ = tokio::time::timeout(grace, worker).await;
    }
    info!("fabricsync stopped");
    Ok(())
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
