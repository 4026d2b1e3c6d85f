//! The node IPAM controller (kube-controller-manager's `nodeipam` with the
//! range allocator): every Node gets one pod subnet per cluster CIDR (a
//! /24 of `10.42.0.0/16` by default) in `spec.podCIDR` and
//! `spec.podCIDRs`. A subnet in use is never handed out again; a deleted
//! node's subnets are released. The allocation map is rebuilt from the
//! nodes themselves after every (re)list, so a restart or a missed
//! deletion never leaks or double-allocates.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;

/// The upstream default `--node-cidr-mask-size-ipv4`.
pub const DEFAULT_NODE_MASK_V4: u8 = 24;
/// The upstream default `--node-cidr-mask-size-ipv6`.
pub const DEFAULT_NODE_MASK_V6: u8 = 64;
/// Upstream refuses more than 2^16 subnets per cluster CIDR.
const MAX_SUBNET_BITS: u8 = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid CIDR {0:?}")]
    BadCidr(String),
    #[error("node CIDR mask /{mask} does not fit cluster CIDR {cluster}")]
    BadMask { cluster: Cidr, mask: u8 },
    #[error("{0} is not a node subnet of {1}")]
    Foreign(Cidr, Cidr),
}

/// An IP network: the address with its host bits cleared, and the prefix
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

fn bits_of(a: &IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

fn to_u128(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(*v) as u128,
        IpAddr::V6(v) => u128::from(*v),
    }
}

fn from_u128(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

fn mask(bits: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all = if bits == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        (all << (bits - prefix)) & all
    }
}

impl Cidr {
    pub fn bits(&self) -> u8 {
        bits_of(&self.addr)
    }

    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// Whether `other` lies entirely inside this network.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.is_v6() == other.is_v6()
            && other.prefix >= self.prefix
            && to_u128(&other.addr) & mask(self.bits(), self.prefix) == to_u128(&self.addr)
    }
}

impl FromStr for Cidr {
    type Err = Error;

    /// `A.B.C.D/N` or `X::Y/N`; host bits are cleared (like Go's
    /// `net.ParseCIDR` network).
    fn from_str(s: &str) -> Result<Cidr, Error> {
        let bad = || Error::BadCidr(s.to_string());
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let bits = bits_of(&addr);
        if prefix > bits {
            return Err(bad());
        }
        let n = to_u128(&addr) & mask(bits, prefix);
        Ok(Cidr {
            addr: from_u128(addr.is_ipv6(), n),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Hands out the node-sized subnets of one cluster CIDR, round-robin from
/// the last allocation (like upstream's CIDR set), so a just-released
/// subnet is not reused at once while stale routes may still point at it.
#[derive(Debug, Clone)]
pub struct CidrAllocator {
    cluster: Cidr,
    mask: u8,
    count: u64,
    used: BTreeSet<u64>,
    next: u64,
}

impl CidrAllocator {
    pub fn new(cluster: Cidr, mask: u8) -> Result<CidrAllocator, Error> {
        if mask < cluster.prefix || mask > cluster.bits() || mask - cluster.prefix > MAX_SUBNET_BITS
        {
            return Err(Error::BadMask { cluster, mask });
        }
        Ok(CidrAllocator {
            cluster,
            mask,
            count: 1u64 << (mask - cluster.prefix),
            used: BTreeSet::new(),
            next: 0,
        })
    }

    pub fn cluster(&self) -> Cidr {
        self.cluster
    }

    /// Number of subnets still free.
    pub fn free(&self) -> u64 {
        self.count - self.used.len() as u64
    }

    fn subnet(&self, i: u64) -> Cidr {
        let step = 1u128 << (self.cluster.bits() - self.mask);
        let n = to_u128(&self.cluster.addr) + step * i as u128;
        Cidr {
            addr: from_u128(self.cluster.is_v6(), n),
            prefix: self.mask,
        }
    }

    fn index_of(&self, c: &Cidr) -> Result<u64, Error> {
        if c.prefix != self.mask || !self.cluster.contains(c) {
            return Err(Error::Foreign(*c, self.cluster));
        }
        let off = to_u128(&c.addr) - to_u128(&self.cluster.addr);
        Ok((off >> (self.cluster.bits() - self.mask)) as u64)
    }

    /// The next free subnet, or None when the cluster CIDR is full.
    pub fn allocate(&mut self) -> Option<Cidr> {
        for k in 0..self.count {
            let i = (self.next + k) % self.count;
            if self.used.insert(i) {
                self.next = (i + 1) % self.count;
                return Some(self.subnet(i));
            }
        }
        None
    }

    /// Mark a subnet found on a node as in use.
    pub fn occupy(&mut self, c: &Cidr) -> Result<(), Error> {
        let i = self.index_of(c)?;
        self.used.insert(i);
        Ok(())
    }

    pub fn release(&mut self, c: &Cidr) {
        if let Ok(i) = self.index_of(c) {
            self.used.remove(&i);
        }
    }

    pub fn in_use(&self, c: &Cidr) -> bool {
        self.index_of(c).is_ok_and(|i| self.used.contains(&i))
    }
}

/// One allocator per cluster CIDR (one per IP family for dual-stack) and
/// what each node holds.
#[derive(Debug, Clone)]
pub struct NodeCidrs {
    allocators: Vec<CidrAllocator>,
    by_node: HashMap<String, Vec<Cidr>>,
}

/// The subnets a node has in its spec (podCIDRs, else podCIDR).
pub fn node_cidrs(n: &Node) -> Vec<String> {
    let spec = n.spec.as_ref();
    let list = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if !list.is_empty() {
        return list;
    }
    spec.and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
        .into_iter()
        .collect()
}

impl NodeCidrs {
    /// `cluster`: the cluster CIDRs (at most one per family); node mask
    /// sizes are the upstream defaults unless given.
    pub fn new(cluster: &[Cidr], mask_v4: u8, mask_v6: u8) -> Result<NodeCidrs, Error> {
        let allocators = cluster
            .iter()
            .map(|c| CidrAllocator::new(*c, if c.is_v6() { mask_v6 } else { mask_v4 }))
            .collect::<Result<_, _>>()?;
        Ok(NodeCidrs {
            allocators,
            by_node: HashMap::new(),
        })
    }

    /// Forget everything, then record the subnets every node holds (the
    /// state after a list). Subnets outside the cluster CIDRs are left to
    /// whoever set them.
    pub fn rebuild<'a>(&mut self, nodes: impl IntoIterator<Item = (&'a str, Vec<String>)>) {
        for a in &mut self.allocators {
            a.used.clear();
        }
        self.by_node.clear();
        for (name, cidrs) in nodes {
            self.observe(name, &cidrs);
        }
    }

    /// A node with these subnets in its spec: they are in use.
    pub fn observe(&mut self, node: &str, cidrs: &[String]) {
        if cidrs.is_empty() {
            return;
        }
        let parsed: Vec<Cidr> = cidrs.iter().filter_map(|c| c.parse().ok()).collect();
        if self.by_node.get(node) == Some(&parsed) {
            return;
        }
        // Someone else set different subnets than ours: theirs win.
        self.release_node(node);
        for c in &parsed {
            for a in &mut self.allocators {
                if a.cluster().contains(c) {
                    if let Err(e) = a.occupy(c) {
                        tracing::warn!(node, error = %e, "node podCIDR does not match the node mask size");
                    }
                }
            }
        }
        self.by_node.insert(node.to_string(), parsed);
    }

    /// The subnets for a node without any: the ones already reserved for
    /// it (a patch that did not land), else new ones. None when a cluster
    /// CIDR is full (nothing is kept then).
    pub fn assign(&mut self, node: &str) -> Option<Vec<Cidr>> {
        if let Some(c) = self.by_node.get(node) {
            return Some(c.clone());
        }
        if self.allocators.iter().any(|a| a.free() == 0) {
            return None;
        }
        let mut got = Vec::new();
        for i in 0..self.allocators.len() {
            match self.allocators[i].allocate() {
                Some(c) => got.push(c),
                None => {
                    for (a, c) in self.allocators.iter_mut().zip(&got) {
                        a.release(c);
                    }
                    return None;
                }
            }
        }
        self.by_node.insert(node.to_string(), got.clone());
        Some(got)
    }

    /// The node is gone: its subnets are free again.
    pub fn release_node(&mut self, node: &str) {
        if let Some(cs) = self.by_node.remove(node) {
            for c in &cs {
                for a in &mut self.allocators {
                    if a.cluster().contains(c) {
                        a.release(c);
                    }
                }
            }
        }
    }

    pub fn of(&self, node: &str) -> Option<&Vec<Cidr>> {
        self.by_node.get(node)
    }
}

/// Runs the controller until the process ends. `cluster` empty: off.
pub async fn run(client: Client, cluster: Vec<Cidr>, mask_v4: u8, mask_v6: u8) {
    let mut state = match NodeCidrs::new(&cluster, mask_v4, mask_v6) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "node IPAM: bad cluster CIDR; no podCIDRs will be allocated");
            return;
        }
    };
    if cluster.is_empty() {
        return;
    }
    let api: Api<Node> = Api::all(client.clone());
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Vec<Node> = Vec::new();
    let mut nodes: HashMap<String, Node> = HashMap::new();
    let mut warned: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        let mut todo: Vec<String> = Vec::new();
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Err(e) => tracing::debug!(error = %e, "node IPAM watch (will relist)"),
                    Ok(Event::Init) => listing.clear(),
                    Ok(Event::InitApply(n)) => listing.push(n),
                    Ok(Event::InitDone) => {
                        nodes = std::mem::take(&mut listing)
                            .into_iter()
                            .filter_map(|n| Some((n.metadata.name.clone()?, n)))
                            .collect();
                        state.rebuild(nodes.iter().map(|(k, n)| (k.as_str(), node_cidrs(n))));
                        todo.extend(nodes.keys().cloned());
                    }
                    Ok(Event::Apply(n)) => {
                        if let Some(name) = n.metadata.name.clone() {
                            state.observe(&name, &node_cidrs(&n));
                            nodes.insert(name.clone(), n);
                            todo.push(name);
                        }
                    }
                    Ok(Event::Delete(n)) => {
                        if let Some(name) = n.metadata.name.as_deref() {
                            nodes.remove(name);
                            state.release_node(name);
                            warned.remove(name);
                        }
                    }
                }
            }
            // Retries patches that failed.
            _ = tick.tick() => todo.extend(nodes.keys().cloned()),
        }
        for name in todo {
            let Some(n) = nodes.get(&name) else { continue };
            if !node_cidrs(n).is_empty() || n.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(cidrs) = state.assign(&name) else {
                // Once per node, and loudly only once (a benchmark may
                // register thousands of simulated nodes).
                if warned.insert(name.clone()) {
                    if warned.len() == 1 {
                        tracing::warn!(node = %name, "CIDRNotAvailable: no pod subnet left in the cluster CIDR; nodes without one get none");
                    } else {
                        tracing::debug!(node = %name, "CIDRNotAvailable");
                    }
                }
                continue;
            };
            let list: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
            let patch = serde_json::json!({
                // The version we saw: a concurrent writer makes this 409
                // and the next event retries with fresh state.
                "metadata": {"resourceVersion": n.metadata.resource_version},
                "spec": {"podCIDR": list[0], "podCIDRs": list},
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => {
                    tracing::info!(node = %name, cidrs = ?list, "allocated pod CIDRs");
                    nodes.insert(name.clone(), updated);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    nodes.remove(&name);
                    state.release_node(&name);
                }
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "setting podCIDR (will retry)")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_contain() {
        assert_eq!(c("10.42.3.7/16").to_string(), "10.42.0.0/16");
        assert_eq!(c("fd00::1/56").to_string(), "fd00::/56");
        assert!(c("10.42.0.0/16").contains(&c("10.42.9.0/24")));
        assert!(!c("10.42.0.0/16").contains(&c("10.43.0.0/24")));
        assert!(!c("10.42.0.0/16").contains(&c("10.0.0.0/8")));
        assert!(!c("10.42.0.0/16").contains(&c("fd00::/64")));
        for bad in ["10.42.0.0", "10.42.0.0/33", "x/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allocates_every_subnet_once() {
        let mut a = CidrAllocator::new(c("10.42.0.0/22"), 24).unwrap();
        let got: Vec<String> = (0..4).map(|_| a.allocate().unwrap().to_string()).collect();
        assert_eq!(
            got,
            [
                "10.42.0.0/24",
                "10.42.1.0/24",
                "10.42.2.0/24",
                "10.42.3.0/24"
            ]
        );
        assert_eq!(a.allocate(), None);
        assert_eq!(a.free(), 0);
        a.release(&c("10.42.1.0/24"));
        assert_eq!(a.allocate(), Some(c("10.42.1.0/24")));
    }

    #[test]
    fn round_robin_skips_used_and_recent() {
        let mut a = CidrAllocator::new(c("10.42.0.0/16"), 24).unwrap();
        a.occupy(&c("10.42.0.0/24")).unwrap();
        a.occupy(&c("10.42.2.0/24")).unwrap();
        assert_eq!(a.allocate(), Some(c("10.42.1.0/24")));
        assert_eq!(a.allocate(), Some(c("10.42.3.0/24")));
        a.release(&c("10.42.1.0/24"));
        // Not reused at once.
        assert_eq!(a.allocate(), Some(c("10.42.4.0/24")));
        assert!(a.in_use(&c("10.42.2.0/24")));
        assert!(!a.in_use(&c("10.42.1.0/24")));
    }

    #[test]
    fn rejects_foreign_and_bad_masks() {
        let mut a = CidrAllocator::new(c("10.42.0.0/16"), 24).unwrap();
        assert!(a.occupy(&c("10.43.0.0/24")).is_err());
        assert!(a.occupy(&c("10.42.0.0/25")).is_err());
        assert!(CidrAllocator::new(c("10.42.0.0/16"), 8).is_err());
        assert!(CidrAllocator::new(c("10.42.0.0/16"), 33).is_err());
        // Too many subnets (upstream's limit).
        assert!(CidrAllocator::new(c("10.0.0.0/8"), 28).is_err());
    }

    #[test]
    fn ipv6_subnets() {
        let mut a = CidrAllocator::new(c("fd00:42::/56"), 64).unwrap();
        assert_eq!(a.allocate(), Some(c("fd00:42::/64")));
        assert_eq!(a.allocate(), Some(c("fd00:42:0:1::/64")));
    }

    #[test]
    fn nodes_rebuild_assign_release() {
        let mut s = NodeCidrs::new(&[c("10.42.0.0/23")], 24, 64).unwrap();
        s.rebuild([
            ("a", vec!["10.42.1.0/24".to_string()]),
            ("b", vec![]),
            ("ext", vec!["192.168.0.0/24".to_string()]),
        ]);
        // b gets the only free one, and keeps it on a retry.
        assert_eq!(s.assign("b"), Some(vec![c("10.42.0.0/24")]));
        assert_eq!(s.assign("b"), Some(vec![c("10.42.0.0/24")]));
        assert_eq!(s.assign("c"), None);
        s.release_node("a");
        assert_eq!(s.assign("c"), Some(vec![c("10.42.1.0/24")]));
        // A restart rebuilds from the nodes: nothing in use is handed out.
        s.rebuild([
            ("b", vec!["10.42.0.0/24".to_string()]),
            ("c", vec!["10.42.1.0/24".to_string()]),
        ]);
        assert_eq!(s.assign("d"), None);
        assert_eq!(s.of("c"), Some(&vec![c("10.42.1.0/24")]));
    }

    #[test]
    fn dual_stack_assigns_one_per_family() {
        let mut s = NodeCidrs::new(&[c("10.42.0.0/16"), c("fd00::/56")], 24, 64).unwrap();
        assert_eq!(s.assign("n"), Some(vec![c("10.42.0.0/24"), c("fd00::/64")]));
    }

    #[test]
    fn observe_prefers_what_the_node_says() {
        let mut s = NodeCidrs::new(&[c("10.42.0.0/16")], 24, 64).unwrap();
        assert_eq!(s.assign("n"), Some(vec![c("10.42.0.0/24")]));
        s.observe("n", &["10.42.7.0/24".to_string()]);
        assert_eq!(s.of("n"), Some(&vec![c("10.42.7.0/24")]));
        // Ours was given back.
        assert_eq!(s.assign("m"), Some(vec![c("10.42.1.0/24")]));
    }
}
