//! The whole nftables ruleset of our table, as `nft -f` input: a pure
//! function of the service ports, so it is golden-tested without root.
//!
//! Layout (after kube-proxy's nftables mode): `nat-*` base chains jump to
//! `services`, which dispatches `ClusterIP . proto . port` and
//! `proto . nodePort` (on the node's addresses) through verdict maps to a
//! `service-*` chain per service port; that picks an endpoint with
//! `numgen random` (after ClientIP affinity sets) and the `endpoint-*`
//! chain DNATs. `filter-*` chains at priority -110 (before DNAT) reject
//! new connections to service ports without endpoints.

use crate::model::{Endpoint, ServicePort};
use std::net::Ipv4Addr;

/// The fwmark bit asking `nat-postrouting` to masquerade (upstream's).
pub const MASQ_MARK: u32 = 0x4000;

/// Everything the ruleset depends on besides the services.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Our table (family `ip`).
    pub table: String,
    /// Pod CIDRs of the cluster (IPv4): traffic to a ClusterIP from
    /// outside them is masqueraded so replies come back through us.
    pub cluster_cidrs: Vec<String>,
    /// Addresses NodePorts answer on, besides 127.0.0.1.
    pub node_ips: Vec<Ipv4Addr>,
    /// Masquerade all service traffic: when bridged replies skip
    /// netfilter (no br_netfilter), DNAT from pod to pod on one bridge
    /// only works if the reply comes back through the host.
    pub masquerade_all: bool,
}

/// A short stable hash, so chain names stay unique whatever the names
/// (FNV-1a; names like `a-b/c` and `a/b-c` must not collide).
fn hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08X}", (h >> 32) as u32 ^ h as u32)
}

fn service_chain(sp: &ServicePort) -> String {
    format!("service-{}-{}", hash(&sp.key()), sp.key())
}

fn external_chain(sp: &ServicePort) -> String {
    format!("external-{}-{}", hash(&sp.key()), sp.key())
}

fn endpoint_suffix(sp: &ServicePort, ep: &Endpoint) -> String {
    let key = format!("{}__{}/{}", sp.key(), ep.ip, ep.port);
    format!("{}-{}", hash(&key), key)
}

fn endpoint_chain(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("endpoint-{}", endpoint_suffix(sp, ep))
}

fn affinity_set(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("affinity-{}", endpoint_suffix(sp, ep))
}

struct Out {
    s: String,
}

impl Out {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.s.push('\t');
        }
        self.s.push_str(text);
        self.s.push('\n');
    }

    fn chain(&mut self, name: &str, rules: &[String]) {
        self.line(1, &format!("chain {name} {{"));
        for r in rules {
            self.line(2, r);
        }
        self.line(1, "}");
    }

    fn map(&mut self, name: &str, ty: &str, elements: &[String]) {
        self.line(1, &format!("map {name} {{"));
        self.line(2, &format!("type {ty}"));
        if !elements.is_empty() {
            self.line(2, "elements = {");
            for (i, e) in elements.iter().enumerate() {
                let sep = if i + 1 == elements.len() { "" } else { "," };
                self.line(3, &format!("{e}{sep}"));
            }
            self.line(2, "}");
        }
        self.line(1, "}");
    }
}

/// The endpoint choice: affinity first, then a random pick.
fn dispatch(sp: &ServicePort, eps: &[&Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if sp.affinity_timeout.is_some() {
        for ep in eps {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(sp, ep),
                endpoint_chain(sp, ep)
            ));
        }
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto {}", endpoint_chain(sp, ep)))
        .collect();
    rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        eps.len(),
        arms.join(", ")
    ));
    rules
}

/// The `nft -f` script replacing our table whole: `add` so the `delete`
/// never fails, then the new body, in one transaction.
pub fn render(opts: &Options, ports: &[ServicePort]) -> String {
    let t = &opts.table;
    let mut o = Out { s: String::new() };
    o.line(0, &format!("add table ip {t}"));
    o.line(0, &format!("delete table ip {t}"));
    o.line(0, &format!("table ip {t} {{"));

    // Addresses NodePorts answer on.
    let mut np_ips: Vec<Ipv4Addr> = opts.node_ips.clone();
    np_ips.push(Ipv4Addr::LOCALHOST);
    np_ips.sort();
    np_ips.dedup();
    o.line(1, "set nodeport-ips {");
    o.line(2, "type ipv4_addr");
    let ips: Vec<String> = np_ips.iter().map(|i| i.to_string()).collect();
    o.line(2, &format!("elements = {{ {} }}", ips.join(", ")));
    o.line(1, "}");

    let mut service_ips = Vec::new();
    let mut nodeports = Vec::new();
    let mut no_ep_services = Vec::new();
    let mut no_ep_nodeports = Vec::new();
    for sp in ports {
        let proto = sp.protocol.nft();
        let vip = format!("{} . {proto} . {}", sp.cluster_ip, sp.port);
        let cluster = sp.cluster_endpoints();
        if !cluster.is_empty() {
            service_ips.push(format!("{vip} : goto {}", service_chain(sp)));
        } else if sp.endpoints.is_empty() {
            no_ep_services.push(format!("{vip} : goto reject-chain"));
        } else {
            // internalTrafficPolicy Local without a local endpoint:
            // upstream drops.
            no_ep_services.push(format!("{vip} : drop"));
        }
        if let Some(np) = sp.node_port {
            let key = format!("{proto} . {np}");
            if sp.endpoints.is_empty() {
                no_ep_nodeports.push(format!("{key} : goto reject-chain"));
            } else {
                nodeports.push(format!("{key} : goto {}", external_chain(sp)));
            }
        }
    }
    let vip_type = "ipv4_addr . inet_proto . inet_service : verdict";
    let np_type = "inet_proto . inet_service : verdict";
    o.map("service-ips", vip_type, &service_ips);
    o.map("service-nodeports", np_type, &nodeports);
    o.map("no-endpoint-services", vip_type, &no_ep_services);
    o.map("no-endpoint-nodeports", np_type, &no_ep_nodeports);

    // Affinity sets: the client addresses recently sent to an endpoint.
    for sp in ports {
        let Some(timeout) = sp.affinity_timeout else {
            continue;
        };
        for ep in &sp.endpoints {
            o.line(1, &format!("set {} {{", affinity_set(sp, ep)));
            o.line(2, "type ipv4_addr");
            o.line(2, "flags dynamic,timeout");
            o.line(2, &format!("timeout {timeout}s"));
            o.line(1, "}");
        }
    }

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    o.chain(
        "nat-prerouting",
        &s(&[
            "type nat hook prerouting priority dstnat; policy accept;",
            "jump services",
        ]),
    );
    // nft 1.0.6 rejects `priority dstnat` on the output hook.
    o.chain(
        "nat-output",
        &s(&[
            "type nat hook output priority -100; policy accept;",
            "jump services",
        ]),
    );
    o.chain(
        "nat-postrouting",
        &s(&[
            "type nat hook postrouting priority srcnat; policy accept;",
            "jump masquerading",
        ]),
    );
    o.chain(
        "filter-input",
        &s(&[
            "type filter hook input priority -110; policy accept;",
            "ct state new jump nodeport-endpoints-check",
            "ct state new jump service-endpoints-check",
        ]),
    );
    o.chain(
        "filter-forward",
        &s(&[
            "type filter hook forward priority -110; policy accept;",
            "ct state new jump service-endpoints-check",
        ]),
    );
    o.chain(
        "filter-output",
        &s(&[
            "type filter hook output priority -110; policy accept;",
            "ct state new jump service-endpoints-check",
            "ct state new jump nodeport-endpoints-check",
        ]),
    );
    o.chain(
        "mark-for-masquerade",
        &[format!("meta mark set meta mark or {MASQ_MARK:#x}")],
    );
    o.chain(
        "masquerading",
        &[
            format!("meta mark & {MASQ_MARK:#x} == 0 return"),
            format!("meta mark set meta mark xor {MASQ_MARK:#x}"),
            "masquerade fully-random".to_string(),
        ],
    );
    // Like upstream's reject rule: a TCP reset or an ICMP port
    // unreachable, so clients fail at once instead of timing out.
    o.chain(
        "reject-chain",
        &s(&["meta l4proto tcp reject with tcp reset", "reject"]),
    );
    o.chain(
        "service-endpoints-check",
        &s(&["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]),
    );
    o.chain(
        "nodeport-endpoints-check",
        &s(&["ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"]),
    );
    o.chain(
        "services",
        &s(&[
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        ]),
    );

    let cidrs: Vec<&String> = opts
        .cluster_cidrs
        .iter()
        .filter(|c| !c.contains(':'))
        .collect();
    for sp in ports {
        let proto = sp.protocol.nft();
        let cluster = sp.cluster_endpoints();
        if !cluster.is_empty() {
            let mut rules = Vec::new();
            let to_vip = format!("ip daddr {} {proto} dport {}", sp.cluster_ip, sp.port);
            if opts.masquerade_all {
                rules.push(format!("{to_vip} jump mark-for-masquerade"));
            } else if !cidrs.is_empty() {
                let set = cidrs
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                rules.push(format!(
                    "{to_vip} ip saddr != {{ {set} }} jump mark-for-masquerade"
                ));
            }
            // From the host: replies must come back through our NAT.
            rules.push("fib saddr type local jump mark-for-masquerade".into());
            rules.extend(dispatch(sp, &cluster));
            o.chain(&service_chain(sp), &rules);
        }
        if sp.node_port.is_some() && !sp.endpoints.is_empty() {
            let mut rules = Vec::new();
            if sp.external_local {
                // Keep the client's address: no masquerade, local
                // endpoints only; the host itself (127.0.0.1, its own
                // addresses) is masqueraded and may use any endpoint.
                rules.push("fib saddr type local jump mark-for-masquerade".into());
                if !cluster.is_empty() {
                    rules.push(format!("fib saddr type local goto {}", service_chain(sp)));
                }
                let local = sp.external_endpoints();
                if local.is_empty() {
                    rules.push("drop".into());
                } else {
                    rules.extend(dispatch(sp, &local));
                }
            } else {
                rules.push("jump mark-for-masquerade".into());
                let eps: Vec<&Endpoint> = sp.endpoints.iter().collect();
                if cluster.len() == eps.len() {
                    rules.push(format!("goto {}", service_chain(sp)));
                } else {
                    // internalTrafficPolicy Local narrows only ClusterIP
                    // traffic: NodePort traffic uses every endpoint.
                    rules.extend(dispatch(sp, &eps));
                }
            }
            o.chain(&external_chain(sp), &rules);
        }
        for ep in &sp.endpoints {
            let mut rules = vec![
                // Hairpin: a pod reaching itself through its service.
                format!("ip saddr {} jump mark-for-masquerade", ep.ip),
            ];
            if sp.affinity_timeout.is_some() {
                rules.push(format!("update @{} {{ ip saddr }}", affinity_set(sp, ep)));
            }
            rules.push(format!(
                "meta l4proto {proto} dnat to {}:{}",
                ep.ip, ep.port
            ));
            o.chain(&endpoint_chain(sp, ep), &rules);
        }
    }
    o.line(0, "}");
    o.s
}

/// The script removing our table (if it exists).
pub fn render_delete(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}
