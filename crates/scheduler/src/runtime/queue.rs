//! The scheduling queue of kube-scheduler: an active heap ordered by
//! priority then arrival, a backoff heap, and a set of unschedulable pods
//! that wait for a cluster change. Time is passed in, so tests need no sleeps.

use k8s_openapi::api::core::v1::Pod;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even without events.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub key: String,
    pub pod: Arc<Pod>,
    pub priority: i32,
    /// When the pod first entered the queue (ordering tie-break, latency).
    pub initial: Instant,
    /// When it last entered the active queue.
    pub enqueued: Instant,
    pub attempts: u32,
    /// When it became unschedulable, or its backoff started.
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

struct ActiveEntry {
    priority: i32,
    initial: Instant,
    seq: u64,
    key: String,
}

impl PartialEq for ActiveEntry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for ActiveEntry {}
impl PartialOrd for ActiveEntry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ActiveEntry {
    // Max-heap: higher priority first, then earlier arrival.
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.initial.cmp(&self.initial))
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
pub struct SchedulingQueue {
    pods: HashMap<String, (QueuedPod, Where, u64)>,
    active: BinaryHeap<ActiveEntry>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    /// Bumped by every cluster event that may make pods schedulable; a pod
    /// failing in a cycle that saw a move goes to backoff, not unschedulable.
    move_cycle: u64,
}

fn backoff_for(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        d *= 2;
        if d >= MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d
}

impl SchedulingQueue {
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: &str, now: Instant) {
        let seq = self.next_seq();
        if let Some((qp, w, s)) = self.pods.get_mut(key) {
            *w = Where::Active;
            *s = seq;
            qp.enqueued = now;
            self.active.push(ActiveEntry {
                priority: qp.priority,
                initial: qp.initial,
                seq,
                key: key.to_string(),
            });
        }
    }

    fn push_backoff(&mut self, key: &str, now: Instant) {
        let seq = self.next_seq();
        if let Some((qp, w, s)) = self.pods.get_mut(key) {
            *w = Where::Backoff;
            *s = seq;
            qp.since = now;
            let until = now + backoff_for(qp.attempts);
            self.backoff.push(Reverse((until, seq, key.to_string())));
        }
    }

    /// A new pending pod, or an update of one already queued.
    pub fn add_or_update(&mut self, pod: Arc<Pod>, now: Instant) {
        let key = pod_key(&pod);
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        match self.pods.get_mut(&key) {
            Some((qp, w, _)) => {
                let changed =
                    qp.pod.spec != pod.spec || qp.pod.metadata.labels != pod.metadata.labels;
                qp.pod = pod;
                qp.priority = priority;
                // An edited pod may now fit: retry it (upstream's podUpdate event).
                if changed && *w == Where::Unschedulable {
                    self.push_backoff_or_active(&key, now);
                }
            }
            None => {
                let qp = QueuedPod {
                    key: key.clone(),
                    pod,
                    priority,
                    initial: now,
                    enqueued: now,
                    attempts: 0,
                    since: now,
                };
                self.pods.insert(key.clone(), (qp, Where::Active, 0));
                self.push_active(&key, now);
            }
        }
    }

    fn push_backoff_or_active(&mut self, key: &str, now: Instant) {
        let still_backing_off = self
            .pods
            .get(key)
            .map(|(qp, _, _)| qp.attempts > 0 && qp.since + backoff_for(qp.attempts) > now)
            .unwrap_or(false);
        if still_backing_off {
            self.push_backoff(key, now);
        } else {
            self.push_active(key, now);
        }
    }

    pub fn delete(&mut self, key: &str) {
        // Heap entries of a removed pod are skipped lazily.
        self.pods.remove(key);
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, key))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            let current = self.pods.get(&key).map(|(_, w, s)| (*w, *s));
            if current == Some((Where::Backoff, seq)) {
                self.push_active(&key, now);
            }
        }
    }

    /// Moves pods unschedulable for longer than MAX_UNSCHEDULABLE back.
    fn flush_unschedulable(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, (qp, w, _))| {
                *w == Where::Unschedulable && now.duration_since(qp.since) >= MAX_UNSCHEDULABLE
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.push_backoff_or_active(&k, now);
        }
    }

    /// The next pod to schedule, marking it in flight.
    pub fn pop(&mut self, now: Instant) -> Option<(QueuedPod, u64)> {
        self.flush_backoff(now);
        self.flush_unschedulable(now);
        while let Some(e) = self.active.pop() {
            if let Some((qp, w, s)) = self.pods.get_mut(&e.key) {
                if *w == Where::Active && *s == e.seq {
                    *w = Where::InFlight;
                    qp.attempts += 1;
                    return Some((qp.clone(), self.move_cycle));
                }
            }
        }
        None
    }

    /// The pod was bound (or handed to binding): forget it.
    pub fn done(&mut self, key: &str) {
        self.pods.remove(key);
    }

    /// The pod did not fit. `cycle` is what `pop` returned.
    pub fn unschedulable(&mut self, key: &str, cycle: u64, now: Instant) {
        let moved = cycle != self.move_cycle;
        match self.pods.get_mut(key) {
            Some((qp, w, _)) if *w == Where::InFlight => {
                qp.since = now;
                if moved {
                    self.push_backoff(key, now);
                } else {
                    *w = Where::Unschedulable;
                }
            }
            _ => {}
        }
    }

    /// Scheduling or binding failed for a transient reason: retry after backoff.
    pub fn error(&mut self, key: &str, now: Instant) {
        if self.pods.contains_key(key) {
            self.push_backoff(key, now);
        }
    }

    /// Re-adds a pod whose binding failed after `done` (it is pending again).
    pub fn requeue_after_failed_bind(&mut self, pod: Arc<Pod>, attempts: u32, now: Instant) {
        self.add_or_update(pod.clone(), now);
        let key = pod_key(&pod);
        if let Some((qp, _, _)) = self.pods.get_mut(&key) {
            qp.attempts = attempts.max(1);
        }
        self.push_backoff(&key, now);
    }

    /// Something changed that may make pods schedulable (node added or
    /// updated, pod deleted): move every unschedulable pod back.
    pub fn move_all(&mut self, now: Instant) {
        self.move_cycle += 1;
        let keys: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, (_, w, _))| *w == Where::Unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.push_backoff_or_active(&k, now);
        }
    }

    /// When the loop should wake up next even without events.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self.backoff.peek().map(|Reverse((t, _, _))| *t);
        let unsched = self
            .pods
            .values()
            .filter(|(_, w, _)| *w == Where::Unschedulable)
            .map(|(qp, _, _)| qp.since + MAX_UNSCHEDULABLE)
            .min();
        match (backoff, unsched) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn has_active(&self) -> bool {
        self.pods.values().any(|(_, w, _)| *w == Where::Active)
    }

    pub fn unschedulable_count(&self) -> usize {
        self.pods
            .values()
            .filter(|(_, w, _)| *w == Where::Unschedulable)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(name: &str, prio: i32) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.spec = Some(PodSpec {
            priority: Some(prio),
            ..PodSpec::default()
        });
        Arc::new(p)
    }

    #[test]
    fn priority_then_fifo() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add_or_update(pod("a", 0), t0);
        q.add_or_update(pod("b", 10), t0 + Duration::from_millis(1));
        q.add_or_update(pod("c", 0), t0 + Duration::from_millis(2));
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t0).map(|(p, _)| p.key)).collect();
        assert_eq!(order, vec!["default/b", "default/a", "default/c"]);
    }

    #[test]
    fn unschedulable_waits_for_move_then_backoff() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add_or_update(pod("a", 0), t0);
        let (p, cycle) = q.pop(t0).unwrap();
        q.unschedulable(&p.key, cycle, t0);
        assert!(
            q.pop(t0 + Duration::from_secs(60)).is_none(),
            "waits for an event"
        );
        // A move within the backoff window parks it in backoff.
        q.move_all(t0 + Duration::from_millis(500));
        assert!(q.pop(t0 + Duration::from_millis(600)).is_none());
        assert!(q.pop(t0 + Duration::from_millis(1600)).is_some());
    }

    #[test]
    fn move_during_cycle_goes_to_backoff() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add_or_update(pod("a", 0), t0);
        let (p, cycle) = q.pop(t0).unwrap();
        q.move_all(t0);
        q.unschedulable(&p.key, cycle, t0);
        assert!(q.pop(t0 + Duration::from_millis(999)).is_none());
        assert!(q.pop(t0 + Duration::from_millis(1000)).is_some());
    }

    #[test]
    fn exponential_backoff_and_periodic_flush() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(3), Duration::from_secs(4));
        assert_eq!(backoff_for(10), MAX_BACKOFF);
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add_or_update(pod("a", 0), t0);
        let (p, cycle) = q.pop(t0).unwrap();
        q.unschedulable(&p.key, cycle, t0);
        assert_eq!(q.next_wakeup(), Some(t0 + MAX_UNSCHEDULABLE));
        assert!(q.pop(t0 + MAX_UNSCHEDULABLE).is_some());
    }

    #[test]
    fn deleted_pods_are_skipped() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add_or_update(pod("a", 0), t0);
        q.add_or_update(pod("b", 0), t0);
        q.delete("default/a");
        assert_eq!(q.pop(t0).unwrap().0.key, "default/b");
        assert!(q.pop(t0).is_none());
    }
}
