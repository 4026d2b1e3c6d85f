//! End-to-end test of probes, lifecycle hooks and termination messages:
//! real kubectl against a real `bosun server` running busybox containers
//! (root + runc; a loud SKIP elsewhere, a failure in CI).

#[path = "common/node.rs"]
mod node;
use node::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn cstatus(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

fn condition(p: &Value, t: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// `reason: message` of the events of pod `name`.
fn events(env: &Env, name: &str) -> Vec<String> {
    let Some(list) = env.get_json(&["events"]) else {
        return Vec::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[track_caller]
fn wait_event(env: &Env, pod: &str, want: &str) {
    env.wait_for(
        Duration::from_secs(60),
        &format!("event {want:?} of {pod}"),
        || events(env, pod).into_iter().find(|e| e.contains(want)),
    );
}

#[test]
fn probes_and_hooks() {
    let Some(env) = Env::start("probes", &[]) else {
        return;
    };
    let image = env.image();
    let host_dir = env.root.path().join("hostout");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c"]
    args:
    - |
      touch /tmp/healthy
      trap 'if [ -f /tmp/prestop ]; then echo -n saw-prestop > /dev/termination-log; fi; exit 0' TERM
      (sleep 3; rm /tmp/healthy) &
      while true; do sleep 0.2; done
    livenessProbe:
      exec: {{command: [cat, /tmp/healthy]}}
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 5
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, "touch /tmp/prestop"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: c
    image: {image}
    ports: [{{name: http, containerPort: 8080}}]
    command: ["sh", "-c"]
    args:
    - |
      mkdir -p /www; echo ok > /www/healthz
      httpd -f -p 8080 -h /www &
      while true; do echo ok > /www/ready; sleep 4; rm -f /www/ready; sleep 4; done
    readinessProbe:
      httpGet: {{path: /ready, port: http, httpHeaders: [{{name: X-Test, value: "1"}}]}}
      periodSeconds: 1
      failureThreshold: 1
    livenessProbe:
      httpGet: {{path: /healthz, port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: tcp}}
spec:
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "sleep 3; nc -ll -p 9000 -e true"]
    readinessProbe:
      tcpSocket: {{port: 9000}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: slow}}
spec:
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "sleep 5; touch /tmp/started; sleep 600"]
    startupProbe:
      exec: {{command: [test, -f, /tmp/started]}}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {{command: [test, -f, /tmp/started]}}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {{command: ["true"]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: msg}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "echo -n bye-message > /dev/termination-log; exit 3"]
---
apiVersion: v1
kind: Pod
metadata: {{name: fallback}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {image}
    terminationMessagePath: /tmp/custom-msg
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo first; echo last-line; exit 2"]
---
apiVersion: v1
kind: Pod
metadata: {{name: post}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "sleep 2; cat /tmp/post > /dev/termination-log"]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "echo -n post-ran > /tmp/post"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: postfail}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "600"]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "echo oops; exit 1"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: del}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c"]
    args:
    - |
      trap 'echo term >> /host/order; exit 0' TERM
      echo started > /host/order
      while true; do sleep 0.2; done
    volumeMounts: [{{name: host, mountPath: /host}}]
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, "echo pre >> /host/order"]}}
  volumes:
  - name: host
    hostPath: {{path: {host}, type: DirectoryOrCreate}}
"#,
        host = host_dir.display()
    );
    let mf = env.root.path().join("probes.yaml");
    std::fs::write(&mf, manifest).unwrap();
    let t0 = Instant::now();
    env.ok(&["apply", "-f", mf.to_str().unwrap()]);

    // Startup probe: not started (nor ready) until it passes; liveness
    // and readiness wait for it (the liveness probe would fail before).
    eprintln!("step: startup probe gating");
    env.wait_for(Duration::from_secs(60), "slow running, not started", || {
        env.pod("slow").filter(|p| {
            cstatus(p)["state"]["running"].is_object()
                && cstatus(p)["started"] == false
                && cstatus(p)["ready"] == false
        })
    });
    let p = env.wait_for(Duration::from_secs(60), "slow started and ready", || {
        env.pod("slow")
            .filter(|p| cstatus(p)["started"] == true && cstatus(p)["ready"] == true)
    });
    assert_eq!(cstatus(&p)["restartCount"], 0, "{p}");
    assert_eq!(condition(&p, "Ready"), "True");
    wait_event(&env, "slow", "Unhealthy: Startup probe failed");

    // Readiness over HTTP flips both ways, on the pod conditions too.
    eprintln!("step: readiness flips");
    let mut seen = Vec::new();
    env.wait_for(Duration::from_secs(60), "web ready, unready, ready", || {
        let p = env.pod("web")?;
        let r = cstatus(&p)["ready"] == true;
        assert_eq!(r, condition(&p, "Ready") == "True", "{p}");
        assert_eq!(r, condition(&p, "ContainersReady") == "True", "{p}");
        if seen.last() != Some(&r) {
            seen.push(r);
        }
        let want = [true, false, true];
        seen.windows(3).any(|w| w == want).then_some(())
    });
    wait_event(
        &env,
        "web",
        "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 404",
    );

    // tcpSocket: refused until the server listens, then ready.
    eprintln!("step: tcp readiness");
    env.wait_for(Duration::from_secs(60), "tcp ready", || {
        env.pod("tcp").filter(|p| cstatus(p)["ready"] == true)
    });
    wait_event(&env, "tcp", "connect: connection refused");

    // Termination messages.
    eprintln!("step: termination messages");
    let p = env.wait_phase("msg", "Failed", Duration::from_secs(60));
    let t = &cstatus(&p)["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{p}");
    assert_eq!(t["message"], "bye-message", "{p}");
    let p = env.wait_phase("fallback", "Failed", Duration::from_secs(60));
    assert_eq!(
        cstatus(&p)["state"]["terminated"]["message"],
        "first\nlast-line\n",
        "{p}"
    );

    // postStart runs before the main process reads what it wrote; a
    // failing one kills the container.
    eprintln!("step: postStart");
    let p = env.wait_phase("post", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        cstatus(&p)["state"]["terminated"]["message"],
        "post-ran",
        "{p}"
    );
    wait_event(&env, "postfail", "FailedPostStartHook: Exec lifecycle hook");
    let p = env.wait_phase("postfail", "Failed", Duration::from_secs(60));
    assert_eq!(cstatus(&p)["state"]["terminated"]["exitCode"], 137, "{p}");

    // Liveness: the probe starts failing, the container is killed (after
    // its preStop hook, which the process sees before SIGTERM) and
    // restarted; again and again.
    eprintln!("step: liveness restarts");
    let p = env.wait_for(Duration::from_secs(60), "live restarted", || {
        env.pod("live")
            .filter(|p| cstatus(p)["restartCount"].as_i64() >= Some(1))
    });
    let last = &cstatus(&p)["lastState"]["terminated"];
    assert_eq!(last["message"], "saw-prestop", "{p}");
    assert_eq!(last["exitCode"], 0, "{p}");
    wait_event(
        &env,
        "live",
        "Unhealthy: Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory",
    );
    wait_event(
        &env,
        "live",
        "Killing: Container c failed liveness probe, will be restarted",
    );
    env.wait_for(Duration::from_secs(60), "live restarted twice", || {
        env.pod("live")
            .filter(|p| cstatus(p)["restartCount"].as_i64() >= Some(2))
    });
    // The HTTP liveness probe of web always passed.
    let p = env.pod("web").unwrap();
    assert_eq!(cstatus(&p)["restartCount"], 0, "{p}");

    // preStop on deletion runs before SIGTERM.
    eprintln!("step: preStop on delete");
    env.wait_for(Duration::from_secs(30), "del started", || {
        std::fs::read_to_string(host_dir.join("order"))
            .ok()
            .filter(|s| s.starts_with("started"))
    });
    env.ok(&["delete", "pod", "del", "--wait=false"]);
    let order = env.wait_for(Duration::from_secs(30), "preStop then TERM", || {
        std::fs::read_to_string(host_dir.join("order"))
            .ok()
            .filter(|s| s.contains("term"))
    });
    assert_eq!(order, "started\npre\nterm\n");

    env.ok(&["delete", "pods", "--all", "--grace-period=1"]);
    env.wait_for(Duration::from_secs(60), "pods gone", || {
        env.get_json(&["pods"])
            .filter(|l| l["items"].as_array().is_some_and(|a| a.is_empty()))
    });
    eprintln!("probes suite took {:?}", t0.elapsed());
}
