//! Bosun's service proxy: kube-proxy's nftables mode, run by every node
//! agent. It watches Services, EndpointSlices and its own Node through
//! the API and, after every change (debounced), renders the whole ruleset
//! of ONE nftables table of ours (family `ip`) and replaces it atomically
//! with `nft -f -`. Other tables are never touched; nothing is written
//! to the API. The table is removed by [`remove_table`] on a clean stop.

pub mod model;
pub mod nft;
pub mod render;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub use nft::{Apply, NftCli};

/// The default table when the node's bridge is the default one.
pub const DEFAULT_TABLE: &str = "bosun";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nft: {0}")]
    Nft(String),
    #[error("sysctl {0}: {1}")]
    Sysctl(String, std::io::Error),
    #[error("invalid table name {0:?} (letters, digits, '_' and '-', at most 64)")]
    TableName(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// This node: its endpoints are the local ones, its addresses serve
    /// NodePorts.
    pub node_name: String,
    /// Our nftables table (family `ip`).
    pub table: String,
    /// The cluster's pod CIDRs.
    pub cluster_cidrs: Vec<String>,
    /// How long changes are gathered before a sync.
    pub debounce: Duration,
}

impl Config {
    pub fn new(node_name: impl Into<String>) -> Config {
        Config {
            node_name: node_name.into(),
            table: DEFAULT_TABLE.into(),
            cluster_cidrs: Vec::new(),
            debounce: Duration::from_millis(100),
        }
    }
}

/// Table names go into nft scripts unquoted.
pub fn validate_table(name: &str) -> Result<(), ProxyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ProxyError::TableName(name.to_string()))
    }
}

/// Removes our table (a clean stop leaves nothing behind).
pub fn remove_table(table: &str) -> Result<(), ProxyError> {
    validate_table(table)?;
    NftCli::default().apply(&render::render_delete(table))
}

/// Node set-up the rules rely on; returns whether all service traffic
/// must be masqueraded.
fn prepare_host() -> bool {
    // NodePorts on 127.0.0.1: the kernel drops DNATed packets with a
    // loopback source unless route_localnet is on (kube-proxy sets it too).
    match nft::ensure_sysctl("net.ipv4.conf.all.route_localnet", "1") {
        Ok(true) => tracing::info!(
            "set net.ipv4.conf.all.route_localnet=1 so NodePorts answer on 127.0.0.1"
        ),
        Ok(false) => {
            tracing::info!("net.ipv4.conf.all.route_localnet=1 (NodePorts answer on 127.0.0.1)")
        }
        Err(e) => tracing::warn!(error = %e, "NodePorts on 127.0.0.1 will not work"),
    }
    // Replies between two pods of one bridge are bridged; without
    // br_netfilter they skip conntrack and the DNAT is never undone.
    let bridged = nft::read_sysctl("net.bridge.bridge-nf-call-iptables").as_deref() == Some("1");
    if !bridged {
        tracing::warn!(
            "net.bridge.bridge-nf-call-iptables is not 1 (br_netfilter not loaded?): \
             masquerading all service traffic"
        );
    }
    !bridged
}

/// Runs the proxy with `nft` until the future is dropped.
pub async fn run(client: Client, cfg: Config) -> Result<(), ProxyError> {
    validate_table(&cfg.table)?;
    let masquerade_all = tokio::task::spawn_blocking(prepare_host)
        .await
        .unwrap_or(true);
    run_with(client, cfg, Arc::new(NftCli::default()), masquerade_all).await;
    Ok(())
}

/// The sync loop with any [`Apply`].
pub async fn run_with(client: Client, cfg: Config, applier: Arc<dyn Apply>, masquerade_all: bool) {
    let notify = Arc::new(Notify::new());
    let (services, svc_w) = reflector::store::<Service>();
    let (slices, sl_w) = reflector::store::<EndpointSlice>();
    let (nodes, node_w) = reflector::store::<Node>();
    let svc_stream = reflector::reflector(
        svc_w,
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let sl_stream = reflector::reflector(
        sl_w,
        watcher::watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let node_stream = reflector::reflector(
        node_w,
        watcher::watcher(
            Api::<Node>::all(client.clone()),
            // Every node: our own is picked below (few objects, rare changes).
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let t1 = pump(svc_stream, "service", notify.clone());
    let t2 = pump(sl_stream, "endpointslice", notify.clone());
    let t3 = pump(node_stream, "node", notify.clone());
    let _guard = AbortOnDrop(vec![t1, t2, t3]);
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    tracing::info!(table = %cfg.table, node = %cfg.node_name, "service proxy started");
    sync_loop(
        cfg,
        applier,
        masquerade_all,
        services,
        slices,
        nodes,
        notify,
    )
    .await
}

async fn sync_loop(
    cfg: Config,
    applier: Arc<dyn Apply>,
    masquerade_all: bool,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    notify: Arc<Notify>,
) {
    let mut last: Option<String> = None;
    let mut failed = false;
    loop {
        // Gather a burst of changes into one sync.
        tokio::time::sleep(cfg.debounce).await;
        let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let sls: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let node = nodes
            .state()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(cfg.node_name.as_str()));
        let ports = model::service_ports(&svcs, &sls, &cfg.node_name);
        let opts = render::Options {
            table: cfg.table.clone(),
            cluster_cidrs: cfg.cluster_cidrs.clone(),
            node_ips: model::node_ips(node.as_deref()),
            masquerade_all,
        };
        let script = render::render(&opts, &ports);
        // Unrelated changes (pod status, leases of slices) render the
        // same: skip them, which also keeps the affinity sets' entries.
        if last.as_deref() != Some(script.as_str()) {
            let started = std::time::Instant::now();
            let a = applier.clone();
            let s = script.clone();
            let res = tokio::task::spawn_blocking(move || a.apply(&s))
                .await
                .unwrap_or_else(|e| Err(ProxyError::Nft(format!("apply task: {e}"))));
            match res {
                Ok(()) => {
                    tracing::debug!(
                        table = %cfg.table,
                        service_ports = ports.len(),
                        took = ?started.elapsed(),
                        "nftables ruleset applied"
                    );
                    last = Some(script);
                    failed = false;
                }
                Err(e) => {
                    tracing::warn!(table = %cfg.table, error = %e, "applying the ruleset; retrying");
                    failed = true;
                }
            }
        }
        if failed {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        } else {
            notify.notified().await;
        }
    }
}

/// Drives a watch stream, waking the sync loop on every event.
fn pump<S, T>(stream: S, name: &'static str, notify: Arc<Notify>) -> tokio::task::JoinHandle<()>
where
    S: futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::debug!(error = %e, "{name} watch error"),
            }
        }
    })
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests;
