//! Write throughput and latency of `SqliteStore` under concurrency.
//!
//! ```text
//! cargo run --release -p bosun-store --example store_bench [-- SECONDS [CONCURRENCY...]]
//! ```
//!
//! For each concurrency level N (default 1, 16, 64, 256), a fresh store in a
//! temp dir (default options: WAL, `synchronous=FULL`) is driven by N tokio
//! tasks for SECONDS (default 3) each. Every task loops over its own keys
//! doing `create` + `get` + `update` (CAS on the revision it just read), the
//! access pattern of a scheduler binding pods. Reported: acknowledged writes
//! per second (creates + updates), p50/p99 latency of single writes, and
//! p50/p99 latency of one whole create+get+update round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_store::{SqliteStore, Store};

struct TaskStats {
    writes: u64,
    write_lat: Vec<Duration>,
    round_lat: Vec<Duration>,
}

async fn worker(store: Arc<SqliteStore>, id: usize, deadline: Instant) -> TaskStats {
    let mut stats = TaskStats {
        writes: 0,
        write_lat: Vec::new(),
        round_lat: Vec::new(),
    };
    let value = vec![b'x'; 256];
    let mut i = 0u64;
    while Instant::now() < deadline {
        let key = format!("/registry/pods/bench/t{id:04}-{i:08}");
        i += 1;
        let round = Instant::now();

        let t = Instant::now();
        store.create(&key, value.clone()).await.expect("create");
        stats.write_lat.push(t.elapsed());
        stats.writes += 1;

        let cur = store.get(&key).await.expect("get").expect("key exists");

        let t = Instant::now();
        store
            .update(&key, value.clone(), cur.mod_revision)
            .await
            .expect("update");
        stats.write_lat.push(t.elapsed());
        stats.writes += 1;

        stats.round_lat.push(round.elapsed());
    }
    stats
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(concurrency: usize, secs: f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.sqlite")).expect("open"));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|id| tokio::spawn(worker(store.clone(), id, deadline)))
        .collect();
    let mut writes = 0;
    let mut write_lat = Vec::new();
    let mut round_lat = Vec::new();
    for t in tasks {
        let s = t.await.expect("worker panicked");
        writes += s.writes;
        write_lat.extend(s.write_lat);
        round_lat.extend(s.round_lat);
    }
    let elapsed = start.elapsed().as_secs_f64();
    write_lat.sort_unstable();
    round_lat.sort_unstable();
    println!(
        "{concurrency:>5} {:>11.0} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
        writes as f64 / elapsed,
        ms(percentile(&write_lat, 0.50)),
        ms(percentile(&write_lat, 0.99)),
        ms(percentile(&round_lat, 0.50)),
        ms(percentile(&round_lat, 0.99)),
    );
    assert_eq!(
        store.current_revision().await.expect("revision"),
        i64::try_from(writes).expect("fits"),
        "every acknowledged write has its own revision"
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args
        .next()
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(3.0);
    let levels: Vec<usize> = {
        let l: Vec<usize> = args
            .map(|s| s.parse().expect("CONCURRENCY must be an integer"))
            .collect();
        if l.is_empty() {
            vec![1, 16, 64, 256]
        } else {
            l
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("SqliteStore, synchronous=FULL, {secs}s per level, create+get+update-CAS per round");
    println!(
        "{:>5} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "tasks", "writes/s", "w p50 ms", "w p99 ms", "rnd p50", "rnd p99"
    );
    for n in levels {
        rt.block_on(run(n, secs));
    }
}
