//! The root CA publisher (kube-controller-manager's
//! `root-ca-cert-publisher`): every active namespace gets a ConfigMap
//! `kube-root-ca.crt` holding the cluster CA bundle under `ca.crt`, put
//! back when it is deleted or edited.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "kube-root-ca.crt";
/// Upstream's annotation text, word for word.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    ca: String,
}

fn wanted(ns: &str, ca: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(NAME.into());
    cm.metadata.namespace = Some(ns.into());
    cm.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/description".to_string(),
        DESCRIPTION.to_string(),
    )]));
    cm.data = Some(BTreeMap::from([("ca.crt".to_string(), ca.to_string())]));
    cm
}

/// Whether `have` already carries the bundle and the annotation.
fn up_to_date(have: &ConfigMap, ca: &str) -> bool {
    have.data
        .as_ref()
        .is_some_and(|d| d.len() == 1 && d.get("ca.crt").map(String::as_str) == Some(ca))
        && have
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/description"))
            .is_some()
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if crate::serviceaccount::terminating(&ns) {
        return Ok(Action::await_change());
    }
    let Some(name) = ns.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), name);
    match api.get_opt(NAME).await? {
        None => match api
            .create(&PostParams::default(), &wanted(name, &ctx.ca))
            .await
        {
            Ok(_) => tracing::debug!(namespace = name, "published {NAME}"),
            // Created meanwhile, or the namespace began terminating.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e.into()),
        },
        Some(have) if !up_to_date(&have, &ctx.ca) => {
            let mut cm = wanted(name, &ctx.ca);
            cm.metadata.resource_version = have.metadata.resource_version.clone();
            let mut ann = have.metadata.annotations.clone().unwrap_or_default();
            ann.insert("kubernetes.io/description".into(), DESCRIPTION.into());
            cm.metadata.annotations = Some(ann);
            cm.metadata.labels = have.metadata.labels.clone();
            match api.replace(NAME, &PostParams::default(), &cm).await {
                Ok(_) => tracing::debug!(namespace = name, "updated {NAME}"),
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                    return Ok(Action::requeue(Duration::from_millis(200)))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "root CA publisher reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the publisher until the process ends.
pub async fn run(client: Client, ca: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client, ca });
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            cms,
            watcher::Config::default().fields(&format!("metadata.name={NAME}")),
            |cm: ConfigMap| {
                Some(ObjectRef::<Namespace>::new(
                    cm.metadata.namespace.as_deref()?,
                ))
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness() {
        let cm = wanted("a", "PEM");
        assert!(up_to_date(&cm, "PEM"));
        assert!(!up_to_date(&cm, "OTHER"));
        let mut edited = cm.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        assert!(!up_to_date(&edited, "PEM"));
        let mut bare = cm;
        bare.metadata.annotations = None;
        assert!(!up_to_date(&bare, "PEM"));
    }
}
