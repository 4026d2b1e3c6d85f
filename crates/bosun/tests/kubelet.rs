//! End-to-end test of the node agent: a local registry (Debian's
//! docker-registry) serving the busybox test image, `bosun server` with its
//! agent, and the real kubectl. Runs as root with runc; otherwise it fails
//! when `CI` is set and prints a loud SKIP elsewhere. After the suite
//! nothing may be left: mounts, runc containers, pod cgroups, processes.

#[path = "common/node.rs"]
mod node;
use node::*;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn node_agent_runs_pods() {
    let Some(registry_bin) = prerequisites() else {
        return;
    };
    let root = tempfile::Builder::new()
        .prefix("bosun-kubelet-e2e-")
        .tempdir()
        .unwrap();
    let data = root.path().join("data");
    let (registry, reg_port) = start_registry(root.path(), &registry_bin);
    push_busybox(root.path(), reg_port);
    let node = format!("kubelet-e2e-{}", std::process::id());
    let server_port = free_port();
    let server = start_server(root.path(), &data, &node, server_port, &[]);
    let mut env = Env {
        root,
        data: data.clone(),
        registry,
        server: Some(server),
        server_port,
        reg_port,
        node: node.clone(),
    };
    let mut server_pids = vec![env.server.as_ref().unwrap().pid()];
    let registry_pid = env.registry.pid();
    let image = env.image();

    // 1. The node registers and becomes Ready.
    eprintln!("step: 1. The node registers and becomes Ready.");
    let n = env.wait_for(Duration::from_secs(30), "node Ready", || {
        env.get_json(&["node", &env.node]).filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    });
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], env.node.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
    let info = &n["status"]["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("runc://"),
        "{info}"
    );
    assert_eq!(info["kubeletVersion"], "v1.33.5+bosun");
    assert!(!info["kernelVersion"].as_str().unwrap().is_empty());
    assert_eq!(n["status"]["capacity"]["pods"], "110");
    let ready = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    let lease = env.ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        &env.node,
        "-o",
        "json",
    ]);
    let lease: Value = serde_json::from_str(&lease).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], env.node.as_str());
    let nodes = env.ok(&["get", "nodes"]);
    assert!(
        nodes.contains("Ready") && nodes.contains("control-plane"),
        "{nodes}"
    );

    // 2. A crash loop, started first so it has time to back off.
    eprintln!("step: 2. A crash loop, started first so it has time to back off.");
    env.ok(&[
        "run",
        "crash",
        &format!("--image={image}"),
        "--restart=Always",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);

    // 3. A pod that prints and exits 0: Succeeded/Completed, log in CRI format.
    eprintln!("step: 3. A pod that prints and exits 0: Succeeded/Completed, log in CRI format.");
    let t0 = Instant::now();
    env.ok(&[
        "run",
        "b",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hello; sleep 1",
    ]);
    let mut saw_running = None;
    let p = env.wait_for(Duration::from_secs(60), "pod b Succeeded", || {
        let p = env.pod("b")?;
        if saw_running.is_none() && p["status"]["phase"] == "Running" {
            saw_running = Some(t0.elapsed());
        }
        (p["status"]["phase"] == "Succeeded").then_some(p)
    });
    eprintln!("pod b: create -> Running observed after {saw_running:?} (image pull included unless the crash pod pulled first), Succeeded after {:?}", t0.elapsed());
    let term = container_state(&p, "terminated").expect("terminated state");
    assert_eq!(term["reason"], "Completed");
    assert_eq!(term["exitCode"], 0);
    assert!(term["containerID"].as_str().unwrap().starts_with("runc://"));
    let cs = &p["status"]["containerStatuses"][0];
    assert!(cs["imageID"].as_str().unwrap().contains("@sha256:"), "{cs}");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert!(p["status"]["hostIP"].is_string() || p["status"].get("hostIP").is_none());
    assert_eq!(env.status_column("b"), "Completed");
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let log = data.join(format!("agent/logs/default_b_{uid}/b/0.log"));
    let lines = cri_lines(&log);
    assert!(
        lines
            .iter()
            .any(|(s, t, c)| s == "stdout" && t == "F" && c == "hello"),
        "no hello in {}: {lines:?}",
        log.display()
    );
    let events = env.ok(&["get", "events", "--field-selector", "involvedObject.name=b"]);
    for reason in ["Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "no {reason} event: {events}");
    }
    // The first pod to need the image (crash or b) pulled it.
    let events = env.ok(&["get", "events"]);
    assert!(
        events.contains("Pulling image") && events.contains("Successfully pulled image"),
        "no pull events: {events}"
    );

    // 4. exit 1 with restartPolicy Never: Failed/Error.
    eprintln!("step: 4. exit 1 with restartPolicy Never: Failed/Error.");
    env.ok(&[
        "run",
        "fail",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    let p = env.wait_phase("fail", "Failed", Duration::from_secs(60));
    let term = container_state(&p, "terminated").expect("terminated state");
    assert_eq!(term["reason"], "Error");
    assert_eq!(term["exitCode"], 1);
    assert_eq!(env.status_column("fail"), "Error");

    // 5. Volumes, env from a secret, downward API, SIGTERM on delete.
    eprintln!("step: 5. Volumes, env from a secret, downward API, SIGTERM on delete.");
    let out_dir = env.root.path().join("hostout");
    let manifest = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{greeting: hi-from-configmap}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata:
  name: vol
  labels: {{app: vol-test}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: {image}
    env:
    - name: PASS
      valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}
    - name: MY_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: GREETING
      value: "say-$(MY_NAME)"
    command: ["sh", "-c"]
    args:
    - |
      trap 'echo TERM > /out/term; exit 0' TERM
      cat /cfg/greeting > /out/cfg
      echo "$PASS" > /out/pass
      echo "$GREETING" > /out/greeting
      cat /podinfo/labels > /out/labels
      hostname > /out/hostname
      echo scratch > /scratch/x && cat /scratch/x > /out/scratch
      echo ready > /out/ready
      while true; do sleep 1; done
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: out, mountPath: /out}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: podinfo, mountPath: /podinfo}}
  volumes:
  - name: cfg
    configMap: {{name: cfg}}
  - name: out
    hostPath: {{path: {out}, type: DirectoryOrCreate}}
  - name: scratch
    emptyDir: {{}}
  - name: podinfo
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
"#,
        out = out_dir.display()
    );
    let mf = env.root.path().join("vol.yaml");
    std::fs::write(&mf, manifest).unwrap();
    let t0 = Instant::now();
    env.ok(&["apply", "-f", mf.to_str().unwrap()]);
    env.wait_phase("vol", "Running", Duration::from_secs(60));
    let running_after = t0.elapsed();
    env.wait_for(
        Duration::from_secs(30),
        "container wrote /out/ready",
        || out_dir.join("ready").exists().then_some(()),
    );
    eprintln!("pod vol: apply -> Running observed after {running_after:?} (image present)");
    let read = |f: &str| {
        std::fs::read_to_string(out_dir.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(read("cfg"), "hi-from-configmap");
    assert_eq!(read("pass"), "s3cret");
    assert_eq!(read("greeting"), "say-vol");
    assert_eq!(read("labels"), "app=\"vol-test\"");
    assert_eq!(read("hostname"), "vol");
    assert_eq!(read("scratch"), "scratch");
    let p = env.pod("vol").unwrap();
    let conds = p["status"]["conditions"].as_array().unwrap();
    for t in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodReadyToStartContainers",
    ] {
        assert!(
            conds
                .iter()
                .any(|c| c["type"] == t && c["status"] == "True"),
            "condition {t} not True: {conds:?}"
        );
    }
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    assert!(container_state(&p, "running").is_some());
    let t0 = Instant::now();
    env.ok(&["delete", "pod", "vol", "--timeout=60s"]);
    let took = t0.elapsed();
    eprintln!("pod vol: kubectl delete took {took:?}");
    assert!(took < Duration::from_secs(30), "deletion took {took:?}");
    assert_eq!(read("term"), "TERM", "the container did not see SIGTERM");
    assert!(env.pod("vol").is_none());

    // 6. A missing ConfigMap in env: CreateContainerConfigError.
    eprintln!("step: 6. A missing ConfigMap in env: CreateContainerConfigError.");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: nocm}}
spec:
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
    env:
    - name: X
      valueFrom: {{configMapKeyRef: {{name: nope, key: k}}}}
"#
    );
    let mf = env.root.path().join("nocm.yaml");
    std::fs::write(&mf, manifest).unwrap();
    env.ok(&["apply", "-f", mf.to_str().unwrap()]);
    let p = env.wait_for(
        Duration::from_secs(30),
        "CreateContainerConfigError",
        || {
            env.pod("nocm").filter(|p| {
                container_state(p, "waiting")
                    .is_some_and(|w| w["reason"] == "CreateContainerConfigError")
            })
        },
    );
    assert_eq!(
        container_state(&p, "waiting").unwrap()["message"],
        "configmap \"nope\" not found"
    );
    assert_eq!(env.status_column("nocm"), "CreateContainerConfigError");

    // 7. The crash loop backs off with growing restarts.
    eprintln!("step: 7. The crash loop backs off with growing restarts.");
    let p = env.wait_for(
        Duration::from_secs(90),
        "crash restartCount >= 2 in CrashLoopBackOff",
        || {
            env.pod("crash").filter(|p| {
                let cs = &p["status"]["containerStatuses"][0];
                cs["restartCount"].as_i64().unwrap_or(0) >= 2
                    && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            })
        },
    );
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1, "{cs}");
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off "),
        "{cs}"
    );
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(env.status_column("crash"), "CrashLoopBackOff");
    let events = env.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crash",
    ]);
    assert!(events.contains("BackOff"), "{events}");

    // 7b. Init containers, a tmpfs emptyDir, a projected volume; OOMKilled.
    eprintln!("step: 7b. init containers, memory emptyDir, projected volume, OOMKilled");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: initpod}}
spec:
  restartPolicy: Never
  initContainers:
  - name: init
    image: {image}
    command: [sh, -c, "mount | grep ' /work ' | grep -q tmpfs && echo from-init > /work/msg"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "cat /work/msg; cat /proj/greeting; echo; cat /proj/name; echo"]
    volumeMounts: [{{name: work, mountPath: /work}}, {{name: proj, mountPath: /proj}}]
  volumes:
  - name: work
    emptyDir: {{medium: Memory, sizeLimit: 8Mi}}
  - name: proj
    projected:
      sources:
      - configMap: {{name: cfg}}
      - downwardAPI: {{items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: oom}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {image}
    command: [sh, -c, "tail /dev/zero"]
    resources: {{limits: {{memory: 32Mi}}}}
"#
    );
    let mf = env.root.path().join("initpod.yaml");
    std::fs::write(&mf, manifest).unwrap();
    env.ok(&["apply", "-f", mf.to_str().unwrap()]);
    let p = env.wait_phase("initpod", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed",
        "{p}"
    );
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let lines = cri_lines(&data.join(format!("agent/logs/default_initpod_{uid}/main/0.log")));
    let text: Vec<&str> = lines.iter().map(|(_, _, c)| c.as_str()).collect();
    assert_eq!(
        text,
        ["from-init", "hi-from-configmap", "initpod"],
        "{lines:?}"
    );
    let p = env.wait_phase("oom", "Failed", Duration::from_secs(60));
    assert_eq!(
        container_state(&p, "terminated").unwrap()["reason"],
        "OOMKilled",
        "{p}"
    );
    assert_eq!(env.status_column("oom"), "OOMKilled");

    // 8. An image the registry doesn't have: ErrImagePull, then ImagePullBackOff.
    eprintln!("step: 8. An image the registry doesn't have: ErrImagePull, then ImagePullBackOff.");
    env.ok(&[
        "run",
        "noimg",
        &format!("--image=127.0.0.1:{}/nothere:1", env.reg_port),
        "--restart=Never",
    ]);
    env.wait_for(Duration::from_secs(30), "ImagePullBackOff", || {
        env.pod("noimg").filter(|p| {
            container_state(p, "waiting").is_some_and(|w| w["reason"] == "ImagePullBackOff")
        })
    });
    assert_eq!(env.status_column("noimg"), "ImagePullBackOff");

    // 9. crun as the runtime of a second node (`bosun agent`).
    eprintln!("step: 9. crun as the runtime of a second node (`bosun agent`).");
    let crun_data = env.root.path().join("crun-node");
    if find_binary("crun").is_some() {
        let log = std::fs::File::create(env.root.path().join("crun-agent.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args([
                "agent",
                "--node-name",
                "crun-e2e",
                "--container-runtime",
                "crun",
            ])
            .args(pod_network(env.root.path()).agent_flags(1))
            .arg("--server-kubeconfig")
            .arg(env.kubeconfig())
            .arg("--data-dir")
            .arg(&crun_data)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut crun_agent = Proc {
            child: Some(child),
            name: "crun agent",
        };
        server_pids.push(crun_agent.pid());
        let n = env.wait_for(Duration::from_secs(30), "crun node Ready", || {
            env.get_json(&["node", "crun-e2e"]).filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
        });
        assert!(n["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("crun://"));
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: oncrun}}\nspec:\n  nodeName: crun-e2e\n  restartPolicy: Never\n  containers:\n  - {{name: c, image: {image}, command: [sh, -c, 'echo hello-crun']}}\n"
        );
        let mf = env.root.path().join("oncrun.yaml");
        std::fs::write(&mf, manifest).unwrap();
        env.ok(&["apply", "-f", mf.to_str().unwrap()]);
        let p = env.wait_phase("oncrun", "Succeeded", Duration::from_secs(60));
        let cid = p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(cid.starts_with("crun://"), "{cid}");
        let uid = p["metadata"]["uid"].as_str().unwrap();
        let lines = cri_lines(&crun_data.join(format!("agent/logs/default_oncrun_{uid}/c/0.log")));
        assert!(lines.iter().any(|(_, _, c)| c == "hello-crun"), "{lines:?}");
        env.ok(&["delete", "pod", "oncrun", "--timeout=60s"]);
        crun_agent.stop();
        env.ok(&["delete", "node", "crun-e2e"]);
        assert!(mounts_under(&crun_data).is_empty());
        let list = Command::new("crun")
            .arg("--root")
            .arg(crun_data.join("agent/crun"))
            .arg("list")
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&list.stdout);
        assert!(
            listed.lines().count() <= 1,
            "leftover crun containers: {listed}"
        );
    } else {
        eprintln!("*** crun is not installed: crun step skipped ***");
    }

    // 10. Agent restart: running pods are adopted (no restart); a pod
    // deleted while the agent was down is cleaned up at start.
    eprintln!("step: 10. Agent restart: adoption and orphan cleanup.");
    for name in ["keep", "orphan"] {
        env.ok(&[
            "run",
            name,
            &format!("--image={image}"),
            "--restart=Always",
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 1; done",
        ]);
    }
    let keep = env.wait_phase("keep", "Running", Duration::from_secs(60));
    let orphan = env.wait_phase("orphan", "Running", Duration::from_secs(60));
    let keep_cid = keep["status"]["containerStatuses"][0]["containerID"].clone();
    let orphan_uid = orphan["metadata"]["uid"].as_str().unwrap().to_string();
    // Host PIDs of the containers' init processes, checked at the end.
    let init_pid = |p: &Value| -> u32 {
        let cid = p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap();
        let id = cid.strip_prefix("runc://").unwrap();
        let f = data
            .join("agent/runtime/containers")
            .join(id)
            .join("init.pid");
        std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .parse()
            .unwrap()
    };
    let keep_pid = init_pid(&keep);
    let orphan_pid = init_pid(&orphan);
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false)
    };
    assert!(alive(keep_pid) && alive(orphan_pid));
    env.server.as_mut().unwrap().stop();
    let s = start_server(
        env.root.path(),
        &data,
        &env.node,
        env.server_port,
        &["--disable-agent"],
    );
    server_pids.push(s.pid());
    env.server = Some(s);
    env.ok(&["delete", "pod", "orphan", "--grace-period=0", "--force"]);
    assert!(
        !processes_mentioning(&orphan_uid).is_empty(),
        "the orphan's shim should still run while no agent is up"
    );
    env.server.as_mut().unwrap().stop();
    let s = start_server(env.root.path(), &data, &env.node, env.server_port, &[]);
    server_pids.push(s.pid());
    env.server = Some(s);
    env.wait_for(Duration::from_secs(30), "orphan cleaned up", || {
        (processes_mentioning(&orphan_uid).is_empty()
            && !data.join("agent/pods").join(&orphan_uid).exists())
        .then_some(())
    });
    assert!(
        !alive(orphan_pid),
        "the orphan's container process {orphan_pid} survived"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        alive(keep_pid),
        "the adopted container process {keep_pid} died"
    );
    let keep = env.pod("keep").unwrap();
    let cs = &keep["status"]["containerStatuses"][0];
    assert_eq!(keep["status"]["phase"], "Running");
    assert_eq!(
        cs["containerID"], keep_cid,
        "the container was replaced: {cs}"
    );
    assert_eq!(cs["restartCount"], 0, "{cs}");
    assert!(cs["state"]["running"].is_object(), "{cs}");
    // Changing the image restarts the container (definition changed).
    let by_digest = cs["imageID"].as_str().unwrap().to_string();
    assert!(by_digest.contains("@sha256:"), "{by_digest}");
    env.ok(&["set", "image", "pod/keep", &format!("keep={by_digest}")]);
    let keep = env.wait_for(
        Duration::from_secs(60),
        "keep restarted with the new image",
        || {
            env.pod("keep").filter(|p| {
                let cs = &p["status"]["containerStatuses"][0];
                cs["restartCount"] == 1
                    && cs["state"]["running"].is_object()
                    && cs["image"] == by_digest.as_str()
            })
        },
    );
    assert_ne!(
        keep["status"]["containerStatuses"][0]["containerID"],
        keep_cid
    );

    // 11. Everything deleted: gone from the API, nothing left on the node.
    eprintln!("step: 11. Everything deleted: gone from the API, nothing left on the node.");
    let pods = env.ok(&["get", "pods", "-o", "json"]);
    let uids: Vec<String> = serde_json::from_str::<Value>(&pods).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    env.ok(&["delete", "pods", "--all", "--timeout=90s"]);
    env.wait_for(Duration::from_secs(30), "no pods", || {
        env.ok(&["get", "pods", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    env.wait_for(Duration::from_secs(30), "pod dirs removed", || {
        let left: Vec<_> = std::fs::read_dir(data.join("agent/pods"))
            .map(|rd| rd.flatten().collect())
            .unwrap_or_default();
        left.is_empty().then_some(())
    });
    env.server.as_mut().unwrap().stop();
    env.registry.stop();

    let mounts = mounts_under(&data);
    assert!(mounts.is_empty(), "leftover mounts: {mounts:?}");
    let list = Command::new("runc")
        .arg("--root")
        .arg(data.join("agent/runc"))
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).trim().to_string();
    assert!(
        listed.is_empty() || listed == "null" || listed == "[]",
        "leftover runc containers: {listed}"
    );
    for uid in &uids {
        for qos in ["", "burstable/", "besteffort/"] {
            for hier in ["memory", "pids", "cpu"] {
                let p = PathBuf::from(format!("/sys/fs/cgroup/{hier}/kubepods/{qos}pod{uid}"));
                assert!(!p.exists(), "leftover cgroup {}", p.display());
            }
        }
    }
    let procs = processes_mentioning(&env.root.path().to_string_lossy());
    assert!(procs.is_empty(), "leftover processes: {procs:?}");
    server_pids.push(registry_pid);
    server_pids.push(keep_pid);
    for pid in server_pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "process {pid} still running: {stat}"
        );
    }
    let _ = std::io::stderr().flush();
}
