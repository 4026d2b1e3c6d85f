//! Leader election on a coordination.k8s.io/v1 Lease, like client-go's
//! leaderelection: several replicas of a component may run, one acts.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("lease object: {0}")]
    Decode(#[from] serde_json::Error),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease is valid without renewal (client-go default 15 s).
    pub lease_duration: Duration,
    /// How often the holder renews and candidates retry (default 2 s).
    pub retry_period: Duration,
}

impl Config {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Config {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn parse_time(v: Option<&Value>) -> Option<chrono::DateTime<chrono::Utc>> {
    v.and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// One attempt to acquire or renew; Ok(true) when we hold the lease.
pub async fn try_acquire_or_renew(client: &Client, cfg: &Config) -> Result<bool, LeaderError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let secs = cfg.lease_duration.as_secs().max(1) as i64;
    let existing = match api.get_opt(&cfg.name).await? {
        Some(l) => l,
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs,
                         "acquireTime": now_micro(), "renewTime": now_micro(), "leaseTransitions": 0},
            }))?;
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        }
    };
    let mut v = serde_json::to_value(&existing)?;
    let holder = v
        .pointer("/spec/holderIdentity")
        .and_then(|h| h.as_str())
        .unwrap_or_default()
        .to_string();
    let renew = parse_time(v.pointer("/spec/renewTime"));
    let dur = v
        .pointer("/spec/leaseDurationSeconds")
        .and_then(|d| d.as_i64())
        .unwrap_or(secs);
    let expired = renew.is_none_or(|r| r + chrono::Duration::seconds(dur) < chrono::Utc::now());
    if holder != cfg.identity && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if holder != cfg.identity {
        let t = v
            .pointer("/spec/leaseTransitions")
            .and_then(|t| t.as_i64())
            .unwrap_or(0);
        v["spec"]["leaseTransitions"] = json!(t + 1);
        v["spec"]["acquireTime"] = json!(now_micro());
        v["spec"]["holderIdentity"] = json!(cfg.identity);
    }
    v["spec"]["renewTime"] = json!(now_micro());
    v["spec"]["leaseDurationSeconds"] = json!(secs);
    let lease: Lease = serde_json::from_value(v)?;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        // Someone else wrote first: not ours this round.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until this identity holds the lease.
pub async fn acquire(client: &Client, cfg: &Config) {
    loop {
        match try_acquire_or_renew(client, cfg).await {
            Ok(true) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "leader election attempt failed")
            }
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// Renews until a renewal fails for longer than the lease duration (or
/// another holder took over); returns when leadership is lost.
pub async fn hold(client: &Client, cfg: &Config) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.retry_period).await;
        match try_acquire_or_renew(client, cfg).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::warn!(lease = %cfg.name, "leadership lost to another holder");
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "lease renewal failed");
                // Give up before the lease can expire so two never act at once.
                if last_ok.elapsed() + cfg.retry_period >= cfg.lease_duration * 2 / 3 {
                    return;
                }
            }
        }
    }
}
