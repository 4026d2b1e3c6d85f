//! Cluster snapshot: nodes with their pods and cached aggregates (upstream
//! `framework.NodeInfo` / `cache.Snapshot`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::labels::{labels_of, Labels, Selector};
use crate::resources::{
    is_restartable_init_container, pod_non_zero_requests, pod_requests, Resources,
};

/// A host port in use (sanitized: empty IP → `0.0.0.0`, empty protocol → `TCP`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    pub fn new(ip: Option<&str>, protocol: Option<&str>, port: i32) -> HostPort {
        HostPort {
            ip: ip
                .filter(|s| !s.is_empty())
                .unwrap_or("0.0.0.0")
                .to_string(),
            protocol: protocol
                .filter(|s| !s.is_empty())
                .unwrap_or("TCP")
                .to_string(),
            port,
        }
    }
}

/// Host ports of a pod: its containers' and restartable init containers'
/// (upstream `schedutil.GetHostPorts`).
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    let inits = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_restartable_init_container(c));
    for c in inits.chain(spec.containers.iter()) {
        for p in c.ports.iter().flatten() {
            if p.host_port.unwrap_or(0) > 0 {
                out.push(HostPort::new(
                    p.host_ip.as_deref(),
                    p.protocol.as_deref(),
                    p.host_port.unwrap_or(0),
                ));
            }
        }
    }
    out
}

/// Whether `want` conflicts with any of `used` (upstream `HostPortInfo.CheckConflict`).
pub fn port_conflicts(used: &[HostPort], want: &HostPort) -> bool {
    if want.port <= 0 {
        return false;
    }
    used.iter().any(|u| {
        u.port == want.port
            && u.protocol == want.protocol
            && (want.ip == "0.0.0.0" || u.ip == "0.0.0.0" || u.ip == want.ip)
    })
}

/// A compiled pod (anti-)affinity term (upstream `framework.AffinityTerm`).
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub namespaces: Vec<String>,
    pub namespace_selector: Selector,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    pub fn new(owner: &Pod, term: &PodAffinityTerm) -> AffinityTerm {
        let owner_ns = owner.metadata.namespace.as_deref().unwrap_or("default");
        let namespaces = match (&term.namespaces, &term.namespace_selector) {
            (ns, None) if ns.as_ref().is_none_or(|n| n.is_empty()) => vec![owner_ns.to_string()],
            (ns, _) => ns.clone().unwrap_or_default(),
        };
        AffinityTerm {
            namespaces,
            namespace_selector: Selector::from_label_selector(term.namespace_selector.as_ref()),
            selector: Selector::from_label_selector(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` (whose namespace has labels `ns_labels`) matches this term.
    pub fn matches(&self, pod: &Pod, ns_labels: &Labels) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if self.namespaces.iter().any(|n| n == ns) || self.namespace_selector.matches(ns_labels) {
            return self.selector.matches(labels_of(&pod.metadata));
        }
        false
    }
}

/// A weighted (preferred) affinity term.
#[derive(Debug, Clone)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

/// Compiled pod affinity of a pod.
#[derive(Debug, Clone, Default)]
pub struct PodAffinityInfo {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
}

impl PodAffinityInfo {
    /// Compile a pod's pod affinity; `None` if it has none.
    pub fn from_pod(pod: &Pod) -> Option<PodAffinityInfo> {
        let aff = pod.spec.as_ref()?.affinity.as_ref()?;
        let mut info = PodAffinityInfo::default();
        if let Some(pa) = &aff.pod_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                info.required_affinity.push(AffinityTerm::new(pod, t));
            }
            for t in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                info.preferred_affinity.push(WeightedAffinityTerm {
                    term: AffinityTerm::new(pod, &t.pod_affinity_term),
                    weight: t.weight,
                });
            }
        }
        if let Some(pa) = &aff.pod_anti_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                info.required_anti_affinity.push(AffinityTerm::new(pod, t));
            }
            for t in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                info.preferred_anti_affinity.push(WeightedAffinityTerm {
                    term: AffinityTerm::new(pod, &t.pod_affinity_term),
                    weight: t.weight,
                });
            }
        }
        let empty = info.required_affinity.is_empty()
            && info.required_anti_affinity.is_empty()
            && info.preferred_affinity.is_empty()
            && info.preferred_anti_affinity.is_empty();
        (!empty).then_some(info)
    }
}

/// An existing (bound or assumed) pod with precomputed data.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub requests: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub affinity: Option<Arc<PodAffinityInfo>>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let requests = pod_requests(&pod);
        let nz = pod_non_zero_requests(&pod);
        PodInfo {
            requests,
            non_zero_milli_cpu: nz.milli_cpu,
            non_zero_memory: nz.memory,
            host_ports: pod_host_ports(&pod),
            affinity: PodAffinityInfo::from_pod(&pod).map(Arc::new),
            pod,
        }
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    pub fn has_required_anti_affinity(&self) -> bool {
        self.affinity
            .as_ref()
            .is_some_and(|a| !a.required_anti_affinity.is_empty())
    }
}

/// A node and the pods on it, with cached aggregates.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<PodInfo>,
    pub allocatable: Resources,
    /// Sum of the pods' requests.
    pub requested: Resources,
    /// Sum of the pods' requests with 100m/200Mi defaults (cpu/memory only).
    pub non_zero_requested: Resources,
    pub used_ports: Vec<HostPort>,
    /// Image name → size in bytes, from `status.images`.
    pub images: HashMap<String, i64>,
    /// Number of pods with any pod (anti-)affinity.
    pub pods_with_affinity: usize,
    /// Number of pods with required anti-affinity.
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let status = node.status.as_ref();
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
        let mut images = HashMap::new();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in img.names.iter().flatten() {
                images.insert(name.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        NodeInfo {
            node,
            pods: Vec::new(),
            allocatable,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            used_ports: Vec::new(),
            images,
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        }
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    pub fn labels(&self) -> &Labels {
        labels_of(&self.node.metadata)
    }

    /// Add a pod to this node's accounting.
    pub fn add_pod_info(&mut self, pi: PodInfo) {
        self.requested.add(&pi.requests);
        self.non_zero_requested.milli_cpu += pi.non_zero_milli_cpu;
        self.non_zero_requested.memory += pi.non_zero_memory;
        self.used_ports.extend(pi.host_ports.iter().cloned());
        if pi.affinity.is_some() {
            self.pods_with_affinity += 1;
        }
        if pi.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pi);
    }

    /// Remove a pod by namespace/name, returning it.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<PodInfo> {
        let idx = self
            .pods
            .iter()
            .position(|p| p.namespace() == namespace && p.name() == name)?;
        let pi = self.pods.swap_remove(idx);
        self.requested.sub(&pi.requests);
        self.non_zero_requested.milli_cpu -= pi.non_zero_milli_cpu;
        self.non_zero_requested.memory -= pi.non_zero_memory;
        for hp in &pi.host_ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(i);
            }
        }
        if pi.affinity.is_some() {
            self.pods_with_affinity -= 1;
        }
        if pi.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pi)
    }
}

/// Whether a pod has finished (Succeeded/Failed) and no longer holds resources.
pub fn pod_is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Zone key of a node (upstream `utilnode.GetZoneKey`).
fn zone_key(node: &Node) -> String {
    let l = labels_of(&node.metadata);
    let get = |a: &str, b: &str| l.get(a).or_else(|| l.get(b)).cloned().unwrap_or_default();
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// A point-in-time view of the cluster used for one or more scheduling cycles.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Nodes, in upstream node-tree order (round-robin over zones).
    pub nodes: Vec<NodeInfo>,
    /// Namespace name → labels (for `namespaceSelector` in pod affinity terms).
    pub namespace_labels: BTreeMap<String, Labels>,
    /// Namespace → selectors of the Services in it (for default topology spreading).
    pub service_selectors: BTreeMap<String, Vec<Labels>>,
    /// Controller owner UID → its pod selector (for default topology spreading).
    /// When a pod's controller is missing here, its labels are used instead.
    pub owner_selectors: HashMap<String, LabelSelector>,
    node_index: HashMap<String, usize>,
    pod_locations: HashMap<(String, String), usize>,
    /// Image name → number of nodes that have it.
    image_nodes: HashMap<String, usize>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
    /// (namespace, label key, label value) → pods carrying that label.
    label_index: HashMap<(String, String, String), Vec<Arc<Pod>>>,
}

static EMPTY: Labels = BTreeMap::new();

impl Snapshot {
    /// Build a snapshot from nodes, pods bound (or assumed) to them, and namespaces.
    /// Pods not bound to a known node, and terminal pods, are ignored.
    pub fn new(nodes: Vec<Node>, pods: Vec<Pod>, namespaces: &[Namespace]) -> Snapshot {
        Self::from_arcs(
            nodes.into_iter().map(Arc::new).collect(),
            pods.into_iter().map(Arc::new).collect(),
            namespace_labels(namespaces),
        )
    }

    /// Like [`Snapshot::new`] with shared objects and a namespace → labels map.
    pub fn from_arcs(
        nodes: Vec<Arc<Node>>,
        pods: Vec<Arc<Pod>>,
        namespace_labels: BTreeMap<String, Labels>,
    ) -> Snapshot {
        // Order nodes like upstream's node tree: round robin over zones.
        let mut zones: Vec<(String, Vec<Arc<Node>>)> = Vec::new();
        for n in nodes {
            let z = zone_key(&n);
            match zones.iter_mut().find(|(k, _)| *k == z) {
                Some((_, v)) => v.push(n),
                None => zones.push((z, vec![n])),
            }
        }
        let total: usize = zones.iter().map(|(_, v)| v.len()).sum();
        let mut ordered = Vec::with_capacity(total);
        let mut iters: Vec<_> = zones.into_iter().map(|(_, v)| v.into_iter()).collect();
        while ordered.len() < total {
            for it in iters.iter_mut() {
                if let Some(n) = it.next() {
                    ordered.push(n);
                }
            }
        }
        let mut s = Snapshot {
            namespace_labels,
            ..Default::default()
        };
        for n in ordered {
            s.upsert_node(n);
        }
        for p in pods {
            s.add_pod(p);
        }
        s
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    pub fn get_node(&self, name: &str) -> Option<&NodeInfo> {
        self.node_index(name).map(|i| &self.nodes[i])
    }

    /// Labels of a namespace (empty if unknown).
    pub fn ns_labels(&self, ns: &str) -> &Labels {
        self.namespace_labels.get(ns).unwrap_or(&EMPTY)
    }

    /// Number of nodes that have an image (by exact name).
    pub fn image_num_nodes(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    pub fn pods_with_affinity(&self) -> usize {
        self.pods_with_affinity
    }

    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.pods_with_required_anti_affinity
    }

    /// Add or replace a node (keeping its pods).
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let ni = NodeInfo::new(node);
        for img in ni.images.keys() {
            *self.image_nodes.entry(img.clone()).or_insert(0) += 1;
        }
        match self.node_index.get(&name) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.nodes[i], ni);
                self.forget_images(&old);
                let ni = &mut self.nodes[i];
                for p in old.pods {
                    ni.add_pod_info(p);
                }
            }
            None => {
                self.node_index.insert(name, self.nodes.len());
                self.nodes.push(ni);
            }
        }
    }

    fn forget_images(&mut self, ni: &NodeInfo) {
        for img in ni.images.keys() {
            if let Some(c) = self.image_nodes.get_mut(img) {
                *c -= 1;
                if *c == 0 {
                    self.image_nodes.remove(img);
                }
            }
        }
    }

    fn unindex(&mut self, pod: &Arc<Pod>) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        for (k, v) in labels_of(&pod.metadata) {
            let key = (ns.to_string(), k.clone(), v.clone());
            if let Some(list) = self.label_index.get_mut(&key) {
                if let Some(i) = list.iter().position(|p| Arc::ptr_eq(p, pod)) {
                    list.swap_remove(i);
                }
                if list.is_empty() {
                    self.label_index.remove(&key);
                }
            }
        }
    }

    /// Pods in `namespace` carrying label `key=value`.
    pub fn pods_with_label(&self, namespace: &str, key: &str, value: &str) -> &[Arc<Pod>] {
        self.label_index
            .get(&(namespace.to_string(), key.to_string(), value.to_string()))
            .map_or(&[], |v| v.as_slice())
    }

    /// Number of non-terminating pods in `namespace` matching `selector`, per
    /// node index (upstream `countPodsMatchSelector` for every node at once, via
    /// the label index).
    /// `None` when the selector has no `key=value` requirement to index by.
    pub fn count_matching_per_node(
        &self,
        namespace: &str,
        selector: &Selector,
    ) -> Option<Vec<i64>> {
        let mut out = vec![0; self.nodes.len()];
        if selector.is_empty() || matches!(selector, Selector::Nothing) {
            return Some(out);
        }
        let best = selector
            .required_pairs()
            .map(|(k, v)| self.pods_with_label(namespace, k, v))
            .min_by_key(|l| l.len())?;
        for p in best {
            if p.metadata.deletion_timestamp.is_some() || !selector.matches(labels_of(&p.metadata))
            {
                continue;
            }
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or("");
            if let Some(idx) = self.node_index(node) {
                out[idx] += 1;
            }
        }
        Some(out)
    }

    /// Remove a node and its pods.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeInfo> {
        let i = self.node_index.remove(name)?;
        let ni = self.nodes.remove(i);
        self.forget_images(&ni);
        for p in &ni.pods {
            self.pod_locations
                .remove(&(p.namespace().to_string(), p.name().to_string()));
            self.pods_with_affinity -= usize::from(p.affinity.is_some());
            self.pods_with_required_anti_affinity -= usize::from(p.has_required_anti_affinity());
        }
        for (idx, n) in self.nodes.iter().enumerate().skip(i) {
            self.node_index.insert(n.name().to_string(), idx);
            for p in &n.pods {
                self.pod_locations
                    .insert((p.namespace().to_string(), p.name().to_string()), idx);
            }
        }
        Some(ni)
    }

    /// Add (assume) a pod on the node named by its `spec.nodeName`. Returns false
    /// if the pod has no known node or is terminal. Replaces a pod of the same name.
    pub fn add_pod(&mut self, pod: Arc<Pod>) -> bool {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return false;
        };
        if pod_is_terminal(&pod) {
            return false;
        }
        let Some(&idx) = self.node_index.get(node) else {
            return false;
        };
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.remove_pod(&ns, &name);
        for (k, v) in labels_of(&pod.metadata) {
            self.label_index
                .entry((ns.clone(), k.clone(), v.clone()))
                .or_default()
                .push(pod.clone());
        }
        let pi = PodInfo::new(pod);
        self.pods_with_affinity += usize::from(pi.affinity.is_some());
        self.pods_with_required_anti_affinity += usize::from(pi.has_required_anti_affinity());
        self.nodes[idx].add_pod_info(pi);
        self.pod_locations.insert((ns, name), idx);
        true
    }

    /// Remove a pod by namespace/name.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        let idx = self
            .pod_locations
            .remove(&(namespace.to_string(), name.to_string()))?;
        let pi = self.nodes[idx].remove_pod(namespace, name)?;
        self.unindex(&pi.pod);
        self.pods_with_affinity -= usize::from(pi.affinity.is_some());
        self.pods_with_required_anti_affinity -= usize::from(pi.has_required_anti_affinity());
        Some(pi.pod)
    }
}

/// Namespace name → labels map from Namespace objects.
pub fn namespace_labels(namespaces: &[Namespace]) -> BTreeMap<String, Labels> {
    namespaces
        .iter()
        .filter_map(|ns| Some((ns.metadata.name.clone()?, labels_of(&ns.metadata).clone())))
        .collect()
}
