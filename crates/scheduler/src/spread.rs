//! PodTopologySpread plugin (filter and score), including system default constraints.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{PodState, Profile, Status, MAX_NODE_SCORE};
use crate::labels::{Labels, Selector};
use crate::plugins::{find_untolerated_taint, is_do_not_schedule_taint, node_taints};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const PLUGIN: &str = "PodTopologySpread";
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// Labels that differ between pods of the same controller and must not be part
/// of an approximated controller selector.
const PER_POD_LABELS: &[&str] = &[
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "pod-template-generation",
];

/// A compiled topology spread constraint.
#[derive(Debug, Clone)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Selector,
    pub min_domains: i64,
    pub honor_node_affinity: bool,
    pub honor_node_taints: bool,
}

impl SpreadConstraint {
    fn matches_inclusion_policies(&self, st: &PodState, ni: &NodeInfo) -> bool {
        if self.honor_node_affinity && !st.required_node_affinity.matches(&ni.node) {
            return false;
        }
        if self.honor_node_taints
            && find_untolerated_taint(node_taints(ni), st.tolerations, is_do_not_schedule_taint)
                .is_some()
        {
            return false;
        }
        true
    }
}

fn has_all_keys(labels: &Labels, cs: &[SpreadConstraint]) -> bool {
    cs.iter().all(|c| labels.contains_key(&c.topology_key))
}

/// Upstream `countPodsMatchSelector`.
fn count_matching(pods: &[PodInfo], selector: &Selector, ns: &str) -> i64 {
    if selector.is_empty() || matches!(selector, Selector::Nothing) {
        return 0;
    }
    pods.iter()
        .filter(|p| {
            p.pod.metadata.deletion_timestamp.is_none()
                && p.namespace() == ns
                && selector.matches(crate::labels::labels_of(&p.pod.metadata))
        })
        .count() as i64
}

/// Per-node match counts for each constraint via the snapshot's label index
/// (shared between constraints with the same selector).
fn index_counts(
    snapshot: &Snapshot,
    ns: &str,
    constraints: &[SpreadConstraint],
) -> Vec<Option<Vec<i64>>> {
    let mut out: Vec<Option<Vec<i64>>> = Vec::with_capacity(constraints.len());
    for (i, c) in constraints.iter().enumerate() {
        let prev = (0..i).find(|&j| constraints[j].selector == c.selector);
        let counts = match prev {
            Some(j) => out[j].clone(),
            None => snapshot.count_matching_per_node(ns, &c.selector),
        };
        out.push(counts);
    }
    out
}

/// The pod's own constraints with the given `whenUnsatisfiable` action.
fn pod_constraints(pod: &Pod, labels: &Labels, action: &str) -> Vec<SpreadConstraint> {
    let Some(tscs) = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
    else {
        return Vec::new();
    };
    tscs.iter()
        .filter(|c| c.when_unsatisfiable == action)
        .map(|c| {
            let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
            let match_labels: Labels = c
                .match_label_keys
                .iter()
                .flatten()
                .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            if !match_labels.is_empty() {
                selector.add_label_requirements(&match_labels);
            }
            SpreadConstraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn has_pod_constraints(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// Approximation of upstream `helper.DefaultSelector`: selectors of Services
/// selecting the pod, plus its controller's selector (ReplicaSet,
/// ReplicationController, StatefulSet) from `Snapshot::owner_selectors`, or the
/// pod's own labels (minus per-pod ones) when the controller isn't known.
pub fn default_selector(snapshot: &Snapshot, pod: &Pod) -> Selector {
    let labels = crate::labels::labels_of(&pod.metadata);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut set = Labels::new();
    for sel in snapshot.service_selectors.get(ns).into_iter().flatten() {
        if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let mut selector = Selector::from_labels(&set);
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let Some(owner) = owner else {
        return selector;
    };
    if !matches!(
        owner.kind.as_str(),
        "ReplicaSet" | "ReplicationController" | "StatefulSet"
    ) {
        return selector;
    }
    match snapshot.owner_selectors.get(&owner.uid) {
        Some(ls) => selector.and(Selector::from_label_selector(Some(ls))),
        None => {
            let own: Labels = labels
                .iter()
                .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            selector.add_label_requirements(&own);
        }
    }
    selector
}

/// PodTopologySpread pre-filter state (`DoNotSchedule` constraints).
#[derive(Debug, Clone)]
pub struct PtsFilterState {
    constraints: Vec<SpreadConstraint>,
    tp_value_to_match: Vec<HashMap<String, i64>>,
    min_match: Vec<i64>,
}

/// PreFilter: `None` when the pod has no `DoNotSchedule` constraints.
pub fn prefilter(st: &PodState, snapshot: &Snapshot) -> Option<PtsFilterState> {
    let constraints = pod_constraints(st.pod, st.labels, "DoNotSchedule");
    if constraints.is_empty() {
        return None;
    }
    let mut tp: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    let indexed = index_counts(snapshot, st.namespace, &constraints);
    for (idx, ni) in snapshot.nodes.iter().enumerate() {
        let labels = ni.labels();
        if !has_all_keys(labels, &constraints) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if !c.matches_inclusion_policies(st, ni) {
                continue;
            }
            let value = &labels[&c.topology_key];
            let count = match &indexed[i] {
                Some(m) => m[idx],
                None => count_matching(&ni.pods, &c.selector, st.namespace),
            };
            match tp[i].get_mut(value) {
                Some(v) => *v += count,
                None => {
                    tp[i].insert(value.clone(), count);
                }
            }
        }
    }
    let min_match = tp
        .iter()
        .map(|m| m.values().copied().min().unwrap_or(i64::MAX))
        .collect();
    Some(PtsFilterState {
        constraints,
        tp_value_to_match: tp,
        min_match,
    })
}

impl PtsFilterState {
    /// Filter.
    pub fn filter(&self, st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
        let labels = ni.labels();
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Err(Status::unresolvable(
                    PLUGIN,
                    ERR_REASON_NODE_LABEL_NOT_MATCH,
                ));
            };
            let mut min = self.min_match[i];
            if (self.tp_value_to_match[i].len() as i64) < c.min_domains {
                min = 0;
            }
            let self_match = i64::from(c.selector.matches(st.labels));
            let matched = self.tp_value_to_match[i].get(value).copied().unwrap_or(0);
            if matched + self_match - min > c.max_skew {
                return Err(Status::unschedulable(
                    PLUGIN,
                    ERR_REASON_CONSTRAINTS_NOT_MATCH,
                ));
            }
        }
        Ok(())
    }

    /// AddPod/RemovePod pre-filter extension.
    pub(crate) fn update_with_pod(
        &mut self,
        st: &PodState,
        pi: &PodInfo,
        ni: &NodeInfo,
        delta: i64,
    ) {
        if pi.namespace() != st.namespace {
            return;
        }
        let labels = ni.labels();
        if !has_all_keys(labels, &self.constraints) {
            return;
        }
        let pod_labels = crate::labels::labels_of(&pi.pod.metadata);
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selector.matches(pod_labels) || !c.matches_inclusion_policies(st, ni) {
                continue;
            }
            let v = &labels[&c.topology_key];
            *self.tp_value_to_match[i].entry(v.clone()).or_insert(0) += delta;
            self.min_match[i] = self.tp_value_to_match[i]
                .values()
                .copied()
                .min()
                .unwrap_or(i64::MAX);
        }
    }
}

/// PodTopologySpread scores (`ScheduleAnyway` constraints, or the system
/// defaults); `None` when skipped.
pub fn scores(
    profile: &Profile,
    snapshot: &Snapshot,
    st: &PodState,
    nodes: &[&NodeInfo],
) -> Option<Vec<i64>> {
    if nodes.is_empty() {
        return None;
    }
    let own = has_pod_constraints(st.pod);
    let constraints = if own {
        pod_constraints(st.pod, st.labels, "ScheduleAnyway")
    } else if profile.system_default_spreading {
        let selector = default_selector(snapshot, st.pod);
        if selector.is_empty() {
            Vec::new()
        } else {
            [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
                .into_iter()
                .map(|(key, skew)| SpreadConstraint {
                    max_skew: skew,
                    topology_key: key.to_string(),
                    selector: selector.clone(),
                    min_domains: 1,
                    honor_node_affinity: true,
                    honor_node_taints: false,
                })
                .collect()
        }
    } else {
        Vec::new()
    };
    if constraints.is_empty() {
        return None;
    }
    let require_all = own || !profile.system_default_spreading;

    // PreScore: domains among the feasible nodes.
    let mut ignored = vec![false; nodes.len()];
    let mut tp: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    for (n, ni) in nodes.iter().enumerate() {
        let labels = ni.labels();
        if require_all && !has_all_keys(labels, &constraints) {
            ignored[n] = true;
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key == LABEL_HOSTNAME {
                continue;
            }
            let v = labels
                .get(&c.topology_key)
                .map(String::as_str)
                .unwrap_or("");
            if !tp[i].contains_key(v) {
                tp[i].insert(v.to_string(), 0);
            }
        }
    }
    let num_ignored = ignored.iter().filter(|x| **x).count();
    let weights: Vec<f64> = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let sz = if c.topology_key == LABEL_HOSTNAME {
                nodes.len() - num_ignored
            } else {
                tp[i].len()
            };
            ((sz + 2) as f64).ln()
        })
        .collect();
    // Per-node match counts from the snapshot's label index, when possible.
    let indexed = index_counts(snapshot, st.namespace, &constraints);
    let count_on = |i: usize, c: &SpreadConstraint, ni: &NodeInfo| -> i64 {
        match &indexed[i] {
            Some(m) => snapshot.node_index(ni.name()).map_or(0, |idx| m[idx]),
            None => count_matching(&ni.pods, &c.selector, st.namespace),
        }
    };
    for (i, c) in constraints.iter().enumerate() {
        if c.topology_key == LABEL_HOSTNAME {
            continue;
        }
        let mut add = |ni: &NodeInfo, cnt: i64| {
            let labels = ni.labels();
            if cnt == 0
                || (require_all && !has_all_keys(labels, &constraints))
                || !c.matches_inclusion_policies(st, ni)
            {
                return;
            }
            let v = labels
                .get(&c.topology_key)
                .map(String::as_str)
                .unwrap_or("");
            if let Some(total) = tp[i].get_mut(v) {
                *total += cnt;
            }
        };
        match &indexed[i] {
            Some(m) => {
                for (idx, &cnt) in m.iter().enumerate() {
                    if cnt != 0 {
                        add(&snapshot.nodes[idx], cnt);
                    }
                }
            }
            None => {
                for ni in &snapshot.nodes {
                    add(ni, count_matching(&ni.pods, &c.selector, st.namespace));
                }
            }
        }
    }

    // Score.
    let mut scores: Vec<i64> = nodes
        .iter()
        .enumerate()
        .map(|(n, ni)| {
            if ignored[n] {
                return 0;
            }
            let labels = ni.labels();
            let mut score = 0.0;
            for (i, c) in constraints.iter().enumerate() {
                let Some(v) = labels.get(&c.topology_key) else {
                    continue;
                };
                let cnt = if c.topology_key == LABEL_HOSTNAME {
                    count_on(i, c, ni)
                } else {
                    tp[i].get(v).copied().unwrap_or(0)
                };
                score += cnt as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            score.round() as i64
        })
        .collect();

    // NormalizeScore.
    let mut min = i64::MAX;
    let mut max = 0;
    for (n, s) in scores.iter().enumerate() {
        if ignored[n] {
            continue;
        }
        min = min.min(*s);
        max = max.max(*s);
    }
    for (n, s) in scores.iter_mut().enumerate() {
        *s = if ignored[n] {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *s) / max
        };
    }
    Some(scores)
}
