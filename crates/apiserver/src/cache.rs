//! The watch cache: every resource's current objects and a window of recent
//! events, fed by one store watch, so LIST and WATCH never hit the store and
//! each object version is serialized once however many watchers see it.

use crate::resources::{ResourceType, RESOURCES};
use bosun_store::{EventKind, Revision, Store};
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{broadcast, watch};

/// One version of one object.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub rv: Revision,
    pub value: Value,
    json: OnceLock<Bytes>,
}

impl CachedObject {
    pub fn new(key: String, rv: Revision, mut value: Value) -> Self {
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        CachedObject {
            key,
            rv,
            value,
            json: OnceLock::new(),
        }
    }

    /// The JSON encoding, computed once per object version.
    pub fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(|v| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct CacheEvent {
    pub ty: EventType,
    pub obj: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Watches may resume from any revision >= this.
    oldest: Revision,
}

pub struct ResourceCache {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<CacheEvent>>,
    capacity: usize,
}

/// What a new watch gets: the backlog to send first, then the live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    pub start_rv: Revision,
}

pub enum WatchStart {
    /// Send synthetic ADDED events for the current state (rv "" or "0").
    Now,
    From(Revision),
}

pub struct Cache {
    resources: HashMap<String, Arc<ResourceCache>>,
    /// Highest store revision applied; advanced under the lock of the
    /// resource the event belonged to, so a list's revision is exact.
    rv: watch::Sender<Revision>,
    prefixes: Vec<(String, String)>,
}

impl Cache {
    /// Loads every object and starts following the store.
    pub async fn start(
        store: Arc<dyn Store>,
        capacity: usize,
    ) -> Result<Arc<Cache>, bosun_store::StoreError> {
        let rev = store.current_revision().await?;
        let mut resources = HashMap::new();
        let mut prefixes = Vec::new();
        for rt in RESOURCES {
            let prefix = rt.key_prefix();
            let (tx, _) = broadcast::channel(4096);
            let mut objects = BTreeMap::new();
            let mut start_after: Option<String> = None;
            loop {
                let page = store
                    .range(&prefix, start_after.as_deref(), 1000, Some(rev))
                    .await?;
                for kv in &page.kvs {
                    match serde_json::from_slice::<Value>(&kv.value) {
                        Ok(v) => {
                            objects.insert(
                                kv.key.clone(),
                                Arc::new(CachedObject::new(kv.key.clone(), kv.mod_revision, v)),
                            );
                        }
                        Err(e) => {
                            tracing::error!(key = %kv.key, error = %e, "skipping undecodable object in store")
                        }
                    }
                }
                start_after = page.kvs.last().map(|kv| kv.key.clone());
                if !page.more || start_after.is_none() {
                    break;
                }
            }
            resources.insert(
                prefix.clone(),
                Arc::new(ResourceCache {
                    state: Mutex::new(State {
                        objects,
                        history: VecDeque::new(),
                        oldest: rev,
                    }),
                    tx,
                    capacity,
                }),
            );
            prefixes.push((prefix.clone(), prefix));
        }
        // Longest prefix first so nested groups never shadow each other.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        let (rv_tx, _) = watch::channel(rev);
        let cache = Arc::new(Cache {
            resources,
            rv: rv_tx,
            prefixes,
        });
        let mut events = store.watch("/registry/", rev).await?;
        let feeder = cache.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    Ok(ev) => feeder.apply(ev),
                    Err(e) => {
                        // Losing the feed would serve stale data forever: stop
                        // the process so it restarts from the store.
                        tracing::error!(error = %e, "store watch failed; exiting");
                        std::process::exit(1);
                    }
                }
            }
            tracing::error!("store watch ended; exiting");
            std::process::exit(1);
        });
        Ok(cache)
    }

    fn resource_for_key(&self, key: &str) -> Option<&Arc<ResourceCache>> {
        self.prefixes
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .and_then(|(_, id)| self.resources.get(id))
    }

    pub fn resource(&self, rt: &ResourceType) -> &Arc<ResourceCache> {
        // Every served resource got a cache in start().
        &self.resources[&rt.key_prefix()]
    }

    fn apply(&self, ev: bosun_store::Event) {
        let rev = ev.kv.mod_revision;
        let Some(rc) = self.resource_for_key(&ev.kv.key) else {
            self.rv.send_replace(rev);
            return;
        };
        let mut st = rc.state.lock().unwrap_or_else(|p| p.into_inner());
        let prev = st.objects.get(&ev.kv.key).cloned();
        let event = match ev.kind {
            EventKind::Put => match serde_json::from_slice::<Value>(&ev.kv.value) {
                Ok(v) => {
                    let obj = Arc::new(CachedObject::new(ev.kv.key.clone(), rev, v));
                    st.objects.insert(ev.kv.key.clone(), obj.clone());
                    let ty = if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    Some(CacheEvent { ty, obj, prev })
                }
                Err(e) => {
                    tracing::error!(key = %ev.kv.key, error = %e, "undecodable object in store");
                    None
                }
            },
            EventKind::Delete => {
                st.objects.remove(&ev.kv.key);
                let last = prev
                    .as_ref()
                    .map(|p| p.value.clone())
                    .or_else(|| serde_json::from_slice(&ev.kv.value).ok());
                last.map(|v| CacheEvent {
                    ty: EventType::Deleted,
                    obj: Arc::new(CachedObject::new(ev.kv.key.clone(), rev, v)),
                    prev,
                })
            }
        };
        if let Some(event) = event {
            let event = Arc::new(event);
            st.history.push_back(event.clone());
            while st.history.len() > rc.capacity {
                if let Some(old) = st.history.pop_front() {
                    st.oldest = old.obj.rv;
                }
            }
            // No receivers is fine.
            let _ = rc.tx.send(event);
        }
        self.rv.send_replace(rev);
        drop(st);
    }

    pub fn current_rv(&self) -> Revision {
        *self.rv.borrow()
    }

    /// Waits until the cache has applied `rev` (bounded), for consistent reads.
    pub async fn wait_for(&self, rev: Revision) -> bool {
        let mut rx = self.rv.subscribe();
        let res = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            rx.wait_for(|r| *r >= rev),
        )
        .await;
        matches!(res, Ok(Ok(_)))
    }

    /// The objects under `prefix` and the revision they are exact at.
    pub fn list(&self, rt: &ResourceType, prefix: &str) -> (Revision, Vec<Arc<CachedObject>>) {
        let rc = self.resource(rt);
        let st = rc.state.lock().unwrap_or_else(|p| p.into_inner());
        let items = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (self.current_rv(), items)
    }

    pub fn get(&self, rt: &ResourceType, key: &str) -> Option<Arc<CachedObject>> {
        let rc = self.resource(rt);
        let st = rc.state.lock().unwrap_or_else(|p| p.into_inner());
        st.objects.get(key).cloned()
    }

    /// Starts a watch; Err(oldest) when `from` is older than the window.
    pub fn subscribe(
        &self,
        rt: &ResourceType,
        start: WatchStart,
        prefix: &str,
    ) -> Result<Subscription, Revision> {
        let rc = self.resource(rt);
        let st = rc.state.lock().unwrap_or_else(|p| p.into_inner());
        let live = rc.tx.subscribe();
        let current = self.current_rv();
        match start {
            WatchStart::Now => {
                let backlog = st
                    .objects
                    .range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, o)| {
                        Arc::new(CacheEvent {
                            ty: EventType::Added,
                            obj: o.clone(),
                            prev: None,
                        })
                    })
                    .collect();
                Ok(Subscription {
                    backlog,
                    live,
                    start_rv: current,
                })
            }
            WatchStart::From(rv) => {
                if rv < st.oldest {
                    return Err(st.oldest);
                }
                let backlog = st
                    .history
                    .iter()
                    .filter(|e| e.obj.rv > rv && e.obj.key.starts_with(prefix))
                    .cloned()
                    .collect();
                Ok(Subscription {
                    backlog,
                    live,
                    start_rv: current.max(rv),
                })
            }
        }
    }
}
