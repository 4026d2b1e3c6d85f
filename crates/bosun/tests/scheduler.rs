//! End-to-end tests of the scheduler: a real `bosun server` (API server plus
//! the leader-elected scheduler) with simulated nodes from `bosun simulate
//! nodes`, driven by the real kubectl. Every assertion is what upstream
//! kube-scheduler does, read the way a user reads it (`kubectl get`, events,
//! `kubectl describe`).

mod common;
#[path = "common/sim.rs"]
mod sim;

use serde_json::Value;
use sim::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Deadline for anything the scheduler or the simulated nodes must do.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Harness: `sim::Cluster` (a server with its scheduler enabled, plus simulated
// node processes) and the scheduler-specific assertions below.
// ---------------------------------------------------------------------------

impl Cluster {
    /// Waits for a FailedScheduling event on `default/name` whose message is
    /// `want`; panics listing every message seen otherwise.
    #[track_caller]
    fn wait_failed_scheduling(&self, name: &str, want: &str) -> Event {
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let evs = self.events("default", name, Some("FailedScheduling"));
            if let Some(e) = evs.iter().rev().find(|e| e.message == want) {
                return e.clone();
            }
            seen.extend(evs.into_iter().map(|e| e.message));
            if Instant::now() > deadline {
                panic!(
                    "pod {name}: no FailedScheduling event with message\n  {want:?}\nwithin {WAIT:?}; messages seen: {seen:#?}\npod: {}",
                    self.kubectl(&["get", "pod", name, "-o", "yaml"]).stdout
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Asserts what upstream leaves on an unschedulable pod: Pending, no
    /// node, PodScheduled=False/Unschedulable with the FitError message, the
    /// Warning FailedScheduling event from default-scheduler, and the same
    /// line in `kubectl describe pod`.
    #[track_caller]
    fn assert_unschedulable(&self, name: &str, want: &str) {
        let ev = self.wait_failed_scheduling(name, want);
        assert_eq!(ev.type_, "Warning", "{ev:?}");
        assert_eq!(ev.reporting, "default-scheduler", "{ev:?}");
        assert_eq!(ev.kind, "Pod", "{ev:?}");
        let pod = self.pod_json("default", name);
        assert_eq!(pod["status"]["phase"], "Pending", "{pod:#}");
        assert!(pod["spec"]["nodeName"].is_null(), "{pod:#}");
        let cond = self.eventually(&format!("pod {name} PodScheduled condition"), || {
            let pod = self.pod_json("default", name);
            let c = pod["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())?;
            (c["message"] == want).then_some(c)
        });
        assert_eq!(cond["status"], "False", "{cond:#}");
        assert_eq!(cond["reason"], "Unschedulable", "{cond:#}");
        let describe = self.ok(&["describe", "pod", name]);
        let events = describe
            .split_once("\nEvents:")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("describe has no Events section:\n{describe}"));
        assert!(
            events.lines().any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.first() == Some(&"Warning")
                    && c.get(1) == Some(&"FailedScheduling")
                    && l.contains("default-scheduler")
                    && l.trim_end().ends_with(want)
            }),
            "describe pod {name}: no `Warning FailedScheduling ... default-scheduler {want}` line:\n{events}"
        );
    }
}

/// A pod manifest in `default` with a busybox container; `spec` is extra
/// YAML at the pod spec's indentation (2 spaces), `labels` a flow map body.
fn pod(name: &str, labels: &str, cpu: Option<&str>, spec: &str) -> String {
    let res = cpu
        .map(|c| format!("\n    resources:\n      requests:\n        cpu: {c}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n{spec}  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '3600']{res}\n---\n"
    )
}

// ---------------------------------------------------------------------------
// 1. nodeSelector
// ---------------------------------------------------------------------------

#[test]
fn node_selector_picks_matching_node_or_stays_pending() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("ssd-", 1, "4", &["disk=ssd"]);
    c.simulate("hdd-", 1, "4", &["disk=hdd"]);

    c.create(&pod(
        "fast",
        "app: fast",
        None,
        "  nodeSelector:\n    disk: ssd\n",
    ));
    assert_eq!(c.wait_running("fast"), "ssd-0");
    assert_eq!(c.pod_field("fast", "{.spec.nodeName}"), "ssd-0");

    c.create(&pod(
        "nvme",
        "app: nvme",
        None,
        "  nodeSelector:\n    disk: nvme\n",
    ));
    c.assert_unschedulable(
        "nvme",
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );
    // What `kubectl get events --field-selector reason=FailedScheduling` shows.
    let out = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=FailedScheduling",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.name}|{.type}|{.message}{\"\\n\"}{end}",
    ]);
    assert!(
        out.lines().any(|l| l
            == "nvme|Warning|0/2 nodes are available: 2 node(s) didn't match Pod's node \
                affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not \
                helpful for scheduling."),
        "{out}"
    );

    // A node that starts matching (label update) gets the pending pod.
    c.ok(&["label", "node", "hdd-0", "disk=nvme", "--overwrite"]);
    assert_eq!(c.wait_running("nvme"), "hdd-0");
}

// ---------------------------------------------------------------------------
// 2. taints and tolerations
// ---------------------------------------------------------------------------

#[test]
fn taints_repel_pods_without_tolerations() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("n", 2, "4", &[]);
    assert_eq!(
        c.ok(&["taint", "nodes", "n1", "dedicated=x:NoSchedule"])
            .trim(),
        "node/n1 tainted"
    );

    let mut docs = String::new();
    for i in 0..3 {
        docs.push_str(&pod(&format!("plain-{i}"), "app: plain", None, ""));
    }
    c.create(&docs);
    for i in 0..3 {
        assert_eq!(
            c.wait_running(&format!("plain-{i}")),
            "n0",
            "a pod without a toleration landed on the tainted node"
        );
    }

    let tol = "  tolerations:\n  - key: dedicated\n    operator: Equal\n    value: x\n    effect: NoSchedule\n";
    c.create(&pod("tolerant", "app: tolerant", None, tol));
    let n = c.wait_running("tolerant");
    assert!(n == "n0" || n == "n1", "{n}");
    c.create(&pod(
        "tolerant-n1",
        "app: tolerant",
        None,
        &format!("{tol}  nodeSelector:\n    kubernetes.io/hostname: n1\n"),
    ));
    assert_eq!(c.wait_running("tolerant-n1"), "n1");

    // Forced onto the tainted node without a toleration: both reasons, in
    // upstream's sorted histogram.
    c.create(&pod(
        "probe",
        "app: probe",
        None,
        "  nodeSelector:\n    kubernetes.io/hostname: n1\n",
    ));
    c.assert_unschedulable(
        "probe",
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: x}. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );
    c.ok(&["delete", "pod", "probe"]);

    c.ok(&["taint", "nodes", "n0", "dedicated=x:NoSchedule"]);
    c.create(&pod("blocked", "app: blocked", None, ""));
    c.assert_unschedulable(
        "blocked",
        "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: x}. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );
    // NoSchedule does not evict what already runs there.
    assert_eq!(c.pod_field("plain-0", "{.status.phase}"), "Running");

    // Removing the taint lets the pending pod schedule.
    assert_eq!(
        c.ok(&["taint", "nodes", "n0", "dedicated=x:NoSchedule-"])
            .trim(),
        "node/n0 untainted"
    );
    assert_eq!(c.wait_running("blocked"), "n0");
}

// ---------------------------------------------------------------------------
// 3. required pod anti-affinity
// ---------------------------------------------------------------------------

#[test]
fn required_anti_affinity_one_per_host() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("aa-", 3, "4", &[]);
    let spec = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector:\n          matchLabels:\n            app: web\n        topologyKey: kubernetes.io/hostname\n";
    let docs: String = (0..4)
        .map(|i| pod(&format!("web-{i}"), "app: web", None, spec))
        .collect();
    c.create(&docs);

    let want = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
                preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    // Which of the four loses is up to queue order; find the one that did.
    let pending = c.eventually("one web pod FailedScheduling", || {
        (0..4).map(|i| format!("web-{i}")).find(|p| {
            c.events("default", p, Some("FailedScheduling"))
                .iter()
                .any(|e| e.message == want)
        })
    });
    c.assert_unschedulable(&pending, want);
    let mut nodes = BTreeSet::new();
    for i in 0..4 {
        let p = format!("web-{i}");
        if p != pending {
            nodes.insert(c.wait_running(&p));
        }
    }
    assert_eq!(
        nodes,
        BTreeSet::from(["aa-0".to_string(), "aa-1".into(), "aa-2".into()]),
        "three web pods on three distinct nodes"
    );
    let out = c.ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
    let running = out.lines().filter(|l| l.contains(" Running ")).count();
    let pend = out.lines().filter(|l| l.contains(" Pending ")).count();
    assert_eq!((running, pend), (3, 1), "{out}");
}

// ---------------------------------------------------------------------------
// 4. topology spread
// ---------------------------------------------------------------------------

#[test]
fn topology_spread_balances_zones() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("za-", 2, "4", &["topology.kubernetes.io/zone=zone-a"]);
    c.simulate("zb-", 2, "4", &["topology.kubernetes.io/zone=zone-b"]);
    let spec = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector:\n      matchLabels:\n        app: spread\n";
    let docs: String = (0..6)
        .map(|i| pod(&format!("spread-{i}"), "app: spread", None, spec))
        .collect();
    c.create(&docs);
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let node = c.wait_running(&format!("spread-{i}"));
        let zone = c.ok(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.metadata.labels.topology\\.kubernetes\\.io/zone}",
        ]);
        *per_zone.entry(zone).or_default() += 1;
    }
    assert_eq!(
        per_zone,
        BTreeMap::from([("zone-a".to_string(), 3), ("zone-b".to_string(), 3)]),
        "{}",
        c.ok(&["get", "pods", "-o", "wide"])
    );
}

// ---------------------------------------------------------------------------
// 5. resource exhaustion
// ---------------------------------------------------------------------------

#[test]
fn insufficient_cpu_leaves_extra_pod_pending() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("r", 2, "1", &[]);
    let docs: String = (0..3)
        .map(|i| pod(&format!("cpu-{i}"), "app: cpu", Some("600m"), ""))
        .collect();
    c.create(&docs);
    let want = "0/2 nodes are available: 2 Insufficient cpu. \
                preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.";
    let pending = c.eventually("one cpu pod FailedScheduling", || {
        (0..3).map(|i| format!("cpu-{i}")).find(|p| {
            c.events("default", p, Some("FailedScheduling"))
                .iter()
                .any(|e| e.message == want)
        })
    });
    c.assert_unschedulable(&pending, want);
    let mut nodes = BTreeMap::new();
    for i in 0..3 {
        let p = format!("cpu-{i}");
        if p != pending {
            nodes.insert(c.wait_running(&p), p);
        }
    }
    assert_eq!(
        nodes.keys().cloned().collect::<Vec<_>>(),
        ["r0", "r1"],
        "one 600m pod per 1-cpu node"
    );

    // Freeing a node schedules the pending pod there.
    let (free_node, victim) = nodes.iter().next().expect("a node");
    c.ok(&["delete", "pod", victim, "--wait=true", "--timeout=30s"]);
    assert_eq!(c.wait_running(&pending), *free_node);
}

// ---------------------------------------------------------------------------
// 6. preemption
// ---------------------------------------------------------------------------

#[test]
fn preemption_evicts_lower_priority_pod() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("p", 1, "1", &[]);
    c.ok(&["create", "priorityclass", "low", "--value=10"]);
    c.ok(&["create", "priorityclass", "high", "--value=1000"]);
    c.ok(&[
        "create",
        "priorityclass",
        "high-never",
        "--value=1000",
        "--preemption-policy=Never",
    ]);

    c.create(&pod(
        "low",
        "app: low",
        Some("800m"),
        "  priorityClassName: low\n",
    ));
    assert_eq!(c.wait_running("low"), "p0");
    assert_eq!(c.pod_field("low", "{.spec.priority}"), "10");
    let low_uid = c.pod_field("low", "{.metadata.uid}");

    // preemptionPolicy: Never (from its PriorityClass): no preemption.
    c.create(&pod(
        "never",
        "app: never",
        Some("800m"),
        "  priorityClassName: high-never\n",
    ));
    assert_eq!(c.pod_field("never", "{.spec.preemptionPolicy}"), "Never");
    c.assert_unschedulable(
        "never",
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: not eligible due to preemptionPolicy=Never.",
    );
    assert_eq!(c.pod_field("never", "{.status.nominatedNodeName}"), "");
    assert_eq!(c.pod_field("low", "{.status.phase}"), "Running");
    assert_eq!(c.pod_field("low", "{.metadata.uid}"), low_uid);
    assert!(c.events("default", "low", Some("Preempted")).is_empty());
    c.ok(&["delete", "pod", "never", "--wait=true", "--timeout=30s"]);

    // A higher-priority pod that may preempt: the low pod goes.
    c.create(&pod(
        "high",
        "app: high",
        Some("800m"),
        "  priorityClassName: high\n",
    ));
    let high_uid = c.pod_field("high", "{.metadata.uid}");
    let pre = c.eventually("Preempted event on the low pod", || {
        c.events("default", "low", Some("Preempted"))
            .into_iter()
            .next()
    });
    assert_eq!(pre.type_, "Normal", "{pre:?}");
    assert_eq!(pre.reporting, "default-scheduler", "{pre:?}");
    assert_eq!(
        pre.message,
        format!("Preempted by pod {high_uid} on node p0"),
        "{pre:?}"
    );
    c.eventually("the low pod deleted", || {
        let o = c.kubectl(&["get", "pod", "low"]);
        (!o.ok() && o.stderr.contains("NotFound")).then_some(())
    });
    // It failed scheduling once (no suffix: preemption found a node) and was
    // nominated to the node, then bound there.
    c.wait_failed_scheduling("high", "0/1 nodes are available: 1 Insufficient cpu.");
    assert_eq!(c.wait_running("high"), "p0");
    assert_eq!(c.pod_field("high", "{.status.nominatedNodeName}"), "p0");
    let sched = c.events("default", "high", Some("Scheduled"));
    assert_eq!(sched.len(), 1, "{sched:?}");
    assert_eq!(sched[0].message, "Successfully assigned default/high to p0");
    let wide = c.ok(&["get", "pod", "high", "-o", "wide", "--no-headers"]);
    let cells: Vec<&str> = wide.split_whitespace().collect();
    // NAME READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE READINESS-GATES
    assert_eq!(cells[2], "Running", "{wide}");
    assert_eq!(cells[6], "p0", "{wide}");
    assert_eq!(cells[7], "p0", "{wide}");
}

/// Upstream marks a victim before deleting it: PodDisruptionConditions (GA
/// in 1.31) has the scheduler patch a DisruptionTarget condition
/// (reason PreemptionByScheduler) onto the victim's status first.
#[test]
fn preemption_victim_gets_disruption_target_condition() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("v", 1, "1", &[]);
    c.ok(&["create", "priorityclass", "low", "--value=10"]);
    c.ok(&["create", "priorityclass", "high", "--value=1000"]);
    c.create(&pod(
        "victim",
        "app: low",
        Some("800m"),
        "  priorityClassName: low\n",
    ));
    assert_eq!(c.wait_running("victim"), "v0");
    // Every version of the victim, as `kubectl get pod -w -o json` prints them.
    let watch = c.watch_json(&["get", "pod", "victim", "--watch", "-o", "json"]);
    c.create(&pod(
        "boss",
        "app: high",
        Some("800m"),
        "  priorityClassName: high\n",
    ));
    assert_eq!(c.wait_running("boss"), "v0");
    c.eventually("the victim deleted", || {
        let o = c.kubectl(&["get", "pod", "victim"]);
        (!o.ok() && o.stderr.contains("NotFound")).then_some(())
    });
    let mut versions = Vec::new();
    let deadline = Instant::now() + WAIT;
    // Until the version that carries the deletion (the last one upstream).
    while !versions
        .iter()
        .any(|v: &Value| !v["metadata"]["deletionTimestamp"].is_null())
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.rx.recv_timeout(left) {
            Ok(v) => versions.push(v),
            Err(e) => panic!("watch of the victim ended early ({e:?}): {versions:#?}"),
        }
    }
    let cond = versions.iter().find_map(|v| {
        v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .cloned()
    });
    let Some(cond) = cond else {
        let seen: Vec<String> = versions
            .iter()
            .map(|v| {
                let types: Vec<&str> = v["status"]["conditions"]
                    .as_array()
                    .map(|cs| cs.iter().filter_map(|c| c["type"].as_str()).collect())
                    .unwrap_or_default();
                format!(
                    "rv {} deletionTimestamp={} conditions={types:?}",
                    v["metadata"]["resourceVersion"], v["metadata"]["deletionTimestamp"]
                )
            })
            .collect();
        panic!(
            "no version of the preempted pod carried a DisruptionTarget condition; versions seen: {seen:#?}"
        )
    };
    assert_eq!(cond["status"], "True", "{cond:#}");
    assert_eq!(cond["reason"], "PreemptionByScheduler", "{cond:#}");
    assert_eq!(
        cond["message"], "default-scheduler: preempting to accommodate a higher priority pod",
        "{cond:#}"
    );
}

/// Priority admission (upstream): a pod may not set a preemptionPolicy that
/// differs from the one its PriorityClass gives it.
#[test]
fn priority_admission_rejects_conflicting_preemption_policy() {
    let Some(c) = Cluster::start() else {
        return;
    };
    c.ok(&["create", "priorityclass", "high", "--value=1000"]);
    let p = c.root.path().join("bad.yaml");
    std::fs::write(
        &p,
        pod(
            "bad",
            "app: bad",
            None,
            "  priorityClassName: high\n  preemptionPolicy: Never\n",
        ),
    )
    .expect("write");
    let o = c.kubectl(&["create", "-f", p.to_str().expect("utf-8")]);
    assert!(
        !o.ok(),
        "a pod with preemptionPolicy Never and a PreemptLowerPriority class was admitted: {o:?}\n{}",
        c.kubectl(&["get", "pod", "bad", "-o", "jsonpath={.spec.preemptionPolicy}"]).stdout
    );
    assert!(
        o.stderr.contains(
            "pods \"bad\" is \
             forbidden: the string value of PreemptionPolicy (Never) must not be provided in pod \
             spec; priority admission controller computed PreemptLowerPriority from the given \
             PriorityClass name"
        ),
        "{}",
        o.stderr
    );
}

// ---------------------------------------------------------------------------
// 7. pods the scheduler must leave alone
// ---------------------------------------------------------------------------

#[test]
fn preset_node_name_and_other_scheduler_are_left_alone() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("s", 2, "4", &[]);
    c.create(&pod("pinned", "app: pinned", None, "  nodeName: s1\n"));
    c.create(&pod(
        "other",
        "app: other",
        None,
        "  schedulerName: other-scheduler\n",
    ));
    // A pod created after both: once it is scheduled, the scheduler has seen
    // (and must have ignored) the two before it.
    c.create(&pod("after", "app: after", None, ""));
    assert_eq!(c.wait_running("pinned"), "s1");
    c.wait_running("after");
    c.eventually("Scheduled event for `after`", || {
        (!c.events("default", "after", Some("Scheduled")).is_empty()).then_some(())
    });

    let pinned = c.events("default", "pinned", None);
    assert!(
        pinned.iter().all(|e| e.reporting != "default-scheduler"),
        "default-scheduler wrote events about a pod with spec.nodeName preset: {pinned:?}"
    );

    assert_eq!(
        c.pod_field("other", "{.status.phase} {.spec.nodeName}")
            .trim(),
        "Pending"
    );
    assert_eq!(c.pod_field("other", "{.status.conditions}"), "");
    let ev = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=other",
    ]);
    assert_eq!(ev, "", "events about a pod for another scheduler: {ev}");
    let describe = c.ok(&["describe", "pod", "other"]);
    assert!(
        describe
            .split_once("\nEvents:")
            .is_some_and(|(_, e)| e.trim() == "<none>"),
        "{describe}"
    );
    let table = c.ok(&["get", "pod", "other", "--no-headers"]);
    assert_eq!(table.split_whitespace().nth(2), Some("Pending"), "{table}");
}

// ---------------------------------------------------------------------------
// 8. Scheduled event
// ---------------------------------------------------------------------------

#[test]
fn scheduled_event_names_pod_and_node() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.simulate("e", 1, "4", &[]);
    assert_eq!(
        c.ok(&["run", "p", "--image=busybox", "--restart=Never"])
            .trim(),
        "pod/p created"
    );
    assert_eq!(c.wait_running("p"), "e0");
    let evs = c.eventually("Scheduled event for p", || {
        let e = c.events("default", "p", Some("Scheduled"));
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(evs.len(), 1, "{evs:?}");
    let e = &evs[0];
    assert_eq!(e.type_, "Normal", "{e:?}");
    assert_eq!(e.reason, "Scheduled", "{e:?}");
    assert_eq!(e.message, "Successfully assigned default/p to e0", "{e:?}");
    assert_eq!(e.reporting, "default-scheduler", "{e:?}");
    assert_eq!((e.kind.as_str(), e.name.as_str()), ("Pod", "p"), "{e:?}");

    // As `kubectl get events` and `kubectl describe pod` print it.
    let table = c.ok(&["get", "events", "--field-selector", "involvedObject.name=p"]);
    assert!(
        table.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.get(1) == Some(&"Normal")
                && cells.get(2) == Some(&"Scheduled")
                && cells.get(3) == Some(&"pod/p")
                && l.trim_end()
                    .ends_with("Successfully assigned default/p to e0")
        }),
        "{table}"
    );
    let describe = c.ok(&["describe", "pod", "p"]);
    let events = describe
        .split_once("\nEvents:")
        .map(|(_, e)| e)
        .unwrap_or("");
    assert!(
        events.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&"Normal")
                && cells.get(1) == Some(&"Scheduled")
                && l.contains(" default-scheduler ")
                && l.trim_end()
                    .ends_with("Successfully assigned default/p to e0")
        }),
        "{describe}"
    );
    assert!(
        describe
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Node:", "e0/192.0.2.1"]),
        "{describe}"
    );
    let cond = c.pod_field(
        "p",
        "{.status.conditions[?(@.type==\"PodScheduled\")].status}",
    );
    assert_eq!(cond, "True");

    // Another namespace: the message names it.
    c.ok(&["create", "namespace", "team"]);
    c.ok(&[
        "run",
        "q",
        "-n",
        "team",
        "--image=busybox",
        "--restart=Never",
    ]);
    let e = c.eventually("Scheduled event for team/q", || {
        c.events("team", "q", Some("Scheduled")).into_iter().next()
    });
    assert_eq!(e.message, "Successfully assigned team/q to e0");
}
