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

type Job = Box<dyn FnOnce(&mut Db) + Send>;

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
    revision: Revision,
    compacted: Revision,
    hub: Arc<Hub>,
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
        let mut db = Db {
            conn,
            revision,
            compacted,
            hub: hub.clone(),
        };
        let (tx, rx) = std_mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("bosun-store-sqlite".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut db);
                }
            })
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

impl Shared {
    /// Run `f` on the database thread and wait for its result.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = tx.send(f(db));
        });
        lock(&self.jobs)
            .as_ref()
            .ok_or_else(|| StoreError::Backend("store is closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Backend("sqlite thread has stopped".into()))?;
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

    /// Append one row in its own transaction; returns its revision. The
    /// in-memory revision only advances once the commit succeeded.
    fn append(
        &mut self,
        key: &str,
        value: &[u8],
        create_revision: Option<Revision>,
        prev_revision: Revision,
        deleted: bool,
    ) -> Result<Revision, StoreError> {
        let rev = self.revision + 1;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(be)?;
        tx.prepare_cached(
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
        tx.commit().map_err(be)?;
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
        self.hub.publish(Event {
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
        self.hub.publish(Event {
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
        self.hub.publish(Event {
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
            .call(move |db| db.compact_step(revision))
            .await?
            < revision
        {}
        self.shared.call(|db| db.vacuum()).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.shared.call(|db| Ok(db.compacted)).await
    }
}
