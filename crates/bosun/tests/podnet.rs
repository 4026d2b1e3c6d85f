//! End-to-end test of the pod network on one node: node IPAM gives the
//! node a podCIDR, the agent attaches pods through the real CNI plugins
//! (bridge + host-local + loopback + portmap), pods reach each other by
//! pod IP, hostNetwork pods get the node IP, and deleting pods (also
//! after an agent restart) releases addresses and leaves no veth. Real
//! kubectl against a real `bosun server` (root + runc + CNI plugins; a
//! loud SKIP elsewhere). Traffic only between pods of this test and its
//! own bridge (cluster CIDR `10.<x>.0.0/16`, bridge `bsn<x>`). Cross-node
//! routes are unit-tested only (one node here).

#[path = "common/node.rs"]
mod node;
use node::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn cni_plugins() -> bool {
    ["/opt/cni/bin/bridge", "/usr/lib/cni/bridge"]
        .iter()
        .any(|p| Path::new(p).exists())
}

fn pod_ip(p: &Value) -> Option<String> {
    p["status"]["podIP"].as_str().map(str::to_string)
}

/// Interfaces enslaved to the test's bridge (the host ends of pod veths).
fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_string()))
        .collect()
}

fn leases(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("agent/cni/ipam/bosun"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pod_network_on_one_node() {
    if !cni_plugins() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but the CNI plugins are missing (apt-get install -y containernetworking-plugins)");
        }
        eprintln!("*** SKIP: needs containernetworking-plugins ***");
        return;
    }
    let Some(mut env) = Env::start("podnet", &["controllers"]) else {
        return;
    };
    let net = pod_network(env.root.path());
    let cluster = net.cluster_cidr();
    let prefix = format!("10.{}.", net.x);

    // Node IPAM: a /24 of the cluster CIDR in podCIDR and podCIDRs.
    let node = env.wait_for(Duration::from_secs(30), "node podCIDR", || {
        env.get_json(&["node", &env.node])
            .filter(|n| n["spec"]["podCIDR"].is_string())
    });
    let pod_cidr = node["spec"]["podCIDR"].as_str().unwrap().to_string();
    assert!(
        pod_cidr.starts_with(&prefix) && pod_cidr.ends_with(".0/24"),
        "{pod_cidr} not a /24 of {cluster}"
    );
    assert_eq!(node["spec"]["podCIDRs"], serde_json::json!([pod_cidr]));
    let subnet = pod_cidr.trim_end_matches("0/24").to_string();
    let node_ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .expect("node InternalIP")
        .to_string();
    assert!(
        !node_ip.starts_with(&prefix),
        "node IP {node_ip} is our bridge's"
    );

    let image = env.image();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: c
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
---
apiVersion: v1
kind: Pod
metadata: {{name: idle}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
"#
    );
    let mf = env.root.path().join("pods.yaml");
    std::fs::write(&mf, manifest).unwrap();
    env.ok(&["apply", "-f", mf.to_str().unwrap()]);
    let web = env.wait_phase("web", "Running", Duration::from_secs(60));
    let idle = env.wait_phase("idle", "Running", Duration::from_secs(60));
    let hostnet = env.wait_phase("hostnet", "Running", Duration::from_secs(60));
    let web_ip = pod_ip(&web).expect("web podIP");
    let idle_ip = pod_ip(&idle).expect("idle podIP");
    assert!(web_ip.starts_with(&subnet), "{web_ip} not in {pod_cidr}");
    assert!(idle_ip.starts_with(&subnet), "{idle_ip} not in {pod_cidr}");
    assert_ne!(web_ip, idle_ip);
    assert_eq!(web["status"]["podIPs"], serde_json::json!([{"ip": web_ip}]));
    assert_eq!(pod_ip(&hostnet).as_deref(), Some(node_ip.as_str()));
    let wide = env.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains(&web_ip) && wide.contains(&idle_ip),
        "kubectl get pods -o wide:\n{wide}"
    );
    // host-local leases under the agent's data dir; one veth per pod.
    let mut l = leases(&env.data);
    l.sort();
    let mut want = vec![web_ip.clone(), idle_ip.clone()];
    want.sort();
    assert_eq!(l, want);
    assert_eq!(bridge_ports(&net.bridge()).len(), 2);

    // Pod to pod by IP; the client also shows its /etc/hosts.
    let client = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "cat /etc/hosts; echo ---; timeout 10 wget -qO- http://{web_ip}:8080/"]
"#
    );
    let cf = env.root.path().join("client.yaml");
    std::fs::write(&cf, client).unwrap();
    env.ok(&["apply", "-f", cf.to_str().unwrap()]);
    let done = env.wait_for(Duration::from_secs(60), "client finished", || {
        env.pod("client")
            .filter(|p| p["status"]["phase"] == "Succeeded" || p["status"]["phase"] == "Failed")
    });
    let log = env.ok(&["logs", "client"]);
    assert_eq!(
        done["status"]["phase"],
        "Succeeded",
        "client failed: {log}\n{}",
        env.server_log_tail(40)
    );
    let (hosts, body) = log.split_once("---\n").expect("log separator");
    assert_eq!(body, bosun_images::testimage::BUSYBOX_INDEX_HTML);
    let client_ip = pod_ip(&done).expect("client podIP");
    assert!(
        hosts.contains(&format!("{client_ip}\tclient\n")),
        "/etc/hosts lacks the pod's line:\n{hosts}"
    );
    // A finished pod's sandbox is torn down: its address is released.
    env.wait_for(Duration::from_secs(20), "client lease released", || {
        (!leases(&env.data).contains(&client_ip)).then_some(())
    });

    // DEL is replayed after an agent restart: restart the server (with
    // its agent), then delete a pod it started before.
    env.server.as_mut().unwrap().stop();
    let s = start_server(
        env.root.path(),
        &env.data,
        &env.node,
        env.server_port,
        &["controllers"],
    );
    env.server = Some(s);
    env.wait_phase("idle", "Running", Duration::from_secs(30));
    let again = env.pod("web").expect("web");
    assert_eq!(pod_ip(&again).as_deref(), Some(web_ip.as_str()));
    env.ok(&[
        "delete",
        "pod",
        "idle",
        "web",
        "hostnet",
        "client",
        "--wait=true",
    ]);
    env.wait_for(Duration::from_secs(30), "addresses released", || {
        leases(&env.data).is_empty().then_some(())
    });
    env.wait_for(Duration::from_secs(10), "no veth left", || {
        bridge_ports(&net.bridge()).is_empty().then_some(())
    });
    assert!(
        std::fs::read_dir(env.data.join("agent/runtime/sandboxes"))
            .map(|rd| rd.count())
            .unwrap_or(0)
            == 0,
        "sandboxes left"
    );
    // No CNI chains of ours left in the nat table.
    let rules = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for ip in [&web_ip, &idle_ip, &client_ip] {
        assert!(
            !rules.contains(&format!("{ip}/32")),
            "iptables rules for {ip} left:\n{rules}"
        );
    }
}
