//! What the proxy programs, computed from Services, EndpointSlices and the
//! own Node: one [`ServicePort`] per (service, port), with the endpoints
//! each kind of traffic may use. Pure functions.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            // SCTP is not programmed (yet).
            _ => None,
        }
    }

    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node (for the Local traffic policies).
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name, or its number when unnamed.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub internal_local: bool,
    pub external_local: bool,
    /// Usable endpoints (ready, else serving-and-terminating), all nodes.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name/proto/port`: unique, used to name chains and sets.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            self.port_name
        )
    }

    /// Endpoints for traffic to the ClusterIP.
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| !self.internal_local || e.local)
            .collect()
    }

    /// Endpoints for traffic to a NodePort from outside this node.
    pub fn external_endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| !self.external_local || e.local)
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    ep: Endpoint,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// The service ports to program, sorted by key. Headless, ExternalName
/// and non-IPv4 services are skipped.
pub fn service_ports(
    services: &[Service],
    slices: &[EndpointSlice],
    node_name: &str,
) -> Vec<ServicePort> {
    // (namespace, service) → slices
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for sl in slices {
        if sl.address_type != "IPv4" {
            continue;
        }
        let Some(svc) = sl
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = sl.metadata.namespace.clone().unwrap_or_default();
        by_service.entry((ns, svc.clone())).or_default().push(sl);
    }
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(10800)
        });
        let node_ports_apply = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let svc_slices = by_service
            .get(&(namespace.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let pname = p.name.clone().unwrap_or_default();
            let mut cands: BTreeMap<(Ipv4Addr, u16), Candidate> = BTreeMap::new();
            for sl in svc_slices {
                // The slice resolved the (maybe named) targetPort for its
                // endpoints: match the service port by name and protocol.
                let Some(target) = sl.ports.iter().flatten().find(|sp| {
                    sp.name.clone().unwrap_or_default() == pname
                        && Protocol::parse(sp.protocol.as_deref()) == Some(protocol)
                }) else {
                    continue;
                };
                let Some(tport) = target.port.and_then(|t| u16::try_from(t).ok()) else {
                    continue;
                };
                for e in &sl.endpoints {
                    let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok())
                    else {
                        continue;
                    };
                    let c = e.conditions.as_ref();
                    let ready = c.and_then(|c| c.ready).unwrap_or(true);
                    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                    let local = e.node_name.as_deref() == Some(node_name);
                    cands.insert(
                        (ip, tport),
                        Candidate {
                            ep: Endpoint {
                                ip,
                                port: tport,
                                local,
                            },
                            ready,
                            serving,
                            terminating,
                        },
                    );
                }
            }
            let mut endpoints: Vec<Endpoint> = cands
                .values()
                .filter(|c| c.ready)
                .map(|c| c.ep.clone())
                .collect();
            if endpoints.is_empty() {
                // Upstream's fallback: terminating endpoints that still
                // serve beat dropping the connections.
                endpoints = cands
                    .values()
                    .filter(|c| c.serving && c.terminating)
                    .map(|c| c.ep.clone())
                    .collect();
            }
            out.push(ServicePort {
                namespace: namespace.clone(),
                name: name.clone(),
                port_name: if pname.is_empty() {
                    port.to_string()
                } else {
                    pname
                },
                protocol,
                cluster_ip,
                port,
                node_port: if node_ports_apply {
                    p.node_port.and_then(|n| u16::try_from(n).ok())
                } else {
                    None
                },
                affinity_timeout,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                endpoints,
            });
        }
    }
    out.sort_by_key(|s| s.key());
    out
}

/// The Node's IPv4 InternalIP and ExternalIP addresses, sorted.
pub fn node_ips(node: Option<&Node>) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = node
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}
