//! The pod network, through the standard CNI plugin interface (what the
//! kubelet gets from containerd's CRI plugin): after a pod sandbox is
//! created, the agent runs the plugins of a network configuration list
//! with `CNI_COMMAND=ADD` on the sandbox's network namespace and reports
//! the IPs of the result as `status.podIP(s)`; on teardown it runs `DEL`.
//!
//! The network is the user's first conflist in `/etc/cni/net.d` when one
//! exists (so another CNI plugin can replace ours); otherwise ours is
//! written under `<data-dir>/agent/cni/net.d` once the Node has its
//! podCIDR: Debian's `bridge` (gateway, masquerade, hairpin) with
//! `host-local` IPAM over the podCIDR, and `portmap` for `hostPort`.
//! What was passed to the plugins and what they answered is saved as
//! `network.json` in the sandbox directory, so a DEL can be replayed with
//! the same configuration after an agent restart.
//!
//! Across nodes, [`node_loop`] keeps a route to every other node's
//! podCIDR via that node's InternalIP (host-gw), reconciled on every Node
//! change and periodically (routes vanish when a link flaps).
//!
//! Running a plugin ([`PluginExec`]) and changing routes ([`RouteTable`])
//! are traits, so the logic here is tested without root.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

/// The default bridge of our network.
pub const DEFAULT_BRIDGE: &str = "bosun0";
/// The name of our network (host-local keeps its leases under it).
pub const NETWORK_NAME: &str = "bosun";
/// The default cluster CIDR.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// Our conflist, when we write one.
pub const CONFLIST_FILE: &str = "10-bosun.conflist";
/// What a sandbox's network attachment was, in its directory.
pub const ATTACHMENT_FILE: &str = "network.json";
/// `proto` of the routes we own (0x42; not in iproute2's table).
pub const ROUTE_PROTO: &str = "66";
const CNI_VERSION: &str = "1.0.0";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A plugin failed; the text is what libcni/containerd print.
    #[error("plugin type=\"{plugin}\" failed ({op}): {msg}")]
    Plugin {
        plugin: String,
        op: &'static str,
        msg: String,
    },
    #[error("failed to find plugin \"{0}\" in path {1:?}")]
    NotFound(String, Vec<PathBuf>),
    /// Like the kubelet's NetworkPluginNotReady.
    #[error("network is not ready: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: {0}")]
    NotReady(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

/// Pod network settings of a node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bridge of our default network.
    pub bridge: String,
    /// The cluster's pod CIDRs: routes to other nodes are kept inside
    /// them only (never touching anything else on the host).
    pub cluster_cidrs: Vec<String>,
    /// The podCIDR to use while the Node has none (the kubelet's
    /// `--pod-cidr`, for a cluster without node IPAM).
    pub pod_cidr: Option<String>,
    /// Where the user's network configurations are looked for.
    pub conf_dir: PathBuf,
    /// Where plugins are looked for, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// Keep host-gw routes to the other nodes' podCIDRs.
    pub routes: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            bridge: DEFAULT_BRIDGE.into(),
            cluster_cidrs: vec![DEFAULT_CLUSTER_CIDR.into()],
            pod_cidr: None,
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            routes: true,
        }
    }
}

// ----------------------------------------------------------------------
// CIDRs.

/// An IP network (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

fn as_u128(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(*v) as u128,
        IpAddr::V6(v) => u128::from(*v),
    }
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.trim().split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return None;
        }
        let n = as_u128(&addr) & Self::mask(bits, prefix);
        let addr = if addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(n))
        };
        Some(Cidr { addr, prefix })
    }

    fn mask(bits: u8, prefix: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            (u128::MAX << (128 - prefix)) >> (128 - bits)
        }
    }

    fn bits(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    pub fn contains_ip(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && as_u128(ip) & Self::mask(self.bits(), self.prefix) == as_u128(&self.addr)
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains_ip(&other.addr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The node's address for other nodes: the source address of the default
/// route (found by connecting a UDP socket, which sends nothing), unless
/// it lies in a cluster CIDR (our own bridge); else the first local
/// address outside them.
pub fn node_ip(cluster_cidrs: &[String]) -> Option<String> {
    let cidrs: Vec<Cidr> = cluster_cidrs
        .iter()
        .filter_map(|c| Cidr::parse(c))
        .collect();
    let outside = |ip: &IpAddr| !cidrs.iter().any(|c| c.contains_ip(ip));
    let via_default = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_gateway(&t))
        .and_then(|gw| {
            let s = UdpSocket::bind("0.0.0.0:0").ok()?;
            s.connect((gw, 9)).ok()?;
            Some(s.local_addr().ok()?.ip())
        })
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback() && outside(ip));
    if let Some(ip) = via_default {
        return Some(ip.to_string());
    }
    let trie = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
    local_ipv4s(&trie)
        .into_iter()
        .find(|ip| outside(&IpAddr::V4(*ip)))
        .map(|ip| ip.to_string())
}

/// The gateway of the IPv4 default route in `/proc/net/route` text.
pub fn default_gateway(route: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        // The hex is the network-order address read as a native u32.
        Some(Ipv4Addr::from(gw.to_ne_bytes())).filter(|g| !g.is_unspecified())
    })
}

/// Local (`/32 host LOCAL`) non-loopback addresses in fib_trie order.
pub fn local_ipv4s(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = Some(addr.trim());
        } else if t.contains("/32 host LOCAL") {
            if let Some(ip) = last.and_then(|a| a.parse::<Ipv4Addr>().ok()) {
                if !ip.is_loopback() && !ip.is_unspecified() && !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

// ----------------------------------------------------------------------
// Network configuration.

/// Our network for a node: bridge + host-local over the podCIDRs, and
/// portmap for hostPorts.
pub fn default_conflist(bridge: &str, pod_cidrs: &[String], ipam_dir: &Path) -> Value {
    let ranges: Vec<Value> = pod_cidrs.iter().map(|c| json!([{"subnet": c}])).collect();
    let mut routes = Vec::new();
    if pod_cidrs.iter().any(|c| !c.contains(':')) {
        routes.push(json!({"dst": "0.0.0.0/0"}));
    }
    if pod_cidrs.iter().any(|c| c.contains(':')) {
        routes.push(json!({"dst": "::/0"}));
    }
    json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": routes,
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
}

/// A conflist from a file's JSON: a `.conflist`, or a single-plugin
/// `.conf` wrapped into a list (libcni's ConfListFromConf).
pub fn parse_conf_file(name: &str, data: &[u8]) -> Result<Value, NetError> {
    let bad = |m: &str| NetError::Invalid(format!("CNI config {name}: {m}"));
    let v: Value = serde_json::from_slice(data).map_err(|e| bad(&e.to_string()))?;
    if !v.is_object() {
        return Err(bad("not a JSON object"));
    }
    let list = if v.get("plugins").is_some() {
        v
    } else {
        if v.get("type").and_then(Value::as_str).is_none() {
            return Err(bad("no plugins and no type"));
        }
        json!({
            "cniVersion": v.get("cniVersion").cloned().unwrap_or(json!("0.2.0")),
            "name": v.get("name").cloned().unwrap_or(json!("")),
            "plugins": [v],
        })
    };
    let plugins = list["plugins"]
        .as_array()
        .ok_or_else(|| bad("plugins is not a list"))?;
    if plugins.is_empty() || plugins.iter().any(|p| p["type"].as_str().is_none()) {
        return Err(bad("every plugin needs a type"));
    }
    if list["name"].as_str().is_none_or(str::is_empty) {
        return Err(bad("no network name"));
    }
    Ok(list)
}

/// The first valid configuration in `dir` (`*.conflist`, `*.conf`,
/// `*.json` by file name, like libcni), with its path.
pub fn user_conflist(dir: &Path) -> Option<(Value, PathBuf)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
        })
        .collect();
    files.sort();
    files.into_iter().find_map(|p| {
        let data = std::fs::read(&p).ok()?;
        match parse_conf_file(&p.to_string_lossy(), &data) {
            Ok(v) => Some((v, p)),
            Err(e) => {
                tracing::warn!(error = %e, "skipping CNI configuration");
                None
            }
        }
    })
}

/// `CNI_ARGS` the kubelet passes (containerd's form).
pub fn cni_args(namespace: &str, name: &str, sandbox_id: &str, uid: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={sandbox_id};K8S_POD_UID={uid}"
    )
}

/// The `portMappings` runtime config of a pod's `hostPort`s.
pub fn port_mappings(pod: &Pod) -> Vec<Value> {
    let mut out = Vec::new();
    let spec = pod.spec.as_ref();
    for c in spec.map(|s| s.containers.iter()).into_iter().flatten() {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            let mut m = json!({
                "hostPort": hp,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            });
            if let Some(ip) = p.host_ip.as_deref().filter(|i| !i.is_empty()) {
                m["hostIP"] = json!(ip);
            }
            out.push(m);
        }
    }
    out
}

/// The IPs of a CNI result (1.0/0.4/0.3 `ips`, or 0.2's `ip4`/`ip6`), in
/// order, without prefixes.
pub fn result_ips(result: &Value) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut add = |cidr: Option<&str>| {
        if let Some(ip) = cidr
            .and_then(|c| c.split('/').next())
            .and_then(|a| a.parse().ok())
        {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    };
    for ip in result["ips"].as_array().into_iter().flatten() {
        add(ip["address"].as_str());
    }
    add(result["ip4"]["ip"].as_str());
    add(result["ip6"]["ip"].as_str());
    out
}

/// `/etc/hosts` with the pod's own line (`IP\thostname`, like the
/// kubelet) after the managed entries and before any HostAliases.
pub fn hosts_with_pod_ips(hosts: &str, ips: &[IpAddr], hostname: &str) -> String {
    let lines: String = ips.iter().map(|ip| format!("{ip}\t{hostname}\n")).collect();
    if lines.is_empty() || hosts.contains(&lines) {
        return hosts.to_string();
    }
    match hosts.find("\n# Entries added by HostAliases.") {
        Some(i) => format!("{}{}{}", &hosts[..i], lines, &hosts[i..]),
        None => {
            let mut s = hosts.to_string();
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&lines);
            s
        }
    }
}

// ----------------------------------------------------------------------
// Running plugins.

/// Runs one CNI plugin binary.
pub trait PluginExec: Send + Sync {
    /// Run plugin `kind` with `env` and `stdin`; its stdout on success.
    fn exec(&self, kind: &str, env: &[(String, String)], stdin: &[u8])
        -> Result<Vec<u8>, NetError>;
    /// The `CNI_PATH` given to plugins (they may call each other).
    fn cni_path(&self) -> String;
}

/// Plugins from the first directory that has them.
pub struct RealExec {
    pub bin_dirs: Vec<PathBuf>,
}

impl PluginExec for RealExec {
    fn exec(
        &self,
        kind: &str,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<Vec<u8>, NetError> {
        use std::io::Write;
        let bin = self
            .bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| NetError::NotFound(kind.to_string(), self.bin_dirs.clone()))?;
        let mut child = Command::new(&bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("run {}", bin.display())))?;
        if let Some(mut i) = child.stdin.take() {
            // A plugin may exit before reading everything; its exit
            // status and output tell what went wrong.
            let _ = i.write_all(stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(io(format!("wait for {}", bin.display())))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(NetError::Invalid(plugin_error(&out.stdout, &out.stderr)))
    }

    fn cni_path(&self) -> String {
        let dirs: Vec<String> = self
            .bin_dirs
            .iter()
            .filter(|d| d.is_dir())
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        dirs.join(":")
    }
}

/// The message of a failed plugin: its JSON error (`msg; details`, as
/// libcni prints it), else whatever it wrote.
pub fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = v["msg"].as_str() {
            return match v["details"].as_str().filter(|d| !d.is_empty()) {
                Some(d) => format!("{msg}; {d}"),
                None => msg.to_string(),
            };
        }
    }
    let text = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
    let text = text.trim();
    if text.is_empty() {
        "plugin failed without a message".into()
    } else {
        text.to_string()
    }
}

/// What was given to the plugins for a sandbox, and what they answered:
/// enough to run DEL again with the same configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub conflist: Value,
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub cni_args: String,
    #[serde(default)]
    pub runtime_config: Value,
    /// The ADD result; None while ADD has not finished.
    #[serde(default)]
    pub result: Option<Value>,
    /// The loopback plugin was run too.
    #[serde(default)]
    pub loopback: bool,
}

impl Attachment {
    pub fn load(sandbox_dir: &Path) -> Option<Attachment> {
        let data = std::fs::read(sandbox_dir.join(ATTACHMENT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn save(&self, sandbox_dir: &Path) -> Result<(), NetError> {
        let p = sandbox_dir.join(ATTACHMENT_FILE);
        let data = serde_json::to_vec_pretty(self).map_err(|e| NetError::Invalid(e.to_string()))?;
        bosun_runtime::sandbox::write_atomic(&p, &data)
            .map_err(|e| NetError::Invalid(format!("saving {}: {e}", p.display())))
    }

    pub fn ips(&self) -> Vec<IpAddr> {
        self.result.as_ref().map(result_ips).unwrap_or_default()
    }
}

/// The configuration one plugin of a list gets (libcni's
/// buildOneConfig): name and version of the list, the previous result,
/// and the runtime config of the capabilities it declares.
pub fn plugin_config(
    list: &Value,
    plugin: &Value,
    prev: Option<&Value>,
    runtime_config: &Value,
) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    let mut rc = serde_json::Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (k, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(v) = runtime_config.get(k) {
                    rc.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if !rc.is_empty() {
        conf["runtimeConfig"] = Value::Object(rc);
    }
    conf
}

fn plugin_env(exec: &dyn PluginExec, op: &str, a: &Attachment) -> Vec<(String, String)> {
    vec![
        ("CNI_COMMAND".into(), op.into()),
        ("CNI_CONTAINERID".into(), a.container_id.clone()),
        ("CNI_NETNS".into(), a.netns.to_string_lossy().into_owned()),
        ("CNI_IFNAME".into(), a.ifname.clone()),
        ("CNI_ARGS".into(), a.cni_args.clone()),
        ("CNI_PATH".into(), exec.cni_path()),
    ]
}

fn loopback_list() -> Value {
    json!({"cniVersion": CNI_VERSION, "name": "cni-loopback", "plugins": [{"type": "loopback"}]})
}

/// ADD every plugin of the list in order; the last result.
pub fn add_list(exec: &dyn PluginExec, a: &Attachment, list: &Value) -> Result<Value, NetError> {
    let env = plugin_env(exec, "ADD", a);
    let mut prev: Option<Value> = None;
    for p in list["plugins"].as_array().into_iter().flatten() {
        let kind = p["type"].as_str().unwrap_or_default();
        let conf = plugin_config(list, p, prev.as_ref(), &a.runtime_config);
        let stdin = serde_json::to_vec(&conf).map_err(|e| NetError::Invalid(e.to_string()))?;
        let out = exec
            .exec(kind, &env, &stdin)
            .map_err(|e| NetError::Plugin {
                plugin: kind.into(),
                op: "add",
                msg: plain(e),
            })?;
        let v: Value = serde_json::from_slice(&out).map_err(|e| NetError::Plugin {
            plugin: kind.into(),
            op: "add",
            msg: format!("invalid result: {e}"),
        })?;
        prev = Some(v);
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// DEL every plugin of the list in reverse order with the cached result,
/// going on after a failure (to release what can be); the first error.
pub fn del_list(
    exec: &dyn PluginExec,
    a: &Attachment,
    list: &Value,
    result: Option<&Value>,
) -> Result<(), NetError> {
    let env = plugin_env(exec, "DEL", a);
    let mut first = None;
    let plugins: Vec<&Value> = list["plugins"].as_array().into_iter().flatten().collect();
    for p in plugins.into_iter().rev() {
        let kind = p["type"].as_str().unwrap_or_default();
        let conf = plugin_config(list, p, result, &a.runtime_config);
        let stdin = serde_json::to_vec(&conf).map_err(|e| NetError::Invalid(e.to_string()))?;
        if let Err(e) = exec.exec(kind, &env, &stdin) {
            first.get_or_insert(NetError::Plugin {
                plugin: kind.into(),
                op: "delete",
                msg: plain(e),
            });
        }
    }
    first.map_or(Ok(()), Err)
}

/// The message of an exec error without re-wrapping.
fn plain(e: NetError) -> String {
    match e {
        NetError::Invalid(m) => m,
        other => other.to_string(),
    }
}

// ----------------------------------------------------------------------
// The node's network.

/// A pod to attach.
#[derive(Debug, Clone)]
pub struct PodNet {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
    pub netns: PathBuf,
    pub sandbox_dir: PathBuf,
    pub port_mappings: Vec<Value>,
}

pub struct Network {
    pub settings: Settings,
    /// `<data-dir>/agent/cni`: our conflist and host-local's leases.
    pub state_dir: PathBuf,
    pub exec: Arc<dyn PluginExec>,
    pub routes: Arc<dyn RouteTable>,
    /// The Node's podCIDRs as last seen.
    pod_cidrs: watch::Sender<Vec<String>>,
}

impl Network {
    pub fn new(settings: Settings, agent_dir: &Path) -> Network {
        let exec = Arc::new(RealExec {
            bin_dirs: settings.bin_dirs.clone(),
        });
        Network::with(settings, agent_dir, exec, Arc::new(IpRoute))
    }

    pub fn with(
        settings: Settings,
        agent_dir: &Path,
        exec: Arc<dyn PluginExec>,
        routes: Arc<dyn RouteTable>,
    ) -> Network {
        Network {
            settings,
            state_dir: agent_dir.join("cni"),
            exec,
            routes,
            pod_cidrs: watch::channel(Vec::new()).0,
        }
    }

    pub fn set_pod_cidrs(&self, cidrs: Vec<String>) {
        self.pod_cidrs.send_if_modified(|c| {
            let changed = *c != cidrs;
            *c = cidrs;
            changed
        });
    }

    /// The podCIDRs in use: the Node's, else the configured fallback.
    pub fn pod_cidrs(&self) -> Vec<String> {
        let c = self.pod_cidrs.borrow().clone();
        if c.is_empty() {
            self.settings.pod_cidr.clone().into_iter().collect()
        } else {
            c
        }
    }

    /// Wait up to `timeout` until a network can be configured: the user
    /// has one, or the Node has its podCIDR.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), NetError> {
        if user_conflist(&self.settings.conf_dir).is_some() || !self.pod_cidrs().is_empty() {
            return Ok(());
        }
        let mut rx = self.pod_cidrs.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|c| !c.is_empty())).await;
        if self.pod_cidrs().is_empty() {
            return Err(NetError::NotReady(
                "cni plugin not initialized (the node has no podCIDR yet)".into(),
            ));
        }
        Ok(())
    }

    fn ipam_dir(&self) -> PathBuf {
        self.state_dir.join("ipam")
    }

    /// The network to attach pods to: the user's, else ours (written
    /// when it changed).
    pub fn conflist(&self) -> Result<Value, NetError> {
        if let Some((v, p)) = user_conflist(&self.settings.conf_dir) {
            tracing::debug!(path = %p.display(), "using the user's CNI configuration");
            return Ok(v);
        }
        let cidrs = self.pod_cidrs();
        if cidrs.is_empty() {
            return Err(NetError::NotReady("cni plugin not initialized".into()));
        }
        let v = default_conflist(&self.settings.bridge, &cidrs, &self.ipam_dir());
        let dir = self.state_dir.join("net.d");
        let path = dir.join(CONFLIST_FILE);
        let data = serde_json::to_vec_pretty(&v).map_err(|e| NetError::Invalid(e.to_string()))?;
        if std::fs::read(&path).ok().as_deref() != Some(&data[..]) {
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            bosun_runtime::sandbox::write_atomic(&path, &data)
                .map_err(|e| NetError::Invalid(format!("writing {}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), pod_cidrs = ?cidrs, "wrote the default CNI configuration");
        }
        Ok(v)
    }

    /// Attach a sandbox (CNI ADD); its IPs. Blocking. On failure what was
    /// set up is deleted again.
    pub fn setup(&self, pod: &PodNet) -> Result<Vec<IpAddr>, NetError> {
        let list = self.conflist()?;
        let mut a = Attachment {
            conflist: list.clone(),
            container_id: pod.sandbox_id.clone(),
            netns: pod.netns.clone(),
            ifname: "eth0".into(),
            cni_args: cni_args(&pod.namespace, &pod.name, &pod.sandbox_id, &pod.uid),
            runtime_config: json!({"portMappings": pod.port_mappings}),
            result: None,
            loopback: true,
        };
        // Saved first: an agent that dies during ADD can still DEL.
        a.save(&pod.sandbox_dir)?;
        let r = add_list(self.exec.as_ref(), &a, &loopback_list())
            .and_then(|_| add_list(self.exec.as_ref(), &a, &list));
        match r {
            Ok(result) => {
                a.result = Some(result);
                a.save(&pod.sandbox_dir)?;
                let ips = a.ips();
                if ips.is_empty() {
                    return Err(NetError::Invalid(
                        "the network plugin returned no IP address".into(),
                    ));
                }
                Ok(ips)
            }
            Err(e) => {
                if let Err(d) = self.teardown(&pod.sandbox_dir) {
                    tracing::warn!(error = %d, "cleaning up after a failed CNI ADD");
                }
                Err(e)
            }
        }
    }

    /// Detach a sandbox (CNI DEL with what ADD was given). Blocking; a
    /// no-op when it was never attached; the record goes once DEL worked.
    pub fn teardown(&self, sandbox_dir: &Path) -> Result<(), NetError> {
        let Some(a) = Attachment::load(sandbox_dir) else {
            return Ok(());
        };
        let mut r = del_list(self.exec.as_ref(), &a, &a.conflist, a.result.as_ref());
        if a.result.is_none() {
            // ADD never finished (it may not have started: e.g. a plugin
            // is missing): release what DEL could, never block teardown.
            if let Err(e) = r {
                tracing::warn!(error = %e, "CNI DEL after an unfinished ADD");
            }
            r = Ok(());
        }
        if a.loopback {
            // lo goes with the namespace anyway: its DEL can't fail the
            // teardown.
            let _ = del_list(self.exec.as_ref(), &a, &loopback_list(), None);
        }
        r?;
        match std::fs::remove_file(sandbox_dir.join(ATTACHMENT_FILE)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove network record")(e)),
        }
    }
}

// ----------------------------------------------------------------------
// Routes to the other nodes (host-gw).

/// A route we own: destination → gateway.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: String,
    pub via: String,
}

/// The host's routing table, restricted to routes we own.
pub trait RouteTable: Send + Sync {
    fn list(&self, v6: bool) -> Result<Vec<Route>, NetError>;
    fn replace(&self, r: &Route) -> Result<(), NetError>;
    fn delete(&self, dst: &str) -> Result<(), NetError>;
}

/// `ip route` with our `proto`.
pub struct IpRoute;

fn ip_cmd(args: &[&str]) -> Result<String, NetError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io("run ip"))?;
    if !out.status.success() {
        return Err(NetError::Invalid(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn family(dst: &str) -> &'static str {
    if dst.contains(':') {
        "-6"
    } else {
        "-4"
    }
}

impl RouteTable for IpRoute {
    fn list(&self, v6: bool) -> Result<Vec<Route>, NetError> {
        let fam = if v6 { "-6" } else { "-4" };
        let text = ip_cmd(&["-j", fam, "route", "show", "proto", ROUTE_PROTO])?;
        Ok(parse_ip_routes(&text))
    }

    fn replace(&self, r: &Route) -> Result<(), NetError> {
        ip_cmd(&[
            family(&r.dst),
            "route",
            "replace",
            &r.dst,
            "via",
            &r.via,
            "proto",
            ROUTE_PROTO,
        ])
        .map(|_| ())
    }

    fn delete(&self, dst: &str) -> Result<(), NetError> {
        ip_cmd(&[family(dst), "route", "del", dst, "proto", ROUTE_PROTO]).map(|_| ())
    }
}

/// Routes from `ip -j route show` output.
pub fn parse_ip_routes(text: &str) -> Vec<Route> {
    let v: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(Route {
                dst: r["dst"].as_str()?.to_string(),
                via: r["gateway"].as_str()?.to_string(),
            })
        })
        .collect()
}

/// A node as the route planner sees it.
#[derive(Debug, Clone)]
pub struct NodeAddr {
    pub name: String,
    pub internal_ips: Vec<String>,
    pub pod_cidrs: Vec<String>,
}

pub fn node_addr(n: &Node) -> NodeAddr {
    let internal_ips = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect();
    let spec = n.spec.as_ref();
    let mut pod_cidrs = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty() {
        pod_cidrs.extend(spec.and_then(|s| s.pod_cidr.clone()));
    }
    NodeAddr {
        name: n.metadata.name.clone().unwrap_or_default(),
        internal_ips,
        pod_cidrs,
    }
}

/// The routes this node should have: every other node's podCIDR (inside
/// the cluster CIDRs) via its InternalIP of the same family; a node at one
/// of our own addresses needs none.
pub fn desired_routes(
    me: &str,
    my_ips: &[String],
    nodes: &[NodeAddr],
    cluster: &[Cidr],
) -> BTreeMap<String, Route> {
    let mut out = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.name != me) {
        for c in n.pod_cidrs.iter().filter_map(|c| Cidr::parse(c)) {
            if !cluster.iter().any(|k| k.contains(&c)) {
                continue;
            }
            let via = n.internal_ips.iter().find(|ip| {
                ip.parse::<IpAddr>()
                    .is_ok_and(|a| a.is_ipv4() == c.addr.is_ipv4())
            });
            let Some(via) = via else { continue };
            if my_ips.contains(via) {
                continue;
            }
            out.insert(
                c.to_string(),
                Route {
                    dst: c.to_string(),
                    via: via.clone(),
                },
            );
        }
    }
    out
}

/// Make our routes inside the cluster CIDRs match `desired`: replace the
/// missing or different ones, delete the others. Errors are logged; the
/// next round retries.
pub fn reconcile_routes(
    table: &dyn RouteTable,
    desired: &BTreeMap<String, Route>,
    cluster: &[Cidr],
) {
    for v6 in [false, true] {
        if !cluster.iter().any(|c| c.addr.is_ipv6() == v6) {
            continue;
        }
        let current = match table.list(v6) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "listing routes");
                continue;
            }
        };
        for r in &current {
            let ours = Cidr::parse(&r.dst).is_some_and(|d| cluster.iter().any(|k| k.contains(&d)));
            if ours && !desired.contains_key(&r.dst) {
                match table.delete(&r.dst) {
                    Ok(()) => tracing::info!(dst = %r.dst, "removed route to a node pod CIDR"),
                    Err(e) => tracing::warn!(dst = %r.dst, error = %e, "removing route"),
                }
            }
        }
        for r in desired.values().filter(|r| r.dst.contains(':') == v6) {
            if current.contains(r) {
                continue;
            }
            match table.replace(r) {
                Ok(()) => tracing::info!(dst = %r.dst, via = %r.via, "route to a node pod CIDR"),
                Err(e) => tracing::warn!(dst = %r.dst, via = %r.via, error = %e, "adding route"),
            }
        }
    }
}

/// Watch the Nodes: publish our podCIDRs to `net` and keep host-gw
/// routes to the others. Runs until dropped.
pub async fn node_loop(client: Client, node_name: String, my_ip: String, net: Arc<Network>) {
    let cluster: Vec<Cidr> = net
        .settings
        .cluster_cidrs
        .iter()
        .filter_map(|c| Cidr::parse(c))
        .collect();
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut nodes: BTreeMap<String, NodeAddr> = BTreeMap::new();
    let mut listing: BTreeMap<String, NodeAddr> = BTreeMap::new();
    let mut synced = false;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Err(e) => {
                        tracing::debug!(error = %e, "node watch (will relist)");
                        continue;
                    }
                    Ok(Event::Init) => {
                        listing.clear();
                        continue;
                    }
                    Ok(Event::InitApply(n)) => {
                        let a = node_addr(&n);
                        listing.insert(a.name.clone(), a);
                        continue;
                    }
                    Ok(Event::InitDone) => {
                        nodes = std::mem::take(&mut listing);
                        synced = true;
                    }
                    Ok(Event::Apply(n)) => {
                        let a = node_addr(&n);
                        nodes.insert(a.name.clone(), a);
                    }
                    Ok(Event::Delete(n)) => {
                        nodes.remove(n.metadata.name.as_deref().unwrap_or_default());
                    }
                }
            }
            _ = tick.tick() => {}
        }
        if !synced {
            continue;
        }
        if let Some(me) = nodes.get(&node_name) {
            net.set_pod_cidrs(me.pod_cidrs.clone());
        }
        if !net.settings.routes || cluster.is_empty() {
            continue;
        }
        let list: Vec<NodeAddr> = nodes.values().cloned().collect();
        let desired = desired_routes(&node_name, std::slice::from_ref(&my_ip), &list, &cluster);
        let (n2, c2) = (net.clone(), cluster.clone());
        let _ = tokio::task::spawn_blocking(move || {
            reconcile_routes(n2.routes.as_ref(), &desired, &c2)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.42.3.9/16").unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert!(c.contains_ip(&"10.42.200.1".parse().unwrap()));
        assert!(!c.contains_ip(&"10.43.0.1".parse().unwrap()));
        assert!(c.contains(&Cidr::parse("10.42.1.0/24").unwrap()));
        assert!(!c.contains(&Cidr::parse("10.0.0.0/8").unwrap()));
        let v6 = Cidr::parse("fd00::/56").unwrap();
        assert!(v6.contains(&Cidr::parse("fd00:0:0:1::/64").unwrap()));
        assert!(!v6.contains_ip(&"10.42.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/40").is_none());
        assert!(Cidr::parse("nope").is_none());
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn default_route_and_local_addresses() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_gateway(route), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(default_gateway("Iface\n"), None);
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.42.0.1\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 192.0.2.2\n        /32 host LOCAL\n";
        assert_eq!(
            local_ipv4s(trie),
            vec![Ipv4Addr::new(10, 42, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
    }

    #[test]
    fn our_conflist() {
        let v = default_conflist("bosun0", &["10.42.0.0/24".into()], Path::new("/d/cni/ipam"));
        assert_eq!(v["name"], "bosun");
        assert_eq!(v["cniVersion"], "1.0.0");
        let b = &v["plugins"][0];
        assert_eq!(b["type"], "bridge");
        assert_eq!(b["bridge"], "bosun0");
        assert_eq!(b["isGateway"], true);
        assert_eq!(b["ipMasq"], true);
        assert_eq!(b["hairpinMode"], true);
        assert_eq!(b["ipam"]["type"], "host-local");
        assert_eq!(b["ipam"]["ranges"], json!([[{"subnet": "10.42.0.0/24"}]]));
        assert_eq!(b["ipam"]["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(b["ipam"]["dataDir"], "/d/cni/ipam");
        assert_eq!(v["plugins"][1]["type"], "portmap");
        assert_eq!(v["plugins"][1]["capabilities"]["portMappings"], true);
        // Dual-stack: one range set and one default route per family.
        let v = default_conflist(
            "b",
            &["10.42.0.0/24".into(), "fd00::/64".into()],
            Path::new("/x"),
        );
        let ipam = &v["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"].as_array().unwrap().len(), 2);
        assert_eq!(ipam["routes"][1]["dst"], "::/0");
        // It reads back as a valid list.
        parse_conf_file("ours", &serde_json::to_vec(&v).unwrap()).unwrap();
    }

    #[test]
    fn user_configurations() {
        let conf =
            br#"{"cniVersion":"0.4.0","name":"mynet","type":"ptp","ipam":{"type":"static"}}"#;
        let l = parse_conf_file("10-my.conf", conf).unwrap();
        assert_eq!(l["name"], "mynet");
        assert_eq!(l["cniVersion"], "0.4.0");
        assert_eq!(l["plugins"][0]["type"], "ptp");
        assert!(parse_conf_file("x", b"{").is_err());
        assert!(parse_conf_file("x", br#"{"name":"a","plugins":[{}]}"#).is_err());
        assert!(parse_conf_file("x", br#"{"plugins":[{"type":"bridge"}]}"#).is_err());

        let dir = tempfile::tempdir().unwrap();
        assert!(user_conflist(dir.path()).is_none());
        std::fs::write(dir.path().join("00-broken.conflist"), "{").unwrap();
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        std::fs::write(dir.path().join("20-b.conf"), conf).unwrap();
        std::fs::write(
            dir.path().join("10-a.conflist"),
            br#"{"cniVersion":"1.0.0","name":"first","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        let (v, p) = user_conflist(dir.path()).unwrap();
        assert_eq!(v["name"], "first");
        assert!(p.ends_with("10-a.conflist"));
    }

    #[test]
    fn args_ports_results_hosts() {
        assert_eq!(
            cni_args("ns", "web", "sb1", "u-1"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1"
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                    {"containerPort": 9000},
                ]},
            ]},
        }))
        .unwrap();
        assert_eq!(
            port_mappings(&pod),
            vec![
                json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
                json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}),
            ]
        );
        let r = json!({"cniVersion": "1.0.0", "ips": [
            {"address": "10.42.0.5/24", "gateway": "10.42.0.1", "interface": 2},
            {"address": "fd00::5/64", "interface": 2},
        ]});
        assert_eq!(
            result_ips(&r),
            vec![
                "10.42.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert_eq!(
            result_ips(&json!({"ip4": {"ip": "10.1.0.2/16"}})),
            vec!["10.1.0.2".parse::<IpAddr>().unwrap()]
        );
        assert!(result_ips(&json!({})).is_empty());

        let ip: Vec<IpAddr> = vec!["10.42.0.5".parse().unwrap()];
        let base = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n";
        let h = hosts_with_pod_ips(base, &ip, "web");
        assert_eq!(h, format!("{base}10.42.0.5\tweb\n"));
        // Idempotent.
        assert_eq!(hosts_with_pod_ips(&h, &ip, "web"), h);
        let aliased = format!("{base}\n# Entries added by HostAliases.\n1.2.3.4\tfoo\n");
        assert_eq!(
            hosts_with_pod_ips(&aliased, &ip, "web"),
            format!("{base}10.42.0.5\tweb\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\n")
        );
    }

    #[test]
    fn plugin_errors() {
        assert_eq!(
            plugin_error(
                br#"{"code":11,"msg":"failed to allocate","details":"range full"}"#,
                b""
            ),
            "failed to allocate; range full"
        );
        assert_eq!(plugin_error(br#"{"code":7,"msg":"bad"}"#, b""), "bad");
        assert_eq!(plugin_error(b"", b"panic: boom\n"), "panic: boom");
        assert_eq!(plugin_error(b"", b""), "plugin failed without a message");
    }

    /// Records calls; answers ADD with a result naming the plugin.
    #[derive(Default)]
    struct FakeExec {
        calls: Mutex<Vec<(String, String, Value)>>,
        fail: Option<&'static str>,
    }

    impl PluginExec for FakeExec {
        fn exec(
            &self,
            kind: &str,
            env: &[(String, String)],
            stdin: &[u8],
        ) -> Result<Vec<u8>, NetError> {
            let op = env
                .iter()
                .find(|(k, _)| k == "CNI_COMMAND")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let conf: Value = serde_json::from_slice(stdin).unwrap();
            self.calls
                .lock()
                .unwrap()
                .push((kind.to_string(), op.clone(), conf));
            if self.fail == Some(kind) && op == "ADD" {
                return Err(NetError::Invalid("failed to set bridge addr: boom".into()));
            }
            let r = json!({"cniVersion": "1.0.0", "by": kind,
                "ips": [{"address": "10.42.0.7/24", "gateway": "10.42.0.1"}]});
            Ok(serde_json::to_vec(&r).unwrap())
        }
        fn cni_path(&self) -> String {
            "/usr/lib/cni".into()
        }
    }

    fn net_with(exec: Arc<FakeExec>, dir: &Path) -> Network {
        let s = Settings {
            conf_dir: dir.join("etc-cni"),
            ..Settings::default()
        };
        Network::with(s, &dir.join("agent"), exec, Arc::new(FakeRoutes::default()))
    }

    fn pod_net(dir: &Path) -> PodNet {
        let sb = dir.join("sb");
        std::fs::create_dir_all(&sb).unwrap();
        PodNet {
            namespace: "ns".into(),
            name: "web".into(),
            uid: "u1".into(),
            sandbox_id: "u1".into(),
            netns: sb.join("netns"),
            sandbox_dir: sb,
            port_mappings: vec![json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})],
        }
    }

    #[test]
    fn add_then_del_replays_the_saved_config() {
        let dir = tempfile::tempdir().unwrap();
        let exec = Arc::new(FakeExec::default());
        let net = net_with(exec.clone(), dir.path());
        let pod = pod_net(dir.path());
        // No podCIDR yet: not ready.
        assert!(matches!(net.setup(&pod), Err(NetError::NotReady(_))));
        net.set_pod_cidrs(vec!["10.42.0.0/24".into()]);
        let ips = net.setup(&pod).unwrap();
        assert_eq!(ips, vec!["10.42.0.7".parse::<IpAddr>().unwrap()]);
        let ours = dir.path().join("agent/cni/net.d").join(CONFLIST_FILE);
        assert!(ours.exists(), "our conflist is written in the data dir");
        {
            let calls = exec.calls.lock().unwrap();
            let kinds: Vec<(&str, &str)> = calls
                .iter()
                .map(|(k, o, _)| (k.as_str(), o.as_str()))
                .collect();
            assert_eq!(
                kinds,
                [("loopback", "ADD"), ("bridge", "ADD"), ("portmap", "ADD")]
            );
            let bridge = &calls[1].2;
            assert_eq!(bridge["name"], "bosun");
            assert_eq!(bridge["cniVersion"], "1.0.0");
            assert!(bridge.get("prevResult").is_none());
            assert!(bridge.get("runtimeConfig").is_none());
            let portmap = &calls[2].2;
            assert_eq!(portmap["prevResult"]["by"], "bridge");
            assert_eq!(
                portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
                8080
            );
        }
        let saved = Attachment::load(&pod.sandbox_dir).unwrap();
        assert_eq!(saved.ips(), ips);
        assert!(saved.cni_args.contains("K8S_POD_UID=u1"));

        // A new agent (different settings, no podCIDR) replays DEL from
        // the record alone.
        exec.calls.lock().unwrap().clear();
        let net2 = net_with(exec.clone(), dir.path());
        net2.teardown(&pod.sandbox_dir).unwrap();
        let calls = exec.calls.lock().unwrap();
        let kinds: Vec<(&str, &str)> = calls
            .iter()
            .map(|(k, o, _)| (k.as_str(), o.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("portmap", "DEL"), ("bridge", "DEL"), ("loopback", "DEL")]
        );
        assert_eq!(calls[0].2["prevResult"]["by"], "portmap");
        assert_eq!(
            calls[0].2["runtimeConfig"]["portMappings"][0]["containerPort"],
            80
        );
        assert!(Attachment::load(&pod.sandbox_dir).is_none());
        drop(calls);
        // Again: nothing to do.
        net2.teardown(&pod.sandbox_dir).unwrap();
    }

    #[test]
    fn failed_add_reports_the_plugin_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let exec = Arc::new(FakeExec {
            fail: Some("bridge"),
            ..Default::default()
        });
        let net = net_with(exec.clone(), dir.path());
        net.set_pod_cidrs(vec!["10.42.0.0/24".into()]);
        let pod = pod_net(dir.path());
        let e = net.setup(&pod).unwrap_err().to_string();
        assert_eq!(
            e,
            "plugin type=\"bridge\" failed (add): failed to set bridge addr: boom"
        );
        let calls = exec.calls.lock().unwrap();
        assert!(calls.iter().any(|(k, o, _)| k == "bridge" && o == "DEL"));
        assert!(Attachment::load(&pod.sandbox_dir).is_none());
    }

    #[test]
    fn user_network_wins() {
        let dir = tempfile::tempdir().unwrap();
        let exec = Arc::new(FakeExec::default());
        let net = net_with(exec.clone(), dir.path());
        std::fs::create_dir_all(dir.path().join("etc-cni")).unwrap();
        std::fs::write(
            dir.path().join("etc-cni/10-x.conflist"),
            br#"{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        // Ready without a podCIDR, and ours is never written.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(net.wait_ready(Duration::from_millis(10)))
            .unwrap();
        net.setup(&pod_net(dir.path())).unwrap();
        assert!(!dir.path().join("agent/cni/net.d").exists());
        let calls = exec.calls.lock().unwrap();
        assert_eq!(calls[1].0, "ptp");
        assert_eq!(calls[1].2["name"], "mine");
    }

    #[test]
    fn fallback_pod_cidr_and_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let mut net = net_with(Arc::new(FakeExec::default()), dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(net.wait_ready(Duration::from_millis(10)))
            .unwrap_err();
        assert!(e.to_string().starts_with("network is not ready: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady"), "{e}");
        net.settings.pod_cidr = Some("10.42.9.0/24".into());
        assert_eq!(net.pod_cidrs(), vec!["10.42.9.0/24".to_string()]);
        net.set_pod_cidrs(vec!["10.42.1.0/24".into()]);
        assert_eq!(net.pod_cidrs(), vec!["10.42.1.0/24".to_string()]);
    }

    #[derive(Default)]
    struct FakeRoutes {
        table: Mutex<Vec<Route>>,
    }

    impl RouteTable for FakeRoutes {
        fn list(&self, v6: bool) -> Result<Vec<Route>, NetError> {
            Ok(self
                .table
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.dst.contains(':') == v6)
                .cloned()
                .collect())
        }
        fn replace(&self, r: &Route) -> Result<(), NetError> {
            let mut t = self.table.lock().unwrap();
            t.retain(|x| x.dst != r.dst);
            t.push(r.clone());
            Ok(())
        }
        fn delete(&self, dst: &str) -> Result<(), NetError> {
            self.table.lock().unwrap().retain(|x| x.dst != dst);
            Ok(())
        }
    }

    fn node(name: &str, ip: &str, cidr: &str) -> NodeAddr {
        NodeAddr {
            name: name.into(),
            internal_ips: vec![ip.into()],
            pod_cidrs: if cidr.is_empty() {
                vec![]
            } else {
                vec![cidr.into()]
            },
        }
    }

    fn r(dst: &str, via: &str) -> Route {
        Route {
            dst: dst.into(),
            via: via.into(),
        }
    }

    #[test]
    fn host_gw_routes() {
        let cluster = vec![Cidr::parse("10.42.0.0/16").unwrap()];
        let nodes = vec![
            node("a", "192.0.2.10", "10.42.0.0/24"),
            node("b", "192.0.2.11", "10.42.1.0/24"),
            node("c", "192.0.2.12", "10.42.2.0/24"),
            node("nocidr", "192.0.2.13", ""),
            // Outside the cluster CIDR: not ours to route.
            node("foreign", "192.0.2.14", "172.16.0.0/24"),
            // Shares our address (another node process on this host).
            node("same-host", "192.0.2.10", "10.42.3.0/24"),
            // An IPv6-only address can't carry an IPv4 subnet.
            node("v6", "fd00::1", "10.42.4.0/24"),
        ];
        let want = desired_routes("a", &["192.0.2.10".into()], &nodes, &cluster);
        let got: Vec<&Route> = want.values().collect();
        assert_eq!(
            got,
            vec![
                &r("10.42.1.0/24", "192.0.2.11"),
                &r("10.42.2.0/24", "192.0.2.12")
            ]
        );

        let table = FakeRoutes::default();
        table.table.lock().unwrap().extend([
            // Stale (node gone), wrong gateway, and someone else's.
            r("10.42.9.0/24", "192.0.2.99"),
            r("10.42.2.0/24", "192.0.2.50"),
            r("172.16.5.0/24", "192.0.2.1"),
        ]);
        reconcile_routes(&table, &want, &cluster);
        let mut t = table.table.lock().unwrap().clone();
        t.sort();
        assert_eq!(
            t,
            vec![
                r("10.42.1.0/24", "192.0.2.11"),
                r("10.42.2.0/24", "192.0.2.12"),
                r("172.16.5.0/24", "192.0.2.1"),
            ]
        );
        // A route that vanished (link flap) comes back.
        table
            .table
            .lock()
            .unwrap()
            .retain(|x| x.dst != "10.42.1.0/24");
        reconcile_routes(&table, &want, &cluster);
        assert!(table
            .table
            .lock()
            .unwrap()
            .contains(&r("10.42.1.0/24", "192.0.2.11")));
    }

    #[test]
    fn ip_json_routes() {
        let text = r#"[{"dst":"10.42.1.0/24","gateway":"192.0.2.11","dev":"eth0","protocol":"66","flags":[]},{"dst":"10.42.2.0/24","dev":"bosun0","flags":[]}]"#;
        assert_eq!(parse_ip_routes(text), vec![r("10.42.1.0/24", "192.0.2.11")]);
        assert!(parse_ip_routes("").is_empty());
    }
}
