//! Watch machinery shared by the backends.
//!
//! Writers publish every committed event to a [`Hub`] (a tokio broadcast
//! channel) in revision order. A watch is one task that
//! 1. subscribes to the hub and learns the last published revision `R`
//!    atomically (so every event after `R` will arrive live),
//! 2. replays the stored history in `(from, R]` from the backend,
//! 3. forwards live events after `R`.
//!
//! If the watcher is slow and the broadcast ring overwrites events it has not
//! read (`Lagged`), nothing is lost: the task re-subscribes and replays the gap
//! from the stored history again. Only when that history has been compacted
//! does the watcher get a `Compacted` error (and the stream ends).

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{broadcast, mpsc};

use crate::{Event, Revision, StoreError, WatchStream};

/// Events read from history per backend call while replaying.
const REPLAY_BATCH: usize = 512;
/// Buffer between the watch task and the consumer.
const STREAM_BUFFER: usize = 256;
/// Default broadcast ring size (events a watcher may lag before it has to
/// catch up from the stored history).
pub(crate) const DEFAULT_WATCH_CAPACITY: usize = 4096;

pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
    /// Last published revision; the lock makes subscribe+read atomic with publish.
    published: Mutex<Revision>,
}

impl Hub {
    pub(crate) fn new(capacity: usize, current: Revision) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Hub {
            tx,
            published: Mutex::new(current),
        }
    }

    /// Publish a committed event. Callers publish in revision order.
    pub(crate) fn publish(&self, event: Event) {
        let mut published = lock(&self.published);
        *published = event.revision();
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(event));
    }

    /// Publish the committed events of one batch, in revision order, under
    /// one lock (a watcher subscribes before or after all of them).
    pub(crate) fn publish_all(&self, events: impl IntoIterator<Item = Event>) {
        let mut published = lock(&self.published);
        for event in events {
            *published = event.revision();
            let _ = self.tx.send(Arc::new(event));
        }
    }

    fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, Revision) {
        let published = lock(&self.published);
        (self.tx.subscribe(), *published)
    }
}

/// Lock ignoring poisoning: the guarded data (a revision) cannot be left half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a backend offers to the watch task.
#[async_trait::async_trait]
pub(crate) trait HistorySource: Send + Sync + 'static {
    fn hub(&self) -> &Hub;
    /// Events under `prefix` with `after < revision <= upto`, in revision
    /// order, at most `limit`. `Compacted` if `after` is below the compaction point.
    async fn history(
        &self,
        prefix: &str,
        after: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
}

/// Start a watch task. It holds only a weak reference so that dropping the
/// store ends every watch (the hub's sender goes away with the store).
pub(crate) fn spawn_watch<H: HistorySource>(
    source: &Arc<H>,
    prefix: &str,
    from: Revision,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let weak = Arc::downgrade(source);
    let prefix = prefix.to_string();
    tokio::spawn(async move {
        run_watch(weak, prefix, from, tx).await;
    });
    rx
}

async fn run_watch<H: HistorySource>(
    source: Weak<H>,
    prefix: String,
    from: Revision,
    tx: mpsc::Sender<Result<Event, StoreError>>,
) {
    // Everything at or below `last` has been delivered (or did not match).
    let mut last = from;
    loop {
        let (mut rx, upto) = match source.upgrade() {
            Some(s) => s.hub().subscribe(),
            None => return,
        };
        // Replay (last, upto] from the stored history.
        while last < upto {
            let batch = match source.upgrade() {
                Some(s) => s.history(&prefix, last, upto, REPLAY_BATCH).await,
                None => return,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let full = batch.len() == REPLAY_BATCH;
            for ev in batch {
                last = ev.revision();
                if tx.send(Ok(ev)).await.is_err() {
                    return; // consumer went away
                }
            }
            if !full {
                last = upto;
            }
        }
        // Live events.
        loop {
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = tx.closed() => return,
            };
            match received {
                Ok(ev) => {
                    if ev.revision() <= last {
                        continue;
                    }
                    last = ev.revision();
                    if ev.kv.key.starts_with(&prefix) && tx.send(Ok((*ev).clone())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(
                        skipped = n,
                        after = last,
                        "watcher lagged; catching up from history"
                    );
                    break; // re-subscribe and replay the gap
                }
                Err(broadcast::error::RecvError::Closed) => return, // store dropped
            }
        }
    }
}
