//! In-memory backend: same semantics as the SQLite one, for fast tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::watch::{self, lock, HistorySource, Hub};
use crate::{Event, EventKind, KeyValue, RangeResult, Revision, Store, StoreError, WatchStream};

/// One entry of the log (mirrors a row of the SQLite `kv` table).
#[derive(Clone, Debug)]
struct Row {
    key: String,
    /// Empty for delete markers (the last value is in the previous row).
    value: Vec<u8>,
    create_revision: Revision,
    /// Revision of the previous row for this key, 0 if none.
    prev_revision: Revision,
    deleted: bool,
}

#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    /// Every retained row by revision.
    log: BTreeMap<Revision, Row>,
    /// Retained revisions of each key, ascending.
    keys: BTreeMap<String, Vec<Revision>>,
}

impl State {
    fn kv(&self, rev: Revision) -> Option<KeyValue> {
        self.log.get(&rev).map(|r| KeyValue {
            key: r.key.clone(),
            value: r.value.clone(),
            create_revision: r.create_revision,
            mod_revision: rev,
        })
    }

    /// The latest row of `key` at or below `at`, with its revision.
    fn row_at(&self, key: &str, at: Revision) -> Option<(Revision, &Row)> {
        let revs = self.keys.get(key)?;
        let idx = revs.partition_point(|r| *r <= at);
        let rev = *revs.get(idx.checked_sub(1)?)?;
        self.log.get(&rev).map(|row| (rev, row))
    }

    /// The live version of `key` (not a delete marker).
    fn live(&self, key: &str) -> Option<KeyValue> {
        match self.row_at(key, self.revision) {
            Some((rev, row)) if !row.deleted => self.kv(rev),
            _ => None,
        }
    }

    fn append(&mut self, row: Row) -> Revision {
        self.revision += 1;
        let rev = self.revision;
        self.keys.entry(row.key.clone()).or_default().push(rev);
        self.log.insert(rev, row);
        rev
    }

    fn event(&self, rev: Revision) -> Option<Event> {
        let row = self.log.get(&rev)?;
        let prev = self.kv(row.prev_revision);
        if row.deleted {
            let mut kv = prev.clone()?;
            kv.mod_revision = rev;
            Some(Event {
                kind: EventKind::Delete,
                kv,
                prev,
            })
        } else {
            let prev_live = self.log.get(&row.prev_revision).is_some_and(|p| !p.deleted);
            Some(Event {
                kind: EventKind::Put,
                kv: self.kv(rev)?,
                prev: if prev_live { prev } else { None },
            })
        }
    }

    fn remove_row(&mut self, rev: Revision) {
        if let Some(row) = self.log.remove(&rev) {
            if let Some(revs) = self.keys.get_mut(&row.key) {
                revs.retain(|r| *r != rev);
                if revs.is_empty() {
                    self.keys.remove(&row.key);
                }
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    hub: Hub,
}

/// In-memory [`Store`]. Cloning gives another handle to the same data.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_watch_capacity(watch::DEFAULT_WATCH_CAPACITY)
    }

    /// `capacity`: how many events a watcher may lag behind before it must
    /// catch up from history (small values exercise that path in tests).
    pub fn with_watch_capacity(capacity: usize) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                hub: Hub::new(capacity, 0),
            }),
        }
    }

    /// Write under the state lock and publish before releasing it, so events
    /// reach the hub in revision order.
    fn write<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(R, Revision), StoreError>,
    ) -> Result<R, StoreError> {
        let mut st = lock(&self.shared.state);
        let (out, rev) = f(&mut st)?;
        if let Some(ev) = st.event(rev) {
            self.shared.hub.publish(ev);
        }
        Ok(out)
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
        let st = lock(&self.state);
        if after < st.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: st.compacted,
            });
        }
        let range = (Bound::Excluded(after), Bound::Included(upto.max(after)));
        Ok(st
            .log
            .range(range)
            .filter(|(_, row)| row.key.starts_with(prefix))
            .filter_map(|(rev, _)| st.event(*rev))
            .take(limit)
            .collect())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(lock(&self.shared.state).revision)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        self.write(|st| {
            let prev_revision = match st.row_at(key, st.revision) {
                Some((_, row)) if !row.deleted => {
                    return Err(StoreError::AlreadyExists(key.to_string()))
                }
                Some((rev, _)) => rev,
                None => 0,
            };
            let rev = st.revision + 1;
            st.append(Row {
                key: key.to_string(),
                value,
                create_revision: rev,
                prev_revision,
                deleted: false,
            });
            Ok((rev, rev))
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        self.write(|st| {
            let cur = st
                .live(key)
                .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
            if cur.mod_revision != expected {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: cur.mod_revision,
                });
            }
            let rev = st.append(Row {
                key: key.to_string(),
                value: value.clone(),
                create_revision: cur.create_revision,
                prev_revision: cur.mod_revision,
                deleted: false,
            });
            let kv = KeyValue {
                key: key.to_string(),
                value,
                create_revision: cur.create_revision,
                mod_revision: rev,
            };
            Ok((kv, rev))
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(|st| {
            let mut cur = st
                .live(key)
                .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
            if let Some(expected) = expected {
                if cur.mod_revision != expected {
                    return Err(StoreError::Conflict {
                        key: key.to_string(),
                        expected,
                        actual: cur.mod_revision,
                    });
                }
            }
            let rev = st.append(Row {
                key: key.to_string(),
                value: Vec::new(),
                create_revision: cur.create_revision,
                prev_revision: cur.mod_revision,
                deleted: true,
            });
            cur.mod_revision = rev;
            Ok((cur, rev))
        })
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(lock(&self.shared.state).live(key))
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult, StoreError> {
        let st = lock(&self.shared.state);
        let at = resolve_read_revision(revision, st.revision, st.compacted)?;
        let lower = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s),
            _ => Bound::Included(prefix),
        };
        let mut kvs = Vec::new();
        let mut more = false;
        for (key, _) in st.keys.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let Some((rev, row)) = st.row_at(key, at) else {
                continue;
            };
            if row.deleted {
                continue;
            }
            if limit > 0 && kvs.len() == limit {
                more = true;
                break;
            }
            if let Some(kv) = st.kv(rev) {
                kvs.push(kv);
            }
        }
        Ok(RangeResult {
            kvs,
            more,
            revision: at,
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        let compacted = lock(&self.shared.state).compacted;
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        Ok(watch::spawn_watch(&self.shared, prefix, from))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut st = lock(&self.shared.state);
        if revision > st.revision {
            return Err(StoreError::FutureRevision(revision));
        }
        if revision <= st.compacted {
            return Ok(());
        }
        let range = (Bound::Excluded(st.compacted), Bound::Included(revision));
        let window: Vec<(Revision, Revision, bool)> = st
            .log
            .range(range)
            .map(|(rev, row)| (*rev, row.prev_revision, row.deleted))
            .collect();
        for (rev, prev, deleted) in window {
            // A row whose successor is at or below the compaction point is superseded.
            if prev > 0 {
                st.remove_row(prev);
            }
            if deleted {
                st.remove_row(rev);
            }
        }
        st.compacted = revision;
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(lock(&self.shared.state).compacted)
    }
}

/// Which revision a range is served at, with the etcd error rules.
pub(crate) fn resolve_read_revision(
    requested: Option<Revision>,
    current: Revision,
    compacted: Revision,
) -> Result<Revision, StoreError> {
    match requested {
        None => Ok(current),
        Some(r) if r <= 0 => Ok(current),
        Some(r) if r > current => Err(StoreError::FutureRevision(r)),
        Some(r) if r < compacted => Err(StoreError::Compacted {
            requested: r,
            compacted,
        }),
        Some(r) => Ok(r),
    }
}
