//! Helpers shared by the ReplicaSet and Deployment controllers: informers
//! feeding a reconcile queue, label selectors, pod state, expectations and
//! the upstream random-name / hash encodings.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts a reflector for `api` in the background; `on_event` sees every
/// watch event after the store has applied it. Relists with backoff after a
/// failed watch (kube-runtime's default backoff).
pub fn informer<K, F>(api: Api<K>, on_event: F) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    F: Fn(&watcher::Event<K>) + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .map_ok(move |ev| on_event(&ev))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "watch error (will relist)");
            }
        });
    tokio::spawn(stream);
    reader
}

/// The objects a watch event carries.
pub fn event_objects<K>(ev: &watcher::Event<K>) -> Vec<&K> {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
            vec![o]
        }
        watcher::Event::Init | watcher::Event::InitDone => vec![],
    }
}

/// The reference used to enqueue a namespaced object.
pub fn obj_ref<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> ObjectRef<K> {
    ObjectRef::new(name).within(ns)
}

/// "namespace/name".
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The controller ownerReference, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller ownerReference to `owner` (controller and blockOwnerDeletion set).
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `labels` match a LabelSelector (matchLabels and matchExpressions).
/// An empty selector matches everything; a malformed operator nothing.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|g| vals.contains(g)),
            "NotIn" => !got.is_some_and(|g| vals.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a selector selects nothing in particular (matches everything).
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

pub fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

pub fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Not terminated and not being deleted (upstream IsPodActive).
pub fn pod_is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    phase != Some("Succeeded") && phase != Some("Failed") && p.metadata.deletion_timestamp.is_none()
}

pub fn pod_ready_condition(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn pod_is_ready(p: &Pod) -> bool {
    pod_ready_condition(p).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` (upstream IsPodAvailable).
pub fn pod_is_available(
    p: &Pod,
    min_ready_seconds: i32,
    now: k8s_openapi::jiff::Timestamp,
) -> bool {
    let Some(c) = pod_ready_condition(p).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => t.0.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
        None => false,
    }
}

/// Seconds until a ready pod becomes available (None when not ready or already available).
pub fn seconds_until_available(
    p: &Pod,
    min_ready_seconds: i32,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<i64> {
    let c = pod_ready_condition(p).filter(|c| c.status == "True")?;
    let t = c.last_transition_time.as_ref()?;
    let left = t.0.as_second() + i64::from(min_ready_seconds) - now.as_second();
    (left > 0).then_some(left)
}

/// Upstream's `utilrand` alphabet (no vowels, no confusable characters).
pub const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_u64() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// A random string of `n` characters from [`ALPHANUMS`] (upstream rand.String).
pub fn random_suffix(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut r = random_u64();
    for _ in 0..n {
        if r < ALPHANUMS.len() as u64 {
            r = random_u64();
        }
        out.push(ALPHANUMS[(r % ALPHANUMS.len() as u64) as usize] as char);
        r /= ALPHANUMS.len() as u64;
    }
    out
}

/// Upstream rand.SafeEncodeString: every byte mapped into [`ALPHANUMS`].
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// 32-bit FNV-1a.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A reconcile failure (the API server's message when it answered one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(api_msg(&e))
    }
}

/// The message of an API error (what upstream's err.Error() prints).
pub fn api_msg(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// The HTTP code of an API error (0 for transport errors).
/// Release an object its controller no longer selects: drop the owner
/// reference with `uid` (a gone or invalid object is fine, as upstream).
pub async fn release_owned<K>(
    api: &Api<K>,
    name: &str,
    meta: &ObjectMeta,
    uid: &str,
) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let refs: Vec<_> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    let patch = serde_json::json!({"metadata": {"ownerReferences": if refs.is_empty() { serde_json::json!(null) } else { serde_json::json!(refs) }}});
    match api
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(api_code(&e), 404 | 422) => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

/// How long an unfulfilled expectation is trusted (upstream ExpectationsTimeout).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Exp {
    /// Names of pods created but not yet seen by the informer.
    adds: HashSet<String>,
    /// Names of pods deleted but not yet seen gone (or terminating).
    dels: HashSet<String>,
    at: Instant,
}

/// Controller expectations (upstream ControllerExpectations), keyed by the
/// owner's "namespace/name": a controller does not act on an owner again
/// until the informer has seen the effect of its previous writes, so a burst
/// of events never creates or deletes twice.
#[derive(Clone, Default)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<String, Exp>>>,
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Exp>) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Records that `names` are about to be created (or deleted) for `key`.
    pub fn expect(&self, key: &str, adds: &[String], dels: &[String]) {
        self.with(|m| {
            let e = m.entry(key.to_string()).or_insert_with(|| Exp {
                adds: HashSet::new(),
                dels: HashSet::new(),
                at: Instant::now(),
            });
            e.adds.extend(adds.iter().cloned());
            e.dels.extend(dels.iter().cloned());
            e.at = Instant::now();
        })
    }

    /// A create that failed (or a pod seen by the informer).
    pub fn creation_observed(&self, key: &str, pod: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.adds.remove(pod);
            }
        })
    }

    /// A delete that failed (or a pod seen gone/terminating).
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.dels.remove(pod);
            }
        })
    }

    /// Whether the owner may act: nothing pending, or pending for too long.
    /// `present(name)` says whether the informer holds the pod and whether it
    /// is terminating, to fulfil expectations whose events were missed
    /// (e.g. across a relist).
    pub fn satisfied(&self, key: &str, present: impl Fn(&str) -> Option<bool>) -> bool {
        self.with(|m| {
            let Some(e) = m.get_mut(key) else {
                return true;
            };
            e.adds.retain(|n| present(n).is_none());
            e.dels.retain(|n| present(n) == Some(false));
            if (e.adds.is_empty() && e.dels.is_empty()) || e.at.elapsed() > EXPECTATIONS_TIMEOUT {
                m.remove(key);
                return true;
            }
            false
        })
    }

    pub fn forget(&self, key: &str) {
        self.with(|m| {
            m.remove(key);
        })
    }
}

/// Resolves an int-or-percent against `total` (upstream
/// GetScaledValueFromIntOrPercent).
pub fn scaled_value(
    v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    default: &str,
    total: i32,
    round_up: bool,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let s = match v {
        Some(IntOrString::Int(i)) => return *i,
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    if let Some(p) = s.strip_suffix('%') {
        let p: i64 = p.trim().parse().unwrap_or(0);
        let x = p * i64::from(total);
        let r = if round_up {
            (x + 99).div_euclid(100)
        } else {
            x.div_euclid(100)
        };
        return r as i32;
    }
    s.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors() {
        let l: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let mut s = LabelSelector {
            match_labels: Some(l.clone()),
            ..Default::default()
        };
        assert!(selector_matches(&s, &l));
        s.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "Exists".into(),
            values: None,
        }]);
        assert!(!selector_matches(&s, &l));
        assert!(selector_matches(&LabelSelector::default(), &l));
    }

    #[test]
    fn encodings() {
        assert_eq!(random_suffix(5).len(), 5);
        assert!(random_suffix(5).bytes().all(|b| ALPHANUMS.contains(&b)));
        // fnv32a("") is the offset basis; "a" is a published test vector.
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(safe_encode("0"), "4");
    }

    #[test]
    fn percentages() {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        assert_eq!(scaled_value(None, "25%", 3, true), 1);
        assert_eq!(scaled_value(None, "25%", 3, false), 0);
        assert_eq!(scaled_value(Some(&IntOrString::Int(2)), "25%", 3, false), 2);
        assert_eq!(
            scaled_value(Some(&IntOrString::String("50%".into())), "25%", 5, true),
            3
        );
    }

    #[test]
    fn expectations() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a", |_| None));
        e.expect("ns/a", &["p1".into()], &[]);
        assert!(!e.satisfied("ns/a", |_| None));
        assert!(e.satisfied("ns/a", |_| Some(false)));
        e.expect("ns/a", &[], &["p2".into()]);
        assert!(!e.satisfied("ns/a", |_| Some(false)));
        assert!(e.satisfied("ns/a", |_| Some(true)));
    }
}
