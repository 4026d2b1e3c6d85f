//! Raw watch streams: resuming from a resourceVersion, and 410 Expired when
//! the version has fallen out of the watch cache.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn watch_path(rv: u64) -> String {
    format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}")
}

fn summary(ev: &Value) -> (String, String) {
    (
        ev["type"].as_str().unwrap_or_default().to_string(),
        ev["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn watch_resumes_from_resource_version() {
    let Some(c) = Cluster::start() else { return };
    c.ok(&["create", "configmap", "r1", "--from-literal=a=1"]);
    let rv_r1 = rv_of(&c.get_json(&["cm", "r1"]));
    c.ok(&["create", "configmap", "r2"]);
    c.ok(&["patch", "configmap", "r1", "-p", r#"{"data":{"a":"2"}}"#]);
    c.ok(&["delete", "configmap", "r2"]);
    c.ok(&["create", "configmap", "r3"]);
    // Writes elsewhere must not show up in a namespaced configmap watch.
    c.ok(&["create", "secret", "generic", "noise"]);
    c.ok(&["create", "namespace", "elsewhere"]);
    c.ok(&["create", "configmap", "noise", "-n", "elsewhere"]);

    let w = c.spawn_kubectl_json(&["get", "--raw", &watch_path(rv_r1)]);
    let evs: Vec<Value> = (0..4).map(|_| w.next(20 * SEC)).collect();
    let got: Vec<(String, String)> = evs.iter().map(summary).collect();
    let want: Vec<(String, String)> = [
        ("ADDED", "r2"),
        ("MODIFIED", "r1"),
        ("DELETED", "r2"),
        ("ADDED", "r3"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "events after {rv_r1}: {evs:#?}");
    let mut last = rv_r1;
    for e in &evs {
        assert_eq!(
            e["object"]["kind"], "ConfigMap",
            "watch events carry kind: {e}"
        );
        assert_eq!(
            e["object"]["apiVersion"], "v1",
            "watch events carry apiVersion: {e}"
        );
        let rv = rv_of(&e["object"]);
        assert!(rv > last, "event RVs must increase: {rv} after {last}");
        last = rv;
    }
    assert_eq!(evs[1]["object"]["data"]["a"], "2");

    // Live events follow, and nothing was left out in between.
    c.ok(&["create", "configmap", "r4"]);
    let e = w.next(20 * SEC);
    assert_eq!(summary(&e), ("ADDED".to_string(), "r4".to_string()), "{e}");

    // Resuming from the RV of the modification yields only the later events.
    let rv_mod = rv_of(&evs[1]["object"]);
    let w2 = c.spawn_kubectl_json(&["get", "--raw", &watch_path(rv_mod)]);
    let got: Vec<(String, String)> = (0..3).map(|_| summary(&w2.next(20 * SEC))).collect();
    assert_eq!(
        got,
        [
            ("DELETED".to_string(), "r2".to_string()),
            ("ADDED".into(), "r3".into()),
            ("ADDED".into(), "r4".into())
        ]
    );
    w2.assert_quiet(Duration::from_millis(300));

    // Resuming from the latest version yields nothing until the next write.
    let w3 = c.spawn_kubectl_json(&["get", "--raw", &watch_path(rv_of(&e["object"]))]);
    w3.assert_quiet(Duration::from_millis(500));
    c.ok(&["delete", "configmap", "r4"]);
    assert_eq!(
        summary(&w3.next(20 * SEC)),
        ("DELETED".to_string(), "r4".to_string())
    );
    assert_eq!(
        summary(&w.next(20 * SEC)),
        ("DELETED".to_string(), "r4".to_string())
    );

    // Field-selected watch (what informers use) only sees that object.
    let w4 = c.spawn_kubectl_json(&[
        "get",
        "--raw",
        &format!("{}&fieldSelector=metadata.name%3Dr1", watch_path(rv_r1)),
    ]);
    let e = w4.next(20 * SEC);
    assert_eq!(
        summary(&e),
        ("MODIFIED".to_string(), "r1".to_string()),
        "{e}"
    );
    w4.assert_quiet(Duration::from_millis(300));
}

#[test]
fn watch_from_compacted_version_is_410_expired() {
    let Some(c) = Cluster::start_with(&["--watch-cache-size", "5"]) else {
        return;
    };
    c.ok(&["create", "configmap", "hot", "--from-literal=n=0"]);
    let first_rv = rv_of(&c.get_json(&["cm", "hot"]));
    let mut rv18 = 0;
    for i in 1..=20 {
        c.ok(&[
            "patch",
            "configmap",
            "hot",
            "--type=merge",
            "-p",
            &format!(r#"{{"data":{{"n":"{i}"}}}}"#),
        ]);
        if i == 18 {
            rv18 = rv_of(&c.get_json(&["cm", "hot"]));
        }
    }
    let latest = c.get_json(&["cm", "hot"]);
    assert_eq!(latest["data"]["n"], "20");
    let latest_rv = rv_of(&latest);
    assert!(latest_rv >= first_rv + 20);

    let mut w = c.spawn_kubectl_json(&["get", "--raw", &watch_path(first_rv)]);
    let e = w.next(20 * SEC);
    assert_eq!(e["type"], "ERROR", "{e}");
    let st = &e["object"];
    assert_eq!(st["kind"], "Status", "{e}");
    assert_eq!(st["apiVersion"], "v1", "{e}");
    assert_eq!(st["status"], "Failure", "{e}");
    assert_eq!(st["code"], 410, "{e}");
    assert_eq!(st["reason"], "Expired", "{e}");
    let msg = st["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(&format!("too old resource version: {first_rv} (")),
        "{msg}"
    );
    // The server ends the stream after the error.
    assert!(w.wait_exit(20 * SEC).success());
    assert!(w.drain().is_empty(), "nothing follows the ERROR event");

    // A version still inside the window resumes normally.
    let w2 = c.spawn_kubectl_json(&["get", "--raw", &watch_path(rv18)]);
    for want in ["19", "20"] {
        let e = w2.next(20 * SEC);
        assert_eq!(e["type"], "MODIFIED", "{e}");
        assert_eq!(e["object"]["data"]["n"], want, "{e}");
    }
    w2.assert_quiet(Duration::from_millis(300));

    // A list+watch client (kubectl get -w) still works: it lists first.
    let lw = c.spawn_kubectl_lines(&["get", "cm", "hot", "-w", "--output-watch-events"]);
    lw.until(20 * SEC, |l| cells(l).first() == Some(&"ADDED"));
    c.ok(&[
        "patch",
        "configmap",
        "hot",
        "--type=merge",
        "-p",
        r#"{"data":{"n":"21"}}"#,
    ]);
    let l = lw.next(20 * SEC);
    assert_eq!(&cells(&l)[..2], ["MODIFIED", "hot"]);
}
