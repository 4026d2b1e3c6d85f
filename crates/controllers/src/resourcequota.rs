//! The resource quota controller (kube-controller-manager's
//! `resourcequota`): keeps `status.hard` equal to `spec.hard` and
//! `status.used` to the namespace's current usage of every constrained
//! resource — object counts (`pods`, `services`, `configmaps`, ...,
//! `services.nodeports`, `services.loadbalancers`, `count/<resource>.<group>`)
//! and compute (`requests.cpu`, `limits.memory`, `cpu`, `memory`, ... from
//! non-terminal pods), honouring the Terminating/NotTerminating/BestEffort/
//! NotBestEffort/PriorityClass scopes for pods.
//!
//! Recomputed whenever pods, services, quotas or any counted resource
//! change, and every `RESYNC`. Quota is not enforced at admission here.

use crate::common_rs::informer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Full recomputation period (upstream `--resource-quota-sync-period` is 5m;
/// the brief asks for at least every 30 s).
pub const RESYNC: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- quantities

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A quantity as an exact count of nano-units with the format it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Q {
    pub nanos: i128,
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

/// Parses a Kubernetes quantity ("500m", "1.5Gi", "2e3"); values below a
/// nano-unit round up like upstream.
pub fn parse_quantity(s: &str) -> Option<Q> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let scale = frac.len() as u32;
    // value = digits / 10^scale * mult, with mult = num/den.
    let (format, mul, div): (Format, i128, i128) = match suffix {
        "" => (Format::DecimalSI, 1, 1),
        "n" => (Format::DecimalSI, 1, NANO),
        "u" => (Format::DecimalSI, 1, 1_000_000),
        "m" => (Format::DecimalSI, 1, 1000),
        "k" => (Format::DecimalSI, 1000, 1),
        "M" => (Format::DecimalSI, 1_000_000, 1),
        "G" => (Format::DecimalSI, 1_000_000_000, 1),
        "T" => (Format::DecimalSI, 10i128.pow(12), 1),
        "P" => (Format::DecimalSI, 10i128.pow(15), 1),
        "E" => (Format::DecimalSI, 10i128.pow(18), 1),
        "Ki" => (Format::BinarySI, 1 << 10, 1),
        "Mi" => (Format::BinarySI, 1 << 20, 1),
        "Gi" => (Format::BinarySI, 1 << 30, 1),
        "Ti" => (Format::BinarySI, 1 << 40, 1),
        "Pi" => (Format::BinarySI, 1 << 50, 1),
        "Ei" => (Format::BinarySI, 1 << 60, 1),
        e if e.starts_with(['e', 'E']) => {
            let x: i32 = e[1..].parse().ok()?;
            if !(-9..=18).contains(&x) {
                return None;
            }
            if x >= 0 {
                (Format::DecimalExponent, 10i128.pow(x as u32), 1)
            } else {
                (Format::DecimalExponent, 1, 10i128.pow((-x) as u32))
            }
        }
        _ => return None,
    };
    let numer = digits.checked_mul(mul)?.checked_mul(NANO)?;
    let denom = div.checked_mul(10i128.pow(scale))?;
    let nanos = (numer + denom - 1) / denom;
    Some(Q {
        nanos: if neg { -nanos } else { nanos },
        format,
    })
}

/// Kubernetes canonical form (resource.Quantity.String()).
pub fn format_quantity(q: Q) -> String {
    if q.nanos == 0 {
        return "0".into();
    }
    let (sign, v) = if q.nanos < 0 {
        ("-", -q.nanos)
    } else {
        ("", q.nanos)
    };
    if q.format == Format::BinarySI && v >= 1024 * NANO && v % NANO == 0 {
        let bytes = v / NANO;
        for (k, suf) in [
            (60, "Ei"),
            (50, "Pi"),
            (40, "Ti"),
            (30, "Gi"),
            (20, "Mi"),
            (10, "Ki"),
        ] {
            if bytes % (1i128 << k) == 0 {
                return format!("{sign}{}{suf}", bytes >> k);
            }
        }
        return format!("{sign}{bytes}");
    }
    // Largest exponent (a multiple of 3) that keeps the mantissa integral.
    for e in [18i32, 15, 12, 9, 6, 3, 0, -3, -6, -9] {
        let unit = 10i128.pow((e + 9) as u32);
        if v % unit == 0 {
            let m = v / unit;
            let suf = if q.format == Format::DecimalExponent {
                if e == 0 {
                    String::new()
                } else {
                    format!("e{e}")
                }
            } else {
                match e {
                    18 => "E",
                    15 => "P",
                    12 => "T",
                    9 => "G",
                    6 => "M",
                    3 => "k",
                    0 => "",
                    -3 => "m",
                    -6 => "u",
                    _ => "n",
                }
                .to_string()
            };
            return format!("{sign}{m}{suf}");
        }
    }
    unreachable!("every nano count is a multiple of 1")
}

/// Adds `b` to `a` keeping the first operand's format (upstream Add).
fn add(a: Option<Q>, b: Q) -> Q {
    match a {
        Some(a) => Q {
            nanos: a.nanos + b.nanos,
            format: a.format,
        },
        None => b,
    }
}

fn count(n: usize) -> Q {
    Q {
        nanos: n as i128 * NANO,
        format: Format::DecimalSI,
    }
}

// ---------------------------------------------------------------- pods

fn pod_terminal(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return true;
    }
    // Being deleted and past its grace period (upstream QuotaV1Pod).
    if let (Some(dt), Some(g)) = (
        &p.metadata.deletion_timestamp,
        p.metadata.deletion_grace_period_seconds,
    ) {
        return dt.0.as_second() + g <= k8s_openapi::jiff::Timestamp::now().as_second();
    }
    false
}

/// Requests or limits of a pod: max(sum of containers, any init container)
/// plus overhead (upstream PodRequests/PodLimits, simplified for sidecars).
pub fn pod_resources(p: &Pod, limits: bool) -> BTreeMap<String, Q> {
    let mut out: BTreeMap<String, Q> = BTreeMap::new();
    let Some(spec) = &p.spec else { return out };
    let get = |c: &k8s_openapi::api::core::v1::Container| -> BTreeMap<String, Quantity> {
        let r = c.resources.as_ref();
        let m = if limits {
            r.and_then(|r| r.limits.clone())
        } else {
            r.and_then(|r| r.requests.clone())
        };
        m.unwrap_or_default()
    };
    for c in &spec.containers {
        for (k, v) in get(c) {
            if let Some(q) = parse_quantity(&v.0) {
                let cur = out.get(&k).copied();
                out.insert(k, add(cur, q));
            }
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in get(c) {
            if let Some(q) = parse_quantity(&v.0) {
                let keep = out.get(&k).is_some_and(|cur| cur.nanos >= q.nanos);
                if !keep {
                    out.insert(k, q);
                }
            }
        }
    }
    for (k, v) in spec.overhead.iter().flatten() {
        if let Some(q) = parse_quantity(&v.0) {
            if let Some(cur) = out.get(k).copied() {
                out.insert(k.clone(), add(Some(cur), q));
            }
        }
    }
    out
}

fn best_effort(p: &Pod) -> bool {
    p.spec.as_ref().is_none_or(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .all(|c| {
                c.resources.as_ref().is_none_or(|r| {
                    r.requests.as_ref().is_none_or(|m| m.is_empty())
                        && r.limits.as_ref().is_none_or(|m| m.is_empty())
                })
            })
    })
}

fn scope_matches(p: &Pod, scope: &str, op: &str, values: &[String]) -> bool {
    let spec = p.spec.as_ref();
    let hit = match scope {
        "Terminating" => spec.is_some_and(|s| s.active_deadline_seconds.is_some()),
        "NotTerminating" => spec.is_none_or(|s| s.active_deadline_seconds.is_none()),
        "BestEffort" => best_effort(p),
        "NotBestEffort" => !best_effort(p),
        "PriorityClass" => {
            let pc = spec.and_then(|s| s.priority_class_name.as_deref());
            return match op {
                "In" => pc.is_some_and(|pc| values.iter().any(|v| v == pc)),
                "NotIn" => pc.is_none_or(|pc| !values.iter().any(|v| v == pc)),
                "Exists" => pc.is_some(),
                "DoesNotExist" => pc.is_none(),
                _ => false,
            };
        }
        // CrossNamespacePodAffinity and unknown scopes: not evaluated.
        _ => false,
    };
    match op {
        "DoesNotExist" | "NotIn" => !hit,
        _ => hit,
    }
}

/// Whether a pod is covered by the quota's scopes (no scopes: all pods).
pub fn pod_in_scope(q: &ResourceQuota, p: &Pod) -> bool {
    let Some(spec) = &q.spec else { return true };
    let simple = spec
        .scopes
        .iter()
        .flatten()
        .all(|s| scope_matches(p, s, "Exists", &[]));
    let sel = spec
        .scope_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .all(|e| {
            scope_matches(
                p,
                &e.scope_name,
                &e.operator,
                e.values.as_deref().unwrap_or_default(),
            )
        });
    simple && sel
}

fn scoped(q: &ResourceQuota) -> bool {
    q.spec.as_ref().is_some_and(|s| {
        s.scopes.as_ref().is_some_and(|v| !v.is_empty())
            || s.scope_selector
                .as_ref()
                .and_then(|s| s.match_expressions.as_ref())
                .is_some_and(|v| !v.is_empty())
    })
}

// ---------------------------------------------------------------- usage

/// (group, plural) a count key refers to, or None when it is not a count.
pub fn count_target(key: &str) -> Option<(String, String)> {
    if let Some(r) = key.strip_prefix("count/") {
        return Some(match r.split_once('.') {
            Some((res, group)) => (group.to_string(), res.to_string()),
            None => (String::new(), r.to_string()),
        });
    }
    match key {
        "pods"
        | "services"
        | "configmaps"
        | "secrets"
        | "persistentvolumeclaims"
        | "replicationcontrollers"
        | "resourcequotas" => Some((String::new(), key.to_string())),
        _ => None,
    }
}

/// Everything usage is computed from, for one namespace.
pub struct Inputs<'a> {
    pub pods: &'a [&'a Pod],
    pub services: &'a [&'a Service],
    pub pvcs: &'a [&'a PersistentVolumeClaim],
    /// Object counts of other resources by (group, plural); None: unknown.
    pub counts: &'a dyn Fn(&str, &str) -> Option<usize>,
}

/// `status.used` for every resource in `spec.hard`.
pub fn compute_used(q: &ResourceQuota, inp: &Inputs) -> BTreeMap<String, Q> {
    let hard = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let pods: Vec<&Pod> = inp
        .pods
        .iter()
        .copied()
        .filter(|p| !pod_terminal(p) && pod_in_scope(q, p))
        .collect();
    let is_scoped = scoped(q);
    let mut used = BTreeMap::new();
    for key in hard.keys() {
        let v: Option<Q> = if key == "pods" || key == "count/pods" {
            Some(count(pods.len()))
        } else if let Some(r) = ["requests.", "limits."]
            .iter()
            .find_map(|p| key.strip_prefix(p).map(|r| (p.starts_with('l'), r)))
            .filter(|(_, r)| !r.contains('/') && *r != "storage")
            .or(match key.as_str() {
                "cpu" | "memory" | "ephemeral-storage" => Some((false, key.as_str())),
                _ => None,
            })
        {
            let (limits, res) = r;
            let mut total: Option<Q> = None;
            for p in &pods {
                if let Some(x) = pod_resources(p, limits).get(res) {
                    total = Some(add(total, *x));
                }
            }
            total
        } else if is_scoped {
            // Scoped quotas track pod resources only.
            None
        } else if key == "services.nodeports" {
            let n = inp
                .services
                .iter()
                .filter(|s| {
                    matches!(
                        s.spec.as_ref().and_then(|s| s.type_.as_deref()),
                        Some("NodePort") | Some("LoadBalancer")
                    )
                })
                .map(|s| {
                    s.spec
                        .as_ref()
                        .and_then(|s| s.ports.as_ref())
                        .map(|p| {
                            p.iter()
                                .filter(|p| p.node_port.is_some_and(|n| n != 0))
                                .count()
                        })
                        .unwrap_or(0)
                })
                .sum();
            Some(count(n))
        } else if key == "services.loadbalancers" {
            let n = inp
                .services
                .iter()
                .filter(|s| {
                    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
                })
                .count();
            Some(count(n))
        } else if key == "services" || key == "count/services" {
            Some(count(inp.services.len()))
        } else if key == "requests.storage" {
            let mut total: Option<Q> = None;
            for c in inp.pvcs {
                let r = c
                    .spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .and_then(|q| parse_quantity(&q.0));
                if let Some(r) = r {
                    total = Some(add(total, r));
                }
            }
            total
        } else if key == "persistentvolumeclaims" || key == "count/persistentvolumeclaims" {
            Some(count(inp.pvcs.len()))
        } else if let Some((g, r)) = count_target(key) {
            (inp.counts)(&g, &r).map(count)
        } else {
            None
        };
        used.insert(
            key.clone(),
            v.unwrap_or(Q {
                nanos: 0,
                format: Format::DecimalSI,
            }),
        );
    }
    used
}

/// The quota's new status: hard = spec.hard (canonical), used as computed.
pub fn compute_status(q: &ResourceQuota, inp: &Inputs) -> ResourceQuotaStatus {
    let hard: BTreeMap<String, Quantity> = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let c = parse_quantity(&v.0).map(format_quantity).unwrap_or(v.0);
            (k, Quantity(c))
        })
        .collect();
    let used = compute_used(q, inp)
        .into_iter()
        .map(|(k, v)| (k, Quantity(format_quantity(v))))
        .collect();
    ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    }
}

// ---------------------------------------------------------------- runtime

type MetaStore = Store<PartialObjectMeta<DynamicObject>>;

struct Ctl {
    client: Client,
    wake: Arc<Notify>,
    quotas: Store<ResourceQuota>,
    pods: Store<Pod>,
    services: Store<Service>,
    pvcs: Store<PersistentVolumeClaim>,
    /// Metadata informers of the other counted resources, by (group, plural).
    counted: HashMap<(String, String), MetaStore>,
    discovery: Option<(Instant, Vec<ApiResource>)>,
}

impl Ctl {
    /// Starts metadata informers for count keys not yet watched.
    async fn ensure_counted(&mut self) {
        let mut wanted = Vec::new();
        for q in self.quotas.state() {
            for k in q
                .spec
                .iter()
                .flat_map(|s| s.hard.iter().flatten())
                .map(|(k, _)| k)
            {
                if let Some(t) = count_target(k) {
                    let typed = t.0.is_empty()
                        && matches!(t.1.as_str(), "pods" | "services" | "persistentvolumeclaims");
                    if !typed && !self.counted.contains_key(&t) {
                        wanted.push(t);
                    }
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        let stale = self
            .discovery
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(30));
        if stale {
            match crate::namespace::deletable_resources(&self.client).await {
                Ok(r) => self.discovery = Some((Instant::now(), r)),
                Err(e) => tracing::debug!(error = %e, "resourcequota: discovery failed"),
            }
        }
        let Some((_, ars)) = &self.discovery else {
            return;
        };
        for t in wanted {
            let Some(ar) = ars.iter().find(|a| a.group == t.0 && a.plural == t.1) else {
                continue;
            };
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.client.clone(), ar);
            let writer =
                reflector::store::Writer::<PartialObjectMeta<DynamicObject>>::new(ar.clone());
            let reader = writer.as_reader();
            let wake = self.wake.clone();
            let stream = reflector::reflector(
                writer,
                watcher::watcher(api, watcher::Config::default()).default_backoff(),
            )
            .map_ok(move |_| wake.notify_one())
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "resourcequota: watch error (will relist)");
                }
            });
            tokio::spawn(stream);
            let _ = tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready()).await;
            self.counted.insert(t, reader);
        }
    }

    async fn sync_all(&mut self) {
        self.ensure_counted().await;
        let pods = self.pods.state();
        let services = self.services.state();
        let pvcs = self.pvcs.state();
        for q in self.quotas.state() {
            if q.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ns = q.metadata.namespace.clone().unwrap_or_default();
            let name = q.metadata.name.clone().unwrap_or_default();
            let in_ns = |m: &kube::api::ObjectMeta| m.namespace.as_deref() == Some(ns.as_str());
            let p: Vec<&Pod> = pods
                .iter()
                .filter(|o| in_ns(&o.metadata))
                .map(|o| o.as_ref())
                .collect();
            let s: Vec<&Service> = services
                .iter()
                .filter(|o| in_ns(&o.metadata))
                .map(|o| o.as_ref())
                .collect();
            let c: Vec<&PersistentVolumeClaim> = pvcs
                .iter()
                .filter(|o| in_ns(&o.metadata))
                .map(|o| o.as_ref())
                .collect();
            let counted = &self.counted;
            let counts = |g: &str, r: &str| -> Option<usize> {
                let st = counted.get(&(g.to_string(), r.to_string()))?;
                Some(st.state().iter().filter(|o| in_ns(&o.metadata)).count())
            };
            let status = compute_status(
                &q,
                &Inputs {
                    pods: &p,
                    services: &s,
                    pvcs: &c,
                    counts: &counts,
                },
            );
            if q.status.as_ref() == Some(&status) {
                continue;
            }
            let mut new = (*q).clone();
            new.status = Some(status);
            let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &ns);
            if let Err(e) = api
                .replace_status(&name, &PostParams::default(), &new)
                .await
            {
                tracing::debug!(error = %e, quota = %name, namespace = %ns, "resourcequota: status update failed");
            }
        }
    }
}

/// An informer callback that wakes the sync loop.
fn waker<K>(n: &Arc<Notify>) -> impl Fn(&kube::runtime::watcher::Event<K>) + Send + 'static {
    let n = n.clone();
    move |_| n.notify_one()
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let wake = Arc::new(Notify::new());
    let quotas = informer(Api::<ResourceQuota>::all(client.clone()), waker(&wake));
    let pods = informer(Api::<Pod>::all(client.clone()), waker(&wake));
    let services = informer(Api::<Service>::all(client.clone()), waker(&wake));
    let pvcs = informer(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        waker(&wake),
    );
    let _ = quotas.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let _ = services.wait_until_ready().await;
    let _ = pvcs.wait_until_ready().await;
    let mut ctl = Ctl {
        client,
        wake: wake.clone(),
        quotas,
        pods,
        services,
        pvcs,
        counted: HashMap::new(),
        discovery: None,
    };
    loop {
        ctl.sync_all().await;
        tokio::select! {
            _ = tokio::time::sleep(RESYNC) => {}
            _ = wake.notified() => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(s: &str) -> String {
        format_quantity(parse_quantity(s).unwrap())
    }

    #[test]
    fn canonical_quantities() {
        assert_eq!(canon("500m"), "500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1"), "1");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("128Mi"), "128Mi");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("1500000"), "1500k");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("100n"), "100n");
        assert!(parse_quantity("abc").is_none());
        assert!(parse_quantity("1.2.3").is_none());
    }

    fn pod(name: &str, cpu: Option<&str>, mem: &str, phase: &str) -> Pod {
        let mut res = json!({"requests": {"memory": mem}, "limits": {"memory": mem}});
        if let Some(c) = cpu {
            res["requests"]["cpu"] = json!(c);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": res}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn quota(hard: serde_json::Value) -> ResourceQuota {
        serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "ns"},
            "spec": {"hard": hard},
        }))
        .unwrap()
    }

    #[test]
    fn usage_of_pods_and_counts() {
        let a = pod("a", Some("100m"), "64Mi", "Running");
        let b = pod("b", Some("100m"), "64Mi", "Pending");
        let done = pod("c", Some("1"), "1Gi", "Succeeded");
        let pods = [&a, &b, &done];
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]},
        }))
        .unwrap();
        let counts = |g: &str, r: &str| match (g, r) {
            ("apps", "deployments") => Some(3),
            ("", "configmaps") => Some(2),
            _ => None,
        };
        let q = quota(json!({
            "pods": "10", "requests.cpu": "1", "requests.memory": "1Gi",
            "limits.memory": "2Gi", "limits.cpu": "2", "cpu": "1000m",
            "services": "5", "services.nodeports": "2", "services.loadbalancers": "1",
            "configmaps": "10", "count/deployments.apps": "4", "secrets": "1",
        }));
        let st = compute_status(
            &q,
            &Inputs {
                pods: &pods,
                services: &[&svc],
                pvcs: &[],
                counts: &counts,
            },
        );
        let used = st.used.unwrap();
        let u = |k: &str| used[k].0.clone();
        assert_eq!(u("pods"), "2");
        assert_eq!(u("requests.cpu"), "200m");
        assert_eq!(u("cpu"), "200m");
        assert_eq!(u("requests.memory"), "128Mi");
        assert_eq!(u("limits.memory"), "128Mi");
        assert_eq!(u("limits.cpu"), "0");
        assert_eq!(u("services"), "1");
        assert_eq!(u("services.nodeports"), "1");
        assert_eq!(u("services.loadbalancers"), "0");
        assert_eq!(u("configmaps"), "2");
        assert_eq!(u("count/deployments.apps"), "3");
        assert_eq!(u("secrets"), "0");
        let hard = st.hard.unwrap();
        assert_eq!(hard["cpu"].0, "1");
        assert_eq!(hard.len(), used.len());
    }

    #[test]
    fn scopes() {
        let be: Pod = serde_json::from_value(json!({
            "metadata": {"name": "be", "namespace": "ns"},
            "spec": {"containers": [{"name": "c"}]},
        }))
        .unwrap();
        let burst = pod("x", Some("100m"), "64Mi", "Running");
        let mut q = quota(json!({"pods": "10"}));
        q.spec.as_mut().unwrap().scopes = Some(vec!["BestEffort".into()]);
        assert!(pod_in_scope(&q, &be));
        assert!(!pod_in_scope(&q, &burst));
        q.spec.as_mut().unwrap().scopes = Some(vec!["NotBestEffort".into()]);
        assert!(!pod_in_scope(&q, &be));
        assert!(pod_in_scope(&q, &burst));
        assert_eq!(
            count_target("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            count_target("count/widgets"),
            Some(("".into(), "widgets".into()))
        );
        assert_eq!(count_target("requests.cpu"), None);
    }

    #[test]
    fn init_containers_take_the_max() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                               {"name": "b", "resources": {"requests": {"cpu": "200m"}}}],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "500m"}}}],
            },
        }))
        .unwrap();
        assert_eq!(format_quantity(pod_resources(&p, false)["cpu"]), "500m");
    }
}
