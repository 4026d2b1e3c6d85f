//! The endpoints and EndpointSlice controllers: for every Service with a
//! selector, the core/v1 Endpoints (ready and not-ready addresses, ports
//! resolved per pod from named target ports) and the discovery.k8s.io/v1
//! EndpointSlices (`<service>-<random>`, one per address type and port
//! mapping, at most 100 endpoints each) with the upstream labels,
//! conditions and owner reference. Services without a selector are left
//! to the user.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(p: &Pod) -> Option<&str> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|s| !s.is_empty())
}

/// upstream's ShouldPodBeInEndpoints.
fn should_include(p: &Pod, include_terminating: bool) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if pod_ip(p).is_none() {
        return false;
    }
    include_terminating || p.metadata.deletion_timestamp.is_none()
}

fn selector_matches(sel: &BTreeMap<String, String>, p: &Pod) -> bool {
    let labels = p.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// upstream's FindPort: the container port a service port targets on a pod.
fn find_port(p: &Pod, sp: &k8s_openapi::api::core::v1::ServicePort) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(i)) => Some(*i),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            p.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|cp| {
                    (cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(cp.container_port)
                })
            })
        }
    }
}

/// The resolved ports of one pod: (name, port, protocol, appProtocol).
type Ports = Vec<(String, i32, String, Option<String>)>;

fn pod_ports(svc: &Service, p: &Pod) -> Ports {
    let mut v: Ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some((
                sp.name.clone().unwrap_or_default(),
                find_port(p, sp)?,
                sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                sp.app_protocol.clone(),
            ))
        })
        .collect();
    v.sort();
    v
}

fn target_ref(p: &Pod) -> Value {
    json!({"kind": "Pod", "namespace": p.metadata.namespace, "name": p.metadata.name,
           "uid": p.metadata.uid})
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The Endpoints subsets for a service over the pods of its namespace.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<Value> {
    let Some(sel) = selector(svc) else {
        return vec![];
    };
    let pna = publish_not_ready(svc);
    let svc_name = svc.metadata.name.as_deref().unwrap_or_default();
    // ports → (ready, not ready) addresses.
    let mut groups: BTreeMap<Ports, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for p in pods {
        if !selector_matches(sel, p) || !should_include(p, pna) {
            continue;
        }
        let ports = pod_ports(svc, p);
        let has_ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_some_and(|v| !v.is_empty());
        if has_ports && ports.is_empty() {
            continue;
        }
        let mut addr = json!({"ip": pod_ip(p), "targetRef": target_ref(p)});
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            addr["nodeName"] = json!(n);
        }
        let spec = p.spec.as_ref();
        if let (Some(h), Some(sd)) = (
            spec.and_then(|s| s.hostname.as_deref()),
            spec.and_then(|s| s.subdomain.as_deref()),
        ) {
            if sd == svc_name {
                addr["hostname"] = json!(h);
            }
        }
        let g = groups.entry(ports).or_default();
        if pna || pod_ready(p) {
            g.0.push(addr);
        } else {
            g.1.push(addr);
        }
    }
    let key = |a: &Value| {
        (
            a["ip"].as_str().unwrap_or_default().to_string(),
            a["targetRef"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by_key(key);
            not_ready.sort_by_key(key);
            let mut s = json!({});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            let ports: Vec<Value> = ports
                .into_iter()
                .map(|(name, port, proto, app)| {
                    let mut v = json!({"port": port, "protocol": proto});
                    if !name.is_empty() {
                        v["name"] = json!(name);
                    }
                    if let Some(a) = app {
                        v["appProtocol"] = json!(a);
                    }
                    v
                })
                .collect();
            if !ports.is_empty() {
                s["ports"] = json!(ports);
            }
            s
        })
        .collect()
}

/// One desired EndpointSlice: address type, ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceSpec {
    pub address_type: String,
    pub ports: Vec<Value>,
    pub endpoints: Vec<Value>,
}

/// The EndpointSlices for a service (a placeholder without endpoints when
/// no pod matches, like upstream).
pub fn desired_slices(svc: &Service, pods: &[Arc<Pod>]) -> Vec<SliceSpec> {
    let Some(sel) = selector(svc) else {
        return vec![];
    };
    let pna = publish_not_ready(svc);
    let mut groups: BTreeMap<(String, Ports), Vec<Value>> = BTreeMap::new();
    for p in pods {
        if !selector_matches(sel, p) || !should_include(p, true) {
            continue;
        }
        let ip = pod_ip(p).unwrap_or_default();
        let at = if ip.contains(':') { "IPv6" } else { "IPv4" };
        let serving = pod_ready(p);
        let terminating = p.metadata.deletion_timestamp.is_some();
        let ready = pna || (serving && !terminating);
        let mut ep = json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "targetRef": target_ref(p),
        });
        let spec = p.spec.as_ref();
        if let Some(n) = spec.and_then(|s| s.node_name.as_deref()) {
            ep["nodeName"] = json!(n);
        }
        if let (Some(h), Some(_)) = (
            spec.and_then(|s| s.hostname.as_deref()),
            spec.and_then(|s| s.subdomain.as_deref()),
        ) {
            ep["hostname"] = json!(h);
        }
        groups
            .entry((at.to_string(), pod_ports(svc, p)))
            .or_default()
            .push(ep);
    }
    let mut out = Vec::new();
    for ((at, ports), mut eps) in groups {
        eps.sort_by_key(|e| e["addresses"][0].as_str().unwrap_or_default().to_string());
        let ports: Vec<Value> = ports
            .into_iter()
            .map(|(name, port, proto, app)| {
                let mut v = json!({"name": name, "port": port, "protocol": proto});
                if let Some(a) = app {
                    v["appProtocol"] = json!(a);
                }
                v
            })
            .collect();
        for chunk in eps.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceSpec {
                address_type: at.clone(),
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if out.is_empty() {
        out.push(SliceSpec {
            address_type: "IPv4".into(),
            ports: vec![],
            endpoints: vec![],
        });
    }
    out
}

fn service_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        l.insert("service.kubernetes.io/headless".into(), String::new());
    }
    l
}

/// A slice name created at an instant.
type Created = (String, Instant);

struct Ctl {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    dirty: Mutex<HashSet<(String, String)>>,
    notify: Notify,
    /// service key → slice names created recently (the watch cache may not
    /// list them yet: no duplicates).
    created: Mutex<HashMap<(String, String), Vec<Created>>>,
}

impl Ctl {
    fn enqueue(&self, ns: &str, name: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((ns.to_string(), name.to_string()));
        self.notify.notify_one();
    }

    fn enqueue_for_pod(&self, p: &Pod) {
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        for s in self
            .services
            .state_filter(|s| s.metadata.namespace.as_deref() == Some(ns) && selector(s).is_some())
        {
            self.enqueue(ns, s.metadata.name.as_deref().unwrap_or_default());
        }
    }

    async fn sync(&self, ns: &str, name: &str) -> Result<bool, kube::Error> {
        let svc = self.services.find(|s| {
            s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name)
        });
        let ep_api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let sl_api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let sel = format!("{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}");
        let Some(svc) = svc else {
            // The service is gone: so are its Endpoints and slices.
            match ep_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            for s in sl_api
                .list(&ListParams::default().labels(&sel))
                .await?
                .items
            {
                if let Some(n) = s.metadata.name.as_deref() {
                    let _ = sl_api.delete(n, &DeleteParams::default()).await;
                }
            }
            return Ok(true);
        };
        if selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
            return Ok(true);
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(ns));
        self.sync_endpoints(&ep_api, &svc, &pods).await?;
        self.sync_slices(&sl_api, &sel, &svc, &pods).await
    }

    async fn sync_endpoints(
        &self,
        api: &Api<Endpoints>,
        svc: &Service,
        pods: &[Arc<Pod>],
    ) -> Result<(), kube::Error> {
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let subsets = desired_subsets(svc, pods);
        let labels = service_labels(svc);
        let cur = api.get_opt(name).await?;
        let mut obj = match &cur {
            Some(e) => serde_json::to_value(e).unwrap_or_default(),
            None => json!({"apiVersion": "v1", "kind": "Endpoints",
                           "metadata": {"name": name, "namespace": svc.metadata.namespace}}),
        };
        let cur_subsets = obj.get("subsets").cloned().unwrap_or(json!([]));
        let cur_labels: BTreeMap<String, String> = cur
            .as_ref()
            .and_then(|e| e.metadata.labels.clone())
            .unwrap_or_default();
        if cur.is_some() && cur_subsets == json!(subsets) && cur_labels == labels {
            return Ok(());
        }
        obj["subsets"] = json!(subsets);
        obj["metadata"]["labels"] = json!(labels);
        let ep: Endpoints = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
        let r = if cur.is_some() {
            api.replace(name, &PostParams::default(), &ep).await
        } else {
            api.create(&PostParams::default(), &ep).await
        };
        match r {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Raced: try again.
                self.enqueue(svc.metadata.namespace.as_deref().unwrap_or_default(), name);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Returns false when the slices listed lag behind our own writes.
    async fn sync_slices(
        &self,
        api: &Api<EndpointSlice>,
        sel: &str,
        svc: &Service,
        pods: &[Arc<Pod>],
    ) -> Result<bool, kube::Error> {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let existing = api.list(&ListParams::default().labels(sel)).await?.items;
        {
            let mut c = self.created.lock().unwrap_or_else(|e| e.into_inner());
            let key = (ns.clone(), name.clone());
            if let Some(v) = c.get_mut(&key) {
                v.retain(|(n, t)| {
                    t.elapsed() < Duration::from_secs(5)
                        && !existing
                            .iter()
                            .any(|s| s.metadata.name.as_deref() == Some(n.as_str()))
                });
                if !v.is_empty() {
                    return Ok(false);
                }
                c.remove(&key);
            }
        }
        let mut labels = service_labels(svc);
        labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name,
            "uid": svc.metadata.uid, "controller": true, "blockOwnerDeletion": true}]);
        let want = desired_slices(svc, pods);
        let mut unused: Vec<EndpointSlice> = existing;
        let mut todo: Vec<SliceSpec> = Vec::new();
        // Slices already exactly right stay untouched.
        for w in want {
            let pos = unused.iter().position(|s| {
                let v = serde_json::to_value(s).unwrap_or_default();
                v["addressType"] == w.address_type
                    && v.get("ports").cloned().unwrap_or(json!([])) == json!(w.ports)
                    && v.get("endpoints").cloned().unwrap_or(json!([])) == json!(w.endpoints)
                    && s.metadata.labels.clone().unwrap_or_default() == labels
            });
            match pos {
                Some(i) => {
                    unused.remove(i);
                }
                None => todo.push(w),
            }
        }
        for w in todo {
            // Reuse a slice of the same address type, else create one.
            let reuse = unused
                .iter()
                .position(|s| s.address_type == w.address_type)
                .map(|i| unused.remove(i));
            let mut v = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"namespace": ns, "labels": labels, "ownerReferences": owner},
                "addressType": w.address_type, "endpoints": w.endpoints, "ports": w.ports,
            });
            match reuse {
                Some(s) => {
                    v["metadata"]["name"] = json!(s.metadata.name);
                    v["metadata"]["resourceVersion"] = json!(s.metadata.resource_version);
                    let sl: EndpointSlice =
                        serde_json::from_value(v).map_err(kube::Error::SerdeError)?;
                    let n = s.metadata.name.clone().unwrap_or_default();
                    match api.replace(&n, &PostParams::default(), &sl).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                            return Ok(false)
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    v["metadata"]["generateName"] = json!(format!("{name}-"));
                    let sl: EndpointSlice =
                        serde_json::from_value(v).map_err(kube::Error::SerdeError)?;
                    let made = api.create(&PostParams::default(), &sl).await?;
                    if let Some(n) = made.metadata.name {
                        self.created
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry((ns.clone(), name.clone()))
                            .or_default()
                            .push((n, Instant::now()));
                    }
                }
            }
        }
        for s in unused {
            if let Some(n) = s.metadata.name.as_deref() {
                match api.delete(n, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(30), self.notify.notified()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let batch: Vec<(String, String)> = {
                let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
                d.drain().collect()
            };
            for (ns, name) in batch {
                match self.sync(&ns, &name).await {
                    Ok(true) => {}
                    Ok(false) => self.requeue_after(ns, name, Duration::from_millis(200)),
                    Err(e) => {
                        tracing::debug!(namespace = %ns, service = %name, error = %e, "endpoints sync failed");
                        self.requeue_after(ns, name, Duration::from_secs(1));
                    }
                }
            }
        }
    }

    fn requeue_after(self: &Arc<Self>, ns: String, name: String, after: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            me.enqueue(&ns, &name);
        });
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let (services, svc_w) = reflector::store::<Service>();
    let (pods, pod_w) = reflector::store::<Pod>();
    let ctl = Arc::new(Ctl {
        client: client.clone(),
        services,
        pods,
        dirty: Mutex::new(HashSet::new()),
        notify: Notify::new(),
        created: Mutex::new(HashMap::new()),
    });
    let svc_stream = reflector::reflector(
        svc_w,
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let pod_stream = reflector::reflector(
        pod_w,
        watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff(),
    );
    let c1 = ctl.clone();
    let svc_task = svc_stream.for_each(move |ev| {
        let c = c1.clone();
        async move {
            match ev {
                Ok(Event::Apply(s) | Event::Delete(s) | Event::InitApply(s)) => c.enqueue(
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default(),
                ),
                Ok(Event::InitDone) => {
                    // Resync every service after a relist.
                    for s in c.services.state() {
                        c.enqueue(
                            s.metadata.namespace.as_deref().unwrap_or_default(),
                            s.metadata.name.as_deref().unwrap_or_default(),
                        );
                    }
                }
                Ok(Event::Init) => {}
                Err(e) => tracing::debug!(error = %e, "service watch error"),
            }
        }
    });
    let c2 = ctl.clone();
    let pod_task = pod_stream.for_each(move |ev| {
        let c = c2.clone();
        async move {
            match ev {
                Ok(Event::Apply(p) | Event::Delete(p)) => c.enqueue_for_pod(&p),
                Ok(Event::InitDone) => {
                    for s in c.services.state() {
                        c.enqueue(
                            s.metadata.namespace.as_deref().unwrap_or_default(),
                            s.metadata.name.as_deref().unwrap_or_default(),
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "pod watch error"),
            }
        }
    });
    // Both stores must be filled before the first sync.
    let (r1, r2) = (ctl.services.clone(), ctl.pods.clone());
    let worker = ctl.clone();
    tokio::spawn(async move {
        let _ = r1.wait_until_ready().await;
        let _ = r2.wait_until_ready().await;
        worker.worker().await;
    });
    tokio::join!(svc_task, pod_task);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(target: Value, pna: bool) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": pna,
                     "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, deleting: bool) -> Arc<Pod> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                     "ports": [{"name": port_name, "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn subsets_split_ready_and_resolve_named_ports() {
        let s = svc(json!("web"), false);
        let pods = vec![
            pod("b", "10.0.0.2", false, "web", false),
            pod("a", "10.0.0.1", true, "web", false),
            pod("c", "10.0.0.3", true, "other", false),
            pod("d", "10.0.0.4", true, "web", true),
        ];
        let ss = desired_subsets(&s, &pods);
        assert_eq!(ss.len(), 1, "{ss:#?}");
        assert_eq!(ss[0]["addresses"][0]["ip"], "10.0.0.1");
        assert_eq!(ss[0]["addresses"][0]["targetRef"]["name"], "a");
        assert_eq!(ss[0]["addresses"][0]["nodeName"], "n1");
        assert_eq!(ss[0]["notReadyAddresses"][0]["ip"], "10.0.0.2");
        assert_eq!(
            ss[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
    }

    #[test]
    fn slices_have_conditions_and_terminating() {
        let s = svc(json!(8080), false);
        let pods = vec![
            pod("a", "10.0.0.1", true, "web", false),
            pod("d", "10.0.0.4", true, "web", true),
        ];
        let sl = desired_slices(&s, &pods);
        assert_eq!(sl.len(), 1);
        assert_eq!(sl[0].address_type, "IPv4");
        assert_eq!(sl[0].endpoints.len(), 2);
        assert_eq!(
            sl[0].endpoints[1]["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
        assert_eq!(
            sl[0].ports,
            vec![json!({"name": "http", "port": 8080, "protocol": "TCP"})]
        );
        // No pods: one placeholder slice.
        let empty = desired_slices(&s, &[]);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].endpoints.is_empty());
    }

    #[test]
    fn publish_not_ready() {
        let s = svc(json!(8080), true);
        let ss = desired_subsets(&s, &[pod("b", "10.0.0.2", false, "web", false)]);
        assert_eq!(ss[0]["addresses"][0]["ip"], "10.0.0.2");
        assert!(ss[0].get("notReadyAddresses").is_none());
    }

    #[test]
    fn many_endpoints_are_chunked() {
        let s = svc(json!(8080), false);
        let pods: Vec<Arc<Pod>> = (0..150)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                    "web",
                    false,
                )
            })
            .collect();
        let sl = desired_slices(&s, &pods);
        assert_eq!(sl.len(), 2);
        assert_eq!(sl[0].endpoints.len(), 100);
    }
}
