//! The garbage collector: an ownerReferences graph over every resource that
//! can be listed, watched and deleted (metadata-only watches), and
//! upstream's three deletion modes:
//! - background: a dependent whose owners are all gone (verified with a
//!   live GET and uid check) is deleted;
//! - foreground: an owner being deleted with the `foregroundDeletion`
//!   finalizer has its dependents deleted (in the foreground themselves
//!   when they have dependents) and loses the finalizer once no dependent
//!   with `blockOwnerDeletion` remains;
//! - orphan: an owner being deleted with the `orphan` finalizer has its
//!   reference removed from every dependent, then loses the finalizer.

mod graph;

use futures::{StreamExt, TryStreamExt};
use graph::{decide, group_of, Decision, Graph, GroupKind, Node, OwnerRef, OwnerState};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Resources the collector ignores, like upstream (`events` in both groups).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

#[derive(Clone)]
struct Resource {
    ar: ApiResource,
    namespaced: bool,
}

struct State {
    graph: Graph,
    resources: HashMap<GroupKind, Resource>,
    /// Resources whose initial list has been applied.
    synced: HashSet<GroupKind>,
    /// uid → when something was last done to it (no repeats while the
    /// watch catches up).
    acted: HashMap<String, Instant>,
    /// owner uid → when a live GET last found it (for owners not watched).
    verified: HashMap<String, Instant>,
}

struct Gc {
    client: Client,
    state: Mutex<State>,
    notify: Notify,
    started: Instant,
}

fn node_from(meta: &kube::api::ObjectMeta, gk: &GroupKind) -> Option<Node> {
    Some(Node {
        uid: meta.uid.clone()?,
        gk: gk.clone(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone()?,
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|o| OwnerRef {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
                block: o.block_owner_deletion == Some(true),
            })
            .collect(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
    })
}

impl Gc {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the graph of one resource in step with its watch.
    async fn watch(self: Arc<Self>, gk: GroupKind, ar: ApiResource) {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.client.clone(), &ar);
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut init: Option<Vec<Node>> = None;
        loop {
            let ev: Event<PartialObjectMeta<DynamicObject>> = match stream.try_next().await {
                Ok(Some(ev)) => ev,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(resource = %ar.plural, error = %e, "gc watch error");
                    continue;
                }
            };
            let mut st = self.lock();
            match ev {
                Event::Init => init = Some(Vec::new()),
                Event::InitApply(o) => {
                    if let (Some(buf), Some(n)) = (init.as_mut(), node_from(&o.metadata, &gk)) {
                        buf.push(n);
                    }
                }
                Event::InitDone => {
                    let fresh = init.take().unwrap_or_default();
                    let keep: HashSet<&str> = fresh.iter().map(|n| n.uid.as_str()).collect();
                    let stale: Vec<String> = st
                        .graph
                        .nodes
                        .values()
                        .filter(|n| n.gk == gk && !keep.contains(n.uid.as_str()))
                        .map(|n| n.uid.clone())
                        .collect();
                    for u in stale {
                        st.graph.remove(&u);
                    }
                    for n in fresh {
                        st.graph.upsert(n);
                    }
                    st.synced.insert(gk.clone());
                }
                Event::Apply(o) => {
                    if let Some(n) = node_from(&o.metadata, &gk) {
                        st.graph.upsert(n);
                    }
                }
                Event::Delete(o) => {
                    if let Some(u) = &o.metadata.uid {
                        st.graph.remove(u);
                    }
                }
            }
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Discovers deletable resources now and then, starting a watch for
    /// each new one.
    async fn discover(self: Arc<Self>) {
        loop {
            match deletable_resources(&self.client).await {
                Ok(rs) => {
                    for r in rs {
                        let gk = (r.ar.group.clone(), r.ar.kind.clone());
                        let new = {
                            let mut st = self.lock();
                            st.resources.insert(gk.clone(), r.clone()).is_none()
                        };
                        if new {
                            tokio::spawn(self.clone().watch(gk, r.ar));
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "gc discovery failed"),
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }

    fn api_for(&self, gk: &GroupKind, ns: Option<&str>) -> Option<(Api<DynamicObject>, bool)> {
        let st = self.lock();
        let r = st.resources.get(gk)?;
        Some(match (r.namespaced, ns) {
            (true, Some(ns)) => (Api::namespaced_with(self.client.clone(), ns, &r.ar), true),
            (true, None) => return None,
            (false, _) => (Api::all_with(self.client.clone(), &r.ar), false),
        })
    }

    /// Whether an owner the graph does not know really is gone.
    async fn owner_gone(&self, dep: &Node, o: &OwnerRef) -> Result<bool, kube::Error> {
        {
            let st = self.lock();
            if st
                .verified
                .get(&o.uid)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(30))
            {
                return Ok(false);
            }
        }
        let gk = (group_of(&o.api_version).to_string(), o.kind.clone());
        let Some((api, _)) = self.api_for(&gk, dep.namespace.as_deref()) else {
            // An unknown kind (or a namespaced owner of a cluster-scoped
            // object) cannot be verified: keep the dependent.
            return Ok(false);
        };
        match api.get_metadata_opt(&o.name).await? {
            Some(m) if m.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                let mut st = self.lock();
                st.verified.insert(o.uid.clone(), Instant::now());
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// upstream's attemptToDeleteItem for one dependent.
    async fn attempt_to_delete(&self, uid: &str) -> Result<(), kube::Error> {
        let (node, states, has_dependents) = {
            let st = self.lock();
            let Some(n) = st.graph.nodes.get(uid) else {
                return Ok(());
            };
            let states: Vec<(OwnerRef, OwnerState)> = n
                .owners
                .iter()
                .map(|o| (o.clone(), st.graph.owner_state(o)))
                .collect();
            (n.clone(), states, !st.graph.dependents_of(uid).is_empty())
        };
        let (mut solid, mut dangling, mut waiting) = (vec![], vec![], vec![]);
        for (o, s) in states {
            match s {
                OwnerState::Solid => solid.push(o.uid),
                OwnerState::Waiting => waiting.push(o.uid),
                OwnerState::Absent => {
                    if self.owner_gone(&node, &o).await? {
                        dangling.push(o.uid)
                    } else {
                        solid.push(o.uid)
                    }
                }
            }
        }
        let decision = decide(&node, has_dependents, &solid, &dangling, &waiting);
        let Some((api, _)) = self.api_for(&node.gk, node.namespace.as_deref()) else {
            return Ok(());
        };
        match decision {
            Decision::Nothing => return Ok(()),
            Decision::PatchOwners { remove, unblock } => {
                let refs: Vec<Value> = node
                    .owners
                    .iter()
                    .filter(|o| !remove.contains(&o.uid))
                    .map(|o| {
                        let full = self.full_owner_ref(&node, o);
                        let mut full = full;
                        if unblock.contains(&o.uid) {
                            full["blockOwnerDeletion"] = json!(false);
                        }
                        full
                    })
                    .collect();
                tracing::info!(object = %node.name, kind = %node.gk.1, "gc: removing dangling owner references");
                self.patch_meta(&api, &node, json!({"ownerReferences": refs}))
                    .await?;
            }
            Decision::DeleteForeground | Decision::DeleteBackground => {
                let policy = if decision == Decision::DeleteForeground {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                };
                tracing::info!(object = %node.name, kind = %node.gk.1, ?policy, "gc: deleting dependent");
                let dp = DeleteParams {
                    propagation_policy: Some(policy),
                    preconditions: Some(Preconditions {
                        uid: Some(node.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&node.name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.lock().acted.insert(node.uid.clone(), Instant::now());
        Ok(())
    }

    /// The owner reference as stored (with controller flag), read back from
    /// the object's own metadata is not available in the graph, so it is
    /// rebuilt from what the graph keeps.
    fn full_owner_ref(&self, _node: &Node, o: &OwnerRef) -> Value {
        let mut v =
            json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid});
        if o.block {
            v["blockOwnerDeletion"] = json!(true);
        }
        v
    }

    /// Merge-patches metadata with the node's resourceVersion as precondition.
    async fn patch_meta(
        &self,
        api: &Api<DynamicObject>,
        node: &Node,
        mut meta: Value,
    ) -> Result<(), kube::Error> {
        meta["resourceVersion"] = json!(node.resource_version);
        match api
            .patch(
                &node.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": meta})),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Changed meanwhile: the watch brings the new version and the
            // next sweep retries.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Full ownerReferences of a live object (keeps `controller` flags).
    async fn live_owner_refs(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
    ) -> Result<Option<(String, Vec<Value>)>, kube::Error> {
        let Some(m) = api.get_metadata_opt(name).await? else {
            return Ok(None);
        };
        let refs = m
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
        Ok(Some((
            m.metadata.resource_version.unwrap_or_default(),
            refs,
        )))
    }

    async fn remove_finalizer(&self, uid: &str, fin: &str) -> Result<(), kube::Error> {
        let node = {
            let st = self.lock();
            let Some(n) = st.graph.nodes.get(uid) else {
                return Ok(());
            };
            n.clone()
        };
        let Some((api, _)) = self.api_for(&node.gk, node.namespace.as_deref()) else {
            return Ok(());
        };
        let fins: Vec<&String> = node.finalizers.iter().filter(|f| *f != fin).collect();
        tracing::info!(object = %node.name, kind = %node.gk.1, finalizer = fin, "gc: removing finalizer");
        self.patch_meta(&api, &node, json!({"finalizers": fins}))
            .await?;
        self.lock().acted.insert(node.uid.clone(), Instant::now());
        Ok(())
    }

    /// Orphans the dependents of `owner`, then drops its `orphan` finalizer.
    async fn orphan(&self, owner: &str, deps: &[String]) -> Result<(), kube::Error> {
        for d in deps {
            let node = {
                let st = self.lock();
                st.graph.nodes.get(d).cloned()
            };
            let Some(node) = node else { continue };
            let Some((api, _)) = self.api_for(&node.gk, node.namespace.as_deref()) else {
                continue;
            };
            let Some((rv, refs)) = self.live_owner_refs(&api, &node.name).await? else {
                continue;
            };
            let kept: Vec<Value> = refs.iter().filter(|r| r["uid"] != owner).cloned().collect();
            if kept.len() == refs.len() {
                continue;
            }
            let mut n2 = node.clone();
            n2.resource_version = rv;
            tracing::info!(object = %node.name, kind = %node.gk.1, "gc: orphaning dependent");
            self.patch_meta(&api, &n2, json!({"ownerReferences": kept}))
                .await?;
            self.lock().acted.insert(node.uid.clone(), Instant::now());
        }
        // The owner keeps its finalizer until every dependent is released
        // (the next sweep checks again after the watch caught up).
        let pending = {
            let st = self.lock();
            st.graph
                .dependents_of(owner)
                .iter()
                .any(|d| d.owners.iter().any(|o| o.uid == owner))
        };
        if !pending {
            self.remove_finalizer(owner, graph::ORPHAN).await?;
        }
        Ok(())
    }

    async fn sweep(&self) {
        let (candidates, fg_done, orphaning, all_synced) = {
            let mut st = self.lock();
            st.acted.retain(|_, t| t.elapsed() < Duration::from_secs(2));
            st.verified
                .retain(|_, t| t.elapsed() < Duration::from_secs(30));
            let all_synced = st.resources.keys().all(|k| st.synced.contains(k));
            let skip = |u: &String| !st.acted.contains_key(u);
            (
                st.graph
                    .delete_candidates()
                    .into_iter()
                    .filter(skip)
                    .collect::<Vec<_>>(),
                st.graph
                    .foreground_done()
                    .into_iter()
                    .filter(skip)
                    .collect::<Vec<_>>(),
                st.graph
                    .orphaning()
                    .into_iter()
                    .filter(|(u, _)| skip(u))
                    .collect::<Vec<_>>(),
                all_synced,
            )
        };
        futures::stream::iter(candidates)
            .for_each_concurrent(16, |u| async move {
                if let Err(e) = self.attempt_to_delete(&u).await {
                    tracing::debug!(uid = %u, error = %e, "gc: attempt to delete failed");
                }
            })
            .await;
        // Finalizers wait for a complete graph: a dependent not yet seen
        // would be missed.
        if !all_synced && self.started.elapsed() < Duration::from_secs(60) {
            return;
        }
        for u in fg_done {
            if let Err(e) = self.remove_finalizer(&u, graph::FOREGROUND).await {
                tracing::debug!(uid = %u, error = %e, "gc: removing foregroundDeletion failed");
            }
        }
        for (u, deps) in orphaning {
            if let Err(e) = self.orphan(&u, &deps).await {
                tracing::debug!(uid = %u, error = %e, "gc: orphaning failed");
            }
        }
    }
}

/// Resources that support list, watch and delete (preferred versions).
async fn deletable_resources(client: &Client) -> Result<Vec<Resource>, kube::Error> {
    let d = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for g in d.groups() {
        for (ar, caps) in g.recommended_resources() {
            if IGNORED.contains(&(ar.group.as_str(), ar.plural.as_str())) {
                continue;
            }
            if [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v))
            {
                out.push(Resource {
                    namespaced: caps.scope == Scope::Namespaced,
                    ar,
                });
            }
        }
    }
    Ok(out)
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let gc = Arc::new(Gc {
        client,
        state: Mutex::new(State {
            graph: Graph::default(),
            resources: HashMap::new(),
            synced: HashSet::new(),
            acted: HashMap::new(),
            verified: HashMap::new(),
        }),
        notify: Notify::new(),
        started: Instant::now(),
    });
    tokio::spawn(gc.clone().discover());
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(2), gc.notify.notified()).await;
        // Let a burst of events land before looking.
        tokio::time::sleep(Duration::from_millis(50)).await;
        gc.sweep().await;
    }
}
