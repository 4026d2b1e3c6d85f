//! The records of the cluster zone, as pure functions of a snapshot of
//! Services and EndpointSlices (the schema of CoreDNS's `kubernetes`
//! plugin):
//!
//! - `svc.ns.svc.<zone>`: A/AAAA of the ClusterIPs; for a headless service
//!   every ready endpoint address; `ExternalName` services are a CNAME.
//! - `_port._proto.svc.ns.svc.<zone>`: SRV per named port (headless: one per
//!   endpoint, target `hostname.svc.ns.svc.<zone>` or the dashed IP).
//! - `hostname.svc.ns.svc.<zone>`: the endpoint with that hostname
//!   (StatefulSet pods) or that dashed IP (`10-42-0-5`).
//! - `a-b-c-d.ns.pod.<zone>`: the address in the name (`pods insecure`).
//! - PTR for ClusterIPs and named endpoint addresses.
//!
//! A name in the zone that does not exist is NXDOMAIN, an existing name
//! without records of the asked type NOERROR/empty; both carry the SOA.

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// CoreDNS's `kubernetes` plugin default TTL.
pub const DEFAULT_TTL: u32 = 5;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, thiserror::Error)]
#[error("invalid cluster domain {domain:?}: {reason}")]
pub struct InvalidDomain {
    pub domain: String,
    pub reason: String,
}

/// What the zone says about one question.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The answer is a CNAME to a name outside the zone: the server
    /// resolves it upstream (as CoreDNS does) for the asked type.
    pub chase: Option<Name>,
}

/// One endpoint of a service, flattened out of its slices.
#[derive(Debug, Clone)]
struct Ep {
    addr: IpAddr,
    hostname: Option<String>,
    /// (port name, protocol, port) from the endpoint's slice.
    ports: Arc<Vec<(String, String, u16)>>,
}

/// An immutable view of the cluster's services, rebuilt on every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    services: HashMap<(String, String), Arc<Service>>,
    /// (namespace, service) → its ready endpoints, unique by address.
    endpoints: HashMap<(String, String), Vec<Ep>>,
    namespaces: HashSet<String>,
    /// Reverse names: address → (namespace, service, endpoint label).
    by_ip: HashMap<IpAddr, (String, String, Option<String>)>,
    serial: u32,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// `10-42-0-5` / `fd00--5`: the endpoint label of an address without a
/// hostname (CoreDNS's `endpoint_pod_names` off).
pub fn dashed(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl Snapshot {
    pub fn new(
        services: impl IntoIterator<Item = Arc<Service>>,
        slices: impl IntoIterator<Item = Arc<EndpointSlice>>,
        serial: u32,
    ) -> Snapshot {
        let mut s = Snapshot {
            serial,
            ..Default::default()
        };
        for svc in services {
            let k = key(&svc.metadata);
            s.namespaces.insert(k.0.clone());
            for ip in cluster_ips(&svc) {
                s.by_ip.insert(ip, (k.0.clone(), k.1.clone(), None));
            }
            s.services.insert(k, svc);
        }
        let mut seen: HashSet<(String, String, IpAddr)> = HashSet::new();
        // Slices in name order so duplicates resolve the same every time.
        let mut slices: Vec<Arc<EndpointSlice>> = slices.into_iter().collect();
        slices.sort_by_key(|s| key(&s.metadata));
        for sl in slices {
            let Some(svc) = sl
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let ns = sl.metadata.namespace.clone().unwrap_or_default();
            let ports: Arc<Vec<(String, String, u16)>> = Arc::new(
                sl.ports
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        Some((
                            p.name.clone().unwrap_or_default(),
                            p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                            u16::try_from(p.port?).ok()?,
                        ))
                    })
                    .collect(),
            );
            for ep in &sl.endpoints {
                // Upstream: a nil `ready` means ready.
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for a in &ep.addresses {
                    let Ok(addr) = a.parse::<IpAddr>() else {
                        continue;
                    };
                    let list = s.endpoints.entry((ns.clone(), svc.clone())).or_default();
                    if seen.insert((ns.clone(), svc.clone(), addr)) {
                        list.push(Ep {
                            addr,
                            hostname: ep.hostname.clone().filter(|h| !h.is_empty()),
                            ports: ports.clone(),
                        });
                    } else if let Some(e) = list.iter_mut().find(|e| e.addr == addr) {
                        // The same address under another port mapping.
                        if e.ports.len() < ports.len() {
                            e.ports = ports.clone();
                        }
                    }
                    if let Some(h) = ep.hostname.as_ref().filter(|h| !h.is_empty()) {
                        s.by_ip
                            .entry(addr)
                            .or_insert_with(|| (ns.clone(), svc.clone(), Some(h.clone())));
                    }
                }
            }
        }
        s
    }

    fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        self.services
            .get(&(ns.to_string(), name.to_string()))
            .map(|s| s.as_ref())
    }

    fn endpoints(&self, ns: &str, name: &str) -> &[Ep] {
        self.endpoints
            .get(&(ns.to_string(), name.to_string()))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }
}

fn cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = svc.spec.as_ref() else {
        return vec![];
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return vec![];
    }
    let ips: Vec<&String> = match spec.cluster_ips.as_ref().filter(|v| !v.is_empty()) {
        Some(v) => v.iter().collect(),
        None => spec.cluster_ip.iter().collect(),
    };
    ips.into_iter().filter_map(|s| s.parse().ok()).collect()
}

fn is_headless(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| ip == "None")
}

fn external_name(svc: &Service) -> Option<&str> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("ExternalName") {
        return None;
    }
    spec.external_name.as_deref().filter(|n| !n.is_empty())
}

/// One SRV answer: port, target, the target's addresses (additionals).
#[derive(Debug)]
struct Srv {
    port: u16,
    target: Name,
    addrs: Vec<IpAddr>,
}

/// What exists at a name; `None` from `lookup` is NXDOMAIN.
#[derive(Debug, Default)]
struct Found {
    addrs: Vec<IpAddr>,
    cname: Option<Name>,
    srv: Vec<Srv>,
    apex: bool,
}

/// The cluster zone: its origin and how its answers look.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    ttl: u32,
    /// The cluster DNS address: glue of the zone's NS record.
    dns_ip: Option<IpAddr>,
}

impl Zone {
    pub fn new(domain: &str, ttl: u32, dns_ip: Option<IpAddr>) -> Result<Zone, InvalidDomain> {
        let bad = |reason: String| InvalidDomain {
            domain: domain.to_string(),
            reason,
        };
        let trimmed = domain.trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(bad("empty".into()));
        }
        let mut origin = Name::from_ascii(trimmed).map_err(|e| bad(e.to_string()))?;
        origin.set_fqdn(true);
        Ok(Zone {
            origin: origin.to_lowercase(),
            ttl,
            dns_ip,
        })
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    fn name(&self, labels: &[&str]) -> Option<Name> {
        Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .ok()?
            .append_domain(&self.origin)
            .ok()
    }

    fn soa(&self, serial: u32) -> Record {
        let mname = self
            .name(&["ns", "dns"])
            .unwrap_or_else(|| self.origin.clone());
        let rname = self
            .name(&["hostmaster"])
            .unwrap_or_else(|| self.origin.clone());
        Record::from_rdata(
            self.origin.clone(),
            self.ttl,
            RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, self.ttl)),
        )
    }

    fn record(&self, name: &Name, data: RData) -> Record {
        let mut r = Record::from_rdata(name.clone(), self.ttl, data);
        r.dns_class = DNSClass::IN;
        r
    }

    fn addr_record(&self, name: &Name, ip: IpAddr) -> Record {
        match ip {
            IpAddr::V4(v4) => self.record(name, RData::A(A(v4))),
            IpAddr::V6(v6) => self.record(name, RData::AAAA(AAAA(v6))),
        }
    }

    /// The zone's answer to `q`, or None when the name is not ours (the
    /// server forwards it).
    pub fn answer(&self, snap: &Snapshot, q: &Query) -> Option<Reply> {
        let qname = &q.name;
        if q.query_type == RecordType::PTR && !self.contains(qname) {
            return self.reverse(snap, q);
        }
        if !self.contains(qname) {
            return None;
        }
        let lower = qname.to_lowercase();
        let rel = (lower.num_labels() - self.origin.num_labels()) as usize;
        let labels: Vec<String> = lower
            .iter()
            .take(rel)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let refs: Vec<&str> = labels.iter().map(|s| s.as_str()).collect();
        let soa = self.soa(snap.serial);
        let Some(found) = self.lookup(snap, &refs) else {
            return Some(Reply {
                rcode: ResponseCode::NXDomain,
                answers: vec![],
                authority: vec![soa],
                additionals: vec![],
                chase: None,
            });
        };
        let mut reply = Reply {
            rcode: ResponseCode::NoError,
            answers: vec![],
            authority: vec![],
            additionals: vec![],
            chase: None,
        };
        let qt = q.query_type;
        if let Some(target) = &found.cname {
            reply
                .answers
                .push(self.record(qname, RData::CNAME(CNAME(target.clone()))));
            if qt != RecordType::CNAME {
                reply.chase = Some(target.clone());
            }
            return Some(reply);
        }
        let want_v4 = matches!(qt, RecordType::A | RecordType::ANY);
        let want_v6 = matches!(qt, RecordType::AAAA | RecordType::ANY);
        for ip in &found.addrs {
            if (ip.is_ipv4() && want_v4) || (ip.is_ipv6() && want_v6) {
                reply.answers.push(self.addr_record(qname, *ip));
            }
        }
        if qt == RecordType::SRV && !found.srv.is_empty() {
            // Equal shares, like CoreDNS.
            let weight = (100 / found.srv.len()).max(1) as u16;
            let mut glue: BTreeSet<(String, IpAddr)> = BTreeSet::new();
            for s in &found.srv {
                reply.answers.push(self.record(
                    qname,
                    RData::SRV(SRV::new(0, weight, s.port, s.target.clone())),
                ));
                for ip in &s.addrs {
                    if glue.insert((s.target.to_ascii(), *ip)) {
                        reply.additionals.push(self.addr_record(&s.target, *ip));
                    }
                }
            }
        }
        if found.apex {
            match qt {
                RecordType::SOA => reply.answers.push(soa.clone()),
                RecordType::NS => {
                    if let Some(ns) = self.name(&["ns", "dns"]) {
                        reply
                            .answers
                            .push(self.record(&self.origin, RData::NS(NS(ns.clone()))));
                        if let Some(ip) = self.dns_ip {
                            reply.additionals.push(self.addr_record(&ns, ip));
                        }
                    }
                }
                _ => {}
            }
        }
        if reply.answers.is_empty() {
            reply.authority.push(soa);
        }
        Some(reply)
    }

    /// PTR of a ClusterIP or a named endpoint; other addresses are not ours.
    fn reverse(&self, snap: &Snapshot, q: &Query) -> Option<Reply> {
        let net = q.name.parse_arpa_name().ok()?;
        if net.prefix_len() != net.max_prefix_len() {
            return None;
        }
        let (ns, svc, host) = snap.by_ip.get(&net.addr())?;
        let mut labels: Vec<&str> = host.iter().map(|h| h.as_str()).collect();
        labels.extend([svc.as_str(), ns.as_str(), "svc"]);
        let target = self.name(&labels)?;
        Some(Reply {
            rcode: ResponseCode::NoError,
            answers: vec![self.record(&q.name, RData::PTR(PTR(target)))],
            authority: vec![],
            additionals: vec![],
            chase: None,
        })
    }

    /// What exists at the relative name `labels` (leftmost first).
    fn lookup(&self, snap: &Snapshot, labels: &[&str]) -> Option<Found> {
        let mut rev: Vec<&str> = labels.to_vec();
        rev.reverse();
        match rev.as_slice() {
            [] => Some(Found {
                apex: true,
                ..Default::default()
            }),
            ["svc"] | ["pod"] | ["dns"] => Some(Found::default()),
            ["dns", "ns"] => Some(Found {
                addrs: self.dns_ip.into_iter().collect(),
                ..Default::default()
            }),
            ["svc", ns] | ["pod", ns] => snap.namespaces.contains(*ns).then(Found::default),
            ["pod", _ns, ip] => undashed(ip).map(|ip| Found {
                addrs: vec![ip],
                ..Default::default()
            }),
            ["svc", ns, name] => {
                let svc = snap.service(ns, name)?;
                Some(self.service_records(snap, svc, ns, name))
            }
            ["svc", ns, name, x] => {
                let svc = snap.service(ns, name)?;
                if let Some(proto) = x.strip_prefix('_') {
                    // `_tcp.svc.ns.svc`: an empty non-terminal above SRVs.
                    let has = ports(svc)
                        .iter()
                        .any(|p| p.1.eq_ignore_ascii_case(proto) && !p.0.is_empty());
                    return has.then(Found::default);
                }
                if external_name(svc).is_some() {
                    return None;
                }
                let addrs: Vec<IpAddr> = snap
                    .endpoints(ns, name)
                    .iter()
                    .filter(|e| endpoint_label(e) == *x)
                    .map(|e| e.addr)
                    .collect();
                (!addrs.is_empty()).then(|| Found {
                    addrs,
                    ..Default::default()
                })
            }
            ["svc", ns, name, proto, port] => {
                let svc = snap.service(ns, name)?;
                let proto = proto.strip_prefix('_')?;
                let port = port.strip_prefix('_')?;
                let srv = self.srv_records(snap, svc, ns, name, Some((port, proto)));
                (!srv.is_empty()).then(|| Found {
                    srv,
                    ..Default::default()
                })
            }
            _ => None,
        }
    }

    fn service_records(&self, snap: &Snapshot, svc: &Service, ns: &str, name: &str) -> Found {
        if let Some(ext) = external_name(svc) {
            let target = Name::from_ascii(ext.trim_end_matches('.'))
                .ok()
                .map(|mut n| {
                    n.set_fqdn(true);
                    n
                });
            return Found {
                cname: target,
                ..Default::default()
            };
        }
        let addrs = if is_headless(svc) {
            snap.endpoints(ns, name).iter().map(|e| e.addr).collect()
        } else {
            cluster_ips(svc)
        };
        Found {
            addrs,
            srv: self.srv_records(snap, svc, ns, name, None),
            ..Default::default()
        }
    }

    /// SRV targets of `svc`'s ports (only the named port `want` when given).
    fn srv_records(
        &self,
        snap: &Snapshot,
        svc: &Service,
        ns: &str,
        name: &str,
        want: Option<(&str, &str)>,
    ) -> Vec<Srv> {
        let matches = |pname: &str, proto: &str| match want {
            Some((wn, wp)) => !pname.is_empty() && pname == wn && proto.eq_ignore_ascii_case(wp),
            None => true,
        };
        let mut out = Vec::new();
        if let Some(ext) = external_name(svc) {
            let Ok(mut target) = Name::from_ascii(ext.trim_end_matches('.')) else {
                return out;
            };
            target.set_fqdn(true);
            for (pname, proto, port) in ports(svc) {
                if matches(&pname, &proto) {
                    out.push(Srv {
                        port,
                        target: target.clone(),
                        addrs: vec![],
                    });
                }
            }
            return out;
        }
        if is_headless(svc) {
            for e in snap.endpoints(ns, name) {
                let Some(target) = self.name(&[&endpoint_label(e), name, ns, "svc"]) else {
                    continue;
                };
                for (pname, proto, port) in e.ports.iter() {
                    if matches(pname, proto) {
                        out.push(Srv {
                            port: *port,
                            target: target.clone(),
                            addrs: vec![e.addr],
                        });
                    }
                }
            }
            return out;
        }
        let Some(target) = self.name(&[name, ns, "svc"]) else {
            return out;
        };
        for (pname, proto, port) in ports(svc) {
            if matches(&pname, &proto) {
                out.push(Srv {
                    port,
                    target: target.clone(),
                    addrs: cluster_ips(svc),
                });
            }
        }
        out
    }
}

fn endpoint_label(e: &Ep) -> String {
    e.hostname.clone().unwrap_or_else(|| dashed(&e.addr))
}

/// (name, protocol, port) of a service's ports.
fn ports(svc: &Service) -> Vec<(String, String, u16)> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p.name.clone().unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                u16::try_from(p.port).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
