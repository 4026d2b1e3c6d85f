//! End-to-end: controllers driving real containers on the real node (the
//! server's own agent, runc, a local registry), with the real kubectl:
//! a Deployment created, scaled 1→10→2, rolled to a new image with
//! `rollout status`, stalled by a bad image and recovered by `rollout
//! undo`; a Job with completions 5 / parallelism 2. Root only (SKIP
//! elsewhere, failure in CI).

#[path = "common/node.rs"]
mod node;
use node::*;
use serde_json::Value;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn live_pods(env: &Env, selector: &str) -> Vec<Value> {
    env.get_json(&["pods", "-l", selector])
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn running(pods: &[Value]) -> usize {
    pods.iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count()
}

/// Wait until exactly `n` pods of the deployment exist and all are Running
/// with `image`, and nothing else (terminating ones included) is left.
fn wait_exactly(env: &Env, n: usize, image: &str) {
    env.wait_for(LONG, &format!("{n} running pods of {image}"), || {
        let all = env
            .get_json(&["pods", "-l", "app=web"])
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default();
        (all.len() == n
            && running(&all) == n
            && all
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == image))
        .then_some(())
    });
}

#[test]
fn deployment_and_job_on_real_containers() {
    let Some(env) = Env::start("ctrl-real", &["controllers"]) else {
        return;
    };
    let image = env.image();
    push_busybox_tag(env.root.path(), env.reg_port, "2");
    let image2 = format!("127.0.0.1:{}/busybox:2", env.reg_port);

    // create → Running.
    env.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={image}"),
        "--",
        "sleep",
        "3600",
    ]);
    let out = env.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    wait_exactly(&env, 1, &image);
    let p = &live_pods(&env, "app=web")[0];
    assert!(p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .starts_with("runc://"));

    // Scale 1 → 10 → 2.
    env.ok(&["scale", "deployment/web", "--replicas=10"]);
    env.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_exactly(&env, 10, &image);
    let d = env.get_json(&["deploy", "web"]).unwrap();
    assert_eq!(d["status"]["availableReplicas"], 10, "{}", d["status"]);
    env.ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_exactly(&env, 2, &image);

    // A deleted pod is replaced (self-healing).
    let victim = live_pods(&env, "app=web")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["delete", "pod", &victim, "--wait=false"]);
    env.wait_for(LONG, "replacement pod", || {
        let ps = live_pods(&env, "app=web");
        (ps.len() == 2
            && running(&ps) == 2
            && ps.iter().all(|p| p["metadata"]["name"] != victim.as_str()))
        .then_some(())
    });

    // set image → rollout status completes, old pods gone.
    env.ok(&[
        "set",
        "image",
        "deployment/web",
        &format!("busybox={image2}"),
    ]);
    let out = env.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_exactly(&env, 2, &image2);

    // A bad image stalls the rollout; undo recovers.
    let bad = format!("127.0.0.1:{}/busybox:nope", env.reg_port);
    env.ok(&["set", "image", "deployment/web", &format!("busybox={bad}")]);
    let o = env.kubectl(&["rollout", "status", "deployment/web", "--timeout=8s"]);
    assert_ne!(
        o.code, 0,
        "a stalled rollout must not succeed: {}",
        o.stdout
    );
    assert!(
        o.stdout.contains("Waiting for deployment \"web\" rollout to finish: 1 out of 2 new replicas have been updated..."),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    env.wait_for(LONG, "a new pod in ErrImagePull/ImagePullBackOff", || {
        live_pods(&env, "app=web").into_iter().find(|p| {
            matches!(
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(),
                Some("ErrImagePull" | "ImagePullBackOff")
            )
        })
    });
    // Old pods keep serving (maxUnavailable 25% of 2 rounds down to 0).
    assert_eq!(running(&live_pods(&env, "app=web")), 2);
    env.ok(&["rollout", "undo", "deployment/web"]);
    env.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_exactly(&env, 2, &image2);
    let hist = env.ok(&["rollout", "history", "deployment/web"]);
    assert!(hist.contains("REVISION"), "{hist}");

    // Job: completions 5, parallelism 2, real containers that take a
    // moment; never more than 2 active.
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: five\nspec:\n  completions: 5\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: {image}\n        command: [\"sh\", \"-c\", \"sleep 1; echo done\"]\n"
    );
    let path = env.root.path().join("job.yaml");
    std::fs::write(&path, job).unwrap();
    env.ok(&["apply", "-f", path.to_str().unwrap()]);
    let mut max_active = 0;
    let j = env.wait_for(LONG, "job five Complete", || {
        let ps = live_pods(&env, "job-name=five");
        max_active = max_active.max(
            ps.iter()
                .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Running" | "Pending")))
                .count(),
        );
        let j = env.get_json(&["job", "five"])?;
        j["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
            .then_some(j)
    });
    assert!(max_active <= 2, "parallelism 2 exceeded: {max_active}");
    assert_eq!(j["status"]["succeeded"], 5, "{}", j["status"]);
    let done = env.get_json(&["pods", "-l", "job-name=five"]).unwrap();
    let succeeded = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!(succeeded, 5);
    let table = env.ok(&["get", "job", "five"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], &["five", "Complete", "5/5"], "{table}");

    // Cleanup through the API (GC removes ReplicaSets and pods).
    env.ok(&[
        "delete",
        "deployment",
        "web",
        "--wait=true",
        "--timeout=60s",
    ]);
    env.ok(&["delete", "job", "five", "--wait=true", "--timeout=60s"]);
    env.wait_for(LONG, "all pods gone", || {
        env.get_json(&["pods"])
            .and_then(|v| v["items"].as_array().map(|a| a.is_empty()))
            .unwrap_or(false)
            .then_some(())
    });
}
