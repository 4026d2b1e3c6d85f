//! SQLite-only behaviour: persistence across reopen, crash durability,
//! exclusive access, physical compaction.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_store::{SqliteStore, Store, StoreError};

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let (before, a_kv) = {
        let s = SqliteStore::open(&path).unwrap();
        let r1 = s.create("/k/a", v("a1")).await.unwrap();
        let a = s.update("/k/a", v("a2"), r1).await.unwrap();
        s.create("/k/b", v("b")).await.unwrap();
        s.delete("/k/b", None).await.unwrap();
        s.create("/k/c", v("c")).await.unwrap();
        s.compact(3).await.unwrap();
        (s.current_revision().await.unwrap(), a)
    };
    assert_eq!(before, 5);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), before);
    assert_eq!(s.compacted_revision().await.unwrap(), 3);
    assert_eq!(s.get("/k/a").await.unwrap(), Some(a_kv.clone()));
    assert_eq!(s.get("/k/b").await.unwrap(), None);
    let keys: Vec<String> = s
        .range("/k/", None, 0, Some(3))
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/k/a", "/k/b"]);
    assert!(matches!(
        s.range("/k/", None, 0, Some(2)).await,
        Err(StoreError::Compacted { .. })
    ));
    // Revisions continue, and history after the compaction point is replayable.
    assert_eq!(s.create("/k/d", v("d")).await.unwrap(), before + 1);
    let mut w = s.watch("/k/", 3).await.unwrap();
    let revs: Vec<i64> = [
        w.recv().await.unwrap().unwrap(),
        w.recv().await.unwrap().unwrap(),
        w.recv().await.unwrap().unwrap(),
    ]
    .iter()
    .map(|e| e.kv.mod_revision)
    .collect();
    assert_eq!(revs, [4, 5, 6]);
}

/// Compacting away the newest row (a delete marker) must not let the next
/// write reuse its revision after a reopen.
#[tokio::test]
async fn reopen_after_compacting_the_last_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create("/k/a", v("a")).await.unwrap();
        s.create("/k/b", v("b")).await.unwrap();
        s.delete("/k/b", None).await.unwrap();
        s.compact(3).await.unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), 3);
    assert_eq!(s.create("/k/b", v("b2")).await.unwrap(), 4);
}

#[tokio::test]
async fn second_open_of_same_file_fails_until_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let first = SqliteStore::open(&path).unwrap();
    first.create("/k", v("x")).await.unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("locked"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a second store on the same file must be refused"),
    }
    drop(first);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.current_revision().await.unwrap(), 1);
}

/// Compaction really deletes rows, and the freed pages are returned.
#[tokio::test]
async fn compaction_removes_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let opts = bosun_store::SqliteOptions {
            sync_full: false,
            ..Default::default()
        };
        let s = SqliteStore::open_with_options(&path, &opts).unwrap();
        let big = vec![b'x'; 4096];
        let mut rev = s.create("/k/hot", big.clone()).await.unwrap();
        for _ in 0..300 {
            rev = s
                .update("/k/hot", big.clone(), rev)
                .await
                .unwrap()
                .mod_revision;
        }
        for i in 0..10 {
            s.create(&format!("/k/tmp{i}"), v("t")).await.unwrap();
            s.delete(&format!("/k/tmp{i}"), None).await.unwrap();
        }
        s.create("/k/after", v("a")).await.unwrap(); // above the compaction point
        let current = s.current_revision().await.unwrap();
        s.compact(current - 1).await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2, "only the latest /k/hot and /k/after remain");
    let auto_vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(auto_vacuum, 2, "incremental auto-vacuum is enabled");
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0, "freed pages were vacuumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compactor_keeps_recent_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).unwrap());
    let mut rev = s.create("/k", v("0")).await.unwrap();
    for i in 1..20 {
        rev = s
            .update("/k", v(&i.to_string()), rev)
            .await
            .unwrap()
            .mod_revision;
    }
    let handle = bosun_store::spawn_compactor(s.clone(), Duration::from_millis(20), 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.compacted_revision().await.unwrap() != 15 {
        assert!(Instant::now() < deadline, "compactor did not run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.abort();
    assert!(s.range("/", None, 0, Some(15)).await.is_ok());
    assert!(s.range("/", None, 0, Some(14)).await.is_err());
    assert_eq!(s.get("/k").await.unwrap().unwrap().value, v("19"));
}

const CHILD_ENV: &str = "BOSUN_STORE_KILL9_CHILD_DB";
const ACKS_BEFORE_KILL: usize = 200;

/// Not a test by itself: the child half of `acknowledged_writes_survive_kill_9`.
/// Does nothing unless the parent set `CHILD_ENV`.
#[test]
fn kill9_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(Path::new(&path)).unwrap();
        let started = Instant::now();
        let mut out = std::io::stdout().lock();
        // Bounded so that an orphaned child stops by itself.
        for i in 0..1_000_000u64 {
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
            let key = format!("/kill9/{i:07}");
            let rev = store.create(&key, key.clone().into_bytes()).await.unwrap();
            // Printed only once the write is acknowledged.
            writeln!(out, "ACK {key} {rev}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// Re-runs this test binary as a child that writes keys, SIGKILLs it while it
/// is writing, and checks that every write it acknowledged is in the database.
#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill9_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut acked: Vec<(String, i64)> = Vec::new();
    let mut killed = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        // A line cut short by the kill was never fully acknowledged.
        let Some(text) = line.strip_suffix(b"\n") else {
            break;
        };
        let text = String::from_utf8(text.to_vec()).unwrap();
        let Some(rest) = text.strip_prefix("ACK ") else {
            continue; // libtest chatter
        };
        let (key, rev) = rest.split_once(' ').unwrap();
        acked.push((key.to_string(), rev.parse().unwrap()));
        if acked.len() == ACKS_BEFORE_KILL && !killed {
            // Child::kill sends SIGKILL (by PID) on Unix.
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "child exited before being killed: {status:?}");
    assert_eq!(status.signal(), Some(9), "child died of SIGKILL");
    assert!(acked.len() >= ACKS_BEFORE_KILL);

    let store = SqliteStore::open(&path).unwrap();
    let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap();
    let current = store.current_revision().await.unwrap();
    assert!(
        current >= max_acked,
        "revision {current} < acked {max_acked}"
    );
    for (key, rev) in &acked {
        let kv = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.mod_revision, *rev);
        assert_eq!(kv.value, key.as_bytes());
    }
    // Whatever committed forms a gap-free history, and revisions go on.
    let all = store.range("/kill9/", None, 0, None).await.unwrap().kvs;
    let revs: Vec<i64> = all.iter().map(|kv| kv.mod_revision).collect();
    assert_eq!(revs, (1..=current).collect::<Vec<_>>());
    assert_eq!(store.create("/after", v("x")).await.unwrap(), current + 1);
}
