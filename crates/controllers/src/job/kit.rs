//! Helpers shared by the job, cronjob, daemonset and statefulset controllers:
//! shared pod/node informers, owner references, label selectors, pod
//! readiness, revision hashes.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use kube::api::ListParams;
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;

/// Errors of a reconcile: API errors and (rare) encoding errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Now, to the second (API times have second precision).
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub fn time(t: Timestamp) -> Time {
    Time(t)
}

/// The selector in its string form (`a=b,c in (d,e),!f`).
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// Pods in `ns` matching `sel`, listed from the API server (whose watch cache
/// is at least as new as the event that triggered the reconcile).
pub async fn list_pods(client: &Client, ns: &str, sel: &LabelSelector) -> Result<Vec<Arc<Pod>>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&selector_string(sel));
    Ok(api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// Every node.
pub async fn list_nodes(client: &Client) -> Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api.list(&ListParams::default()).await?.items)
}

/// An ownerReference naming a controller.
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

/// The uid of the object's controller (ownerReference with controller=true).
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_uid(meta) == Some(uid)
}

pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

pub fn pod_phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The pod's Ready condition, when True: its lastTransitionTime.
pub fn pod_ready_since(p: &Pod) -> Option<Timestamp> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

pub fn pod_ready(p: &Pod) -> bool {
    pod_ready_since(p).is_some()
}

/// Ready for at least `min_ready` seconds at `now`.
pub fn pod_available(p: &Pod, min_ready: i64, now: Timestamp) -> bool {
    match pod_ready_since(p) {
        Some(since) => min_ready <= 0 || since.as_second() + min_ready <= now.as_second(),
        None => false,
    }
}

/// FNV-1a, 32 bits (what upstream hashes pod templates with).
pub use crate::common_rs::fnv32a;

/// `rand.SafeEncodeString(fmt.Sprint(n))`: digits mapped onto consonants and
/// digits that never spell words.
pub fn safe_encode(n: u32) -> String {
    crate::common_rs::safe_encode(&n.to_string())
}

/// The controller-revision-hash of a revision's data (plus collisionCount).
pub fn revision_hash(data: &serde_json::Value, collision: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(fnv32a(&bytes))
}

/// Requeue delay after a failed reconcile.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(5);

/// Whether an API error is a 409 Conflict (or 404: object gone).
pub fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 409)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The label carrying a pod's (and ControllerRevision's) revision hash.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Keeps the owner's ControllerRevisions like upstream's history code: a
/// revision `<owner>-<hash>` whose data is `{"spec":{"template":...,"$patch":"replace"}}`
/// exists for the current template and has the highest revision number;
/// unused revisions beyond `history_limit` are deleted (`in_use` are the hashes
/// live pods still carry). Returns the current hash and revision number.
#[allow(clippy::too_many_arguments)]
pub async fn sync_revisions(
    client: &Client,
    api_version: &str,
    kind: &str,
    owner: &ObjectMeta,
    selector: &LabelSelector,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    collision: Option<i32>,
    history_limit: i32,
    in_use: &std::collections::HashSet<String>,
) -> Result<(String, i64)> {
    use k8s_openapi::api::apps::v1::ControllerRevision;
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
    use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
    let ns = owner.namespace.clone().unwrap_or_default();
    let uid = owner.uid.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let lp = ListParams::default().labels(&selector_string(selector));
    let mut revs: Vec<ControllerRevision> = api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|r| controlled_by(&r.metadata, &uid))
        .collect();
    revs.sort_by_key(|r| r.revision);
    let mut tmpl = serde_json::to_value(template)?;
    tmpl["$patch"] = serde_json::json!("replace");
    let data = serde_json::json!({"spec": {"template": tmpl}});
    let hash = revision_hash(&serde_json::to_value(template)?, collision);
    let name = format!("{}-{hash}", owner.name.clone().unwrap_or_default());
    let max = revs.last().map(|r| r.revision).unwrap_or(0);
    let existing = revs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name.as_str()))
        .cloned();
    let number = match existing {
        Some(r) if r.revision == max => r.revision,
        Some(r) => {
            // Rolled back to an older template: it becomes the newest revision.
            let p = serde_json::json!({"revision": max + 1});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&p))
                .await?;
            let _ = r;
            max + 1
        }
        None => {
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![controller_ref(api_version, kind, owner)]),
                    ..Default::default()
                },
                data: Some(RawExtension(data)),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            max + 1
        }
    };
    // History: delete the oldest unused revisions beyond the limit.
    let old: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(name.as_str()))
        .filter(|r| {
            let h = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL))
                .cloned()
                .unwrap_or_default();
            !in_use.contains(&h)
        })
        .collect();
    let excess = old.len().saturating_sub(history_limit.max(0) as usize);
    for r in old.iter().take(excess) {
        let _ = api
            .delete(
                &r.metadata.name.clone().unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await;
    }
    Ok((hash, number))
}

/// Tolerations: does `tol` tolerate `taint`?
pub fn tolerates(
    tol: &k8s_openapi::api::core::v1::Toleration,
    taint: &k8s_openapi::api::core::v1::Taint,
) -> bool {
    if let Some(e) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or("");
    let op = tol.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        _ => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// Required node affinity (and nodeSelector) of a pod spec against a node.
pub fn node_matches(spec: &k8s_openapi::api::core::v1::PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let Some(req) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    req.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        let check = |r: &k8s_openapi::api::core::v1::NodeSelectorRequirement,
                     v: Option<&String>| {
            let vals = r.values.clone().unwrap_or_default();
            match r.operator.as_str() {
                "In" => v.is_some_and(|v| vals.contains(v)),
                "NotIn" => v.is_none_or(|v| !vals.contains(v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                "Gt" | "Lt" => {
                    let (Some(v), Some(w)) = (
                        v.and_then(|v| v.parse::<i64>().ok()),
                        vals.first().and_then(|w| w.parse::<i64>().ok()),
                    ) else {
                        return false;
                    };
                    if r.operator == "Gt" {
                        v > w
                    } else {
                        v < w
                    }
                }
                _ => false,
            }
        };
        exprs.iter().all(|r| check(r, labels.get(&r.key)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && check(r, Some(&name)))
    })
}

/// An IntOrString (`3` or `"25%"`) scaled against `total`, rounding up or down.
pub fn scaled(
    v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    total: i32,
    round_up: bool,
    default: i32,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(p) => {
                    let n = p * total as i64;
                    (if round_up { (n + 99) / 100 } else { n / 100 }) as i32
                }
                None => s.parse().unwrap_or(default),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(safe_encode(0), "4");
        assert_eq!(safe_encode(12), "56");
    }
}
