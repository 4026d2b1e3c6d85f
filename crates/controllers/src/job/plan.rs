//! The pure part of a Job sync: from the Job and its pods (and the in-memory
//! backoff record), what to write, which pods to create, delete or release
//! from the tracking finalizer, and when to look again. Mirrors upstream's
//! `syncJob`/`manageJob`/`trackJobStatusAndRemoveFinalizers`.

use super::kit::{is_terminating, pod_phase, pod_ready, time};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, PodFailurePolicyRule, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// Backoff start and cap for recreating failed pods (upstream's
/// DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff).
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// What upstream keeps in its backoffRecordStore.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backoff {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// Time left before a replacement pod may be created.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let (n, Some(last)) = (self.failures_after_last_success, self.last_failure) else {
            return Duration::ZERO;
        };
        if n == 0 {
            return Duration::ZERO;
        }
        let mut d = BACKOFF_BASE;
        for _ in 1..n {
            d = d.saturating_mul(2);
            if d >= BACKOFF_MAX {
                break;
            }
        }
        let d = d.min(BACKOFF_MAX);
        let elapsed = (now.as_second() - last.as_second()).max(0) as u64;
        d.saturating_sub(Duration::from_secs(elapsed))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub type_: &'static str,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Status to write first, recording newly finished pods as uncounted,
    /// before their finalizers are removed.
    pub interim: Option<JobStatus>,
    /// (name, uid) of pods whose tracking finalizer to remove.
    pub remove_finalizers: Vec<(String, String)>,
    /// The status to write after the finalizers are gone.
    pub status: JobStatus,
    /// Names of active pods to delete.
    pub delete: Vec<String>,
    /// Pods to create: one entry per pod, the completion index for Indexed jobs.
    pub create: Vec<Option<i32>>,
    pub events: Vec<Event>,
    pub requeue: Option<Duration>,
    /// ttlSecondsAfterFinished has expired: delete the job.
    pub delete_job: bool,
    pub backoff: Backoff,
}

fn cond<'a>(s: &'a JobStatus, t: &str) -> Option<&'a JobCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == t)
}

pub fn cond_true(s: &JobStatus, t: &str) -> bool {
    cond(s, t).is_some_and(|c| c.status == "True")
}

/// Sets a condition, moving lastTransitionTime only when the status changes.
fn set_cond(s: &mut JobStatus, t: &str, status: &str, reason: &str, message: &str, now: Timestamp) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == t) {
        if c.status != status {
            c.last_transition_time = Some(time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(time(now));
        return;
    }
    conds.push(JobCondition {
        type_: t.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(time(now)),
        last_transition_time: Some(time(now)),
    });
}

pub fn is_finished(s: &JobStatus) -> bool {
    cond_true(s, "Complete") || cond_true(s, "Failed")
}

/// When the job finished (completionTime, or the Failed condition's time).
pub fn finish_time(s: &JobStatus) -> Option<Timestamp> {
    if let Some(t) = &s.completion_time {
        return Some(t.0);
    }
    s.conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Parses "1,3-5" into a set of indexes.
pub fn parse_indexes(s: Option<&str>) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<i32>(), b.trim().parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

/// Formats indexes as upstream's completedIndexes: "1,3-5".
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut it = set.iter().peekable();
    while let Some(&start) = it.next() {
        let mut end = start;
        while it.peek().is_some_and(|&&n| n == end + 1) {
            end = *it.next().unwrap_or(&end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

pub fn pod_index(p: &Pod) -> Option<i32> {
    p.metadata
        .annotations
        .as_ref()?
        .get(INDEX_ANNOTATION)?
        .parse()
        .ok()
}

fn has_tracking_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// Upstream's onlyReplaceFailedPods: terminating pods are not failures yet.
fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Upstream's isPodFailed.
fn pod_failed(p: &Pod, job: &Job) -> bool {
    let phase = pod_phase(p);
    if phase == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    is_terminating(&p.metadata) && phase != "Succeeded"
}

/// The time a failed pod finished: its last container termination, else now.
fn failure_time(p: &Pod, now: Timestamp) -> Timestamp {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
        .unwrap_or(now)
}

/// The outcome of matching a failed pod against podFailurePolicy: the action
/// of the first matching rule and, for FailJob, upstream's message.
pub fn match_pod_failure_policy(job: &Job, p: &Pod) -> Option<(String, String)> {
    let rules: &[PodFailurePolicyRule] = job
        .spec
        .as_ref()?
        .pod_failure_policy
        .as_ref()
        .map(|p| p.rules.as_slice())?;
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let pname = name(p);
    let status = p.status.as_ref()?;
    for (i, rule) in rules.iter().enumerate() {
        if let Some(req) = &rule.on_exit_codes {
            let statuses = status
                .container_statuses
                .iter()
                .flatten()
                .chain(status.init_container_statuses.iter().flatten());
            for cs in statuses {
                let Some(term) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                    continue;
                };
                if term.exit_code == 0 {
                    continue;
                }
                if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                    continue;
                }
                let inside = req.values.contains(&term.exit_code);
                let hit = match req.operator.as_str() {
                    "In" => inside,
                    "NotIn" => !inside,
                    _ => false,
                };
                if hit {
                    let msg = format!(
                        "Container {} for pod {ns}/{pname} failed with exit code {} matching {} rule at index {i}",
                        cs.name, term.exit_code, rule.action
                    );
                    return Some((rule.action.clone(), msg));
                }
            }
        }
        if let Some(patterns) = &rule.on_pod_conditions {
            for pat in patterns {
                let want = if pat.status.is_empty() {
                    "True"
                } else {
                    pat.status.as_str()
                };
                let hit = status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == pat.type_ && c.status == want);
                if hit {
                    let msg = format!(
                        "Pod {ns}/{pname} has condition {} matching {} rule at index {i}",
                        pat.type_, rule.action
                    );
                    return Some((rule.action.clone(), msg));
                }
            }
        }
    }
    None
}

/// Computes the sync of `job` over its (controlled) pods. `released` holds
/// uids of pods whose finalizer this controller already removed (the pod
/// informer may not show it yet): they are counted already.
pub fn plan(
    job: &Job,
    pods: &[Arc<Pod>],
    released: &HashSet<String>,
    backoff: &Backoff,
    now: Timestamp,
) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let mut plan = Plan {
        backoff: backoff.clone(),
        ..Default::default()
    };
    let tracked = |p: &Pod| has_tracking_finalizer(p) && !released.contains(&uid(p));

    if is_finished(&old) {
        // Finished: release every pod, then wait for the TTL.
        for p in pods.iter().filter(|p| tracked(p)) {
            plan.remove_finalizers.push((name(p), uid(p)));
        }
        if let (Some(ttl), Some(fin)) = (spec.ttl_seconds_after_finished, finish_time(&old)) {
            let expire = fin.as_second() + ttl as i64;
            if now.as_second() >= expire {
                plan.delete_job = true;
            } else {
                plan.requeue = Some(Duration::from_secs((expire - now.as_second()) as u64));
            }
        }
        plan.status = st;
        return plan;
    }

    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_s: BTreeSet<String> = uncounted
        .succeeded
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut unc_f: BTreeSet<String> = uncounted.failed.unwrap_or_default().into_iter().collect();
    let mut completed = parse_indexes(st.completed_indexes.as_deref());
    let mut interim_needed = false;
    let mut policy_failure: Option<String> = None;
    let mut active: Vec<&Arc<Pod>> = Vec::new();
    let mut terminating = 0;
    let mut new_succeeded = 0u32;
    let mut new_failed = 0u32;
    let mut last_failure: Option<Timestamp> = None;

    for p in pods {
        let phase = pod_phase(p);
        let succeeded = phase == "Succeeded";
        let failed = !succeeded && pod_failed(p, job);
        if !succeeded && !failed {
            if is_terminating(&p.metadata) {
                terminating += 1;
            } else {
                active.push(p);
            }
            continue;
        }
        if is_terminating(&p.metadata) && !succeeded && phase != "Failed" {
            terminating += 1;
        }
        if !tracked(p) {
            continue;
        }
        let u = uid(p);
        plan.remove_finalizers.push((name(p), u.clone()));
        if succeeded {
            if indexed {
                match (pod_index(p), completions) {
                    (Some(i), Some(c)) if i >= 0 && i < c => {
                        completed.insert(i);
                    }
                    _ => continue,
                }
            }
            if unc_s.insert(u) {
                interim_needed = true;
                new_succeeded += 1;
            }
        } else {
            let action = if phase == "Failed" {
                match_pod_failure_policy(job, p)
            } else {
                None
            };
            match action.as_ref().map(|(a, m)| (a.as_str(), m)) {
                Some(("Ignore", _)) => continue,
                Some(("FailJob", m)) if policy_failure.is_none() => {
                    policy_failure = Some(m.clone());
                }
                _ => {}
            }
            if unc_f.insert(u) {
                interim_needed = true;
                new_failed += 1;
                let t = failure_time(p, now);
                last_failure = Some(last_failure.map_or(t, |l: Timestamp| l.max(t)));
            }
        }
    }

    if interim_needed {
        let mut i = old.clone();
        i.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(unc_s.iter().cloned().collect()),
            failed: Some(unc_f.iter().cloned().collect()),
        });
        if indexed {
            i.completed_indexes = Some(format_indexes(&completed));
        }
        plan.interim = Some(i);
    }

    // Backoff record.
    if new_succeeded > 0 {
        plan.backoff.failures_after_last_success = 0;
    }
    if new_failed > 0 {
        plan.backoff.failures_after_last_success += new_failed;
        plan.backoff.last_failure = last_failure;
    }

    // Counting: everything uncounted is counted once the finalizers are gone.
    let succeeded = if indexed {
        completed.len() as i32
    } else {
        old.succeeded.unwrap_or(0) + unc_s.len() as i32
    };
    let failed = old.failed.unwrap_or(0) + unc_f.len() as i32;
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    if indexed {
        let s = format_indexes(&completed);
        st.completed_indexes = (!s.is_empty()).then_some(s);
    }
    st.succeeded = (succeeded > 0).then_some(succeeded);
    st.failed = (failed > 0).then_some(failed);

    let suspended = spec.suspend == Some(true);
    let mut to_delete: Vec<&Arc<Pod>> = Vec::new();

    // Suspend / resume.
    if suspended {
        to_delete.extend(active.iter().copied());
        if !cond_true(&st, "Suspended") {
            set_cond(
                &mut st,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            plan.events.push(Event {
                type_: "Normal",
                reason: "Suspended".into(),
                message: "Job suspended".into(),
            });
        }
    } else {
        if cond_true(&st, "Suspended") {
            set_cond(
                &mut st,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            st.start_time = Some(time(now));
            plan.events.push(Event {
                type_: "Normal",
                reason: "Resumed".into(),
                message: "Job resumed".into(),
            });
        }
        if st.start_time.is_none() {
            st.start_time = Some(time(now));
        }
    }

    // Failure and success criteria (only once: the interim conditions stick).
    let restarts: i32 = if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure")
    {
        active
            .iter()
            .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
            .flatten()
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    if !cond_true(&st, "FailureTarget") && !cond_true(&st, "SuccessCriteriaMet") {
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let deadline = spec
            .active_deadline_seconds
            .filter(|_| !suspended)
            .and_then(|d| {
                let start = st.start_time.as_ref()?.0;
                Some((start.as_second() + d) - now.as_second())
            });
        let failure = if let Some(m) = policy_failure {
            Some(("PodFailurePolicy", m))
        } else if failed + restarts > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".to_string(),
            ))
        } else if deadline.is_some_and(|left| left <= 0) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline".to_string(),
            ))
        } else {
            if let Some(left) = deadline {
                plan.requeue = Some(Duration::from_secs(left as u64));
            }
            None
        };
        if let Some((reason, msg)) = failure {
            set_cond(&mut st, "FailureTarget", "True", reason, &msg, now);
        } else {
            let done = match (indexed, completions) {
                (true, Some(c)) => completed.len() as i32 >= c,
                (false, Some(c)) => succeeded >= c,
                (_, None) => succeeded > 0 && active.is_empty(),
            };
            if done && !suspended {
                set_cond(
                    &mut st,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                );
            }
        }
    }

    let finishing = cond_true(&st, "FailureTarget") || cond_true(&st, "SuccessCriteriaMet");
    let mut creates: Vec<Option<i32>> = Vec::new();
    if finishing {
        to_delete = active.clone();
    } else if !suspended {
        // How many pods to run, and which indexes.
        let blocking = if only_replace_failed(job) {
            terminating
        } else {
            0
        };
        if indexed {
            let c = completions.unwrap_or(0);
            let mut seen: BTreeSet<i32> = BTreeSet::new();
            let mut keep: Vec<&Arc<Pod>> = Vec::new();
            for p in &active {
                match pod_index(p) {
                    Some(i) if i >= 0 && i < c && !completed.contains(&i) && seen.insert(i) => {
                        keep.push(p)
                    }
                    _ => to_delete.push(p),
                }
            }
            let want = parallelism.min(c - completed.len() as i32).max(0);
            let room = (want - keep.len() as i32 - blocking).max(0);
            if keep.len() as i32 > want {
                let extra = keep.len() - want as usize;
                to_delete.extend(pick_victims(&keep, extra));
            }
            let terminating_idx: BTreeSet<i32> = if blocking > 0 {
                pods.iter()
                    .filter(|p| is_terminating(&p.metadata))
                    .filter_map(|p| pod_index(p))
                    .collect()
            } else {
                BTreeSet::new()
            };
            creates.extend(
                (0..c)
                    .filter(|i| {
                        !completed.contains(i) && !seen.contains(i) && !terminating_idx.contains(i)
                    })
                    .take(room as usize)
                    .map(Some),
            );
        } else {
            let want = match completions {
                Some(c) => parallelism.min(c - succeeded).max(0),
                None if succeeded > 0 => 0,
                None => parallelism,
            };
            let have = active.len() as i32;
            if have > want {
                to_delete.extend(pick_victims(&active, (have - want) as usize));
            } else {
                let n = (want - have - blocking).max(0);
                creates.extend(std::iter::repeat_n(None, n as usize));
            }
        }
        if !creates.is_empty() {
            let wait = plan.backoff.remaining(now);
            if !wait.is_zero() {
                creates.clear();
                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    plan.create = creates;

    let deleting: HashSet<String> = to_delete.iter().map(|p| uid(p)).collect();
    let still_active: Vec<&&Arc<Pod>> = active
        .iter()
        .filter(|p| !deleting.contains(&uid(p)))
        .collect();
    plan.delete = to_delete.iter().map(|p| name(p)).collect();
    let act = still_active.len() as i32 + plan.create.len() as i32;
    st.active = (act > 0).then_some(act);
    st.ready = Some(still_active.iter().filter(|p| pod_ready(p)).count() as i32);
    st.terminating = Some(terminating + plan.delete.len() as i32);

    // Terminal conditions once nothing runs any more.
    if finishing && act == 0 && st.terminating == Some(0) {
        if let Some(c) = cond(&st, "FailureTarget")
            .filter(|c| c.status == "True")
            .cloned()
        {
            let reason = c.reason.unwrap_or_default();
            let msg = c.message.unwrap_or_default();
            set_cond(&mut st, "Failed", "True", &reason, &msg, now);
            plan.events.push(Event {
                type_: "Warning",
                reason,
                message: msg,
            });
        } else {
            set_cond(
                &mut st,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            st.completion_time = Some(time(now));
            plan.events.push(Event {
                type_: "Normal",
                reason: "Completed".into(),
                message: "Job completed".into(),
            });
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            plan.requeue = Some(Duration::from_secs(ttl.max(0) as u64));
        }
    } else if finishing {
        plan.requeue = Some(Duration::from_secs(1));
    }
    plan.status = st;
    plan
}

/// Which active pods to delete first: not ready before ready, newest first.
fn pick_victims<'a>(pods: &[&'a Arc<Pod>], n: usize) -> Vec<&'a Arc<Pod>> {
    let mut v: Vec<&'a Arc<Pod>> = pods.to_vec();
    v.sort_by_key(|p| {
        (
            pod_ready(p),
            std::cmp::Reverse(
                p.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
                    .unwrap_or(0),
            ),
        )
    });
    v.truncate(n);
    v
}
