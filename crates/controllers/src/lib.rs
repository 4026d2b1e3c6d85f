//! The controller manager: each controller is an API client with watches
//! that reconciles current state toward the desired state, like
//! kube-controller-manager. It never touches the store.

mod common_rs;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;

use kube::Client;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, Clone)]
pub struct Config {
    /// Elect a leader on the `kube-system/kube-controller-manager` Lease first.
    pub leader_elect: bool,
    pub identity: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            leader_elect: true,
            identity: format!("bosun-controller-manager-{}", std::process::id()),
        }
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs every controller until the process ends.
pub async fn run(client: Client, config: Config) {
    if config.leader_elect {
        let lc =
            bosun_leader::Config::new("kube-system", "kube-controller-manager", &config.identity);
        bosun_leader::acquire(&client, &lc).await;
        let c2 = client.clone();
        tokio::spawn(async move {
            bosun_leader::hold(&c2, &lc).await;
            // Another instance may take over: stop before acting twice.
            tracing::error!("controller manager lost its lease; exiting the process");
            std::process::exit(1);
        });
    }
    let tasks: Vec<(&str, Task)> = vec![
        ("replicaset", Box::pin(replicaset::run(client.clone()))),
        ("deployment", Box::pin(deployment::run(client.clone()))),
        ("daemonset", Box::pin(daemonset::run(client.clone()))),
        ("statefulset", Box::pin(statefulset::run(client.clone()))),
        ("job", Box::pin(job::run(client.clone()))),
        ("cronjob", Box::pin(cronjob::run(client.clone()))),
        ("namespace", Box::pin(namespace::run(client.clone()))),
        ("garbagecollector", Box::pin(gc::run(client.clone()))),
        ("endpoints", Box::pin(endpoints::run(client.clone()))),
        (
            "serviceaccount",
            Box::pin(serviceaccount::run(client.clone())),
        ),
        (
            "nodelifecycle",
            Box::pin(nodelifecycle::run(client.clone())),
        ),
        ("podgc", Box::pin(podgc::run(client.clone()))),
        ("disruption", Box::pin(disruption::run(client.clone()))),
        (
            "resourcequota",
            Box::pin(resourcequota::run(client.clone())),
        ),
    ];
    let mut handles = Vec::new();
    for (name, t) in tasks {
        handles.push(tokio::spawn(async move {
            t.await;
            tracing::warn!(controller = name, "controller stopped");
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}
