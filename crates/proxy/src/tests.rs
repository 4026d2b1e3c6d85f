//! Golden tests of the rendered ruleset (`BLESS=1` rewrites the files in
//! `src/testdata`), plus the model's endpoint selection.

use crate::model::{self, Protocol};
use crate::render::{self, Options};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

const NODE: &str = "node-a";

fn svc(ns: &str, name: &str, ip: &str, spec: Value) -> Service {
    let mut s = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    });
    s["spec"]["clusterIP"] = json!(ip);
    serde_json::from_value(s).expect("service")
}

/// `eps`: (ip, node, ready, serving, terminating)
fn slice(
    ns: &str,
    svc: &str,
    suffix: &str,
    ports: Value,
    eps: &[(&str, &str, bool, bool, bool)],
) -> EndpointSlice {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, node, ready, serving, terminating)| {
            json!({
                "addresses": [ip],
                "nodeName": node,
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-{suffix}"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("slice")
}

fn opts() -> Options {
    Options {
        table: "bosun".into(),
        cluster_cidrs: vec!["10.42.0.0/16".into()],
        node_ips: vec!["192.168.1.10".parse().expect("ip")],
        masquerade_all: false,
    }
}

fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/testdata")
        .join(format!("{name}.nft"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BLESS=1)", path.display()));
    assert_eq!(
        got,
        want,
        "rendered ruleset differs from {} (BLESS=1 to accept)",
        path.display()
    );
}

fn render(svcs: &[Service], slices: &[EndpointSlice], o: &Options) -> String {
    let ports = model::service_ports(svcs, slices, NODE);
    render::render(o, &ports)
}

#[test]
fn empty_cluster() {
    golden("empty", &render(&[], &[], &opts()));
}

#[test]
fn several_services_named_ports_and_udp() {
    let web = svc(
        "default",
        "web",
        "10.43.0.20",
        json!({"ports": [
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
        ]}),
    );
    let web_sl = slice(
        "default",
        "web",
        "abc",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"},
               {"name": "metrics", "port": 9090, "protocol": "TCP"}]),
        &[
            ("10.42.0.5", NODE, true, true, false),
            ("10.42.1.7", "node-b", true, true, false),
            // Not ready: never a target.
            ("10.42.0.9", NODE, false, false, false),
        ],
    );
    let dns = svc(
        "kube-system",
        "dns",
        "10.43.0.10",
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}),
    );
    let dns_sl = slice(
        "kube-system",
        "dns",
        "x",
        json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]),
        &[("10.42.0.3", NODE, true, true, false)],
    );
    let out = render(&[web, dns], &[web_sl, dns_sl], &opts());
    golden("several", &out);
    assert!(out.contains("10.43.0.20 . tcp . 80 : goto service-"));
    assert!(out.contains("meta l4proto tcp dnat to 10.42.1.7:8080"));
    assert!(out.contains("meta l4proto udp dnat to 10.42.0.3:5353"));
    assert!(!out.contains("10.42.0.9"));
}

#[test]
fn no_endpoints_reject_and_nodeport() {
    let s = svc(
        "default",
        "empty",
        "10.43.0.30",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080, "targetPort": 8080}]}),
    );
    let sl = slice("default", "empty", "p", json!([]), &[]);
    let out = render(&[s], &[sl], &opts());
    golden("no-endpoints", &out);
    assert!(out.contains("10.43.0.30 . tcp . 80 : goto reject-chain"));
    assert!(out.contains("tcp . 30080 : goto reject-chain"));
    assert!(!out.contains("default/empty/tcp/80 {"), "no service chain");
}

#[test]
fn session_affinity() {
    let s = svc(
        "default",
        "sticky",
        "10.43.0.40",
        json!({"sessionAffinity": "ClientIP",
               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
               "ports": [{"port": 80, "targetPort": 8080}]}),
    );
    let sl = slice(
        "default",
        "sticky",
        "p",
        json!([{"port": 8080, "protocol": "TCP"}]),
        &[
            ("10.42.0.5", NODE, true, true, false),
            ("10.42.0.6", NODE, true, true, false),
        ],
    );
    let out = render(&[s], &[sl], &opts());
    golden("affinity", &out);
    assert!(out.contains("timeout 60s"));
    assert_eq!(out.matches("update @affinity-").count(), 2);
}

#[test]
fn local_traffic_policies() {
    let s = svc(
        "default",
        "local",
        "10.43.0.50",
        json!({"type": "NodePort", "internalTrafficPolicy": "Local",
               "externalTrafficPolicy": "Local",
               "ports": [{"port": 80, "nodePort": 30050, "targetPort": 8080}]}),
    );
    let sl = slice(
        "default",
        "local",
        "p",
        json!([{"port": 8080, "protocol": "TCP"}]),
        &[
            ("10.42.0.5", NODE, true, true, false),
            ("10.42.1.5", "node-b", true, true, false),
        ],
    );
    // Only remote endpoints: ClusterIP traffic is dropped, external
    // NodePort traffic too, the host may still use any endpoint.
    let remote_only = svc(
        "default",
        "remote",
        "10.43.0.51",
        json!({"type": "NodePort", "internalTrafficPolicy": "Local",
               "externalTrafficPolicy": "Local",
               "ports": [{"port": 80, "nodePort": 30051, "targetPort": 8080}]}),
    );
    let sl2 = slice(
        "default",
        "remote",
        "p",
        json!([{"port": 8080, "protocol": "TCP"}]),
        &[("10.42.1.6", "node-b", true, true, false)],
    );
    let out = render(&[s, remote_only], &[sl, sl2], &opts());
    golden("local-policies", &out);
    assert!(out.contains("10.43.0.51 . tcp . 80 : drop"));
    let ports = model::service_ports(
        &[svc(
            "default",
            "local",
            "10.43.0.50",
            json!({"internalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
        )],
        &[slice(
            "default",
            "local",
            "p",
            json!([{"port": 8080, "protocol": "TCP"}]),
            &[
                ("10.42.0.5", NODE, true, true, false),
                ("10.42.1.5", "node-b", true, true, false),
            ],
        )],
        NODE,
    );
    let local: Vec<String> = ports[0]
        .cluster_endpoints()
        .iter()
        .map(|e| e.ip.to_string())
        .collect();
    assert_eq!(local, vec!["10.42.0.5"]);
}

#[test]
fn terminating_fallback_and_skipped_services() {
    let s = svc(
        "default",
        "term",
        "10.43.0.60",
        json!({"ports": [{"port": 80, "targetPort": 8080}]}),
    );
    let sl = slice(
        "default",
        "term",
        "p",
        json!([{"port": 8080, "protocol": "TCP"}]),
        &[
            ("10.42.0.5", NODE, false, true, true),
            ("10.42.0.6", NODE, false, false, true),
        ],
    );
    let headless = svc("default", "hl", "None", json!({"ports": [{"port": 80}]}));
    let sctp = svc(
        "default",
        "sctp",
        "10.43.0.61",
        json!({"ports": [{"port": 80, "protocol": "SCTP"}]}),
    );
    let ports = model::service_ports(&[s, headless, sctp], &[sl], NODE);
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].protocol, Protocol::Tcp);
    let ips: Vec<String> = ports[0]
        .endpoints
        .iter()
        .map(|e| e.ip.to_string())
        .collect();
    assert_eq!(ips, vec!["10.42.0.5"], "serving terminating endpoint only");
}

#[test]
fn masquerade_all_and_node_ips() {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
        "status": {"addresses": [
            {"type": "Hostname", "address": "a"},
            {"type": "InternalIP", "address": "192.168.1.10"},
            {"type": "InternalIP", "address": "fd00::1"},
        ]},
    }))
    .expect("node");
    assert_eq!(
        model::node_ips(Some(&node)),
        vec!["192.168.1.10".parse::<std::net::Ipv4Addr>().expect("ip")]
    );
    let s = svc(
        "default",
        "web",
        "10.43.0.20",
        json!({"ports": [{"port": 80, "targetPort": 8080}]}),
    );
    let sl = slice(
        "default",
        "web",
        "p",
        json!([{"port": 8080, "protocol": "TCP"}]),
        &[("10.42.0.5", NODE, true, true, false)],
    );
    let mut o = opts();
    o.masquerade_all = true;
    let out = render(&[s], &[sl], &o);
    assert!(out.contains("ip daddr 10.43.0.20 tcp dport 80 jump mark-for-masquerade"));
}

#[test]
fn table_names() {
    assert!(crate::validate_table("bosun").is_ok());
    assert!(crate::validate_table("bsn123").is_ok());
    assert!(crate::validate_table("x; flush ruleset").is_err());
    assert!(crate::validate_table("").is_err());
    assert_eq!(
        render::render_delete("bsn1"),
        "add table ip bsn1\ndelete table ip bsn1\n"
    );
}

/// The rendered scripts are valid nft (checked with `nft -c`, which
/// needs root: skipped elsewhere).
#[test]
fn goldens_pass_nft_check() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root
        || std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("SKIP: nft -c needs root and nft");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testdata");
    for e in std::fs::read_dir(dir).expect("testdata").flatten() {
        let out = std::process::Command::new("nft")
            .args(["-c", "-f"])
            .arg(e.path())
            .output()
            .expect("nft");
        assert!(
            out.status.success(),
            "{}: {}",
            e.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Figures for the benchmark: render and `nft -c` (check only,
/// no kernel change) of 1,000 services × 10 endpoints. Run with
/// `cargo test -p bosun-proxy --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_render_1000_services() {
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..1000u32 {
        let name = format!("s{i}");
        let ip = format!("10.43.{}.{}", i / 250, i % 250 + 2);
        svcs.push(svc(
            "default",
            &name,
            &ip,
            json!({"ports": [{"port": 80, "targetPort": 8080}]}),
        ));
        let eps: Vec<String> = (0..10)
            .map(|e| format!("10.42.{}.{}", (i * 10 + e) / 250, (i * 10 + e) % 250 + 2))
            .collect();
        let eps: Vec<(&str, &str, bool, bool, bool)> = eps
            .iter()
            .map(|ip| (ip.as_str(), NODE, true, true, false))
            .collect();
        slices.push(slice(
            "default",
            &name,
            "p",
            json!([{"port": 8080, "protocol": "TCP"}]),
            &eps,
        ));
    }
    let started = std::time::Instant::now();
    let out = render(&svcs, &slices, &opts());
    eprintln!(
        "render: {:?}, {} bytes, {} lines",
        started.elapsed(),
        out.len(),
        out.lines().count()
    );
    let path = std::env::temp_dir().join(format!("bosun-proxy-bench-{}.nft", std::process::id()));
    std::fs::write(&path, &out).expect("write");
    let started = std::time::Instant::now();
    let st = std::process::Command::new("nft")
        .args(["-c", "-f"])
        .arg(&path)
        .status();
    eprintln!("nft -c: {:?} ({st:?})", started.elapsed());
    let _ = std::fs::remove_file(&path);
}
