//! End-to-end: `kubectl run -i` and `kubectl attach -i` feed a `stdin:
//! true` container's stdin through the API server, the agent and the
//! container's shim, with the real kubectl and real containers (root;
//! SKIP elsewhere).

#[path = "common/node.rs"]
mod node;
use node::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run kubectl with `input` on its stdin; (exit code, stdout, stderr).
fn kubectl_with_input(env: &Env, args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(KUBECTL)
        .args(args)
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Write after a moment: the session must be attached to get it.
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let _ = stdin.write_all(&input);
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kubectl {} did not finish", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    (
        status.code().unwrap_or(-1),
        t1.join().unwrap(),
        t2.join().unwrap(),
    )
}

#[test]
fn run_and_attach_with_stdin() {
    let Some(env) = Env::start("attach", &[]) else {
        return;
    };
    let image = env.image();

    // kubectl run -i: stdin: true, stdinOnce: true, attached once Running.
    let (code, out, err) = kubectl_with_input(
        &env,
        &[
            "run",
            "once",
            &format!("--image={image}"),
            "--restart=Never",
            "-i",
            "--",
            "sh",
            "-c",
            "read x; echo got:$x",
        ],
        b"hello\n",
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("got:hello"), "stdout: {out}\nstderr: {err}");
    let p = env.wait_phase("once", "Succeeded", Duration::from_secs(30));
    assert_eq!(p["spec"]["containers"][0]["stdin"], true);
    assert_eq!(p["spec"]["containers"][0]["stdinOnce"], true);

    // kubectl attach -i to a running stdin: true container.
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: reader\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {image}\n    stdin: true\n    command: [\"sh\", \"-c\", \"read a; echo first:$a; read b; echo second:$b\"]\n"
    );
    let path = env.root.path().join("reader.yaml");
    std::fs::write(&path, yaml).unwrap();
    env.ok(&["apply", "-f", path.to_str().unwrap()]);
    env.wait_phase("reader", "Running", Duration::from_secs(60));
    let (code, out, err) =
        kubectl_with_input(&env, &["attach", "-i", "reader", "-c", "c"], b"x\ny\n");
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("first:x") && out.contains("second:y"),
        "stdout: {out}\nstderr: {err}"
    );
    env.wait_phase("reader", "Succeeded", Duration::from_secs(30));

    // kubectl run -it: a container terminal (tty: true) with the client's
    // window size, input through the terminal. kubectl needs a terminal
    // itself: run it under script(1), feeding the input after a moment.
    let line = format!(
        "stty rows 33 cols 91; {KUBECTL} run tty --image={image} --restart=Never -it -- sh -c 'sleep 2; tty; stty size; read x; echo got:$x'"
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("KUBECONFIG", env.kubeconfig())
        .env("HOME", env.root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().unwrap();
    let mut so = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    env.wait_for(Duration::from_secs(60), "tty pod Running", || {
        env.pod("tty")
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(4));
    let _ = stdin.write_all(b"hello\r");
    let _ = stdin.flush();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kubectl run -it did not finish: {:?}", env.pod("tty"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let out = reader.join().unwrap();
    assert!(
        status.success() || status.code() == Some(0),
        "{status}: {out}"
    );
    assert!(!out.contains("not a tty"), "{out}");
    assert!(out.contains("33 91"), "window size: {out:?}");
    assert!(out.contains("got:hello"), "{out:?}");
    let p = env.wait_phase("tty", "Succeeded", Duration::from_secs(30));
    assert_eq!(p["spec"]["containers"][0]["tty"], true);
    // The terminal's output is the container's log too.
    let logs = env.ok(&["logs", "tty"]);
    assert!(logs.contains("got:hello"), "{logs:?}");

    env.ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);
}
