//! The scheduling cycle: pre-filter, filter, score and select (upstream
//! `schedule_one.go` with the default profile).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{Pod, Toleration};

use crate::interpod::{self, IpaState};
use crate::labels::{Labels, RequiredNodeAffinity};
use crate::plugins;
use crate::resources::{pod_non_zero_requests, pod_requests, Resources};
use crate::snapshot::{pod_host_ports, HostPort, NodeInfo, PodAffinityInfo, Snapshot};
use crate::spread::{self, PtsFilterState};

/// Maximum score a score plugin can give a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Upstream `minFeasibleNodesToFind`.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream `minFeasibleNodesPercentageToFind`.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Filter status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The node is unschedulable, but preemption might help.
    Unschedulable,
    /// The node is unschedulable and preemption won't help.
    UnschedulableAndUnresolvable,
}

/// A filter failure for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
    /// The plugin that rejected the node.
    pub plugin: &'static str,
}

impl Status {
    pub fn new(code: Code, plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin,
        }
    }
    pub fn unschedulable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, plugin, reason)
    }
    pub fn unresolvable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, plugin, reason)
    }
}

/// Node resources scoring strategy (NodeResourcesFit `scoringStrategy.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringStrategy {
    #[default]
    LeastAllocated,
    MostAllocated,
}

/// Plugin weights for scoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights {
    pub taint_toleration: i64,
    pub node_affinity: i64,
    pub node_resources_fit: i64,
    pub balanced_allocation: i64,
    pub image_locality: i64,
    pub inter_pod_affinity: i64,
    pub pod_topology_spread: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            taint_toleration: 3,
            node_affinity: 2,
            node_resources_fit: 1,
            balanced_allocation: 1,
            image_locality: 1,
            inter_pod_affinity: 2,
            pod_topology_spread: 2,
        }
    }
}

/// A scheduling profile (upstream `KubeSchedulerProfile` for the default plugins).
#[derive(Debug)]
pub struct Profile {
    pub scheduler_name: String,
    pub scoring_strategy: ScoringStrategy,
    /// Resources (name, weight) scored by NodeResourcesFit.
    pub fit_resources: Vec<(String, i64)>,
    /// Resources considered by NodeResourcesBalancedAllocation.
    pub balanced_resources: Vec<String>,
    pub weights: Weights,
    /// `percentageOfNodesToScore`; `None` or 0 means adaptive.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// InterPodAffinity `hardPodAffinityWeight`.
    pub hard_pod_affinity_weight: i64,
    /// PodTopologySpread `defaultingType: System`.
    pub system_default_spreading: bool,
    /// Record per-node, per-plugin scores in [`ScheduleResult::scores`].
    pub record_scores: bool,
    /// Rotating index of the node where the next filtering pass starts
    /// (upstream `nextStartNodeIndex`).
    pub next_start_index: AtomicUsize,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            scheduler_name: "default-scheduler".into(),
            scoring_strategy: ScoringStrategy::LeastAllocated,
            fit_resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
            balanced_resources: vec!["cpu".into(), "memory".into()],
            weights: Weights::default(),
            percentage_of_nodes_to_score: None,
            hard_pod_affinity_weight: 1,
            system_default_spreading: true,
            record_scores: false,
            next_start_index: AtomicUsize::new(0),
        }
    }
}

impl Clone for Profile {
    fn clone(&self) -> Self {
        Profile {
            scheduler_name: self.scheduler_name.clone(),
            scoring_strategy: self.scoring_strategy,
            fit_resources: self.fit_resources.clone(),
            balanced_resources: self.balanced_resources.clone(),
            weights: self.weights.clone(),
            percentage_of_nodes_to_score: self.percentage_of_nodes_to_score,
            hard_pod_affinity_weight: self.hard_pod_affinity_weight,
            system_default_spreading: self.system_default_spreading,
            record_scores: self.record_scores,
            next_start_index: AtomicUsize::new(self.next_start_index.load(Ordering::Relaxed)),
        }
    }
}

impl Profile {
    /// Upstream `numFeasibleNodesToFind`.
    pub fn num_feasible_nodes_to_find(&self, num_all_nodes: usize) -> usize {
        if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return num_all_nodes;
        }
        let mut pct = self.percentage_of_nodes_to_score.unwrap_or(0) as usize;
        if pct == 0 {
            pct = 50usize.saturating_sub(num_all_nodes / 125);
            pct = pct.max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
        }
        let n = num_all_nodes * pct.min(100) / 100;
        n.max(MIN_FEASIBLE_NODES_TO_FIND)
    }
}

/// Per-pod data computed once per scheduling cycle (upstream `CycleState`
/// after PreFilter).
#[derive(Debug, Clone)]
pub struct PodState<'a> {
    pub pod: &'a Pod,
    pub namespace: &'a str,
    pub labels: &'a Labels,
    pub tolerations: &'a [Toleration],
    pub spec_node_name: Option<&'a str>,
    pub requests: Resources,
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub required_node_affinity: RequiredNodeAffinity,
    /// NodeAffinity PreFilter result (nodes named by `matchFields metadata.name`).
    pub prefilter_node_names: Option<HashSet<String>>,
    pub affinity: Option<PodAffinityInfo>,
    pub ipa: Option<IpaState>,
    pub pts: Option<PtsFilterState>,
}

static EMPTY_LABELS: Labels = BTreeMap::new();

impl<'a> PodState<'a> {
    /// Run the PreFilter stage. Errors are rejections for every node.
    pub fn new(snapshot: &Snapshot, pod: &'a Pod) -> Result<PodState<'a>, Status> {
        let spec = pod.spec.as_ref();
        let prefilter_node_names = plugins::node_affinity_prefilter(pod)?;
        let affinity = PodAffinityInfo::from_pod(pod);
        let mut st = PodState {
            pod,
            namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
            labels: pod.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS),
            tolerations: spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]),
            spec_node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|s| !s.is_empty()),
            requests: pod_requests(pod),
            non_zero_requests: pod_non_zero_requests(pod),
            host_ports: pod_host_ports(pod),
            required_node_affinity: RequiredNodeAffinity::from_pod(pod),
            prefilter_node_names,
            affinity,
            ipa: None,
            pts: None,
        };
        st.pts = spread::prefilter(&st, snapshot);
        st.ipa = interpod::prefilter(&st, snapshot);
        Ok(st)
    }

    /// Update pre-filter state as if `pi` was removed from `node` (preemption).
    pub fn remove_pod(
        &mut self,
        snapshot: &Snapshot,
        pi: &crate::snapshot::PodInfo,
        node: &NodeInfo,
    ) {
        self.update_with_pod(snapshot, pi, node, -1);
    }

    /// Update pre-filter state as if `pi` was added to `node` (preemption).
    pub fn add_pod(&mut self, snapshot: &Snapshot, pi: &crate::snapshot::PodInfo, node: &NodeInfo) {
        self.update_with_pod(snapshot, pi, node, 1);
    }

    fn update_with_pod(
        &mut self,
        snapshot: &Snapshot,
        pi: &crate::snapshot::PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        if let Some(mut ipa) = self.ipa.take() {
            ipa.update_with_pod(self, snapshot, pi, node, delta);
            self.ipa = Some(ipa);
        }
        if let Some(mut pts) = self.pts.take() {
            pts.update_with_pod(self, pi, node, delta);
            self.pts = Some(pts);
        }
    }
}

/// Run all filter plugins, in the default profile's order, stopping at the first failure.
pub fn run_filters(st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
    plugins::node_unschedulable_filter(st, ni)?;
    plugins::node_name_filter(st, ni)?;
    plugins::taint_toleration_filter(st, ni)?;
    plugins::node_affinity_filter(st, ni)?;
    plugins::node_ports_filter(st, ni)?;
    plugins::fit_filter(st, ni)?;
    if let Some(pts) = &st.pts {
        pts.filter(st, ni)?;
    }
    if let Some(ipa) = &st.ipa {
        ipa.filter(st, ni)?;
    }
    Ok(())
}

/// Per-plugin score of one node (already normalized and weighted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    pub node: String,
    pub total: i64,
    pub plugins: Vec<(&'static str, i64)>,
}

/// Result of a successful scheduling cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node_name: String,
    /// Number of nodes filtered (feasible + infeasible).
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
    /// Scores of the feasible nodes (only when `Profile::record_scores`).
    pub scores: Vec<NodeScore>,
}

/// The pod fits no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// Reason → number of nodes that reported it.
    pub diagnosis: BTreeMap<String, usize>,
    /// Status of each rejected node, by node name.
    pub node_statuses: BTreeMap<String, Status>,
    /// Message from a rejecting PreFilter, if any.
    pub pre_filter_msg: Option<String>,
    /// Message from PostFilter (preemption), set by the caller.
    pub post_filter_msg: Option<String>,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FitError {}

impl FitError {
    fn from_statuses(
        num_all_nodes: usize,
        node_statuses: BTreeMap<String, Status>,
        pre_filter_msg: Option<String>,
    ) -> FitError {
        let mut diagnosis = BTreeMap::new();
        for s in node_statuses.values() {
            for r in &s.reasons {
                *diagnosis.entry(r.to_string()).or_insert(0) += 1;
            }
        }
        FitError {
            num_all_nodes,
            diagnosis,
            node_statuses,
            pre_filter_msg,
            post_filter_msg: None,
        }
    }

    /// Upstream `FitError.Error()`, e.g.
    /// `0/3 nodes are available: 1 node(s) had untolerated taint {a: b}, 2 Insufficient cpu.`
    pub fn message(&self) -> String {
        if self.num_all_nodes == 0
            && self.pre_filter_msg.is_none()
            && self.post_filter_msg.is_none()
        {
            return "no nodes available to schedule pods".to_string();
        }
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if let Some(p) = &self.pre_filter_msg {
            msg.push_str(&format!(" {p}."));
        } else {
            let hist = histogram(&self.diagnosis);
            if !hist.is_empty() {
                msg.push_str(&format!(" {}.", hist));
            }
        }
        if let Some(p) = &self.post_filter_msg {
            msg.push_str(&format!(" {p}."));
        }
        msg
    }

    /// Whether `node` was rejected only for reasons preemption may resolve.
    pub fn node_code(&self, node: &str) -> Option<Code> {
        self.node_statuses.get(node).map(|s| s.code)
    }
}

/// Upstream's sorted reasons histogram: `"<count> <reason>"` strings sorted, joined by ", ".
pub(crate) fn histogram(diagnosis: &BTreeMap<String, usize>) -> String {
    let mut v: Vec<String> = diagnosis.iter().map(|(r, c)| format!("{c} {r}")).collect();
    v.sort();
    v.join(", ")
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Filter all (or enough) nodes. Returns feasible node indices and statuses of rejected nodes.
pub(crate) fn find_nodes_that_fit(
    profile: &Profile,
    snapshot: &Snapshot,
    st: &PodState,
    find_all: bool,
) -> (Vec<usize>, Vec<(usize, Status)>) {
    let mut feasible = Vec::new();
    let mut failed = Vec::new();
    if let Some(names) = &st.prefilter_node_names {
        for (idx, ni) in snapshot.nodes.iter().enumerate() {
            if !names.contains(ni.name()) {
                failed.push((
                    idx,
                    Status::unresolvable(
                        "NodeAffinity",
                        "node(s) didn't satisfy plugin(s) [NodeAffinity]",
                    ),
                ));
                continue;
            }
            match run_filters(st, ni) {
                Ok(()) => feasible.push(idx),
                Err(s) => failed.push((idx, s)),
            }
        }
        return (feasible, failed);
    }
    let n = snapshot.nodes.len();
    if n == 0 {
        return (feasible, failed);
    }
    let to_find = if find_all {
        n
    } else {
        profile.num_feasible_nodes_to_find(n)
    };
    let start = profile.next_start_index.load(Ordering::Relaxed) % n;
    let mut processed = 0;
    for i in 0..n {
        let idx = (start + i) % n;
        processed += 1;
        match run_filters(st, &snapshot.nodes[idx]) {
            Ok(()) => {
                feasible.push(idx);
                if feasible.len() >= to_find {
                    break;
                }
            }
            Err(s) => failed.push((idx, s)),
        }
    }
    if !find_all {
        profile
            .next_start_index
            .store((start + processed) % n, Ordering::Relaxed);
    }
    (feasible, failed)
}

fn prefilter_fit_error(snapshot: &Snapshot, s: Status) -> FitError {
    let msg = s.reasons.join(", ");
    let statuses = snapshot
        .nodes
        .iter()
        .map(|n| (n.name().to_string(), s.clone()))
        .collect();
    FitError::from_statuses(snapshot.nodes.len(), statuses, Some(msg))
}

fn fit_error(snapshot: &Snapshot, failed: Vec<(usize, Status)>) -> FitError {
    let statuses = failed
        .into_iter()
        .map(|(i, s)| (snapshot.nodes[i].name().to_string(), s))
        .collect();
    FitError::from_statuses(snapshot.nodes.len(), statuses, None)
}

/// Schedule one pod: find the feasible nodes, score them and pick the best.
pub fn schedule(
    profile: &Profile,
    snapshot: &Snapshot,
    pod: &Pod,
) -> Result<ScheduleResult, FitError> {
    if snapshot.nodes.is_empty() {
        return Err(FitError::from_statuses(0, BTreeMap::new(), None));
    }
    let st = PodState::new(snapshot, pod).map_err(|s| prefilter_fit_error(snapshot, s))?;

    // A nominated node (from an earlier preemption) is tried first.
    if let Some(nominated) = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|s| !s.is_empty())
    {
        if let Some(idx) = snapshot.node_index(nominated) {
            let allowed = st
                .prefilter_node_names
                .as_ref()
                .is_none_or(|n| n.contains(nominated));
            if allowed && run_filters(&st, &snapshot.nodes[idx]).is_ok() {
                return Ok(ScheduleResult {
                    node_name: nominated.to_string(),
                    evaluated_nodes: 1,
                    feasible_nodes: 1,
                    scores: Vec::new(),
                });
            }
        }
    }

    let (feasible, failed) = find_nodes_that_fit(profile, snapshot, &st, false);
    // Nodes excluded by the PreFilter result are not evaluated.
    let evaluated = match &st.prefilter_node_names {
        Some(names) => snapshot
            .nodes
            .iter()
            .filter(|n| names.contains(n.name()))
            .count(),
        None => feasible.len() + failed.len(),
    };
    if feasible.is_empty() {
        return Err(fit_error(snapshot, failed));
    }
    if feasible.len() == 1 {
        return Ok(ScheduleResult {
            node_name: snapshot.nodes[feasible[0]].name().to_string(),
            evaluated_nodes: evaluated,
            feasible_nodes: 1,
            scores: Vec::new(),
        });
    }
    let nodes: Vec<&NodeInfo> = feasible.iter().map(|&i| &snapshot.nodes[i]).collect();
    let (totals, per_plugin) = score_nodes(profile, snapshot, &st, &nodes);

    // Pick the highest total; ties broken pseudo-randomly (stable per pod).
    let max = *totals.iter().max().unwrap_or(&0);
    let ties: Vec<usize> = (0..totals.len()).filter(|&i| totals[i] == max).collect();
    let key = format!(
        "{}/{}/{}",
        st.namespace,
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    );
    let chosen = ties[(fnv(&key) % ties.len() as u64) as usize];

    let scores = if profile.record_scores {
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeScore {
                node: n.name().to_string(),
                total: totals[i],
                plugins: per_plugin.iter().map(|(name, s)| (*name, s[i])).collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ScheduleResult {
        node_name: nodes[chosen].name().to_string(),
        evaluated_nodes: evaluated,
        feasible_nodes: nodes.len(),
        scores,
    })
}

/// Upstream `DefaultNormalizeScore`.
pub(crate) fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0).max(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut v = MAX_NODE_SCORE * *s / max;
        if reverse {
            v = MAX_NODE_SCORE - v;
        }
        *s = v;
    }
}

type PluginScores = Vec<(&'static str, Vec<i64>)>;

/// Score feasible nodes with every score plugin; returns weighted totals and
/// (when recording) the weighted per-plugin scores.
pub fn score_nodes(
    profile: &Profile,
    snapshot: &Snapshot,
    st: &PodState,
    nodes: &[&NodeInfo],
) -> (Vec<i64>, PluginScores) {
    let mut totals = vec![0i64; nodes.len()];
    let mut per_plugin: PluginScores = Vec::new();
    let mut add = |name: &'static str, scores: Option<Vec<i64>>, weight: i64| {
        let Some(scores) = scores else { return };
        let weighted: Vec<i64> = scores.iter().map(|s| s * weight).collect();
        for (t, s) in totals.iter_mut().zip(&weighted) {
            *t += s;
        }
        if profile.record_scores {
            per_plugin.push((name, weighted));
        }
    };
    let w = &profile.weights;
    add(
        "TaintToleration",
        plugins::taint_toleration_scores(st, nodes),
        w.taint_toleration,
    );
    add(
        "NodeAffinity",
        plugins::node_affinity_scores(st, nodes),
        w.node_affinity,
    );
    add(
        "NodeResourcesFit",
        Some(plugins::fit_scores(profile, st, nodes)),
        w.node_resources_fit,
    );
    add(
        "PodTopologySpread",
        spread::scores(profile, snapshot, st, nodes),
        w.pod_topology_spread,
    );
    add(
        "InterPodAffinity",
        interpod::scores(profile, snapshot, st, nodes),
        w.inter_pod_affinity,
    );
    add(
        "NodeResourcesBalancedAllocation",
        plugins::balanced_scores(profile, st, nodes),
        w.balanced_allocation,
    );
    add(
        "ImageLocality",
        Some(plugins::image_locality_scores(snapshot, st, nodes)),
        w.image_locality,
    );
    (totals, per_plugin)
}
