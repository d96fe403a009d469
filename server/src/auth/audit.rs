//! The audit log writer: calls are recorded off the request path, in batches, and kept for
//! the configured retention.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::db::audit::NewAuditEvent;
use crate::db::DbPool;

const QUEUE: usize = 4096;
const BATCH: usize = 256;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<NewAuditEvent>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl AuditLog {
    /// Starts the writer; it ends (after writing what is queued) when every `AuditLog` is dropped.
    pub fn spawn(pool: DbPool, retention: Duration) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (AuditLog { tx, dropped: Default::default() }, tokio::spawn(write(pool, rx, retention)))
    }

    /// Queues an event; waits when the writer is behind, so nothing is dropped silently.
    pub async fn record(&self, event: NewAuditEvent) {
        if self.tx.send(event).await.is_err() {
            tracing::error!("audit log writer stopped; an audit event was not recorded");
        }
    }

    /// Queues a refusal's event unless the writer is behind: a flood of refused calls (bad
    /// tokens) must not hold up the service. What is dropped is counted in the log.
    pub fn record_or_drop(&self, event: NewAuditEvent) {
        if self.tx.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit log queue full: refused calls are not all recorded");
            }
        }
    }
}

async fn write(pool: DbPool, mut rx: mpsc::Receiver<NewAuditEvent>, retention: Duration) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                store(&pool, &batch).await;
                batch.clear();
            }
            _ = prune.tick() => prune_old(&pool, retention).await,
        }
    }
}

/// Writes a batch, retrying a few times over a short database outage.
async fn store(pool: &DbPool, batch: &[NewAuditEvent]) {
    for attempt in 1..=5 {
        let result = async {
            let mut conn = crate::db::connect(pool).await?;
            crate::db::audit::insert_batch(&mut conn, batch).await
        };
        match result.await {
            Ok(()) => return,
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, attempt, "writing audit events failed; retrying");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => tracing::error!(error = %e, lost = batch.len(), "audit events could not be written"),
        }
    }
}

async fn prune_old(pool: &DbPool, retention: Duration) {
    let Ok(retention) = chrono::TimeDelta::from_std(retention) else { return };
    let result = async {
        let mut conn = crate::db::connect(pool).await?;
        crate::db::audit::prune(&mut conn, chrono::Utc::now() - retention).await
    };
    match result.await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "audit events past their retention removed"),
        Err(e) => tracing::warn!(error = %e, "removing old audit events failed"),
    }
}
