//! The service account controller: every active namespace gets a `default`
//! ServiceAccount (kube-controller-manager's `serviceaccount` controller),
//! recreated when it is deleted. (`kube-root-ca.crt` is [`crate::rootca`].)

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use std::sync::Arc;
use std::time::Duration;

/// The service accounts every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNTS: &[&str] = &["default"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Whether the namespace is being deleted (no new service accounts then).
pub fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

struct Ctx {
    client: Client,
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    let Some(name) = ns.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), name);
    for sa in DEFAULT_SERVICE_ACCOUNTS {
        if api.get_opt(sa).await?.is_some() {
            continue;
        }
        let obj: ServiceAccount = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": name},
        }))
        .expect("static service account");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => tracing::debug!(namespace = name, sa, "created service account"),
            // Exists already, or the namespace began terminating.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "serviceaccount reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client });
    Controller::new(namespaces, watcher::Config::default())
        .watches(sas, watcher::Config::default(), |sa: ServiceAccount| {
            let name = sa.metadata.name.as_deref()?;
            if !DEFAULT_SERVICE_ACCOUNTS.contains(&name) {
                return None;
            }
            Some(ObjectRef::<Namespace>::new(
                sa.metadata.namespace.as_deref()?,
            ))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
