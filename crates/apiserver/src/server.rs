//! HTTPS serving: TLS with optional client certificates, HTTP/1.1 and h2,
//! authentication, and the hand-off to the request router.

use crate::cache::Cache;
use crate::handlers::{self, Body, State};
use crate::registry::Registry;
use bosun_store::Store;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: String,
    pub port: u16,
    /// Events kept per resource for watch resumption.
    pub watch_cache_size: usize,
    /// Where ClusterIPs are allocated.
    pub service_cidr: crate::registry::ServiceCidr,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("store: {0}")]
    Store(#[from] bosun_store::StoreError),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

pub struct Running {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub registry: Arc<Registry>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts serving; returns once the listener is bound and bootstrap objects exist.
pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Running, ServerError> {
    // The `kubernetes` service's ClusterIP, so pods can verify the server.
    let service_ip = config.service_cidr.nth(1).to_string();
    let pki = crate::tls::load_or_create(&config.data_dir, &config.bind_address, &[service_ip])?;
    let cache = Cache::start(store.clone(), config.watch_cache_size).await?;
    let registry = Arc::new(Registry::new(store, cache).with_service_cidr(config.service_cidr));
    let bind = format!("{}:{}", config.bind_address, config.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|source| ServerError::Listen {
            addr: bind.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: bind.clone(),
            source,
        })?;
    let host = if config.bind_address == "0.0.0.0" || config.bind_address.is_empty() {
        "127.0.0.1".to_string()
    } else {
        config.bind_address.clone()
    };
    let server_url = format!("https://{host}:{}", addr.port());
    // The `kubernetes` endpoint must be reachable from pods: with every
    // address bound, advertise the node's primary address, not loopback.
    let advertise = if config.bind_address == "0.0.0.0" || config.bind_address.is_empty() {
        crate::tls::advertise_address().unwrap_or_else(|| host.clone())
    } else {
        host.clone()
    };
    crate::bootstrap::ensure(&registry, &advertise, addr.port())
        .await
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    let kubeconfig = crate::tls::write_admin_kubeconfig(&config.data_dir, &server_url)?;
    let state = Arc::new(State::new(
        registry.clone(),
        pki.admin_token.clone(),
        format!("{host}:{}", addr.port()),
    ));
    // Credentials for proxying logs/exec/port-forward to node agents.
    let _ = state
        .kubelet_tls
        .set(crate::proxy::client_config(&config.data_dir)?);
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                // rustls verified any presented client certificate against the CA.
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        Ok::<Response<Body>, std::convert::Infallible>(
                            handlers::handle(state, req, client_cert).await,
                        )
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended with error");
                }
            });
        }
    });
    Ok(Running {
        addr,
        kubeconfig,
        registry,
        task,
    })
}
