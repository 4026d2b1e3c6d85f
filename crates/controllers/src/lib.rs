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
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod serviceaccount;
pub mod statefulset;
#[cfg(test)]
mod testkit;

use kube::Client;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, Clone)]
pub struct Config {
    /// Elect a leader on the `kube-system/kube-controller-manager` Lease first.
    pub leader_elect: bool,
    pub identity: String,
    /// The cluster CA bundle (PEM) to publish as `kube-root-ca.crt` in
    /// every namespace; None: not published.
    pub root_ca: Option<String>,
    /// Cluster CIDRs (one per IP family) the node IPAM controller splits
    /// into per-node pod subnets; empty: no podCIDRs are allocated.
    pub cluster_cidrs: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            leader_elect: true,
            identity: format!("bosun-controller-manager-{}", std::process::id()),
            root_ca: None,
            cluster_cidrs: vec!["10.42.0.0/16".into()],
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
    type Make = fn(Client) -> Task;
    let tasks: Vec<(&str, Make)> = vec![
        ("replicaset", |c| Box::pin(replicaset::run(c))),
        ("deployment", |c| Box::pin(deployment::run(c))),
        ("daemonset", |c| Box::pin(daemonset::run(c))),
        ("statefulset", |c| Box::pin(statefulset::run(c))),
        ("job", |c| Box::pin(job::run(c))),
        ("cronjob", |c| Box::pin(cronjob::run(c))),
        ("namespace", |c| Box::pin(namespace::run(c))),
        ("garbagecollector", |c| Box::pin(gc::run(c))),
        ("endpoints", |c| Box::pin(endpoints::run(c))),
        ("serviceaccount", |c| Box::pin(serviceaccount::run(c))),
        ("nodelifecycle", |c| Box::pin(nodelifecycle::run(c))),
        ("podgc", |c| Box::pin(podgc::run(c))),
        ("disruption", |c| Box::pin(disruption::run(c))),
        ("resourcequota", |c| Box::pin(resourcequota::run(c))),
    ];
    let mut handles = Vec::new();
    if let Some(ca) = config.root_ca.clone() {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            loop {
                match tokio::spawn(rootca::run(client.clone(), ca.clone())).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(controller = "root-ca-cert-publisher", error = %e, "controller panicked; restarting");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }
    if !config.cluster_cidrs.is_empty() {
        match config
            .cluster_cidrs
            .iter()
            .map(|c| c.parse())
            .collect::<Result<Vec<nodeipam::Cidr>, _>>()
        {
            Ok(cidrs) => handles.push(tokio::spawn(nodeipam::run(
                client.clone(),
                cidrs,
                nodeipam::DEFAULT_NODE_MASK_V4,
                nodeipam::DEFAULT_NODE_MASK_V6,
            ))),
            Err(e) => tracing::error!(error = %e, "node IPAM controller not started"),
        }
    }
    for (name, make) in tasks {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            // A controller that panics is restarted (and loudly logged)
            // rather than silently lost.
            loop {
                match tokio::spawn(make(client.clone())).await {
                    Ok(()) => {
                        tracing::warn!(controller = name, "controller stopped");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(controller = name, error = %e, "controller panicked; restarting");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}
