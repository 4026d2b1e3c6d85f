//! The namespace controller: empties a Terminating namespace (every object
//! of every namespaced resource the API discovers), reports progress in the
//! upstream status conditions, and finally removes the `kubernetes`
//! finalizer through `namespaces/NAME/finalize`, which lets the API server
//! remove the namespace.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The finalizer this controller owns (`spec.finalizers`).
pub const FINALIZER: &str = "kubernetes";

/// Condition types in upstream order.
pub const CONDITION_TYPES: &[&str] = &[
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
];

fn ok_reason_message(t: &str) -> (&'static str, &'static str) {
    match t {
        "NamespaceDeletionDiscoveryFailure" => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        "NamespaceDeletionGroupVersionParsingFailure" => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        "NamespaceDeletionContentFailure" => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        "NamespaceContentRemaining" => ("ContentRemoved", "All content successfully removed"),
        _ => (
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    }
}

/// What one deletion pass found, turned into conditions by [`conditions`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pass {
    /// Discovery failure message, if any.
    pub discovery_error: Option<String>,
    /// Deletion/list failures ("resource: error").
    pub delete_errors: Vec<String>,
    /// "resource.group" → instances left.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer → instances carrying it.
    pub finalizers: BTreeMap<String, usize>,
}

impl Pass {
    pub fn done(&self) -> bool {
        self.discovery_error.is_none() && self.delete_errors.is_empty() && self.remaining.is_empty()
    }
}

/// The status conditions for a pass, keeping lastTransitionTime of
/// conditions whose status did not change (like upstream's updateConditions).
pub fn conditions(pass: &Pass, old: &[Value], now: &str) -> Vec<Value> {
    let mut failing: BTreeMap<&str, (String, String)> = BTreeMap::new();
    if let Some(e) = &pass.discovery_error {
        failing.insert(
            "NamespaceDeletionDiscoveryFailure",
            ("DiscoveryFailed".into(), e.clone()),
        );
    }
    if !pass.delete_errors.is_empty() {
        failing.insert(
            "NamespaceDeletionContentFailure",
            (
                "ContentDeletionFailed".into(),
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    pass.delete_errors.len(),
                    aggregate(&pass.delete_errors)
                ),
            ),
        );
    }
    let rem: Vec<String> = pass
        .remaining
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    if !rem.is_empty() {
        failing.insert(
            "NamespaceContentRemaining",
            (
                "SomeResourcesRemain".into(),
                format!("Some resources are remaining: {}", rem.join(", ")),
            ),
        );
    }
    let fins: Vec<String> = pass
        .finalizers
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    if !fins.is_empty() {
        failing.insert(
            "NamespaceFinalizersRemaining",
            (
                "SomeFinalizersRemain".into(),
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    fins.join(", ")
                ),
            ),
        );
    }
    CONDITION_TYPES
        .iter()
        .map(|t| {
            let (status, reason, message) = match failing.get(t) {
                Some((r, m)) => ("True", r.clone(), m.clone()),
                None => {
                    let (r, m) = ok_reason_message(t);
                    ("False", r.to_string(), m.to_string())
                }
            };
            let prev = old.iter().find(|c| c["type"] == *t);
            let ltt = match prev {
                Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
                _ => json!(now),
            };
            json!({"type": t, "status": status, "lastTransitionTime": ltt,
                   "reason": reason, "message": message})
        })
        .collect()
}

/// utilerrors.NewAggregate's text: one error bare, several in brackets.
fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

/// Conditions equal apart from lastTransitionTime.
fn same_conditions(a: &[Value], b: &[Value]) -> bool {
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                }
                c
            })
            .collect()
    };
    strip(a) == strip(b)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    /// Cached discovery: the namespaced resources that can be listed and deleted.
    resources: Mutex<Option<(Instant, Vec<ApiResource>)>>,
}

/// Namespaced resources that support list and delete, preferred versions only.
pub async fn deletable_resources(client: &Client) -> Result<Vec<ApiResource>, kube::Error> {
    let d = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for g in d.groups() {
        for (ar, caps) in g.recommended_resources() {
            if caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && (caps.supports_operation(verbs::DELETE)
                    || caps.supports_operation(verbs::DELETE_COLLECTION))
            {
                out.push(ar);
            }
        }
    }
    Ok(out)
}

impl Ctx {
    async fn resources(&self, fresh: bool) -> Result<Vec<ApiResource>, kube::Error> {
        let mut g = self.resources.lock().await;
        if let Some((at, r)) = g.as_ref() {
            if !fresh && at.elapsed() < Duration::from_secs(30) {
                return Ok(r.clone());
            }
        }
        let r = deletable_resources(&self.client).await?;
        *g = Some((Instant::now(), r.clone()));
        Ok(r)
    }
}

/// One pass: delete what is left, then count what remains.
async fn delete_content(ctx: &Ctx, ns: &str) -> Pass {
    let mut pass = Pass::default();
    let resources = match ctx.resources(false).await {
        Ok(r) => r,
        Err(e) => {
            pass.discovery_error =
                Some(format!("Discovery failed for some groups, 1 failing: {e}"));
            return pass;
        }
    };
    for ar in &resources {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, ar);
        let list = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => continue,
            Err(e) => {
                pass.delete_errors.push(format!("{}: {e}", ar.plural));
                continue;
            }
        };
        let mut left = 0;
        for item in &list.items {
            let m = &item.metadata;
            let Some(name) = m.name.as_deref() else {
                continue;
            };
            left += 1;
            for f in m.finalizers.iter().flatten() {
                *pass.finalizers.entry(f.clone()).or_default() += 1;
            }
            if m.deletion_timestamp.is_some() {
                continue;
            }
            let mut dp = DeleteParams::background();
            if let Some(uid) = &m.uid {
                dp = dp.preconditions(kube::api::Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                });
            }
            match api.delete(name, &dp).await {
                Ok(either) => {
                    if either.is_right() {
                        // Deleted outright.
                        left -= 1;
                        for f in m.finalizers.iter().flatten() {
                            if let Some(n) = pass.finalizers.get_mut(f) {
                                *n -= 1;
                            }
                        }
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => pass
                    .delete_errors
                    .push(format!("{}: {e}", group_resource(ar))),
            }
        }
        if left > 0 {
            pass.remaining.insert(group_resource(ar), left);
        }
    }
    pass.finalizers.retain(|_, n| *n > 0);
    pass
}

/// upstream's `gvr.Resource + "." + gvr.Group` ("pods." for the core group).
fn group_resource(ar: &ApiResource) -> String {
    format!("{}.{}", ar.plural, ar.group)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let has_fin = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if !has_fin {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let pass = delete_content(&ctx, &name).await;

    // Status conditions.
    let old: Vec<Value> = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| {
            c.iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let new = conditions(&pass, &old, &now);
    if !same_conditions(&old, &new) {
        let patch = json!({"status": {"conditions": new}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(namespace = %name, error = %e, "namespace status update failed");
        }
    }
    if pass.discovery_error.is_some() {
        // Rediscover next time.
        *ctx.resources.lock().await = None;
    }
    if !pass.done() {
        let after = if pass.delete_errors.is_empty() && pass.discovery_error.is_none() {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        };
        return Ok(Action::requeue(after));
    }
    // Rediscover before finalizing, like upstream's final check of new
    // resource types appearing while deleting.
    let _ = ctx.resources(true).await;
    let again = delete_content(&ctx, &name).await;
    if !again.done() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    finalize(&ctx.client, &name).await?;
    tracing::info!(namespace = %name, "namespace content deleted; finalized");
    Ok(Action::await_change())
}

/// Removes `kubernetes` from spec.finalizers via the finalize subresource.
async fn finalize(client: &Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    for _ in 0..5 {
        let Some(ns) = api.get_opt(name).await? else {
            return Ok(());
        };
        let mut v = serde_json::to_value(&ns).unwrap_or(Value::Null);
        let fins: Vec<Value> = v
            .pointer("/spec/finalizers")
            .and_then(|f| f.as_array())
            .map(|a| a.iter().filter(|f| *f != FINALIZER).cloned().collect())
            .unwrap_or_default();
        v["spec"]["finalizers"] = json!(fins);
        match api
            .replace_subresource("finalize", name, &Default::default(), &v)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "namespace reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        client,
        resources: Mutex::new(None),
    });
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_like_upstream() {
        let mut pass = Pass::default();
        pass.remaining.insert("pods.".into(), 2);
        pass.remaining.insert("configmaps.".into(), 1);
        pass.finalizers.insert("example.com/x".into(), 1);
        let c = conditions(&pass, &[], "T1");
        assert_eq!(c.len(), 5);
        assert_eq!(c[0]["type"], "NamespaceDeletionDiscoveryFailure");
        assert_eq!(c[0]["status"], "False");
        assert_eq!(c[0]["reason"], "ResourcesDiscovered");
        assert_eq!(c[3]["status"], "True");
        assert_eq!(c[3]["reason"], "SomeResourcesRemain");
        assert_eq!(
            c[3]["message"],
            "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances"
        );
        assert_eq!(
            c[4]["message"],
            "Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances"
        );
        // Unchanged status keeps its transition time.
        let c2 = conditions(&Pass::default(), &c, "T2");
        assert_eq!(c2[0]["lastTransitionTime"], "T1");
        assert_eq!(c2[3]["lastTransitionTime"], "T2");
        assert_eq!(c2[3]["message"], "All content successfully removed");
        assert!(!same_conditions(&c, &c2));
        assert!(same_conditions(
            &c2,
            &conditions(&Pass::default(), &c2, "T3")
        ));
    }

    #[test]
    fn delete_failure_message() {
        let pass = Pass {
            delete_errors: vec!["pods.: boom".into()],
            ..Default::default()
        };
        let c = conditions(&pass, &[], "T");
        assert_eq!(c[2]["reason"], "ContentDeletionFailed");
        assert_eq!(
            c[2]["message"],
            "Failed to delete all resource types, 1 remaining: pods.: boom"
        );
        assert!(!pass.done());
    }
}
