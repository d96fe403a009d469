//! One LISTEN connection per process fans event-log notifications out to every stream in this
//! process, so a client of process A follows a run executed by process B. Notifications only
//! wake readers; the event log is the source of truth, so a lost notification costs latency
//! (readers also poll), never an event.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

use crate::db::events::{Notice, CHANNEL};

/// How long a reader waits for a notification before it reads the log anyway.
pub const POLL: Duration = Duration::from_secs(2);
const BUFFER: usize = 4096;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Notice>,
}

impl Hub {
    /// Starts listening on `database_url` until `shutdown` turns true; reconnects with backoff.
    pub fn start(database_url: String, mut shutdown: watch::Receiver<bool>) -> Hub {
        let (tx, _) = broadcast::channel(BUFFER);
        let hub = Hub { tx: tx.clone() };
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                tokio::select! {
                    ended = listen(&database_url, &tx) => {
                        if let Err(e) = ended {
                            warn!(error = %e, "event listener lost its connection; reconnecting");
                        }
                    }
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
        hub
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }
}

/// Errors say what failed without the driver's text, which may quote the URL.
async fn listen(database_url: &str, tx: &broadcast::Sender<Notice>) -> Result<(), &'static str> {
    let mut conn = super::establish(database_url).await.map_err(|_| "could not connect")?;
    diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn).await.map_err(|_| "LISTEN failed")?;
    debug!("listening for event notifications");
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let notification = notification.map_err(|_| "notification stream failed")?;
        if let Some(notice) = Notice::parse(&notification.payload) {
            // No receivers is fine: nobody is streaming right now.
            let _ = tx.send(notice);
        }
    }
    Ok(())
}

/// Waits until a notice matching `wanted` arrives or `POLL` passes; a lagged receiver (too many
/// notices) simply returns so the caller reads the log.
pub async fn wait_for(rx: &mut broadcast::Receiver<Notice>, wanted: impl Fn(&Notice) -> bool) {
    let deadline = tokio::time::sleep(POLL);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(notice) if wanted(&notice) => return,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => { deadline.as_mut().await; return }
            },
            _ = &mut deadline => return,
        }
    }
}
