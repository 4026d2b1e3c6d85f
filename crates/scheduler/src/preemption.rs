//! DefaultPreemption (PostFilter): find a node where evicting lower-priority
//! pods lets the pod fit, choosing victims and node like upstream.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::framework::{
    find_nodes_that_fit, run_filters, Code, FitError, PodState, Profile, Status,
};
use crate::labels::{labels_of, Selector};
use crate::snapshot::{PodInfo, Snapshot};

pub const MSG_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const MSG_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const MSG_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const MSG_TERMINATING_ON_NOMINATED: &str =
    "not eligible due to a terminating pod on the nominated node.";

const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// Outcome of a successful preemption.
#[derive(Debug, Clone)]
pub struct PreemptionResult {
    /// Node to nominate (`status.nominatedNodeName`).
    pub nominated_node: String,
    /// Pods to evict, most important first.
    pub victims: Vec<Arc<Pod>>,
    /// Number of victims whose eviction violates a PodDisruptionBudget.
    pub num_pdb_violations: usize,
}

/// Pod priority (`spec.priority`, default 0).
pub fn pod_priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Start time in nanoseconds; pods that haven't started count as "now" (latest).
fn start_time(p: &Pod) -> i128 {
    p.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_nanosecond())
        .unwrap_or(i128::MAX)
}

/// Upstream `util.MoreImportantPod` as an ordering (more important first).
fn more_important_first(a: &Pod, b: &Pod) -> Ordering {
    pod_priority(b)
        .cmp(&pod_priority(a))
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

fn terminating_by_preemption(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "DisruptionTarget"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("PreemptionByScheduler")
                })
            })
}

/// Preempt using a fresh diagnosis of which nodes the pod failed on.
pub fn preempt(
    profile: &Profile,
    snapshot: &Snapshot,
    pod: &Pod,
    pdbs: &[PodDisruptionBudget],
) -> Result<PreemptionResult, String> {
    let statuses = match PodState::new(snapshot, pod) {
        Ok(st) => {
            let (_, failed) = find_nodes_that_fit(profile, snapshot, &st, true);
            failed
                .into_iter()
                .map(|(i, s)| (snapshot.nodes[i].name().to_string(), s))
                .collect()
        }
        Err(s) => snapshot
            .nodes
            .iter()
            .map(|n| (n.name().to_string(), s.clone()))
            .collect(),
    };
    preempt_inner(snapshot, pod, pdbs, &statuses)
}

/// Preempt using the [`FitError`] of the failed scheduling attempt.
pub fn preempt_with_diagnosis(
    _profile: &Profile,
    snapshot: &Snapshot,
    pod: &Pod,
    pdbs: &[PodDisruptionBudget],
    fit: &FitError,
) -> Result<PreemptionResult, String> {
    preempt_inner(snapshot, pod, pdbs, &fit.node_statuses)
}

fn preempt_inner(
    snapshot: &Snapshot,
    pod: &Pod,
    pdbs: &[PodDisruptionBudget],
    statuses: &BTreeMap<String, Status>,
) -> Result<PreemptionResult, String> {
    let fail = |m: &str| Err(format!("preemption: {m}"));
    // 1) Eligibility.
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return fail(MSG_POLICY_NEVER);
    }
    let prio = pod_priority(pod);
    if let Some(nom) = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|s| !s.is_empty())
    {
        let unresolvable = statuses
            .get(nom)
            .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable);
        if !unresolvable {
            if let Some(ni) = snapshot.get_node(nom) {
                if ni
                    .pods
                    .iter()
                    .any(|p| pod_priority(&p.pod) < prio && terminating_by_preemption(&p.pod))
                {
                    return fail(MSG_TERMINATING_ON_NOMINATED);
                }
            }
        }
    }

    // 2) Candidates: nodes that failed with a resolvable status.
    let potential: Vec<usize> = snapshot
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            statuses
                .get(n.name())
                .is_some_and(|s| s.code == Code::Unschedulable)
        })
        .map(|(i, _)| i)
        .collect();
    let mut dry_run_statuses: BTreeMap<String, Status> = BTreeMap::new();
    let mut non_violating: Vec<Candidate> = Vec::new();
    let mut violating: Vec<Candidate> = Vec::new();
    if !potential.is_empty() {
        let st = match PodState::new(snapshot, pod) {
            Ok(st) => st,
            Err(s) => return fail(&s.reasons.join(", ")),
        };
        let n = potential.len();
        let num_candidates = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
            .max(MIN_CANDIDATE_NODES_ABSOLUTE)
            .min(n);
        for &idx in &potential {
            match select_victims_on_node(snapshot, &st, idx, pdbs) {
                Ok((victims, num_violations)) => {
                    let c = Candidate {
                        node: idx,
                        victims,
                        num_pdb_violations: num_violations,
                    };
                    if num_violations == 0 {
                        non_violating.push(c);
                    } else {
                        violating.push(c);
                    }
                    if !non_violating.is_empty()
                        && non_violating.len() + violating.len() >= num_candidates
                    {
                        break;
                    }
                }
                Err(s) => {
                    dry_run_statuses.insert(snapshot.nodes[idx].name().to_string(), s);
                }
            }
        }
    }
    non_violating.extend(violating);
    let candidates = non_violating;
    if candidates.is_empty() {
        let mut diagnosis: BTreeMap<String, usize> = BTreeMap::new();
        for s in dry_run_statuses.values() {
            for r in &s.reasons {
                *diagnosis.entry(r.to_string()).or_insert(0) += 1;
            }
        }
        let absent = snapshot.nodes.len() - dry_run_statuses.len();
        if absent > 0 {
            *diagnosis.entry(MSG_NOT_HELPFUL.to_string()).or_insert(0) += absent;
        }
        let fit = FitError {
            num_all_nodes: snapshot.nodes.len(),
            diagnosis,
            node_statuses: dry_run_statuses,
            pre_filter_msg: None,
            post_filter_msg: None,
        };
        return fail(&fit.message());
    }

    // 3) Pick the best candidate.
    let best = pick_one_node_for_preemption(&candidates);
    let c = &candidates[best];
    Ok(PreemptionResult {
        nominated_node: snapshot.nodes[c.node].name().to_string(),
        victims: c.victims.iter().map(|v| v.pod.clone()).collect(),
        num_pdb_violations: c.num_pdb_violations,
    })
}

#[derive(Debug)]
struct Candidate {
    node: usize,
    victims: Vec<PodInfo>,
    num_pdb_violations: usize,
}

/// Upstream `filterPodsWithPDBViolation`: (violating, non-violating), order preserved.
fn filter_pods_with_pdb_violation(
    pods: Vec<PodInfo>,
    pdbs: &[PodDisruptionBudget],
) -> (Vec<PodInfo>, Vec<PodInfo>) {
    let selectors: Vec<Selector> = pdbs
        .iter()
        .map(|p| Selector::from_label_selector(p.spec.as_ref().and_then(|s| s.selector.as_ref())))
        .collect();
    let mut allowed: Vec<i64> = pdbs
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .map_or(0, |s| i64::from(s.disruptions_allowed))
        })
        .collect();
    let mut violating = Vec::new();
    let mut non_violating = Vec::new();
    for pi in pods {
        let labels = labels_of(&pi.pod.metadata);
        let mut violated = false;
        if !labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace.as_deref().unwrap_or("default") != pi.namespace() {
                    continue;
                }
                let sel = &selectors[i];
                if sel.is_empty() || !sel.matches(labels) {
                    continue;
                }
                let disrupted = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(pi.name()));
                if disrupted {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(pi);
        } else {
            non_violating.push(pi);
        }
    }
    (violating, non_violating)
}

/// Upstream `SelectVictimsOnNode`.
fn select_victims_on_node(
    snapshot: &Snapshot,
    st: &PodState,
    idx: usize,
    pdbs: &[PodDisruptionBudget],
) -> Result<(Vec<PodInfo>, usize), Status> {
    let orig = &snapshot.nodes[idx];
    let mut node = orig.clone();
    let mut state = st.clone();
    let prio = pod_priority(st.pod);
    let mut potential: Vec<PodInfo> = orig
        .pods
        .iter()
        .filter(|p| pod_priority(&p.pod) < prio)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable("DefaultPreemption", MSG_NO_VICTIMS));
    }
    for p in &potential {
        node.remove_pod(p.namespace(), p.name());
        state.remove_pod(snapshot, p, &node);
    }
    run_filters(&state, &node)?;
    potential.sort_by(|a, b| more_important_first(&a.pod, &b.pod));
    let (violating, non_violating) = filter_pods_with_pdb_violation(potential, pdbs);
    let mut victims: Vec<PodInfo> = Vec::new();
    let mut num_violating = 0;
    let mut reprieve =
        |p: PodInfo, node: &mut crate::snapshot::NodeInfo, state: &mut PodState| -> bool {
            node.add_pod_info(p.clone());
            state.add_pod(snapshot, &p, node);
            let fits = run_filters(state, node).is_ok();
            if !fits {
                node.remove_pod(p.namespace(), p.name());
                state.remove_pod(snapshot, &p, node);
                victims.push(p);
            }
            fits
        };
    let had_both = !violating.is_empty() && !non_violating.is_empty();
    for p in violating {
        if !reprieve(p, &mut node, &mut state) {
            num_violating += 1;
        }
    }
    for p in non_violating {
        reprieve(p, &mut node, &mut state);
    }
    if had_both {
        victims.sort_by(|a, b| more_important_first(&a.pod, &b.pod));
    }
    Ok((victims, num_violating))
}

/// Earliest start time among the highest-priority victims.
fn earliest_start_of_highest(victims: &[PodInfo]) -> i128 {
    let Some(first) = victims.first() else {
        return i128::MIN;
    };
    let mut max_prio = pod_priority(&first.pod);
    let mut earliest = start_time(&first.pod);
    for v in victims {
        let p = pod_priority(&v.pod);
        if p == max_prio {
            earliest = earliest.min(start_time(&v.pod));
        } else if p > max_prio {
            max_prio = p;
            earliest = start_time(&v.pod);
        }
    }
    earliest
}

/// Upstream `pickOneNodeForPreemption`; returns an index into `candidates`.
fn pick_one_node_for_preemption(candidates: &[Candidate]) -> usize {
    let score_fns: [&dyn Fn(&Candidate) -> i128; 5] = [
        // Fewest PDB violations.
        &|c| -(c.num_pdb_violations as i128),
        // Lowest highest-priority victim.
        &|c| -i128::from(c.victims.first().map_or(0, |v| pod_priority(&v.pod))),
        // Smallest sum of priorities (shifted to be non-negative).
        &|c| {
            -c.victims
                .iter()
                .map(|v| i128::from(pod_priority(&v.pod)) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        // Fewest victims.
        &|c| -(c.victims.len() as i128),
        // Latest start time of the highest-priority victims.
        &|c| earliest_start_of_highest(&c.victims),
    ];
    let mut all: Vec<usize> = (0..candidates.len()).collect();
    for f in score_fns {
        let mut selected = Vec::new();
        let mut max = i128::MIN;
        for &i in &all {
            let s = f(&candidates[i]);
            if s > max {
                max = s;
                selected.clear();
            }
            if s == max {
                selected.push(i);
            }
        }
        if selected.len() == 1 {
            return selected[0];
        }
        all = selected;
    }
    all[0]
}
