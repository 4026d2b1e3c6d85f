//! End-to-end test of Services through the node agent's proxy (nftables):
//! a ClusterIP spreads over both pods of a Deployment (named targetPort),
//! session affinity sticks, a pod reaches itself through its service
//! (hairpin), a NodePort answers on 127.0.0.1, a service scaled to zero
//! refuses at once, and deleting services (and stopping the server)
//! removes the rules. Real kubectl against a real `bosun server` with
//! real containers (root + runc + CNI plugins + nft; a loud SKIP
//! elsewhere). Traffic only to loopback and to this test's pod network
//! and service range (`172.16.<x>.0/24`, DNATed by our own table), and
//! only once our table holds the rule for that address.

#[path = "common/node.rs"]
mod node;
use node::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

fn nft_table(table: &str) -> Option<String> {
    let o = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn prerequisites_ok() -> bool {
    let cni = ["/opt/cni/bin/bridge", "/usr/lib/cni/bridge"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    let nft = find_binary("nft").is_some();
    if cni && nft {
        return true;
    }
    let why = format!(
        "CNI plugins={cni} nft={nft} (apt-get install -y containernetworking-plugins nftables)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but the services test can't run: {why}");
    }
    eprintln!("*** SKIP: services test needs {why} ***");
    false
}

/// `wget` inside a pod; Some(body) on success, Err(output) otherwise.
fn fetch(env: &Env, pod: &str, url: &str) -> Result<String, String> {
    let o = env.kubectl(&[
        "exec",
        pod,
        "--",
        "sh",
        "-c",
        &format!("timeout 5 wget -qO- {url} 2>&1"),
    ]);
    if o.code == 0 {
        Ok(o.stdout.trim().to_string())
    } else {
        Err(format!("{}{}", o.stdout, o.stderr))
    }
}

fn http_get_local(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(3),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    // busybox httpd answers HTTP/1.1 even to 1.0 requests.
    head.lines()
        .next()
        .is_some_and(|l| l.starts_with("HTTP/1.") && l.contains(" 200"))
        .then(|| body.trim().to_string())
}

#[test]
fn services_through_nftables() {
    if !prerequisites_ok() {
        return;
    }
    let Some(mut env) = Env::start("services", &["controllers"]) else {
        return;
    };
    let net = pod_network(env.root.path());
    let table = net.proxy_table();
    let svc_prefix = format!("172.16.{}.", net.x);
    // Distinct per test network, so concurrent suites never share one.
    let node_port = 30000 + u16::from(net.x);
    env.wait_for(Duration::from_secs(30), "the proxy's table", || {
        nft_table(&table)
    });

    let image = env.image();
    let manifest = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {image}
        command: ["sh", "-c", "hostname > /var/www/name; exec httpd -f -p 8080 -h /var/www"]
        ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
"#
    );
    let mf = env.root.path().join("web.yaml");
    std::fs::write(&mf, manifest).unwrap();
    env.ok(&["apply", "-f", mf.to_str().unwrap()]);
    // A named targetPort: resolved per pod through the EndpointSlice.
    env.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=http",
    ]);
    let vip = env
        .ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .trim()
        .to_string();
    assert!(
        vip.starts_with(&svc_prefix),
        "ClusterIP {vip} not in the test's service CIDR {}",
        net.service_cidr()
    );
    env.wait_phase("client", "Running", Duration::from_secs(60));
    let names: BTreeSet<String> =
        env.wait_for(Duration::from_secs(60), "2 web pods Running", || {
            let v = env.get_json(&["pods", "-l", "app=web"])?;
            let items = v["items"].as_array()?;
            let running: BTreeSet<String> = items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                .collect();
            (running.len() == 2).then_some(running)
        });
    // Rules for both endpoints before any traffic to the ClusterIP.
    env.wait_for(Duration::from_secs(30), "DNAT rules of both pods", || {
        let t = nft_table(&table)?;
        (t.contains(&format!("{vip} . tcp . 80 : goto service-"))
            && t.matches("dnat to").count() >= 2)
            .then_some(())
    });

    // ClusterIP from another pod reaches both pods, each with its name.
    let url = format!("http://{vip}:80/name");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen != names {
        assert!(
            Instant::now() < deadline,
            "only reached {seen:?} of {names:?} through {url}\n{}",
            nft_table(&table).unwrap_or_default()
        );
        match fetch(&env, "client", &url) {
            Ok(body) => {
                assert!(
                    names.contains(&body),
                    "unexpected answer {body:?} from {url}"
                );
                seen.insert(body);
            }
            Err(e) => eprintln!("fetch {url}: {e}"),
        }
    }

    // Hairpin: a web pod reaches itself through its own service.
    for me in &names {
        let mut ok = false;
        for _ in 0..30 {
            match fetch(&env, me, &url) {
                Ok(body) => {
                    assert!(names.contains(&body), "unexpected answer {body:?}");
                    if &body == me {
                        ok = true;
                        break;
                    }
                }
                Err(e) => panic!("{me} → {url}: {e}"),
            }
        }
        assert!(ok, "{me} never reached itself through {url} (hairpin)");
    }

    // ClientIP affinity: every request of one client lands on one pod.
    env.ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}}}}"#,
    ]);
    env.wait_for(Duration::from_secs(10), "affinity sets", || {
        nft_table(&table)?.contains("set affinity-").then_some(())
    });
    let answers: BTreeSet<String> = (0..8)
        .map(|_| fetch(&env, "client", &url).expect("fetch with affinity"))
        .collect();
    assert_eq!(answers.len(), 1, "affinity did not stick: {answers:?}");

    // NodePort on 127.0.0.1 from the host.
    let np = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, nodePort: {node_port}}}]
"#
    );
    let npf = env.root.path().join("np.yaml");
    std::fs::write(&npf, np).unwrap();
    env.ok(&["apply", "-f", npf.to_str().unwrap()]);
    env.wait_for(Duration::from_secs(30), "NodePort rule", || {
        nft_table(&table)?
            .contains(&format!("tcp . {node_port} : goto external-"))
            .then_some(())
    });
    let mut np_seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while np_seen != names {
        assert!(
            Instant::now() < deadline,
            "NodePort 127.0.0.1:{node_port} reached only {np_seen:?}\n{}",
            env.server_log_tail(20)
        );
        if let Some(body) = http_get_local(node_port, "/name") {
            assert!(names.contains(&body), "unexpected NodePort answer {body:?}");
            np_seen.insert(body);
        }
    }

    // Scaled to zero: the ClusterIP and the NodePort refuse at once.
    env.ok(&["scale", "deployment", "web", "--replicas=0"]);
    env.wait_for(Duration::from_secs(60), "reject rules", || {
        let t = nft_table(&table)?;
        (t.contains(&format!("{vip} . tcp . 80 : goto reject-chain"))
            && t.contains(&format!("tcp . {node_port} : goto reject-chain")))
        .then_some(())
    });
    let started = Instant::now();
    let err = fetch(&env, "client", &url).expect_err("a service without endpoints answered");
    assert!(
        err.contains("refused") && started.elapsed() < Duration::from_secs(4),
        "expected a quick refusal, got {err:?} after {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let refused = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], node_port)),
        Duration::from_secs(3),
    );
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "NodePort without endpoints: {refused:?} after {:?}",
        started.elapsed()
    );

    // Deleted services leave no rules behind.
    env.ok(&["delete", "svc", "web", "web-np"]);
    env.wait_for(
        Duration::from_secs(10),
        "rules of deleted services gone",
        || {
            let t = nft_table(&table)?;
            (!t.contains(&vip) && !t.contains("default/web") && !t.contains(&node_port.to_string()))
                .then_some(())
        },
    );

    // A clean stop removes the table.
    if let Some(mut s) = env.server.take() {
        s.stop();
    }
    assert!(
        nft_table(&table).is_none(),
        "table {table} left after the server stopped"
    );
}
