//! Durability across restarts: a clean SIGTERM restart and a SIGKILL crash.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn restart_keeps_everything() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    let first_port = c.port;
    c.ok(&["create", "namespace", "keep"]);
    c.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    c.ok(&[
        "create",
        "configmap",
        "inns",
        "-n",
        "keep",
        "--from-literal=x=y",
    ]);
    c.ok(&["create", "secret", "generic", "sec", "--from-literal=p=q"]);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
    ]);
    c.ok(&["label", "cm", "cfg", "tier=fe"]);
    c.ok(&["create", "configmap", "doomed"]);
    c.ok(&["delete", "configmap", "doomed"]);

    let snapshot = |c: &Cluster| -> Vec<Value> {
        vec![
            c.get_json(&["ns", "keep"]),
            c.get_json(&["cm", "cfg"]),
            c.get_json(&["cm", "inns", "-n", "keep"]),
            c.get_json(&["secret", "sec"]),
            c.get_json(&["deploy", "web"]),
        ]
    };
    let before = snapshot(&c);
    let list_before: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]))
            .expect("list");
    let max_rv = rv_of(&list_before).max(before.iter().map(rv_of).max().unwrap_or(0));

    let st = c.stop_term();
    assert!(
        st.success(),
        "server should exit cleanly on SIGTERM, got {st}"
    );
    c.restart();
    assert_eq!(
        c.port, first_port,
        "restart should reuse the port (it was free)"
    );

    let after = snapshot(&c);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a, b, "object changed across restart");
    }
    c.fails(&["get", "cm", "doomed"]);
    assert_eq!(
        c.get_json(&["cm", "cfg"])["data"],
        json!({"a": "1", "b": "2"})
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    // The system namespaces are not duplicated or reset.
    assert_eq!(
        names(&c.ok(&["get", "ns"])),
        [
            "default",
            "keep",
            "kube-node-lease",
            "kube-public",
            "kube-system"
        ]
    );

    // The list resourceVersion did not go backwards.
    let list_after: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]))
            .expect("list");
    assert!(
        rv_of(&list_after) >= rv_of(&list_before),
        "list RV went backwards: {} < {}",
        rv_of(&list_after),
        rv_of(&list_before)
    );

    // A new write gets a larger resourceVersion than anything before.
    c.ok(&["create", "configmap", "new"]);
    let n = c.get_json(&["cm", "new"]);
    assert!(
        rv_of(&n) > max_rv,
        "new write RV {} is not above the pre-restart max {max_rv}",
        rv_of(&n)
    );
    c.ok(&["label", "cm", "cfg", "after=restart"]);
    let cfg = c.get_json(&["cm", "cfg"]);
    assert!(rv_of(&cfg) > rv_of(&n));
    assert_eq!(cfg["metadata"]["uid"], before[1]["metadata"]["uid"]);
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kubeconfig = c.kubeconfig();
    let home = c.home.clone();

    let writer = {
        let acked = acked.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut failures = 0;
            for i in 0..400 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) || failures >= 3 {
                    break;
                }
                let name = format!("dur-{i:03}");
                let mut cmd = std::process::Command::new(KUBECTL);
                cmd.args([
                    "create",
                    "configmap",
                    &name,
                    &format!("--from-literal=i={i}"),
                    "--request-timeout=5s",
                ])
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home);
                let o = run_command(cmd, "kubectl create configmap");
                if o.ok() && o.stdout == format!("configmap/{name} created\n") {
                    acked.lock().unwrap().push(name);
                } else {
                    failures += 1;
                }
            }
        })
    };

    // Kill the server once some writes were acknowledged, while the loop runs.
    eventually(Duration::from_secs(60), "8 acknowledged creates", || {
        (acked.lock().unwrap().len() >= 8).then_some(())
    });
    c.kill9();
    writer.join().expect("writer thread");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 8);

    c.restart();
    let list: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]))
            .expect("list");
    let present: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|n| !present.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged configmaps lost after SIGKILL: {missing:?} (acked {}, present {present:?})",
        acked.len()
    );
    for item in list["items"].as_array().expect("items") {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        if let Some(i) = name.strip_prefix("dur-") {
            let i: u32 = i.parse().expect("index");
            assert_eq!(item["data"], json!({"i": i.to_string()}), "{item}");
        }
    }
    // The store is usable after the crash: writes continue with larger versions.
    let max_rv = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(rv_of)
        .max()
        .unwrap_or(0);
    c.ok(&["create", "configmap", "after-crash"]);
    assert!(rv_of(&c.get_json(&["cm", "after-crash"])) > max_rv);
}
