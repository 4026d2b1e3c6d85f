//! Resource accounting (upstream `framework.Resource` and `resourcehelper.PodRequests`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{quantity_milli_value, quantity_value};

/// Default CPU request (millicores) assumed for scoring when a container has none.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Default memory request (bytes) assumed for scoring when a container has none.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

pub const RESOURCE_CPU: &str = "cpu";
pub const RESOURCE_MEMORY: &str = "memory";
pub const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const RESOURCE_PODS: &str = "pods";

/// A set of resource amounts: CPU in millicores, the rest in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for node allocatable.
    pub allowed_pod_number: i64,
    /// Extended resources, hugepages, attachable volumes, ... (upstream "scalar resources").
    pub scalar: BTreeMap<String, i64>,
}

/// Upstream `schedutil.IsScalarResourceName`: extended resources, hugepages,
/// prefixed native resources and attachable volumes.
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") || name.contains('/')
}

impl Resources {
    /// Build from a `ResourceList`.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        r.add_list(list);
        r
    }

    /// Add the amounts of a `ResourceList`.
    pub fn add_list(&mut self, list: &BTreeMap<String, Quantity>) {
        for (name, q) in list {
            self.add_named(name, &q.0);
        }
    }

    fn add_named(&mut self, name: &str, q: &str) {
        match name {
            RESOURCE_CPU => self.milli_cpu += quantity_milli_value(q),
            RESOURCE_MEMORY => self.memory += quantity_value(q),
            RESOURCE_EPHEMERAL_STORAGE => self.ephemeral_storage += quantity_value(q),
            RESOURCE_PODS => self.allowed_pod_number += quantity_value(q),
            _ if is_scalar_resource_name(name) => {
                *self.scalar.entry(name.to_string()).or_insert(0) += quantity_value(q);
            }
            _ => {}
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    /// Element-wise maximum.
    pub fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(other.allowed_pod_number);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(*v);
            *e = (*e).max(*v);
        }
    }

    /// Amount of a resource by name (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            RESOURCE_CPU => self.milli_cpu,
            RESOURCE_MEMORY => self.memory,
            RESOURCE_EPHEMERAL_STORAGE => self.ephemeral_storage,
            RESOURCE_PODS => self.allowed_pod_number,
            _ => self.scalar.get(name).copied().unwrap_or(0),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Container, non_missing: bool) -> Resources {
    let mut r = Resources::default();
    let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    if let Some(reqs) = reqs {
        r.add_list(reqs);
    }
    if non_missing {
        let has = |k: &str| reqs.is_some_and(|m| m.contains_key(k));
        if !has(RESOURCE_CPU) {
            r.milli_cpu += DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has(RESOURCE_MEMORY) {
            r.memory += DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// Whether an init container is a restartable ("sidecar") init container.
pub fn is_restartable_init_container(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn aggregate(pod: &Pod, non_missing: bool) -> Resources {
    let mut reqs = Resources::default();
    let Some(spec) = pod.spec.as_ref() else {
        return reqs;
    };
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_missing));
    }
    let mut restartable = Resources::default();
    let mut init = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let cr = container_requests(c, non_missing);
        if is_restartable_init_container(c) {
            reqs.add(&cr);
            restartable.add(&cr);
            init.set_max(&restartable);
        } else {
            let mut tmp = cr;
            tmp.add(&restartable);
            init.set_max(&tmp);
        }
    }
    reqs.set_max(&init);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add_list(overhead);
    }
    reqs
}

/// Effective resource requests of a pod, as upstream `resourcehelper.PodRequests`:
/// sum of containers (plus restartable init containers), max'ed against each init
/// container's usage, plus pod overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    aggregate(pod, false)
}

/// Like [`pod_requests`], but containers missing a CPU/memory request count as
/// 100m / 200Mi (upstream's "non-zero" requests used for scoring).
pub fn pod_non_zero_requests(pod: &Pod) -> Resources {
    aggregate(pod, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn sums_containers_and_overhead() {
        let p = pod(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi", "example.com/gpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "1.5", "ephemeral-storage": "1G"}}}
            ],
            "overhead": {"cpu": "50m", "memory": "1Mi"}
        }}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1650);
        assert_eq!(r.memory, (1 << 30) + (1 << 20));
        assert_eq!(r.ephemeral_storage, 1_000_000_000);
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&1));
    }

    #[test]
    fn init_containers_max_and_sidecars() {
        // regular init container larger than the containers
        let p = pod(json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]
        }}));
        let r = pod_requests(&p);
        assert_eq!((r.milli_cpu, r.memory), (2000, 1 << 30));

        // sidecar (restartable) is added to the sum; later init containers run alongside it
        let p = pod(json!({"spec": {
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "2"}}}
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]
        }}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 2500);

        let p = pod(json!({"spec": {
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "100m"}}}
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]
        }}));
        assert_eq!(pod_requests(&p).milli_cpu, 1500);
    }

    #[test]
    fn non_zero_defaults() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"requests": {"cpu": "0"}}}
        ]}}));
        let r = pod_non_zero_requests(&p);
        assert_eq!(r.milli_cpu, 100);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
        assert!(pod_requests(&p).is_zero());
    }
}
