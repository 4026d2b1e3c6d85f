//! Node-local plugins: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit, NodeResourcesBalancedAllocation, ImageLocality.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::framework::{
    default_normalize, Code, PodState, Profile, ScoringStrategy, Status, MAX_NODE_SCORE,
};
use crate::labels::CompiledTerm;
use crate::resources::is_scalar_resource_name;
use crate::snapshot::{port_conflicts, NodeInfo, Snapshot};

pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const ERR_REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const ERR_REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_NODE_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";
pub const ERR_REASON_NODE_PORTS: &str =
    "node(s) didn't have free ports for the requested pod ports";
pub const ERR_REASON_TOO_MANY_PODS: &str = "Too many pods";

pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

// ---------------------------------------------------------------- tolerations

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if k != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any toleration tolerates the taint.
pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// First taint (passing `filter`) not tolerated (upstream `FindMatchingUntoleratedTaint`).
pub fn find_untolerated_taint<'t>(
    taints: &'t [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'t Taint> {
    taints
        .iter()
        .find(|taint| filter(taint) && !tolerations_tolerate(tolerations, taint))
}

/// NoSchedule or NoExecute taints (upstream `DoNotScheduleTaintsFilterFunc`).
pub fn is_do_not_schedule_taint(t: &Taint) -> bool {
    t.effect == "NoSchedule" || t.effect == "NoExecute"
}

pub(crate) fn node_taints(ni: &NodeInfo) -> &[Taint] {
    ni.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

// ---------------------------------------------------------------- filters

/// NodeUnschedulable filter.
pub fn node_unschedulable_filter(st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
    let unschedulable = ni
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !unschedulable {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_NODE_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerations_tolerate(st.tolerations, &taint) {
        return Ok(());
    }
    Err(Status::unresolvable(
        "NodeUnschedulable",
        ERR_REASON_UNSCHEDULABLE,
    ))
}

/// NodeName filter.
pub fn node_name_filter(st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
    match st.spec_node_name {
        Some(n) if n != ni.name() => Err(Status::unresolvable("NodeName", ERR_REASON_NODE_NAME)),
        _ => Ok(()),
    }
}

/// TaintToleration filter.
pub fn taint_toleration_filter(st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
    match find_untolerated_taint(node_taints(ni), st.tolerations, is_do_not_schedule_taint) {
        None => Ok(()),
        Some(t) => Err(Status::unresolvable(
            "TaintToleration",
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// NodeAffinity PreFilter: nodes named by `matchFields metadata.name In` in every term.
pub fn node_affinity_prefilter(pod: &Pod) -> Result<Option<HashSet<String>>, Status> {
    let Some(terms) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|ns| &ns.node_selector_terms)
    else {
        return Ok(None);
    };
    let mut node_names: Option<HashSet<String>> = None;
    for t in terms {
        let mut term_names: Option<HashSet<String>> = None;
        for r in t.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let s: HashSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => s,
                    Some(prev) => prev.intersection(&s).cloned().collect(),
                });
            }
        }
        let Some(term_names) = term_names else {
            return Ok(None);
        };
        node_names
            .get_or_insert_with(HashSet::new)
            .extend(term_names);
    }
    match node_names {
        Some(n) if n.is_empty() => Err(Status::unresolvable(
            "NodeAffinity",
            ERR_REASON_NODE_AFFINITY_CONFLICT,
        )),
        other => Ok(other),
    }
}

/// NodeAffinity filter: `spec.nodeSelector` and required node affinity.
pub fn node_affinity_filter(st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
    if st.required_node_affinity.is_empty() || st.required_node_affinity.matches(&ni.node) {
        Ok(())
    } else {
        Err(Status::unresolvable(
            "NodeAffinity",
            ERR_REASON_NODE_AFFINITY,
        ))
    }
}

/// NodePorts filter.
pub fn node_ports_filter(st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
    if st
        .host_ports
        .iter()
        .any(|p| port_conflicts(&ni.used_ports, p))
    {
        Err(Status::unschedulable("NodePorts", ERR_REASON_NODE_PORTS))
    } else {
        Ok(())
    }
}

/// NodeResourcesFit filter.
pub fn fit_filter(st: &PodState, ni: &NodeInfo) -> Result<(), Status> {
    let mut status: Option<Status> = None;
    let mut push = |reason: std::borrow::Cow<'static, str>, unresolvable: bool| {
        let s = status.get_or_insert_with(|| Status {
            code: Code::Unschedulable,
            reasons: Vec::new(),
            plugin: "NodeResourcesFit",
        });
        s.reasons.push(reason);
        if unresolvable {
            s.code = Code::UnschedulableAndUnresolvable;
        }
    };
    if ni.pods.len() as i64 + 1 > ni.allocatable.allowed_pod_number {
        push(ERR_REASON_TOO_MANY_PODS.into(), false);
    }
    let req = &st.requests;
    if !req.is_zero() {
        let a = &ni.allocatable;
        let u = &ni.requested;
        if req.milli_cpu > 0 && req.milli_cpu > a.milli_cpu - u.milli_cpu {
            push("Insufficient cpu".into(), req.milli_cpu > a.milli_cpu);
        }
        if req.memory > 0 && req.memory > a.memory - u.memory {
            push("Insufficient memory".into(), req.memory > a.memory);
        }
        if req.ephemeral_storage > 0
            && req.ephemeral_storage > a.ephemeral_storage - u.ephemeral_storage
        {
            push(
                "Insufficient ephemeral-storage".into(),
                req.ephemeral_storage > a.ephemeral_storage,
            );
        }
        for (name, &q) in &req.scalar {
            if q == 0 {
                continue;
            }
            let alloc = a.scalar.get(name).copied().unwrap_or(0);
            let used = u.scalar.get(name).copied().unwrap_or(0);
            if q > alloc - used {
                push(format!("Insufficient {name}").into(), q > alloc);
            }
        }
    }
    match status {
        None => Ok(()),
        Some(s) => Err(s),
    }
}

// ---------------------------------------------------------------- scores

/// TaintToleration scores (intolerable PreferNoSchedule taints, reversed).
pub fn taint_toleration_scores(st: &PodState, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
    let tols: Vec<&Toleration> = st
        .tolerations
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|ni| {
            node_taints(ni)
                .iter()
                .filter(|t| {
                    t.effect == "PreferNoSchedule" && !tols.iter().any(|tol| tolerates(tol, t))
                })
                .count() as i64
        })
        .collect();
    default_normalize(&mut scores, true);
    Some(scores)
}

/// NodeAffinity scores (preferred terms); `None` (skip) when the pod has none.
pub fn node_affinity_scores(st: &PodState, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
    let pref = st
        .pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()?;
    let terms: Vec<(CompiledTerm, i64)> = pref
        .iter()
        .filter(|t| t.weight != 0)
        .map(|t| (CompiledTerm::new(&t.preference), i64::from(t.weight)))
        .collect();
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|ni| {
            terms
                .iter()
                .filter(|(t, _)| t.matches(&ni.node))
                .map(|(_, w)| *w)
                .sum()
        })
        .collect();
    default_normalize(&mut scores, false);
    Some(scores)
}

/// (allocatable, requested-including-pod) for a resource (upstream
/// `calculateResourceAllocatableRequest`). `use_requested` selects actual
/// requests instead of the non-zero ones.
fn alloc_and_request(st: &PodState, ni: &NodeInfo, name: &str, use_requested: bool) -> (i64, i64) {
    let (node_req, pod_req) = if use_requested {
        (&ni.requested, &st.requests)
    } else {
        (&ni.non_zero_requested, &st.non_zero_requests)
    };
    let pod_amount = pod_req.get(name);
    if pod_amount == 0 && is_scalar_resource_name(name) {
        return (0, 0);
    }
    // As upstream, the node's non-zero accounting only tracks cpu/memory.
    (ni.allocatable.get(name), node_req.get(name) + pod_amount)
}

/// NodeResourcesFit scores (LeastAllocated / MostAllocated).
pub fn fit_scores(profile: &Profile, st: &PodState, nodes: &[&NodeInfo]) -> Vec<i64> {
    nodes
        .iter()
        .map(|ni| {
            let mut score = 0;
            let mut weight_sum = 0;
            for (name, weight) in &profile.fit_resources {
                let (alloc, req) = alloc_and_request(st, ni, name, false);
                if alloc == 0 {
                    continue;
                }
                let s = match profile.scoring_strategy {
                    ScoringStrategy::LeastAllocated => {
                        if req > alloc {
                            0
                        } else {
                            (alloc - req) * MAX_NODE_SCORE / alloc
                        }
                    }
                    ScoringStrategy::MostAllocated => req.min(alloc) * MAX_NODE_SCORE / alloc,
                };
                score += s * weight;
                weight_sum += weight;
            }
            if weight_sum == 0 {
                0
            } else {
                score / weight_sum
            }
        })
        .collect()
}

/// NodeResourcesBalancedAllocation scores; `None` (skip) for best-effort pods.
pub fn balanced_scores(profile: &Profile, st: &PodState, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
    if profile
        .balanced_resources
        .iter()
        .all(|r| st.requests.get(r) == 0)
    {
        return None;
    }
    let mut fractions = Vec::with_capacity(profile.balanced_resources.len());
    Some(
        nodes
            .iter()
            .map(|ni| {
                fractions.clear();
                let mut total = 0.0;
                for name in &profile.balanced_resources {
                    let (alloc, req) = alloc_and_request(st, ni, name, true);
                    if alloc == 0 {
                        continue;
                    }
                    let f = (req as f64 / alloc as f64).min(1.0);
                    total += f;
                    fractions.push(f);
                }
                let std = match fractions.len() {
                    0 | 1 => 0.0,
                    2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
                    n => {
                        let mean = total / n as f64;
                        let sum: f64 = fractions.iter().map(|f| (f - mean) * (f - mean)).sum();
                        (sum / n as f64).sqrt()
                    }
                };
                ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
            })
            .collect(),
    )
}

const MB: i64 = 1024 * 1024;
const MIN_IMAGE_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_IMAGE_THRESHOLD: i64 = 1000 * MB;

/// Upstream `normalizedImageName`: append `:latest` when there is no tag.
pub fn normalized_image_name(name: &str) -> std::borrow::Cow<'_, str> {
    let colon = name.rfind(':').map(|i| i as isize).unwrap_or(-1);
    let slash = name.rfind('/').map(|i| i as isize).unwrap_or(-1);
    if colon <= slash {
        format!("{name}:latest").into()
    } else {
        name.into()
    }
}

/// ImageLocality scores.
pub fn image_locality_scores(snapshot: &Snapshot, st: &PodState, nodes: &[&NodeInfo]) -> Vec<i64> {
    let Some(spec) = st.pod.spec.as_ref() else {
        return vec![0; nodes.len()];
    };
    let images: Vec<std::borrow::Cow<'_, str>> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .filter_map(|c| c.image.as_deref())
        .map(normalized_image_name)
        .collect();
    let num_containers =
        spec.init_containers.as_ref().map_or(0, |v| v.len()) + spec.containers.len();
    let total_nodes = snapshot.num_nodes().max(1) as f64;
    let max_threshold = MAX_CONTAINER_IMAGE_THRESHOLD * num_containers as i64;
    nodes
        .iter()
        .map(|ni| {
            if ni.images.is_empty() || max_threshold <= MIN_IMAGE_THRESHOLD {
                return 0;
            }
            let mut sum: i64 = 0;
            for img in &images {
                if let Some(&size) = ni.images.get(img.as_ref()) {
                    let spread = snapshot.image_num_nodes(img) as f64 / total_nodes;
                    sum += (size as f64 * spread) as i64;
                }
            }
            let sum = sum.clamp(MIN_IMAGE_THRESHOLD, max_threshold);
            MAX_NODE_SCORE * (sum - MIN_IMAGE_THRESHOLD) / (max_threshold - MIN_IMAGE_THRESHOLD)
        })
        .collect()
}
