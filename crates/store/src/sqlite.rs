//! SQLite backend: a kine-like append-only log table.
//!
//! Every write appends one row to `kv` whose `id` (the rowid) is the write's
//! revision. A delete appends a delete marker. The latest row of a key is its
//! current state; older rows are history, served to historic reads and
//! watches until compaction removes them.
//!
//! All SQLite work runs on one dedicated thread that owns the connection, fed
//! through a channel: it keeps blocking I/O off the async executor and
//! serialises writes, so events are published to watchers in revision order
//! right after their commit.
//!
//! Group commit: each time the thread wakes it takes every request already
//! queued (at most `MAX_BATCH`) and runs them in arrival order as one batch.
//! The first write of a batch opens a transaction; each write still does its
//! own check (existence / CAS) and gets its own revision, and a failed check
//! only fails that request (it writes nothing, so it cannot undo the others).
//! Reads see the writes queued before them. The batch commits once (one
//! fsync); only then are its events published (in revision order) and its
//! requests answered, so an acknowledgement still means durable. If the
//! commit fails, every request answered from the batch's uncommitted state
//! gets an error, no event is published and the revision counter goes back to
//! the last committed revision. Requests that ran before the batch's first
//! write saw only committed state and are answered right away.
//!
//! Durability: WAL journal with `synchronous=FULL` by default (every commit is
//! fsynced, so it survives power loss; `NORMAL` survives a process crash
//! only). The connection uses `locking_mode=EXCLUSIVE`, so a second process
//! opening the same file fails instead of corrupting the revision counter.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::memory::resolve_read_revision;
use crate::watch::{self, lock, HistorySource, Hub};
use crate::{
    prefix_end, Event, EventKind, KeyValue, RangeResult, Revision, Store, StoreError, WatchStream,
};

/// Revisions compacted per transaction, so one huge compaction does not stall
/// other requests for long (they are queued between batches).
const COMPACT_BATCH: Revision = 10_000;

/// Most requests the database thread takes from the queue for one batch
/// (one transaction, one fsync).
const MAX_BATCH: usize = 512;

/// Tuning for [`SqliteStore::open_with_options`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How many events a watcher may lag before it catches up from the log.
    pub watch_capacity: usize,
    /// `true`: `synchronous=FULL` (durable across power loss);
    /// `false`: `synchronous=NORMAL` (durable across process crash only, faster).
    pub sync_full: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            watch_capacity: watch::DEFAULT_WATCH_CAPACITY,
            sync_full: true,
        }
    }
}

/// Sends a request's answer once the fate of its batch is known: `Ok` once
/// the batch committed (or when the request saw only committed state),
/// the batch's error if it was rolled back.
type Reply = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

enum Job {
    /// Runs inside the current batch: its writes join the batch transaction.
    Batched(Box<dyn FnOnce(&mut Db) -> Reply + Send>),
    /// Runs between batches, with its own transactions (compaction): the
    /// batch before it is committed and answered first.
    Alone(Box<dyn FnOnce(&mut Db) + Send>),
}

/// SQLite-backed [`Store`]. Cloning gives another handle to the same
/// database; the connection closes when the last handle (and every watch
/// task's temporary use of it) is gone.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    jobs: Mutex<Option<std_mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    hub: Arc<Hub>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the channel stops the thread once queued jobs are done;
        // joining makes sure the file lock is released when drop returns, so
        // the same file can be reopened right away.
        lock(&self.jobs).take();
        if let Some(t) = lock(&self.thread).take() {
            if t.join().is_err() {
                tracing::error!("sqlite store thread panicked");
            }
        }
    }
}

fn be(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// State owned by the database thread.
struct Db {
    conn: Connection,
    /// Revision of the latest write, including the open batch's uncommitted ones.
    revision: Revision,
    /// Revision of the latest committed write.
    committed: Revision,
    compacted: Revision,
    hub: Arc<Hub>,
    /// A batch transaction is open (begun by the batch's first write).
    in_txn: bool,
    /// Events of the open batch, published once it commits.
    pending_events: Vec<Event>,
    /// Answers of the open batch, sent once it commits or rolls back.
    pending_replies: Vec<Reply>,
}

/// The latest row of a key.
struct Latest {
    id: Revision,
    value: Vec<u8>,
    create_revision: Revision,
    deleted: bool,
}

impl SqliteStore {
    /// Open (or create) the database at `path` with default options.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_options(path, &SqliteOptions::default())
    }

    pub fn open_with_options(path: &Path, opts: &SqliteOptions) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(be)?;
        let (revision, compacted) = init(&conn, opts)?;
        tracing::info!(path = %path.display(), revision, compacted, "opened sqlite store");
        let hub = Arc::new(Hub::new(opts.watch_capacity, revision));
        let db = Db {
            conn,
            revision,
            committed: revision,
            compacted,
            hub: hub.clone(),
            in_txn: false,
            pending_events: Vec::new(),
            pending_replies: Vec::new(),
        };
        let (tx, rx) = std_mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("bosun-store-sqlite".into())
            .spawn(move || serve(db, rx))
            .map_err(|e| StoreError::Backend(format!("spawning sqlite thread: {e}")))?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                jobs: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                hub,
            }),
        })
    }
}

/// The database thread: run queued requests in batches until every handle is gone.
fn serve(mut db: Db, rx: std_mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut job = Some(first);
        let mut taken = 0;
        while let Some(j) = job {
            db.run(j);
            taken += 1;
            job = if taken < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        db.finish_batch();
    }
}

impl Shared {
    fn send(&self, job: Job) -> Result<(), StoreError> {
        lock(&self.jobs)
            .as_ref()
            .ok_or_else(|| StoreError::Backend("store is closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Backend("sqlite thread has stopped".into()))
    }

    /// Queue `f` to run on the database thread as part of a batch; its
    /// result arrives once the batch has committed.
    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<R, StoreError>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Batched(Box::new(move |db| {
            let result = f(db);
            Box::new(move |outcome: Result<(), &StoreError>| {
                let _ = tx.send(match outcome {
                    Ok(()) => result,
                    Err(e) => Err(e.clone()),
                });
            })
        })))?;
        Ok(rx)
    }

    /// Run `f` on the database thread as part of a batch and wait for its
    /// result, which arrives once the batch has committed.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(f)?
            .await
            .map_err(|_| StoreError::Backend("sqlite thread dropped the request".into()))?
    }

    /// Run `f` on the database thread outside any batch (it manages its own
    /// transactions) and wait for its result.
    async fn call_alone<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Alone(Box::new(move |db| {
            let _ = tx.send(f(db));
        })))?;
        rx.await
            .map_err(|_| StoreError::Backend("sqlite thread dropped the request".into()))?
    }
}

fn init(conn: &Connection, opts: &SqliteOptions) -> Result<(Revision, Revision), StoreError> {
    // Wait a little for a lock held by another process, then fail.
    conn.busy_timeout(std::time::Duration::from_secs(2))
        .map_err(be)?;
    // Exclusive locking must precede the first WAL access (no shared memory then).
    let mode: String = conn
        .query_row("PRAGMA locking_mode=EXCLUSIVE", [], |r| r.get(0))
        .map_err(be)?;
    if !mode.eq_ignore_ascii_case("exclusive") {
        return Err(StoreError::Backend(format!(
            "could not set exclusive locking mode (got {mode})"
        )));
    }
    // Only takes effect on a new database (before any table exists): lets
    // compaction hand freed pages back to the filesystem.
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL;")
        .map_err(be)?;
    let journal: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(be)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "could not enable WAL journal (got {journal})"
        )));
    }
    let sync = if opts.sync_full { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!("PRAGMA synchronous={sync};"))
        .map_err(be)?;
    // An immediate transaction takes the write lock, which exclusive mode then
    // keeps: a second opener fails here.
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS kv (
             id INTEGER PRIMARY KEY,          -- the revision of this write
             name TEXT NOT NULL,              -- the key
             value BLOB NOT NULL,             -- empty for delete markers
             create_revision INTEGER NOT NULL,
             prev_revision INTEGER NOT NULL,  -- previous row of this key, 0 if none
             deleted INTEGER NOT NULL         -- 1 for delete markers
         );
         CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
         CREATE TABLE IF NOT EXISTS meta (
             name TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         COMMIT;",
    )
    .map_err(be)?;
    let compacted: Revision = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'compact_revision'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(be)?
        .unwrap_or(0);
    let max_id: Option<Revision> = conn
        .query_row("SELECT MAX(id) FROM kv", [], |r| r.get(0))
        .map_err(be)?;
    // Compaction may remove the newest row (a delete marker at the compaction
    // point), but never a row above that point, so this is the last revision.
    let revision = max_id.unwrap_or(0).max(compacted);
    Ok((revision, compacted))
}

/// Bind the (possibly non-UTF-8) prefix end as TEXT so it compares bytewise
/// with the TEXT keys (a BLOB would always sort after any TEXT).
struct TextBytes(Vec<u8>);

impl rusqlite::ToSql for TextBytes {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

impl Db {
    fn run(&mut self, job: Job) {
        match job {
            Job::Batched(op) => {
                let reply = op(self);
                if !self.in_txn {
                    // Saw only committed state (and wrote nothing).
                    reply(Ok(()));
                } else if self.conn.is_autocommit() {
                    // A failed statement made SQLite roll back the whole
                    // transaction (e.g. disk full): the batch so far is lost.
                    self.pending_replies.push(reply);
                    self.abort_batch(&StoreError::Backend(
                        "transaction rolled back after a failed write".into(),
                    ));
                } else {
                    self.pending_replies.push(reply);
                }
            }
            Job::Alone(f) => {
                self.finish_batch();
                f(self);
            }
        }
    }

    /// Open the batch transaction if this is the batch's first write.
    fn begin(&mut self) -> Result<(), StoreError> {
        if !self.in_txn {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(be)?;
            self.in_txn = true;
        }
        Ok(())
    }

    /// Commit the open batch (one fsync), then publish its events and answer
    /// its requests; on failure roll it back and fail them.
    fn finish_batch(&mut self) {
        if !self.in_txn {
            return;
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.in_txn = false;
                self.committed = self.revision;
                self.hub.publish_all(self.pending_events.drain(..));
                for reply in self.pending_replies.drain(..) {
                    reply(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite commit failed; batch rolled back");
                self.abort_batch(&StoreError::Backend(format!("commit failed: {e}")));
            }
        }
    }

    /// Roll back the open batch: forget its revisions and events, fail its requests.
    fn abort_batch(&mut self, err: &StoreError) {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "sqlite rollback failed");
            }
        }
        self.in_txn = false;
        self.revision = self.committed;
        self.pending_events.clear();
        for reply in self.pending_replies.drain(..) {
            reply(Err(err));
        }
    }

    fn latest(&self, key: &str) -> Result<Option<Latest>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, value, create_revision, deleted FROM kv
                 WHERE name = ?1 ORDER BY id DESC LIMIT 1",
            )
            .map_err(be)?
            .query_row([key], |r| {
                Ok(Latest {
                    id: r.get(0)?,
                    value: r.get(1)?,
                    create_revision: r.get(2)?,
                    deleted: r.get(3)?,
                })
            })
            .optional()
            .map_err(be)
    }

    fn live(&self, key: &str) -> Result<Option<Latest>, StoreError> {
        Ok(self.latest(key)?.filter(|l| !l.deleted))
    }

    /// Append one row to the batch transaction; returns its revision. The
    /// in-memory revision advances only if the insert succeeded (and goes
    /// back if the batch does not commit).
    fn append(
        &mut self,
        key: &str,
        value: &[u8],
        create_revision: Option<Revision>,
        prev_revision: Revision,
        deleted: bool,
    ) -> Result<Revision, StoreError> {
        let rev = self.revision + 1;
        self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT INTO kv (id, name, value, create_revision, prev_revision, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(be)?
            .execute(params![
                rev,
                key,
                value,
                create_revision.unwrap_or(rev),
                prev_revision,
                deleted
            ])
            .map_err(be)?;
        self.revision = rev;
        Ok(rev)
    }

    fn create(&mut self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let prev_revision = match self.latest(key)? {
            Some(l) if !l.deleted => return Err(StoreError::AlreadyExists(key.to_string())),
            Some(l) => l.id,
            None => 0,
        };
        let rev = self.append(key, &value, None, prev_revision, false)?;
        self.pending_events.push(Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_string(),
                value,
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        });
        Ok(rev)
    }

    fn check(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(Latest, KeyValue), StoreError> {
        let cur = self
            .live(key)?
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        if let Some(expected) = expected {
            if cur.id != expected {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: cur.id,
                });
            }
        }
        let kv = KeyValue {
            key: key.to_string(),
            value: cur.value.clone(),
            create_revision: cur.create_revision,
            mod_revision: cur.id,
        };
        Ok((cur, kv))
    }

    fn update(
        &mut self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let (cur, prev) = self.check(key, Some(expected))?;
        let rev = self.append(key, &value, Some(cur.create_revision), cur.id, false)?;
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: cur.create_revision,
            mod_revision: rev,
        };
        self.pending_events.push(Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: Some(prev),
        });
        Ok(kv)
    }

    fn delete(&mut self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let (cur, prev) = self.check(key, expected)?;
        let rev = self.append(key, &[], Some(cur.create_revision), cur.id, true)?;
        let kv = KeyValue {
            mod_revision: rev,
            ..prev.clone()
        };
        self.pending_events.push(Event {
            kind: EventKind::Delete,
            kv: kv.clone(),
            prev: Some(prev),
        });
        Ok(kv)
    }

    fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult, StoreError> {
        let at = resolve_read_revision(revision, self.revision, self.compacted)?;
        let mut sql = String::from(
            "SELECT kv.id, kv.name, kv.value, kv.create_revision FROM kv
             JOIN (SELECT MAX(id) AS mid FROM kv WHERE id <= ?1 AND name >= ?2",
        );
        let mut args: Vec<Box<dyn rusqlite::ToSql>> =
            vec![Box::new(at), Box::new(prefix.to_string())];
        if let Some(end) = prefix_end(prefix) {
            args.push(Box::new(TextBytes(end)));
            sql.push_str(&format!(" AND name < ?{}", args.len()));
        }
        if let Some(after) = start_after {
            args.push(Box::new(after.to_string()));
            sql.push_str(&format!(" AND name > ?{}", args.len()));
        }
        // Fetch one extra row to learn whether more remain (-1 = no limit).
        let fetch: i64 = if limit == 0 {
            -1
        } else {
            i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
        };
        args.push(Box::new(fetch));
        sql.push_str(&format!(
            " GROUP BY name) m ON kv.id = m.mid WHERE kv.deleted = 0 ORDER BY kv.name LIMIT ?{}",
            args.len()
        ));
        let mut stmt = self.conn.prepare_cached(&sql).map_err(be)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(KeyValue {
                    mod_revision: r.get(0)?,
                    key: r.get(1)?,
                    value: r.get(2)?,
                    create_revision: r.get(3)?,
                })
            })
            .map_err(be)?;
        let mut kvs = rows.collect::<Result<Vec<_>, _>>().map_err(be)?;
        let more = limit > 0 && kvs.len() > limit;
        kvs.truncate(if limit == 0 { kvs.len() } else { limit });
        Ok(RangeResult {
            kvs,
            more,
            revision: at,
        })
    }

    fn history(
        &self,
        prefix: &str,
        after: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if after < self.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        // The rowid range drives the scan; the name bounds only filter.
        let sql = "SELECT kv.id, kv.name, kv.value, kv.create_revision, kv.deleted,
                          p.id, p.value, p.create_revision, p.deleted
                   FROM kv LEFT JOIN kv AS p ON p.id = kv.prev_revision
                   WHERE kv.id > ?1 AND kv.id <= ?2 AND kv.name >= ?3
                     AND (?4 IS NULL OR kv.name < ?4)
                   ORDER BY kv.id LIMIT ?5";
        let end_arg: Box<dyn rusqlite::ToSql> = match prefix_end(prefix) {
            Some(e) => Box::new(TextBytes(e)),
            None => Box::new(Value::Null),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(sql).map_err(be)?;
        let rows = stmt
            .query_map(params![after, upto, prefix, end_arg, limit], |r| {
                let rev: Revision = r.get(0)?;
                let key: String = r.get(1)?;
                let value: Vec<u8> = r.get(2)?;
                let create_revision: Revision = r.get(3)?;
                let deleted: bool = r.get(4)?;
                let prev = match r.get::<_, Option<Revision>>(5)? {
                    Some(pid) => Some((
                        KeyValue {
                            key: key.clone(),
                            value: r.get(6)?,
                            create_revision: r.get(7)?,
                            mod_revision: pid,
                        },
                        r.get::<_, bool>(8)?,
                    )),
                    None => None,
                };
                Ok((rev, key, value, create_revision, deleted, prev))
            })
            .map_err(be)?;
        let mut events = Vec::new();
        for row in rows {
            let (rev, key, value, create_revision, deleted, prev) = row.map_err(be)?;
            // A previous row that is a delete marker means this is a re-create.
            let prev = prev.and_then(|(kv, prev_deleted)| (!prev_deleted).then_some(kv));
            let event = if deleted {
                let Some(prev) = prev else {
                    return Err(StoreError::Backend(format!(
                        "delete marker at revision {rev} for {key} has no previous value"
                    )));
                };
                Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        mod_revision: rev,
                        ..prev.clone()
                    },
                    prev: Some(prev),
                }
            } else {
                Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision,
                        mod_revision: rev,
                    },
                    prev,
                }
            };
            events.push(event);
        }
        Ok(events)
    }

    /// Compact one batch: up to `target` but at most `COMPACT_BATCH`
    /// revisions past the current point. Returns the new compaction point.
    fn compact_step(&mut self, target: Revision) -> Result<Revision, StoreError> {
        let lo = self.compacted;
        let hi = target.min(lo.saturating_add(COMPACT_BATCH));
        if hi <= lo {
            return Ok(lo);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(be)?;
        // Rows whose successor lies in (lo, hi] are superseded at hi. (Rows
        // superseded at or below lo are already gone.) This must run before
        // the delete markers, whose prev pointers it follows, are removed.
        let superseded = tx
            .execute(
                "DELETE FROM kv WHERE id IN (
                     SELECT prev_revision FROM kv
                     WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
                params![lo, hi],
            )
            .map_err(be)?;
        let markers = tx
            .execute(
                "DELETE FROM kv WHERE id > ?1 AND id <= ?2 AND deleted = 1",
                params![lo, hi],
            )
            .map_err(be)?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('compact_revision', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [hi],
        )
        .map_err(be)?;
        tx.commit().map_err(be)?;
        self.compacted = hi;
        tracing::debug!(from = lo, to = hi, superseded, markers, "compacted batch");
        Ok(hi)
    }

    /// Hand pages freed by compaction back to the filesystem.
    fn vacuum(&self) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum").map_err(be)?;
        let mut rows = stmt.query([]).map_err(be)?;
        while rows.next().map_err(be)?.is_some() {}
        Ok(())
    }
}

#[async_trait::async_trait]
impl HistorySource for Shared {
    fn hub(&self) -> &Hub {
        &self.hub
    }

    async fn history(
        &self,
        prefix: &str,
        after: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let prefix = prefix.to_string();
        self.call(move |db| db.history(&prefix, after, upto, limit))
            .await
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.shared.call(|db| Ok(db.revision)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let key = key.to_string();
        self.shared.call(move |db| db.create(&key, value)).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let key = key.to_string();
        self.shared
            .call(move |db| db.update(&key, value, expected))
            .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let key = key.to_string();
        self.shared.call(move |db| db.delete(&key, expected)).await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.shared
            .call(move |db| {
                Ok(db.live(&key)?.map(|l| KeyValue {
                    key: key.clone(),
                    value: l.value,
                    create_revision: l.create_revision,
                    mod_revision: l.id,
                }))
            })
            .await
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult, StoreError> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.shared
            .call(move |db| db.range(&prefix, start_after.as_deref(), limit, revision))
            .await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        let compacted = self.shared.call(|db| Ok(db.compacted)).await?;
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        Ok(watch::spawn_watch(&self.shared, prefix, from))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (current, compacted) = self
            .shared
            .call(|db| Ok((db.revision, db.compacted)))
            .await?;
        if revision > current {
            return Err(StoreError::FutureRevision(revision));
        }
        if revision <= compacted {
            return Ok(());
        }
        // One transaction per batch; other requests run in between.
        while self
            .shared
            .call_alone(move |db| db.compact_step(revision))
            .await?
            < revision
        {}
        self.shared.call_alone(|db| db.vacuum()).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.shared.call(|db| Ok(db.compacted)).await
    }
}

#[cfg(test)]
mod tests {
    //! Group commit internals: batching, per-request failures inside a batch,
    //! and a failing commit (forced with an SQLite commit hook).

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    type Pending<R> = oneshot::Receiver<Result<R, StoreError>>;

    fn open() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        (store, dir)
    }

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// Park the database thread (after running `setup` on it) until the
    /// returned sender is dropped, so that requests queued meanwhile form one batch.
    fn hold(
        store: &SqliteStore,
        setup: impl FnOnce(&mut Db) + Send + 'static,
    ) -> std_mpsc::Sender<()> {
        let (tx, rx) = std_mpsc::channel::<()>();
        store
            .shared
            .send(Job::Alone(Box::new(move |db| {
                setup(db);
                let _ = rx.recv();
            })))
            .unwrap();
        tx
    }

    /// Count commits; make them fail while `fail` is set.
    fn commit_hook(
        commits: &Arc<AtomicUsize>,
        fail: bool,
    ) -> impl FnOnce(&mut Db) + Send + 'static {
        let commits = commits.clone();
        move |db: &mut Db| {
            db.conn.commit_hook(Some(move || {
                commits.fetch_add(1, Ordering::SeqCst);
                fail
            }))
        }
    }

    fn submit<R: Send + 'static>(
        store: &SqliteStore,
        f: impl FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Pending<R> {
        store.shared.submit(f).unwrap()
    }

    async fn answer<R>(rx: Pending<R>) -> Result<R, StoreError> {
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("answered")
            .expect("not dropped")
    }

    async fn next_revision(w: &mut crate::WatchStream) -> Revision {
        tokio::time::timeout(Duration::from_secs(10), w.recv())
            .await
            .expect("event")
            .expect("stream open")
            .expect("no error")
            .revision()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_batch_one_commit_with_independent_cas() {
        let (store, _dir) = open();
        assert_eq!(store.create("/a", v("a1")).await.unwrap(), 1);
        let mut w = store.watch("/", 1).await.unwrap();
        let commits = Arc::new(AtomicUsize::new(0));
        let gate = hold(&store, commit_hook(&commits, false));

        let create_b = submit(&store, |db| db.create("/b", v("b")));
        let stale = submit(&store, |db| db.update("/a", v("x"), 99));
        let get_b = submit(&store, |db| Ok(db.live("/b")?.map(|l| l.id)));
        let update_a = submit(&store, |db| db.update("/a", v("a2"), 1));
        let dup_b = submit(&store, |db| db.create("/b", v("again")));
        let delete_b = submit(&store, |db| db.delete("/b", Some(2)));
        let current = submit(&store, |db| Ok(db.revision));
        let range = submit(&store, |db| db.range("/", None, 0, None));
        let creates: Vec<_> = (0..100)
            .map(|i| submit(&store, move |db| db.create(&format!("/n/{i:03}"), v("n"))))
            .collect();
        drop(gate);

        assert_eq!(answer(create_b).await, Ok(2));
        assert_eq!(
            answer(stale).await,
            Err(StoreError::Conflict {
                key: "/a".into(),
                expected: 99,
                actual: 1
            })
        );
        assert_eq!(
            answer(get_b).await,
            Ok(Some(2)),
            "reads see earlier writes of the batch"
        );
        assert_eq!(answer(update_a).await.unwrap().mod_revision, 3);
        assert_eq!(
            answer(dup_b).await,
            Err(StoreError::AlreadyExists("/b".into()))
        );
        assert_eq!(answer(delete_b).await.unwrap().mod_revision, 4);
        assert_eq!(answer(current).await, Ok(4));
        let kvs = answer(range).await.unwrap().kvs;
        assert_eq!(kvs.len(), 1);
        assert_eq!((kvs[0].key.as_str(), kvs[0].mod_revision), ("/a", 3));
        for (i, rx) in creates.into_iter().enumerate() {
            assert_eq!(answer(rx).await, Ok(5 + i as Revision));
        }
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "the whole batch is one commit"
        );

        for rev in 2..=104 {
            assert_eq!(next_revision(&mut w).await, rev);
        }
        assert_eq!(store.current_revision().await.unwrap(), 104);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_commit_fails_the_batch_and_rewinds_the_revision() {
        let (store, _dir) = open();
        assert_eq!(store.create("/a", v("a1")).await.unwrap(), 1);
        let mut w = store.watch("/", 1).await.unwrap();
        let commits = Arc::new(AtomicUsize::new(0));
        let gate = hold(&store, commit_hook(&commits, true));

        let get_a = submit(&store, |db| Ok(db.live("/a")?.map(|l| l.value)));
        let create_b = submit(&store, |db| db.create("/b", v("b")));
        let update_a = submit(&store, |db| db.update("/a", v("a2"), 1));
        let get_b = submit(&store, |db| Ok(db.live("/b")?.map(|l| l.id)));
        let stale = submit(&store, |db| db.update("/a", v("x"), 99));
        drop(gate);

        // Before the batch's first write: committed state, answered as is.
        assert_eq!(answer(get_a).await, Ok(Some(v("a1"))));
        for result in [
            answer(create_b).await.map(|_| ()),
            answer(update_a).await.map(|_| ()),
            answer(get_b).await.map(|_| ()),
            answer(stale).await.map(|_| ()),
        ] {
            match result {
                Err(StoreError::Backend(msg)) => assert!(msg.contains("commit failed"), "{msg}"),
                other => panic!("expected a commit error, got {other:?}"),
            }
        }
        assert_eq!(commits.load(Ordering::SeqCst), 1);

        store
            .shared
            .call_alone(|db| {
                db.conn.commit_hook(None::<fn() -> bool>);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.current_revision().await.unwrap(), 1);
        assert_eq!(store.get("/b").await.unwrap(), None);
        assert_eq!(store.get("/a").await.unwrap().unwrap().value, v("a1"));
        // The lost revisions are reused by the next writes, and nothing of
        // the failed batch reached the watcher.
        assert_eq!(store.create("/c", v("c")).await.unwrap(), 2);
        assert_eq!(
            store.update("/a", v("a3"), 1).await.unwrap().mod_revision,
            3
        );
        assert_eq!(next_revision(&mut w).await, 2);
        assert_eq!(next_revision(&mut w).await, 3);
        let page = store.range("/", None, 0, None).await.unwrap();
        let revs: Vec<Revision> = page.kvs.iter().map(|kv| kv.mod_revision).collect();
        assert_eq!(revs, [3, 2]);
    }
}
