//! A pod's `/etc/resolv.conf` from its `dnsPolicy` and `dnsConfig`, by the
//! kubelet's rules (pkg/kubelet/network/dns) and the layout containerd
//! writes (search, nameservers, options).

use k8s_openapi::api::core::v1::PodSpec;

/// The kubelet's limits (validation.MaxDNSNameservers and friends).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// The cluster DNS as the agent knows it (`--cluster-dns`,
/// `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// Empty: no cluster DNS; ClusterFirst pods get the host's (upstream
    /// does the same, with a MissingClusterDNS event).
    pub servers: Vec<String>,
    pub domain: String,
}

impl Default for ClusterDns {
    fn default() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.43.0.10".into()],
            domain: "cluster.local".into(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Conf {
    servers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

/// The nameservers, searches and options of a resolv.conf text; a later
/// `search`/`domain` line replaces an earlier one, like the libc.
fn parse(text: &str) -> Conf {
    let mut c = Conf::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => c.servers.extend(f.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                c.searches = f
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => c.options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    c
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Options by name (`ndots` of `ndots:5`), later ones replacing earlier
/// ones in place (upstream's mergeDNSOptions).
fn merge_options(base: Vec<String>, extra: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in base.into_iter().chain(extra) {
        let name = o.split(':').next().unwrap_or("").to_string();
        match out
            .iter_mut()
            .find(|x| x.split(':').next().unwrap_or("") == name)
        {
            Some(x) => *x = o,
            None => out.push(o),
        }
    }
    out
}

/// The resolv.conf of a pod in `namespace` with `spec`, given the host's
/// resolv.conf text and the cluster DNS.
pub fn resolv_conf(spec: &PodSpec, namespace: &str, host: &str, cluster: &ClusterDns) -> String {
    let host_net = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    // upstream getPodDNSType: ClusterFirst on the host network means the
    // host's resolvers; ClusterFirstWithHostNet is the cluster's anyway.
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_net,
        _ => false,
    } && !cluster.servers.is_empty();
    let mut c = match policy {
        "None" => Conf::default(),
        _ if cluster_first => {
            let h = parse(host);
            let mut searches = Vec::new();
            if !cluster.domain.is_empty() {
                let d = cluster.domain.trim_end_matches('.');
                searches = vec![format!("{namespace}.svc.{d}"), format!("svc.{d}"), d.into()];
            }
            searches.extend(h.searches);
            Conf {
                servers: cluster.servers.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => parse(host),
    };
    if let Some(dc) = &spec.dns_config {
        c.servers.extend(dc.nameservers.clone().unwrap_or_default());
        c.searches.extend(dc.searches.clone().unwrap_or_default());
        let extra: Vec<String> = dc
            .options
            .iter()
            .flatten()
            .filter(|o| !o.name.as_deref().unwrap_or("").is_empty())
            .map(|o| match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or("")),
                None => o.name.clone().unwrap_or_default(),
            })
            .collect();
        c.options = merge_options(c.options, extra);
    }
    c.servers = dedup(c.servers);
    c.servers.truncate(MAX_NAMESERVERS);
    c.searches = dedup(c.searches);
    // upstream formDNSSearchFitsLimits: at most 32 domains, 2048 chars.
    c.searches.truncate(MAX_SEARCHES);
    while c.searches.join(" ").len() > MAX_SEARCH_CHARS {
        c.searches.pop();
    }
    if c == Conf::default() {
        // containerd copies the host's file when given nothing.
        return host.to_string();
    }
    let mut out = String::new();
    if !c.searches.is_empty() {
        out.push_str(&format!("search {}\n", c.searches.join(" ")));
    }
    for s in &c.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !c.options.is_empty() {
        out.push_str(&format!("options {}\n", c.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example lab.example.\noptions edns0 ndots:2\n";

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(v).unwrap()
    }

    fn conf(v: serde_json::Value) -> String {
        resolv_conf(&spec(v), "shop", HOST, &ClusterDns::default())
    }

    #[test]
    fn cluster_first_is_the_default() {
        let want = "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n\
                    nameserver 10.43.0.10\noptions ndots:5\n";
        assert_eq!(conf(json!({})), want);
        assert_eq!(conf(json!({"dnsPolicy": "ClusterFirst"})), want);
        // With the host network, ClusterFirst means the host's resolvers…
        let host = "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 ndots:2\n";
        assert_eq!(conf(json!({"hostNetwork": true})), host);
        // …unless asked for ClusterFirstWithHostNet.
        assert_eq!(
            conf(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            want
        );
        // ClusterFirstWithHostNet without the host network is ClusterFirst.
        assert_eq!(conf(json!({"dnsPolicy": "ClusterFirstWithHostNet"})), want);
    }

    #[test]
    fn default_policy_is_the_hosts() {
        assert_eq!(
            conf(json!({"dnsPolicy": "Default"})),
            "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 ndots:2\n"
        );
        // Nothing parsed: the host's file as it is.
        let odd = "# nothing useful\n";
        assert_eq!(
            resolv_conf(
                &spec(json!({"dnsPolicy": "Default"})),
                "x",
                odd,
                &ClusterDns::default()
            ),
            odd
        );
    }

    #[test]
    fn no_cluster_dns_falls_back_to_the_host() {
        let none = ClusterDns {
            servers: vec![],
            domain: "cluster.local".into(),
        };
        assert_eq!(
            resolv_conf(&spec(json!({})), "shop", HOST, &none),
            "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 ndots:2\n"
        );
    }

    #[test]
    fn none_uses_only_dns_config() {
        let s = conf(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1", "192.0.2.1", "2001:db8::1"],
            "searches": ["a.example", "b.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}, {"name": ""}],
        }}));
        assert_eq!(
            s,
            "search a.example b.example\nnameserver 192.0.2.1\nnameserver 2001:db8::1\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn dns_config_merges_into_cluster_first() {
        let s = conf(json!({"dnsConfig": {
            "nameservers": ["192.0.2.1"],
            "searches": ["svc.cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}],
        }}));
        assert_eq!(
            s,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example extra.example\n\
             nameserver 10.43.0.10\nnameserver 192.0.2.1\noptions ndots:1 single-request-reopen\n"
        );
    }

    #[test]
    fn limits() {
        let servers: Vec<String> = (1..=5).map(|i| format!("192.0.2.{i}")).collect();
        let searches: Vec<String> = (0..40).map(|i| format!("s{i}.example")).collect();
        let s = conf(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": servers, "searches": searches}}));
        assert_eq!(s.matches("nameserver").count(), 3);
        let search = s.lines().next().unwrap();
        assert_eq!(search.split_whitespace().count(), 1 + 32);
        let long: Vec<String> = (0..30).map(|i| format!("{i}{}", "x".repeat(100))).collect();
        let s = conf(json!({"dnsPolicy": "None", "dnsConfig": {"searches": long}}));
        let search = s.lines().next().unwrap().trim_start_matches("search ");
        assert!(search.len() <= 2048);
        // 10 names of 101 characters, then 102: 19 fit with their spaces.
        assert_eq!(search.split(' ').count(), 19);
    }

    #[test]
    fn other_cluster_domain() {
        let c = ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "corp.internal.".into(),
        };
        assert_eq!(
            resolv_conf(&spec(json!({})), "default", "", &c),
            "search default.svc.corp.internal svc.corp.internal corp.internal\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }
}
