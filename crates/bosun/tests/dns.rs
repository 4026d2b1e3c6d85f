//! End-to-end test of the cluster DNS: `bosun server` publishes the
//! `kube-system/kube-dns` Service (the .10 of the service CIDR, no
//! selector) with its endpoint on the node; the server answers
//! `kubernetes.default.svc.cluster.local`, a headless StatefulSet service
//! (every pod, `db-0.db…` hostnames, SRV), ExternalName as a CNAME, and
//! NXDOMAIN for a missing name, over UDP and TCP from the host (127.0.0.1);
//! pods get the ClusterFirst resolv.conf and resolve through the node
//! address directly and through the kube-dns ClusterIP (the proxy's DNAT).
//! Real kubectl and containers (root + runc + CNI plugins + nft; a loud
//! SKIP elsewhere). Every name asked is inside the cluster zone, so
//! nothing is forwarded upstream; traffic only to loopback, this test's
//! pod network, the node's own address and this test's service range,
//! that last only once our nftables table holds the DNS rule.

#[path = "common/node.rs"]
mod node;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use node::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

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
        panic!("CI is set but the DNS test can't run: {why}");
    }
    eprintln!("*** SKIP: DNS test needs {why} ***");
    false
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

fn ask_udp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let q = query(name, t);
    s.send_to(&q, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no UDP answer for {name}: {e}"));
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
    m
}

fn ask_tcp(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let q = query(name, t);
    s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn apply(env: &Env, file: &str, yaml: &str) {
    let p = env.root.path().join(file);
    std::fs::write(&p, yaml).unwrap();
    env.ok(&["apply", "-f", p.to_str().unwrap()]);
}

fn exec(env: &Env, pod: &str, cmd: &str) -> Out {
    env.kubectl(&["exec", pod, "--", "sh", "-c", cmd])
}

fn nft_table(table: &str) -> String {
    Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn cluster_dns() {
    if !prerequisites_ok() {
        return;
    }
    let Some(env) = Env::start("dns", &["controllers"]) else {
        return;
    };
    let net = pod_network(env.root.path());
    let dns_ip = net.service_cidr().replace(".0/24", ".10");

    // The kube-dns Service at the .10 and its endpoint: this node.
    let svc = env.wait_for(Duration::from_secs(30), "kube-dns service", || {
        env.get_json(&["service", "kube-dns", "-n", "kube-system"])
    });
    assert_eq!(svc["spec"]["clusterIP"], dns_ip.as_str());
    assert!(svc["spec"]["selector"].is_null());
    assert_eq!(svc["metadata"]["labels"]["k8s-app"], "kube-dns");
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    let port = ports[0]["targetPort"].as_u64().unwrap() as u16;
    for (p, name, proto) in [(&ports[0], "dns", "UDP"), (&ports[1], "dns-tcp", "TCP")] {
        assert_eq!(
            (p["name"].as_str(), p["protocol"].as_str()),
            (Some(name), Some(proto))
        );
        assert_eq!(
            (p["port"].as_u64(), p["targetPort"].as_u64()),
            (Some(53), Some(port as u64))
        );
    }
    let node = env.get_json(&["node", &env.node]).unwrap();
    let node_ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .expect("node InternalIP")
        .to_string();
    let slice = env.wait_for(Duration::from_secs(30), "kube-dns EndpointSlice", || {
        env.get_json(&["endpointslice", "kube-dns", "-n", "kube-system"])
    });
    assert_eq!(slice["endpoints"][0]["addresses"][0], node_ip.as_str());
    assert_eq!(slice["ports"][0]["port"], port as u64);
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kube-dns"
    );
    let eps = env
        .get_json(&["endpoints", "kube-dns", "-n", "kube-system"])
        .expect("kube-dns Endpoints");
    assert_eq!(eps["subsets"][0]["addresses"][0]["ip"], node_ip.as_str());

    // A headless StatefulSet service, an ExternalName, a client pod.
    let image = env.image();
    apply(
        &env,
        "dns.yaml",
        &format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: pg, port: 5432, targetPort: 5432}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 2
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {image}
        command: ["sleep", "3600"]
---
apiVersion: v1
kind: Service
metadata: {{name: alias}}
spec:
  type: ExternalName
  externalName: kubernetes.default.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata: {{name: outside}}
spec:
  type: ExternalName
  externalName: db.example.org
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
        ),
    );
    let db0 = env.wait_phase("db-0", "Running", Duration::from_secs(90));
    let db1 = env.wait_phase("db-1", "Running", Duration::from_secs(90));
    env.wait_phase("client", "Running", Duration::from_secs(60));
    let ip0 = db0["status"]["podIP"].as_str().unwrap().to_string();
    let ip1 = db1["status"]["podIP"].as_str().unwrap().to_string();
    let mut both = vec![ip0.clone(), ip1.clone()];
    both.sort();
    let kubernetes_ip = env.get_json(&["service", "kubernetes"]).unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();

    // From the host, on loopback.
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let m = ask_udp(
        server,
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(addrs(&m), [kubernetes_ip.as_str()]);
    assert_eq!(m.answers[0].ttl, 5);
    let m = ask_tcp(
        server,
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addrs(&m), [kubernetes_ip.as_str()]);
    let m = ask_udp(
        server,
        "kube-dns.kube-system.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addrs(&m), [dns_ip.as_str()]);
    // Headless: every ready pod, within a few seconds of readiness.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = ask_udp(server, "db.default.svc.cluster.local.", RecordType::A);
        if addrs(&m) == both {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "headless answer {:?}, want {both:?}",
            addrs(&m)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = ask_udp(server, "db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(addrs(&m), [ip0.as_str()]);
    let m = ask_udp(
        server,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let mut srv: Vec<(String, u16)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.target.to_ascii(), s.port)),
            _ => None,
        })
        .collect();
    srv.sort();
    assert_eq!(
        srv,
        [
            ("db-0.db.default.svc.cluster.local.".to_string(), 5432),
            ("db-1.db.default.svc.cluster.local.".to_string(), 5432)
        ]
    );
    // ExternalName: a CNAME (resolved when inside the zone).
    let m = ask_udp(server, "alias.default.svc.cluster.local.", RecordType::A);
    assert!(
        matches!(&m.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "kubernetes.default.svc.cluster.local."),
        "{m:?}"
    );
    assert_eq!(addrs(&m), [kubernetes_ip.as_str()]);
    let m = ask_udp(
        server,
        "outside.default.svc.cluster.local.",
        RecordType::CNAME,
    );
    assert!(
        matches!(&m.answers[..], [r] if matches!(&r.data, RData::CNAME(c) if c.0.to_ascii() == "db.example.org.")),
        "{m:?}"
    );
    // Missing: NXDOMAIN with the SOA; existing without the type: empty.
    let m = ask_udp(server, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(m.authorities[0].data, RData::SOA(_)), "{m:?}");
    let m = ask_udp(
        server,
        "kubernetes.default.svc.cluster.local.",
        RecordType::TXT,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // A pod's resolv.conf: ClusterFirst.
    let o = exec(&env, "client", "cat /etc/resolv.conf");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines[0].starts_with("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{}",
        o.stdout
    );
    assert_eq!(lines[1], format!("nameserver {dns_ip}"), "{}", o.stdout);
    assert_eq!(lines.last(), Some(&"options ndots:5"), "{}", o.stdout);

    // From the pod to the node's address directly (busybox: SERVER:PORT).
    let direct = format!("{node_ip}:{port}");
    let o = exec(
        &env,
        "client",
        &format!("nslookup -type=a kubernetes.default.svc.cluster.local {direct}"),
    );
    assert!(
        o.stdout.contains(&kubernetes_ip),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    let o = exec(
        &env,
        "client",
        &format!("nslookup -type=a db.default.svc.cluster.local {direct}"),
    );
    assert!(
        o.stdout.contains(&ip0) && o.stdout.contains(&ip1),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    let o = exec(
        &env,
        "client",
        &format!("nslookup -type=a nope.default.svc.cluster.local {direct}"),
    );
    assert!(
        o.stdout.contains("NXDOMAIN") || o.stderr.contains("NXDOMAIN"),
        "{}\n{}",
        o.stdout,
        o.stderr
    );

    // Through the kube-dns ClusterIP, once our table DNATs it.
    let table = net.proxy_table();
    env.wait_for(
        Duration::from_secs(30),
        "the DNS rule in our nft table",
        || {
            let t = nft_table(&table);
            (t.contains(&dns_ip) && t.contains(&node_ip)).then_some(())
        },
    );
    let o = exec(
        &env,
        "client",
        "nslookup -type=a kubernetes.default.svc.cluster.local",
    );
    assert!(
        o.stdout.contains(&kubernetes_ip),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    let o = exec(
        &env,
        "client",
        "nslookup -type=a db-1.db.default.svc.cluster.local",
    );
    assert!(o.stdout.contains(&ip1), "{}\n{}", o.stdout, o.stderr);
}
