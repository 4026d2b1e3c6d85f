//! InterPodAffinity plugin (filter and score).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{PodState, Profile, Status, MAX_NODE_SCORE};
use crate::labels::Labels;
use crate::snapshot::{AffinityTerm, NodeInfo, PodInfo, Snapshot};

pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

const PLUGIN: &str = "InterPodAffinity";

/// Counts per topology pair: key → value → count.
#[derive(Debug, Clone, Default)]
pub struct TopoCounts(HashMap<String, HashMap<String, i64>>);

impl TopoCounts {
    fn update(&mut self, node_labels: &Labels, key: &str, delta: i64) {
        let Some(v) = node_labels.get(key) else {
            return;
        };
        let inner = self.0.entry(key.to_string()).or_default();
        let c = inner.entry(v.clone()).or_insert(0);
        *c += delta;
        if *c == 0 {
            inner.remove(v);
            if inner.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// InterPodAffinity pre-filter state.
#[derive(Debug, Clone, Default)]
pub struct IpaState {
    existing_anti_affinity: TopoCounts,
    affinity_counts: TopoCounts,
    anti_affinity_counts: TopoCounts,
    /// Whether the incoming pod matches all of its own required affinity terms.
    self_matches_affinity: bool,
}

fn pod_ns(p: &Pod) -> &str {
    p.metadata.namespace.as_deref().unwrap_or("default")
}

fn matches_all(terms: &[AffinityTerm], pod: &Pod, ns_labels: &Labels) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, ns_labels))
}

fn required_terms<'s>(st: &'s PodState) -> (&'s [AffinityTerm], &'s [AffinityTerm]) {
    match &st.affinity {
        Some(a) => (&a.required_affinity, &a.required_anti_affinity),
        None => (&[], &[]),
    }
}

/// PreFilter: `None` when the plugin has nothing to check for this pod.
pub fn prefilter(st: &PodState, snapshot: &Snapshot) -> Option<IpaState> {
    let (aff, anti) = required_terms(st);
    if aff.is_empty() && anti.is_empty() && snapshot.pods_with_required_anti_affinity() == 0 {
        return None;
    }
    let own_ns_labels = snapshot.ns_labels(st.namespace);
    let mut s = IpaState {
        self_matches_affinity: matches_all(aff, st.pod, own_ns_labels),
        ..Default::default()
    };
    for ni in &snapshot.nodes {
        let labels = ni.labels();
        if ni.pods_with_required_anti_affinity > 0 {
            for p in &ni.pods {
                let Some(a) = &p.affinity else { continue };
                for t in &a.required_anti_affinity {
                    if t.matches(st.pod, own_ns_labels) {
                        s.existing_anti_affinity.update(labels, &t.topology_key, 1);
                    }
                }
            }
        }
        if aff.is_empty() && anti.is_empty() {
            continue;
        }
        for p in &ni.pods {
            s.add_incoming_terms(st, snapshot, &p.pod, labels, 1);
        }
    }
    Some(s)
}

impl IpaState {
    fn add_incoming_terms(
        &mut self,
        st: &PodState,
        snapshot: &Snapshot,
        existing: &Pod,
        node_labels: &Labels,
        delta: i64,
    ) {
        let (aff, anti) = required_terms(st);
        if aff.is_empty() && anti.is_empty() {
            return;
        }
        let ns_labels = snapshot.ns_labels(pod_ns(existing));
        if matches_all(aff, existing, ns_labels) {
            for t in aff {
                self.affinity_counts
                    .update(node_labels, &t.topology_key, delta);
            }
        }
        for t in anti {
            if t.matches(existing, ns_labels) {
                self.anti_affinity_counts
                    .update(node_labels, &t.topology_key, delta);
            }
        }
    }

    /// AddPod/RemovePod pre-filter extension.
    pub(crate) fn update_with_pod(
        &mut self,
        st: &PodState,
        snapshot: &Snapshot,
        pi: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        let labels = node.labels();
        if let Some(a) = &pi.affinity {
            let own_ns_labels = snapshot.ns_labels(st.namespace);
            for t in &a.required_anti_affinity {
                if t.matches(st.pod, own_ns_labels) {
                    self.existing_anti_affinity
                        .update(labels, &t.topology_key, delta);
                }
            }
        }
        self.add_incoming_terms(st, snapshot, &pi.pod, labels, delta);
    }

    /// Filter.
    pub fn filter(&self, st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
        let labels = ni.labels();
        let (aff, anti) = required_terms(st);
        // Pod affinity.
        let mut pods_exist = true;
        for t in aff {
            match labels.get(&t.topology_key) {
                Some(v) => {
                    if self.affinity_counts.get(&t.topology_key, v) <= 0 {
                        pods_exist = false;
                    }
                }
                None => return Err(Status::unresolvable(PLUGIN, ERR_REASON_AFFINITY)),
            }
        }
        if !pods_exist {
            // The first pod of a series with affinity to itself may go anywhere
            // that has the topology labels.
            if !(self.affinity_counts.is_empty() && self.self_matches_affinity) {
                return Err(Status::unresolvable(PLUGIN, ERR_REASON_AFFINITY));
            }
        }
        // Pod anti-affinity.
        if !self.anti_affinity_counts.is_empty() {
            for t in anti {
                if let Some(v) = labels.get(&t.topology_key) {
                    if self.anti_affinity_counts.get(&t.topology_key, v) > 0 {
                        return Err(Status::unschedulable(PLUGIN, ERR_REASON_ANTI_AFFINITY));
                    }
                }
            }
        }
        // Existing pods' anti-affinity.
        if !self.existing_anti_affinity.is_empty() {
            for (k, v) in labels {
                if self.existing_anti_affinity.get(k, v) > 0 {
                    return Err(Status::unschedulable(
                        PLUGIN,
                        ERR_REASON_EXISTING_ANTI_AFFINITY,
                    ));
                }
            }
        }
        Ok(())
    }
}

type ScoreMap = HashMap<String, HashMap<String, i64>>;

fn process_term(
    m: &mut ScoreMap,
    term: &AffinityTerm,
    weight: i64,
    pod: &Pod,
    ns_labels: &Labels,
    node_labels: &Labels,
) {
    if weight == 0 || !term.matches(pod, ns_labels) {
        return;
    }
    if let Some(v) = node_labels.get(&term.topology_key) {
        *m.entry(term.topology_key.clone())
            .or_default()
            .entry(v.clone())
            .or_insert(0) += weight;
    }
}

/// InterPodAffinity scores; `None` when skipped.
pub fn scores(
    profile: &Profile,
    snapshot: &Snapshot,
    st: &PodState,
    nodes: &[&NodeInfo],
) -> Option<Vec<i64>> {
    let (pref_aff, pref_anti) = match &st.affinity {
        Some(a) => (&a.preferred_affinity[..], &a.preferred_anti_affinity[..]),
        None => (&[][..], &[][..]),
    };
    let has_constraints = !pref_aff.is_empty() || !pref_anti.is_empty();
    if !has_constraints && snapshot.pods_with_affinity() == 0 {
        return None;
    }
    let own_ns_labels = snapshot.ns_labels(st.namespace);
    let mut topo: ScoreMap = HashMap::new();
    for ni in &snapshot.nodes {
        if !has_constraints && ni.pods_with_affinity == 0 {
            continue;
        }
        let node_labels = ni.labels();
        if node_labels.is_empty() {
            continue;
        }
        for existing in &ni.pods {
            if !has_constraints && existing.affinity.is_none() {
                continue;
            }
            let ex_ns_labels = snapshot.ns_labels(existing.namespace());
            for t in pref_aff {
                process_term(
                    &mut topo,
                    &t.term,
                    i64::from(t.weight),
                    &existing.pod,
                    ex_ns_labels,
                    node_labels,
                );
            }
            for t in pref_anti {
                process_term(
                    &mut topo,
                    &t.term,
                    -i64::from(t.weight),
                    &existing.pod,
                    ex_ns_labels,
                    node_labels,
                );
            }
            if let Some(a) = &existing.affinity {
                if profile.hard_pod_affinity_weight > 0 {
                    for t in &a.required_affinity {
                        process_term(
                            &mut topo,
                            t,
                            profile.hard_pod_affinity_weight,
                            st.pod,
                            own_ns_labels,
                            node_labels,
                        );
                    }
                }
                for t in &a.preferred_affinity {
                    process_term(
                        &mut topo,
                        &t.term,
                        i64::from(t.weight),
                        st.pod,
                        own_ns_labels,
                        node_labels,
                    );
                }
                for t in &a.preferred_anti_affinity {
                    process_term(
                        &mut topo,
                        &t.term,
                        -i64::from(t.weight),
                        st.pod,
                        own_ns_labels,
                        node_labels,
                    );
                }
            }
        }
    }
    if topo.is_empty() {
        return None;
    }
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|ni| {
            let labels = ni.labels();
            topo.iter()
                .filter_map(|(k, vals)| labels.get(k).and_then(|v| vals.get(v)))
                .sum()
        })
        .collect();
    let min = scores.iter().copied().min().unwrap_or(0);
    let max = scores.iter().copied().max().unwrap_or(0);
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
        };
    }
    Some(scores)
}
