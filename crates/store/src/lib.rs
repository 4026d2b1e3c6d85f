//! Revisioned key-value storage under the Bosun API server.
//!
//! The model follows etcd's MVCC store so that an etcd backend can later be
//! put behind the same [`Store`] trait:
//!
//! * every successful write gets the next value of a single, global, strictly
//!   increasing [`Revision`] (the first write is revision 1, 0 means "none");
//! * each key remembers the revision that created it (`create_revision`) and
//!   the revision that last modified it (`mod_revision`), which is what the API
//!   server exposes as `resourceVersion`;
//! * history is kept until [`Store::compact`] drops it, so reads can be served
//!   at a past revision and watches can resume from a past revision.
//!
//! Backends: [`MemoryStore`] (tests) and [`SqliteStore`] (a kine-like log table
//! on disk). [`conformance`] holds the test suite every backend must pass.

use std::sync::Arc;
use std::time::Duration;

pub mod conformance;
mod memory;
mod sqlite;
mod watch;

pub use memory::MemoryStore;
pub use sqlite::{SqliteOptions, SqliteStore};

/// Global store revision: strictly increasing, 1 for the first write, 0 means "none".
pub type Revision = i64;

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this incarnation of the key
    /// (kept across updates, reset when the key is deleted and created again).
    pub create_revision: Revision,
    /// Revision of the write that produced this version.
    pub mod_revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change observed by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`: the new version. For `Delete`: the last value of the key,
    /// with `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The version this event replaced (`None` for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Result of [`Store::range`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// True when more keys match after the last one returned (only with a limit).
    pub more: bool,
    /// The revision the read was served at (use it for a consistent next page).
    pub revision: Revision,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {0} is in the future")]
    FutureRevision(Revision),
    #[error("backend: {0}")]
    Backend(String),
}

/// Stream of watch events.
///
/// Events arrive in strictly increasing revision order. The stream ends
/// (`recv()` returns `None`) when the store is dropped. After an `Err` item
/// (e.g. [`StoreError::Compacted`] when the watcher fell behind a compaction)
/// no more items follow: the caller must re-list and watch again.
/// Dropping the receiver cancels the watch.
pub type WatchStream = tokio::sync::mpsc::Receiver<Result<Event, StoreError>>;

/// The storage interface used by the API server.
///
/// Writes are compare-and-swap operations on a single key. An etcd backend maps
/// them onto one etcd `Txn` each: `create` = `If(CreateRevision(key) == 0) Then(Put)`,
/// `update` = `If(ModRevision(key) == expected) Then(Put) Else(Get)` (the `Get`
/// tells `NotFound` from `Conflict`), `delete` = `If(ModRevision(key) == expected)
/// Then(DeleteRange with prev_kv)`. No multi-key transaction API is offered.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the latest write (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Create `key` if absent; returns the new revision.
    /// `AlreadyExists` if the key exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;

    /// Replace the value of `key` only if its `mod_revision == expected`;
    /// returns the new version. `NotFound` if absent, `Conflict` if stale.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError>;

    /// Delete `key`; if `expected` is `Some`, only when its `mod_revision` matches.
    /// Returns the deleted value with `mod_revision` = the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// The latest version of `key`, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix` (plain string prefix: `/registry/pods/` does
    /// not match `/registry/podsx/a`), in key (byte) order, strictly after
    /// `start_after` if given, at most `limit` of them (0 = unlimited).
    ///
    /// `revision`: `None` or `Some(0)` reads the latest state; `Some(r)` reads
    /// the state as of revision `r`: `Compacted` if `r` is below the compaction
    /// point, `FutureRevision` if `r` is above the current revision.
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult, StoreError>;

    /// Every event under `prefix` with revision `> from`, in revision order:
    /// first the stored history, then live events; none lost or duplicated.
    ///
    /// `from` is an exclusive lower bound, uniformly: `from = 0` replays the
    /// whole retained history, `from = current_revision()` delivers only new
    /// writes, and `from` above the current revision simply waits for it.
    /// (This differs from etcd's `start_revision`, which is inclusive and
    /// where 0 means "now"; an etcd backend passes `start_revision = from + 1`.)
    ///
    /// Compaction rule: compacting at `C` removes events at or below `C`, so
    /// `from >= C` is always served and `from < C` fails with `Compacted`
    /// (returned here, or as the stream's last item if a compaction overtakes
    /// a watcher that is still replaying history). This is exactly etcd's
    /// rule `start_revision < compact_revision => ErrCompacted`.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError>;

    /// Drop history at or below `revision`: superseded versions and delete
    /// markers. The latest version of every live key always remains, so reads
    /// at `revision` or later still work. Compacting at or below the current
    /// compaction point is a no-op; above the current revision is `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The compaction point (0 if never compacted).
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;
}

/// Spawn a background task that, every `interval`, compacts `store` so that
/// only the last `keep_revisions` revisions of history remain (e.g. keep
/// 10_000, every 5 minutes). Abort the returned handle to stop it.
pub fn spawn_compactor<S: Store + ?Sized>(
    store: Arc<S>,
    interval: Duration,
    keep_revisions: Revision,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        // A slow compaction should not be followed by a burst of catch-up ticks.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick fires immediately; skip it
        loop {
            ticker.tick().await;
            if let Err(e) = compact_keeping(&*store, keep_revisions).await {
                tracing::warn!(error = %e, "periodic compaction failed");
            }
        }
    })
}

/// One compaction step of [`spawn_compactor`]: compact at
/// `current_revision - keep_revisions` if that is past the compaction point.
/// Returns the new compaction point.
pub async fn compact_keeping<S: Store + ?Sized>(
    store: &S,
    keep_revisions: Revision,
) -> Result<Revision, StoreError> {
    let current = store.current_revision().await?;
    let compacted = store.compacted_revision().await?;
    let target = current - keep_revisions.max(0);
    if target > compacted {
        store.compact(target).await?;
        tracing::info!(revision = target, "compacted store history");
        Ok(target)
    } else {
        Ok(compacted)
    }
}

/// Exclusive upper bound of the keys starting with `prefix`, in byte order
/// (`None` when every key greater than `prefix` matches, e.g. for "").
/// May not be valid UTF-8; it is only compared bytewise.
pub(crate) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
