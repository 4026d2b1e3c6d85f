//! End-to-end test of the streaming subresources with the real kubectl:
//! `kubectl logs` (all flags), `kubectl exec` over websocket v5 and over
//! SPDY/3.1 (kubectl 1.29 and KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false),
//! and `kubectl port-forward` (websocket tunnel and SPDY), through the API
//! server to the node agent's API, against real containers. Root + runc.

#[path = "common/node.rs"]
mod node;
use node::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KUBECTL_129: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.29";
const KUBECTL_130: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.30";

/// kubectl `bin` with environment `envs` and `stdin` as input.
fn kubectl_with(
    env: &Env,
    bin: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: Option<&str>,
) -> Out {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.root.path())
        .current_dir(env.root.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    match stdin {
        None => run(cmd, &format!("{bin} {}", args.join(" "))),
        Some(input) => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn kubectl");
            let mut si = child.stdin.take().unwrap();
            si.write_all(input.as_bytes()).unwrap();
            drop(si);
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let status = child.wait().unwrap();
            Out {
                code: status.code().unwrap_or(-1),
                stdout: out,
                stderr: err,
            }
        }
    }
}

fn pod_yaml(name: &str, image: &str, containers: &[(&str, &str)], restart: &str) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 1\n  containers:\n"
    );
    for (c, script) in containers {
        y.push_str(&format!(
            "  - name: {c}\n    image: {image}\n    command: [\"sh\", \"-c\", {}]\n",
            serde_json::to_string(script).unwrap()
        ));
    }
    y
}

fn apply(env: &Env, yaml: &str) {
    let p = env.root.path().join(format!("pod-{}.yaml", yaml.len()));
    std::fs::write(&p, yaml).unwrap();
    env.ok(&["apply", "-f", p.to_str().unwrap()]);
}

/// Check the exec matrix with one kubectl binary/environment.
fn exec_suite(env: &Env, bin: &str, envs: &[(&str, &str)], what: &str) {
    eprintln!("step: exec via {what}");
    let o = kubectl_with(env, bin, &["exec", "lp", "--", "echo", "hi"], envs, None);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "hi\n"),
        "{what}: {}",
        o.stderr
    );
    let o = kubectl_with(
        env,
        bin,
        &[
            "exec",
            "lp",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        envs,
        None,
    );
    assert_eq!(o.code, 3, "{what}: exit code; stderr {}", o.stderr);
    assert_eq!(o.stdout, "out\n", "{what}");
    assert!(o.stderr.contains("err\n"), "{what}: {}", o.stderr);
    let o = kubectl_with(
        env,
        bin,
        &["exec", "-i", "lp", "--", "sh", "-c", "cat; echo done"],
        envs,
        Some("hello\nworld\n"),
    );
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "hello\nworld\ndone\n"),
        "{what}: {}",
        o.stderr
    );
    // A terminal: kubectl needs one itself, so run it under script(1).
    let line = format!(
        "stty rows 33 cols 91; {bin} exec -it lp -- sh -c 'tty; sleep 0.5; stty size; exit 7'"
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.root.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let o = run(cmd, "script kubectl exec -it");
    assert_eq!(o.code, 7, "{what}: tty exec: {} {}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("/dev/pts/"),
        "{what}: tty: {:?}",
        o.stdout
    );
    assert!(
        o.stdout.contains("33 91"),
        "{what}: terminal size: {:?}",
        o.stdout
    );
}

#[test]
fn logs_exec_port_forward() {
    let kport = free_port().to_string();
    let Some(env) = Env::start("streams", &["--kubelet-port", &kport]) else {
        return;
    };
    let image = env.image();
    let node = env.get_json(&["node", &env.node]).unwrap();
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        kport.parse::<u64>().unwrap()
    );

    apply(
        &env,
        &pod_yaml(
            "lp",
            &image,
            &[("c", "echo one; echo two; echo three; exec sleep 3600")],
            "Always",
        ),
    );
    apply(
        &env,
        &pod_yaml(
            "two",
            &image,
            &[
                ("a", "echo from-a; exec sleep 3600"),
                ("b", "echo from-b; exec sleep 3600"),
            ],
            "Always",
        ),
    );
    apply(
        &env,
        &pod_yaml(
            "rp",
            &image,
            &[("c", "echo run-$(date +%s%N); sleep 1; exit 1")],
            "Always",
        ),
    );
    env.wait_phase("lp", "Running", Duration::from_secs(60));
    env.wait_phase("two", "Running", Duration::from_secs(60));
    env.wait_for(Duration::from_secs(10), "lp logs", || {
        (env.kubectl(&["logs", "lp"]).stdout.lines().count() == 3).then_some(())
    });

    // logs: plain, tail, timestamps, limit-bytes, since, container choice.
    eprintln!("step: logs");
    assert_eq!(env.ok(&["logs", "lp"]), "one\ntwo\nthree\n");
    assert_eq!(env.ok(&["logs", "lp", "--tail=1"]), "three\n");
    assert_eq!(env.ok(&["logs", "lp", "--tail=0"]), "");
    assert_eq!(env.ok(&["logs", "lp", "--limit-bytes=6"]), "one\ntw");
    assert_eq!(env.ok(&["logs", "lp", "--since=1h"]), "one\ntwo\nthree\n");
    let ts = env.ok(&["logs", "lp", "--timestamps"]);
    let lines: Vec<&str> = ts.lines().collect();
    assert_eq!(lines.len(), 3, "{ts}");
    for (l, want) in lines.iter().zip(["one", "two", "three"]) {
        let (t, rest) = l.split_once(' ').unwrap();
        assert!(
            t.len() >= 20 && t.as_bytes()[10] == b'T' && t.ends_with('Z'),
            "{l}"
        );
        assert_eq!(rest, want);
    }
    // sinceTime travels with second precision (metav1.Time).
    assert_eq!(
        env.ok(&["logs", "lp", "--since-time=2099-01-01T00:00:00Z"]),
        ""
    );
    assert_eq!(
        env.ok(&["logs", "lp", "--since-time=2000-01-01T00:00:00Z"]),
        "one\ntwo\nthree\n"
    );
    assert_eq!(env.ok(&["logs", "two", "-c", "b"]), "from-b\n");
    let o = env.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{}",
        o.stderr
    );
    let o = env.kubectl(&["logs", "two", "-c", "zz"]);
    assert!(
        o.stderr.contains("container zz is not valid for pod two"),
        "{}",
        o.stderr
    );
    let o = env.kubectl(&["logs", "nope"]);
    assert!(o.stderr.contains("pods \"nope\" not found"), "{}", o.stderr);
    let o = env.kubectl(&["logs", "lp", "-p"]);
    assert!(
        o.stderr
            .contains("previous terminated container \"c\" in pod \"lp\" not found"),
        "{}",
        o.stderr
    );

    // A pod that cannot start: upstream's "waiting to start" error.
    apply(
        &env,
        &pod_yaml("bad", "127.0.0.1:1/nope:1", &[("c", "true")], "Always"),
    );
    env.wait_for(Duration::from_secs(10), "bad pod scheduled", || {
        env.pod("bad").filter(|p| p["spec"]["nodeName"].is_string())
    });
    let o = env.kubectl(&["logs", "bad"]);
    assert!(
        o.stderr
            .contains("container \"c\" in pod \"bad\" is waiting to start"),
        "{}",
        o.stderr
    );

    // logs -f ends when the container stops; output arrives as written.
    eprintln!("step: logs -f");
    apply(
        &env,
        &pod_yaml(
            "fp",
            &image,
            &[("c", "for i in 1 2 3; do echo l$i; sleep 1; done")],
            "Never",
        ),
    );
    env.wait_phase("fp", "Running", Duration::from_secs(60));
    let t0 = Instant::now();
    let o = env.kubectl(&["logs", "-f", "fp"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "l1\nl2\nl3\n"),
        "{}",
        o.stderr
    );
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "follow took {:?}",
        t0.elapsed()
    );

    // logs -p: the previous instance of a restarting container.
    eprintln!("step: logs -p");
    env.wait_for(Duration::from_secs(60), "rp restarted", || {
        env.pod("rp").filter(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        })
    });
    let prev = env.ok(&["logs", "rp", "-p"]);
    assert!(
        prev.starts_with("run-") && prev.lines().count() == 1,
        "{prev:?}"
    );

    // exec: websocket v5 (default kubectl), SPDY (env switch), kubectl 1.29.
    exec_suite(&env, KUBECTL, &[], "websocket v5");
    exec_suite(
        &env,
        KUBECTL,
        &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")],
        "SPDY",
    );
    if std::path::Path::new(KUBECTL_129).exists() {
        exec_suite(&env, KUBECTL_129, &[], "kubectl 1.29");
    }
    // cp rides on exec (tar) both ways.
    eprintln!("step: cp");
    let local = env.root.path().join("cp-in.txt");
    std::fs::write(&local, "copied-in\n").unwrap();
    env.ok(&["cp", local.to_str().unwrap(), "lp:/tmp/cp.txt"]);
    assert_eq!(
        env.ok(&["exec", "lp", "--", "cat", "/tmp/cp.txt"]),
        "copied-in\n"
    );
    let back = env.root.path().join("cp-out.txt");
    env.ok(&["cp", "lp:/tmp/cp.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied-in\n");

    // Big transfers both ways over both protocols (SPDY has a flow
    // control window that spdystream must not stall on).
    let big: String = (0..200_000).map(|i| format!("{i:07}\n")).collect();
    let big_path = env.root.path().join("big.txt");
    std::fs::write(&big_path, &big).unwrap();
    for envs in [vec![], vec![("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")]] {
        let o = kubectl_with(
            &env,
            KUBECTL,
            &["cp", big_path.to_str().unwrap(), "lp:/tmp/big.txt"],
            &envs,
            None,
        );
        assert_eq!(o.code, 0, "cp big {envs:?}: {}", o.stderr);
        let o = kubectl_with(
            &env,
            KUBECTL,
            &["exec", "lp", "--", "cat", "/tmp/big.txt"],
            &envs,
            None,
        );
        assert_eq!(o.code, 0, "cat big {envs:?}: {}", o.stderr);
        assert!(
            o.stdout == big,
            "cat big {envs:?}: {} bytes",
            o.stdout.len()
        );
        let o = kubectl_with(
            &env,
            KUBECTL,
            &["exec", "-i", "lp", "--", "wc", "-c"],
            &envs,
            Some(&big),
        );
        assert_eq!(
            o.stdout.trim(),
            big.len().to_string(),
            "stdin big {envs:?}: {}",
            o.stderr
        );
    }

    // A client that goes away takes its process with it.
    eprintln!("step: exec disconnect");
    let mut cmd = Command::new(KUBECTL);
    cmd.args(["exec", "lp", "--", "sleep", "777"])
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut k = Proc {
        child: Some(cmd.spawn().unwrap()),
        name: "kubectl exec sleep",
    };
    env.wait_for(Duration::from_secs(10), "sleep 777 running", || {
        (!processes_mentioning("sleep 777").is_empty()).then_some(())
    });
    k.stop();
    env.wait_for(Duration::from_secs(10), "sleep 777 gone", || {
        processes_mentioning("sleep 777").is_empty().then_some(())
    });

    let o = env.kubectl(&["exec", "lp", "--", "/no/such/binary"]);
    assert_ne!(o.code, 0);
    let o = env.kubectl(&["exec", "two", "-c", "zz", "--", "true"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("container zz is not valid for pod two"),
        "{}",
        o.stderr
    );

    // attach: the container's output from now until it stops.
    for (pod, bin, envs) in [
        ("ap1", KUBECTL, vec![]),
        (
            "ap2",
            KUBECTL,
            vec![("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")],
        ),
    ] {
        eprintln!("step: attach {pod} {envs:?}");
        apply(
            &env,
            &pod_yaml(
                pod,
                &image,
                &[("c", "echo before; sleep 4; for i in 1 2 3; do echo a$i; echo e$i >&2; sleep 0.3; done")],
                "Never",
            ),
        );
        env.wait_phase(pod, "Running", Duration::from_secs(60));
        let o = kubectl_with(&env, bin, &["attach", pod], &envs, None);
        assert_eq!(o.code, 0, "attach {pod}: {}", o.stderr);
        assert_eq!(o.stdout, "a1\na2\na3\n", "attach {pod}: {}", o.stderr);
        assert!(
            o.stderr.contains("e1\ne2\ne3\n"),
            "attach {pod}: {}",
            o.stderr
        );
    }

    // port-forward: websocket tunnel (default), SPDY (1.30 binary).
    eprintln!("step: port-forward");
    apply(
        &env,
        &pod_yaml(
            "pf",
            &image,
            &[(
                "web",
                "mkdir -p /www && echo hello-pf > /www/index.html && seq -w 0 199999 | sed 's/^/0/' > /www/big.txt && exec httpd -f -p 8080 -h /www",
            )],
            "Always",
        ),
    );
    env.wait_phase("pf", "Running", Duration::from_secs(60));
    let mut pf_bins = vec![(KUBECTL, vec![])];
    if std::path::Path::new(KUBECTL_130).exists() {
        pf_bins.push((KUBECTL_130, vec![]));
    }
    pf_bins.push((KUBECTL, vec![("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]));
    for (bin, envs) in pf_bins {
        let local = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["port-forward", "pod/pf", &format!("{local}:8080")])
            .env("KUBECONFIG", env.kubeconfig())
            .env("HOME", env.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut pf = Proc {
            child: Some(cmd.spawn().unwrap()),
            name: "kubectl port-forward",
        };
        let body = env.wait_for(Duration::from_secs(15), "port-forward serving", || {
            let o = Command::new("curl")
                .args([
                    "-sf",
                    "--max-time",
                    "3",
                    &format!("http://127.0.0.1:{local}/index.html"),
                ])
                .output()
                .ok()?;
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        });
        assert_eq!(body, "hello-pf\n", "{bin} {envs:?}");
        // A second connection over the same session.
        let o = Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "3",
                &format!("http://127.0.0.1:{local}/index.html"),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "hello-pf\n");
        let o = Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "10",
                &format!("http://127.0.0.1:{local}/big.txt"),
            ])
            .output()
            .unwrap();
        assert_eq!(o.stdout.len(), 1_600_000, "big download via {bin} {envs:?}");
        pf.stop();
    }

    // exec latency figures (printed, not asserted), and no fd growth.
    let server_pid = env.server.as_ref().unwrap().pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{server_pid}/fd"))
            .unwrap()
            .count()
    };
    let fds_before = fds();
    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            env.ok(&["exec", "lp", "--", "true"]);
            t.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "kubectl exec lp -- true x50: p50 {:?} p99 {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    std::thread::sleep(Duration::from_millis(500));
    let fds_after = fds();
    assert!(
        fds_after <= fds_before + 4,
        "server fds grew from {fds_before} to {fds_after}"
    );

    // Log-follow latency: the shim's timestamp to kubectl's output.
    apply(
        &env,
        &pod_yaml(
            "lat",
            &image,
            &[("c", "while true; do echo x; sleep 0.2; done")],
            "Always",
        ),
    );
    env.wait_phase("lat", "Running", Duration::from_secs(60));
    let mut cmd = Command::new(KUBECTL);
    cmd.args(["logs", "-f", "--timestamps", "--tail=0", "lat"])
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lat = Vec::new();
    {
        use std::io::BufRead;
        let mut rd = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while lat.len() < 15 && rd.read_line(&mut line).unwrap_or(0) > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                % 86400.0;
            // hh:mm:ss.frac of the record's RFC3339 UTC timestamp.
            let t = &line[11..line.find('Z').unwrap()];
            let secs: f64 = t
                .split(':')
                .zip([3600.0, 60.0, 1.0])
                .map(|(v, m)| v.parse::<f64>().unwrap() * m)
                .sum();
            lat.push(((now - secs) * 1000.0).max(0.0));
            line.clear();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "logs -f latency over {} lines: p50 {:.1} ms, max {:.1} ms",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );

    // No runc exec left behind.
    let leftover = processes_mentioning(" exec ");
    assert!(
        leftover
            .iter()
            .all(|p| !p.contains(env.data.to_str().unwrap())),
        "runc exec processes left: {leftover:?}"
    );
    for p in ["lp", "two", "rp", "bad", "fp", "pf", "ap1", "ap2", "lat"] {
        env.kubectl(&["delete", "pod", p, "--wait=false"]);
    }
}
