//! End-to-end: RuntimeClass admission in the API server and handler
//! selection in the node agent (runc and crun side by side on one node),
//! procMount validation, and pods the node refuses (hostUsers: false),
//! with the real kubectl and real containers (root; SKIP elsewhere).

#[path = "common/node.rs"]
mod node;
use node::*;
use std::time::Duration;

fn apply(env: &Env, name: &str, yaml: &str) -> Out {
    let path = env.root.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    env.kubectl(&["apply", "-f", path.to_str().unwrap()])
}

fn pod_yaml(name: &str, image: &str, extra_spec: &str, extra_ctr: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra_spec}  containers:\n  - name: c\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n{extra_ctr}"
    )
}

fn event_messages(env: &Env, pod: &str, reason: &str) -> Vec<String> {
    env.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod},reason={reason}"),
    ])
    .and_then(|v| {
        v["items"].as_array().map(|a| {
            a.iter()
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect()
        })
    })
    .unwrap_or_default()
}

#[test]
fn runtime_classes_pick_the_oci_runtime() {
    let Some(env) = Env::start("rtclass", &[]) else {
        return;
    };
    let image = env.image();
    let has_crun = find_binary("crun").is_some();
    if !has_crun && std::env::var_os("CI").is_some() {
        panic!("CI is set but crun is not installed (apt-get install -y crun)");
    }

    // Admission: a missing class is refused with the upstream text.
    let o = apply(
        &env,
        "missing",
        &pod_yaml("missing", &image, "  runtimeClassName: nosuch\n", ""),
    );
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains(
            "pods \"missing\" is forbidden: pod rejected: RuntimeClass \"nosuch\" not found"
        ),
        "{}",
        o.stderr
    );

    // Classes: crun (with overhead and scheduling), and one whose handler
    // this node does not have.
    let classes = format!(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: fast\nhandler: crun\noverhead:\n  podFixed:\n    cpu: 10m\n    memory: 1Mi\nscheduling:\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n  tolerations:\n  - key: bosun.test/rt\n    operator: Exists\n---\napiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: other\nhandler: nope\n",
        node = env.node
    );
    let o = apply(&env, "classes", &classes);
    assert_eq!(o.code, 0, "{}", o.stderr);

    if has_crun {
        let o = apply(
            &env,
            "on-crun",
            &pod_yaml("on-crun", &image, "  runtimeClassName: fast\n", ""),
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        let p = env.wait_phase("on-crun", "Running", Duration::from_secs(60));
        let cid = p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(cid.starts_with("crun://"), "{cid}");
        // Admission merged the class's overhead and scheduling.
        assert_eq!(p["spec"]["overhead"]["cpu"], "10m", "{}", p["spec"]);
        assert_eq!(
            p["spec"]["nodeSelector"]["kubernetes.io/hostname"],
            env.node.as_str()
        );
        assert!(p["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "bosun.test/rt"));
        // The default handler still runs the other pods.
        let o = apply(&env, "on-runc", &pod_yaml("on-runc", &image, "", ""));
        assert_eq!(o.code, 0, "{}", o.stderr);
        let p = env.wait_phase("on-runc", "Running", Duration::from_secs(60));
        assert!(p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .starts_with("runc://"));
        // The crun container really is crun's.
        let id = cid.trim_start_matches("crun://");
        let state = env.data.join("agent/crun");
        let out = std::process::Command::new("crun")
            .arg("--root")
            .arg(&state)
            .args(["state", id])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("\"running\""),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A handler the node lacks: the sandbox fails like containerd says.
    let o = apply(
        &env,
        "no-handler",
        &pod_yaml("no-handler", &image, "  runtimeClassName: other\n", ""),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let msgs = env.wait_for(
        Duration::from_secs(30),
        "FailedCreatePodSandBox for the missing handler",
        || {
            let m = event_messages(&env, "no-handler", "FailedCreatePodSandBox");
            (!m.is_empty()).then_some(m)
        },
    );
    assert!(
        msgs[0].contains("no runtime for \"nope\" is configured"),
        "{msgs:?}"
    );
    assert_eq!(env.status_column("no-handler"), "ContainerCreating");

    // procMount: upstream validation.
    let o = apply(
        &env,
        "bad-procmount",
        &pod_yaml(
            "bad-procmount",
            &image,
            "",
            "    securityContext:\n      procMount: Weird\n",
        ),
    );
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("spec.containers[0].securityContext.procMount: Unsupported value: \"Weird\": supported values: \"Default\", \"Unmasked\""),
        "{}",
        o.stderr
    );
    let o = apply(
        &env,
        "unmasked",
        &pod_yaml(
            "unmasked",
            &image,
            "",
            "    securityContext:\n      procMount: Unmasked\n",
        ),
    );
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("`hostUsers` must be false to use `Unmasked`"),
        "{}",
        o.stderr
    );
    // hostUsers: false is accepted by the API but this node has no user
    // namespace support: it says so instead of running with host users.
    let o = apply(
        &env,
        "userns",
        &pod_yaml(
            "userns",
            &image,
            "  hostUsers: false\n",
            "    securityContext:\n      procMount: Unmasked\n",
        ),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let msgs = env.wait_for(Duration::from_secs(30), "userns refusal", || {
        let m = event_messages(&env, "userns", "FailedCreatePodSandBox");
        (!m.is_empty()).then_some(m)
    });
    assert!(msgs[0].contains("hostUsers: false"), "{msgs:?}");

    env.ok(&[
        "delete",
        "pod",
        "--all",
        "--grace-period=1",
        "--wait=true",
        "--timeout=60s",
    ]);
}
