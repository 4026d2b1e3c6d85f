//! Cluster DNS (the role of CoreDNS with its `kubernetes` plugin): an
//! authoritative server for the cluster domain fed by watches on Services
//! and EndpointSlices, forwarding every other name to the node's upstream
//! resolvers.
//!
//! `zone` holds the records as pure functions of a snapshot; `server` is
//! the wire (UDP and TCP); `forward` talks to upstreams; `watch` keeps the
//! snapshot; `register` publishes the `kube-system/kube-dns` Service and
//! its endpoints through the API. Never writes to the store; never answers
//! authoritatively outside its zone.

pub mod forward;
pub mod register;
pub mod server;
pub mod watch;
pub mod zone;

pub use register::{register, Registration};
pub use zone::DEFAULT_TTL;

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Domain(#[from] zone::InvalidDomain),
    #[error("binding the DNS server to port {port} of {ips:?}: {source}")]
    Bind {
        ips: Vec<IpAddr>,
        port: u16,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Addresses to serve on (the node's, where kube-dns's endpoint
    /// points, and loopback for the node itself).
    pub listen: Vec<IpAddr>,
    pub port: u16,
    /// When `port` is taken, use a free one (see `Running::port`).
    pub port_fallback: bool,
    pub upstreams: Vec<SocketAddr>,
    /// Clients that may have other names forwarded (besides loopback).
    pub recursion_from: Vec<IpNet>,
    pub ttl: u32,
    /// The cluster DNS address (the zone's NS glue).
    pub cluster_ip: Option<IpAddr>,
    pub forward_timeout: Duration,
}

impl Config {
    pub fn new(listen: Vec<IpAddr>, port: u16) -> Config {
        Config {
            domain: "cluster.local".into(),
            listen,
            port,
            port_fallback: true,
            upstreams: Vec::new(),
            recursion_from: Vec::new(),
            ttl: DEFAULT_TTL,
            cluster_ip: None,
            forward_timeout: Duration::from_secs(2),
        }
    }
}

pub struct Running {
    /// Where UDP and TCP are served (may differ from the asked one).
    pub port: u16,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds, then serves and watches in the background.
pub async fn start(client: kube::Client, cfg: Config) -> Result<Running, Error> {
    let zone = zone::Zone::new(&cfg.domain, cfg.ttl, cfg.cluster_ip)?;
    let bind_err = |source| Error::Bind {
        ips: cfg.listen.clone(),
        port: cfg.port,
        source,
    };
    let sockets = server::bind(&cfg.listen, cfg.port, cfg.port_fallback)
        .await
        .map_err(bind_err)?;
    let port = match sockets.first() {
        Some(s) => s.udp.local_addr().map_err(bind_err)?.port(),
        None => cfg.port,
    };
    let shared: server::Shared = Arc::new(RwLock::new(None));
    let handler = Arc::new(server::Handler {
        zone,
        snapshot: shared.clone(),
        forwarder: forward::Forwarder {
            upstreams: cfg.upstreams.clone(),
            timeout: cfg.forward_timeout,
        },
        recursion_from: cfg.recursion_from.clone(),
    });
    tracing::info!(addrs = ?cfg.listen, port, domain = %cfg.domain, upstreams = ?cfg.upstreams, "cluster DNS listening");
    let task = tokio::spawn(async move {
        tokio::join!(server::serve(handler, sockets), watch::run(client, shared));
    });
    Ok(Running { port, task })
}
