//! Conformance suite: the behaviour every [`Store`] backend must have.
//!
//! Each case is a `pub async fn case<S: Store>(store: S)` taking a fresh,
//! empty store and panicking on failure. Run them with [`run_all`] or, to get
//! one `#[tokio::test]` per case, with the [`conformance_tests!`] macro:
//!
//! ```ignore
//! bosun_store::conformance_tests!((bosun_store::MemoryStore::new(), ()));
//! ```
//!
//! The macro argument evaluates to `(store, guard)`; the guard (e.g. a temp
//! dir) lives until the case ends. Cases need a multi-threaded tokio runtime
//! with timers.

use std::sync::Arc;
use std::time::Duration;

use crate::{Event, EventKind, KeyValue, Revision, Store, StoreError, WatchStream};

/// Generate one multi-threaded `#[tokio::test]` per conformance case.
/// Needs `tokio` (with `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            create_and_get, update_cas, delete_cas, recreate_resets_create_revision,
            revisions_monotonic, range_prefix, range_paging, range_historic, compaction,
            watch_from_zero, watch_from_past, watch_live_prefix_filter,
            watch_concurrent_writers, watch_resume_no_loss_no_dup, watch_slow_consumer,
            watch_ends_when_store_dropped);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

/// Run every case, each on a fresh store from `make`.
pub async fn run_all<S: Store>(make: impl Fn() -> S) {
    create_and_get(make()).await;
    update_cas(make()).await;
    delete_cas(make()).await;
    recreate_resets_create_revision(make()).await;
    revisions_monotonic(make()).await;
    range_prefix(make()).await;
    range_paging(make()).await;
    range_historic(make()).await;
    compaction(make()).await;
    watch_from_zero(make()).await;
    watch_from_past(make()).await;
    watch_live_prefix_filter(make()).await;
    watch_concurrent_writers(make()).await;
    watch_resume_no_loss_no_dup(make()).await;
    watch_slow_consumer(make()).await;
    watch_ends_when_store_dropped(make()).await;
}

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: v(value),
        create_revision,
        mod_revision,
    }
}

fn put(kv: KeyValue, prev: Option<KeyValue>) -> Event {
    Event {
        kind: EventKind::Put,
        kv,
        prev,
    }
}

fn del(last: KeyValue, rev: Revision) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            mod_revision: rev,
            ..last.clone()
        },
        prev: Some(last),
    }
}

async fn next(w: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, w.recv()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

async fn collect(w: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(w).await);
    }
    out
}

async fn assert_quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), w.recv()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

async fn keys<S: Store>(s: &S, prefix: &str, at: Option<Revision>) -> Vec<String> {
    s.range(prefix, None, 0, at)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect()
}

pub async fn create_and_get<S: Store>(s: S) {
    assert_eq!(s.current_revision().await.unwrap(), 0);
    assert_eq!(s.compacted_revision().await.unwrap(), 0);
    assert_eq!(s.create("/a/x", v("1")).await.unwrap(), 1);
    assert_eq!(s.get("/a/x").await.unwrap(), Some(kv("/a/x", "1", 1, 1)));
    match s.create("/a/x", v("2")).await {
        Err(StoreError::AlreadyExists(k)) => assert_eq!(k, "/a/x"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get("/a/x").await.unwrap().unwrap().value, v("1"));
    assert_eq!(s.get("/a/y").await.unwrap(), None);
    assert_eq!(s.get("/a").await.unwrap(), None);
    // Empty values are values.
    assert_eq!(s.create("/a/empty", Vec::new()).await.unwrap(), 2);
    assert_eq!(
        s.get("/a/empty").await.unwrap(),
        Some(kv("/a/empty", "", 2, 2))
    );
    assert_eq!(s.current_revision().await.unwrap(), 2);
}

pub async fn update_cas<S: Store>(s: S) {
    let r1 = s.create("/u/k", v("1")).await.unwrap();
    let kv2 = s.update("/u/k", v("2"), r1).await.unwrap();
    assert_eq!(kv2, kv("/u/k", "2", r1, r1 + 1));
    assert_eq!(s.get("/u/k").await.unwrap(), Some(kv2.clone()));
    match s.update("/u/k", v("stale"), r1).await {
        Err(StoreError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (key.as_str(), expected, actual),
                ("/u/k", r1, kv2.mod_revision)
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get("/u/k").await.unwrap(), Some(kv2.clone()));
    match s.update("/u/missing", v("x"), 1).await {
        Err(StoreError::NotFound(k)) => assert_eq!(k, "/u/missing"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let kv3 = s.update("/u/k", v("3"), kv2.mod_revision).await.unwrap();
    assert_eq!(kv3, kv("/u/k", "3", r1, kv2.mod_revision + 1));
}

pub async fn delete_cas<S: Store>(s: S) {
    let ra = s.create("/d/a", v("a")).await.unwrap();
    let rb = s.create("/d/b", v("b")).await.unwrap();
    match s.delete("/d/a", Some(999)).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (999, ra)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(s.get("/d/a").await.unwrap().is_some());
    let gone = s.delete("/d/a", Some(ra)).await.unwrap();
    assert_eq!(gone, kv("/d/a", "a", ra, rb + 1));
    assert_eq!(s.current_revision().await.unwrap(), rb + 1);
    assert_eq!(s.get("/d/a").await.unwrap(), None);
    for res in [
        s.delete("/d/a", None).await,
        s.delete("/d/a", Some(ra)).await,
        s.update("/d/a", v("x"), ra).await,
        s.delete("/d/never", None).await,
    ] {
        assert!(
            matches!(res, Err(StoreError::NotFound(_))),
            "expected NotFound, got {res:?}"
        );
    }
    let gone = s.delete("/d/b", None).await.unwrap();
    assert_eq!(gone, kv("/d/b", "b", rb, rb + 2));
    assert_eq!(keys(&s, "/d/", None).await, Vec::<String>::new());
}

pub async fn recreate_resets_create_revision<S: Store>(s: S) {
    let r1 = s.create("/r/k", v("1")).await.unwrap();
    let kv2 = s.update("/r/k", v("2"), r1).await.unwrap();
    assert_eq!(kv2.create_revision, r1);
    s.delete("/r/k", Some(kv2.mod_revision)).await.unwrap();
    let r4 = s.create("/r/k", v("new")).await.unwrap();
    assert_eq!(r4, r1 + 3);
    assert_eq!(
        s.get("/r/k").await.unwrap(),
        Some(kv("/r/k", "new", r4, r4))
    );
    // The old incarnation's revision no longer matches.
    assert!(matches!(
        s.update("/r/k", v("x"), kv2.mod_revision).await,
        Err(StoreError::Conflict { .. })
    ));
}

pub async fn revisions_monotonic<S: Store>(s: S) {
    let mut seen = Vec::new();
    for i in 0..5 {
        seen.push(s.create(&format!("/m/{i}"), v("x")).await.unwrap());
    }
    let mut last = *seen.last().unwrap();
    for i in 0..5 {
        let key = format!("/m/{i}");
        // Failed writes must not consume a revision.
        assert!(s.create(&key, v("dup")).await.is_err());
        assert!(s.update(&key, v("stale"), 0).await.is_err());
        assert!(s.delete("/m/none", None).await.is_err());
        assert_eq!(s.current_revision().await.unwrap(), last);
        last = s.update(&key, v("y"), last - 4).await.unwrap().mod_revision;
        seen.push(last);
    }
    seen.push(s.delete("/m/0", None).await.unwrap().mod_revision);
    let expected: Vec<Revision> = (1..=seen.len() as Revision).collect();
    assert_eq!(seen, expected, "every write takes the next revision");
    assert_eq!(s.current_revision().await.unwrap(), seen.len() as Revision);
}

pub async fn range_prefix<S: Store>(s: S) {
    for key in [
        "/registry/pods/default/b",
        "/registry/pods/kube-system/c",
        "/registry/pods/default/a",
        "/registry/pods/default/\u{e9}",
        "/registry/podsx/default/z",
        "/registry/pod",
        "/registry/pods",
        "/registry/services/default/s",
        "/registry/pods/default/deleted",
    ] {
        s.create(key, v(key)).await.unwrap();
    }
    s.delete("/registry/pods/default/deleted", None)
        .await
        .unwrap();
    let current = s.current_revision().await.unwrap();

    let res = s.range("/registry/pods/", None, 0, None).await.unwrap();
    assert!(!res.more);
    assert_eq!(res.revision, current);
    let got: Vec<&str> = res.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        got,
        [
            "/registry/pods/default/a",
            "/registry/pods/default/b",
            "/registry/pods/default/\u{e9}",
            "/registry/pods/kube-system/c",
        ]
    );
    for kv in &res.kvs {
        assert_eq!(kv.value, v(&kv.key));
        assert_eq!(kv.create_revision, kv.mod_revision);
    }
    assert_eq!(
        keys(&s, "/registry/pods/default/", None).await,
        [
            "/registry/pods/default/a",
            "/registry/pods/default/b",
            "/registry/pods/default/\u{e9}",
        ]
    );
    let all = keys(&s, "", None).await;
    assert_eq!(all.len(), 8);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "keys come in byte order");
    assert_eq!(keys(&s, "/registry/", None).await, all);
    assert_eq!(
        keys(&s, "/registry/pods", None).await.len(),
        6,
        "a prefix without a trailing slash is a plain string prefix"
    );
    assert!(keys(&s, "/nothing/", None).await.is_empty());
}

pub async fn range_paging<S: Store>(s: S) {
    for i in 0..25 {
        s.create(&format!("/p/k{i:02}"), v("x")).await.unwrap();
    }
    s.create("/q/x", v("x")).await.unwrap();
    let at = s.current_revision().await.unwrap();
    // A write after the first page must not show up in a paged read at `at`.
    s.create("/p/k05a", v("late")).await.unwrap();

    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let res = s
            .range("/p/", after.as_deref(), 10, Some(at))
            .await
            .unwrap();
        assert_eq!(res.revision, at);
        assert!(res.kvs.len() <= 10);
        pages.push(res.kvs.len());
        after = res.kvs.last().map(|kv| kv.key.clone());
        if !res.more {
            break;
        }
    }
    assert_eq!(pages, [10, 10, 5]);

    // Exactly `limit` remaining: more is false.
    let res = s.range("/p/", Some("/p/k19"), 5, Some(at)).await.unwrap();
    assert_eq!(res.kvs.len(), 5);
    assert!(!res.more);
    // Latest read sees the late key, in order.
    let res = s.range("/p/", Some("/p/k05"), 2, None).await.unwrap();
    let got: Vec<&str> = res.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(got, ["/p/k05a", "/p/k06"]);
    assert!(res.more);
    // start_after before the prefix: from the beginning.
    let res = s.range("/p/", Some("/a"), 1, None).await.unwrap();
    assert_eq!(res.kvs[0].key, "/p/k00");
    // start_after past the prefix: nothing.
    let res = s.range("/p/", Some("/p0"), 0, None).await.unwrap();
    assert!(res.kvs.is_empty() && !res.more);
}

pub async fn range_historic<S: Store>(s: S) {
    let r1 = s.create("/h/a", v("a1")).await.unwrap();
    let r2 = s.create("/h/b", v("b1")).await.unwrap();
    let r3 = s.update("/h/a", v("a2"), r1).await.unwrap().mod_revision;
    let r4 = s.delete("/h/b", None).await.unwrap().mod_revision;
    let r5 = s.create("/h/c", v("c1")).await.unwrap();

    let at = |r| s.range("/h/", None, 0, Some(r));
    assert_eq!(at(r1).await.unwrap().kvs, [kv("/h/a", "a1", r1, r1)]);
    let res = at(r2).await.unwrap();
    assert_eq!(res.revision, r2);
    assert_eq!(
        res.kvs,
        [kv("/h/a", "a1", r1, r1), kv("/h/b", "b1", r2, r2)]
    );
    assert_eq!(
        at(r3).await.unwrap().kvs,
        [kv("/h/a", "a2", r1, r3), kv("/h/b", "b1", r2, r2)]
    );
    assert_eq!(at(r4).await.unwrap().kvs, [kv("/h/a", "a2", r1, r3)]);
    assert_eq!(
        at(r5).await.unwrap().kvs,
        [kv("/h/a", "a2", r1, r3), kv("/h/c", "c1", r5, r5)]
    );
    match at(r5 + 1).await {
        Err(StoreError::FutureRevision(r)) => assert_eq!(r, r5 + 1),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    // Some(0) means latest.
    assert_eq!(at(0).await.unwrap().revision, r5);
    // Historic paging.
    let res = s.range("/h/", None, 1, Some(r3)).await.unwrap();
    assert_eq!((res.kvs.len(), res.more), (1, true));
    let res = s.range("/h/", Some("/h/a"), 1, Some(r3)).await.unwrap();
    assert_eq!(res.kvs, [kv("/h/b", "b1", r2, r2)]);
    assert!(!res.more);
}

pub async fn compaction<S: Store>(s: S) {
    let r1 = s.create("/c/a", v("a1")).await.unwrap();
    let r2 = s.update("/c/a", v("a2"), r1).await.unwrap().mod_revision;
    let r3 = s.create("/c/b", v("b1")).await.unwrap();
    s.delete("/c/b", None).await.unwrap(); // 4
    s.create("/c/c", v("c1")).await.unwrap(); // 5
    s.create("/c/d", v("d1")).await.unwrap(); // 6: the compaction point
    s.update("/c/a", v("a3"), r2).await.unwrap(); // 7
    s.delete("/c/d", None).await.unwrap(); // 8
    s.create("/c/b", v("b2")).await.unwrap(); // 9
    let current = s.current_revision().await.unwrap();
    assert_eq!((r3, current), (3, 9));
    let compact_at: Revision = 6;

    let mut snapshots = Vec::new();
    for r in 1..=current {
        snapshots.push(s.range("/c/", None, 0, Some(r)).await.unwrap().kvs);
    }
    let mut w = s.watch("/c/", compact_at).await.unwrap();
    let expected_events = collect(&mut w, (current - compact_at) as usize).await;
    drop(w);

    s.compact(compact_at).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), compact_at);
    for r in 1..=current {
        let res = s.range("/c/", None, 0, Some(r)).await;
        if r < compact_at {
            match res {
                Err(StoreError::Compacted {
                    requested,
                    compacted,
                }) => assert_eq!((requested, compacted), (r, compact_at)),
                other => panic!("expected Compacted at {r}, got {other:?}"),
            }
        } else {
            assert_eq!(
                res.unwrap().kvs,
                snapshots[(r - 1) as usize],
                "state at {r} survives compaction"
            );
        }
    }
    match s.watch("/c/", compact_at - 1).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (compact_at - 1, compact_at)),
        Ok(_) => panic!("expected Compacted for a watch before the compaction point"),
        Err(e) => panic!("expected Compacted, got {e}"),
    }
    assert!(matches!(
        s.watch("/c/", 0).await,
        Err(StoreError::Compacted { .. })
    ));
    // Watching from the compaction point replays the same events (with prev).
    let mut w = s.watch("/c/", compact_at).await.unwrap();
    assert_eq!(
        collect(&mut w, expected_events.len()).await,
        expected_events
    );
    assert_quiet(&mut w).await;

    // Compacting backwards is a no-op; into the future is an error.
    s.compact(2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), compact_at);
    assert!(matches!(
        s.compact(current + 1).await,
        Err(StoreError::FutureRevision(_))
    ));
    // Compacting everything keeps the latest values, and writes go on.
    s.compact(current).await.unwrap();
    assert_eq!(
        s.range("/c/", None, 0, None).await.unwrap().kvs,
        snapshots[(current - 1) as usize]
    );
    assert_eq!(s.current_revision().await.unwrap(), current);
    let next_rev = s.create("/c/d", v("d2")).await.unwrap();
    assert_eq!(next_rev, current + 1);
    let ev = next(&mut w).await;
    assert_eq!(ev, put(kv("/c/d", "d2", next_rev, next_rev), None));
    let a = s.get("/c/a").await.unwrap().unwrap();
    let a2 = s.update("/c/a", v("a4"), a.mod_revision).await.unwrap();
    assert_eq!(a2.create_revision, r1);
    assert_eq!(next(&mut w).await, put(a2, Some(a)));
}

/// The writes used by the watch cases; returns the events they produce under "/w/".
async fn watch_script<S: Store>(s: &S) -> Vec<Event> {
    let r1 = s.create("/w/a", v("a1")).await.unwrap();
    let a2 = s.update("/w/a", v("a2"), r1).await.unwrap();
    let r3 = s.create("/w/b", v("b1")).await.unwrap();
    let gone = s.delete("/w/a", Some(a2.mod_revision)).await.unwrap();
    s.create("/other/x", v("x")).await.unwrap();
    s.create("/wx", v("sibling")).await.unwrap();
    let r7 = s.create("/w/a", v("a3")).await.unwrap();
    vec![
        put(kv("/w/a", "a1", r1, r1), None),
        put(a2.clone(), Some(kv("/w/a", "a1", r1, r1))),
        put(kv("/w/b", "b1", r3, r3), None),
        del(a2, gone.mod_revision),
        put(kv("/w/a", "a3", r7, r7), None),
    ]
}

pub async fn watch_from_zero<S: Store>(s: S) {
    // Live watcher, started before the writes.
    let mut live = s.watch("/w/", 0).await.unwrap();
    let expected = watch_script(&s).await;
    assert_eq!(collect(&mut live, expected.len()).await, expected);
    assert_quiet(&mut live).await;
    // Replaying watcher, started after: identical events.
    let mut replay = s.watch("/w/", 0).await.unwrap();
    assert_eq!(collect(&mut replay, expected.len()).await, expected);
    assert_quiet(&mut replay).await;
    // Both then see new writes.
    let b = s.get("/w/b").await.unwrap().unwrap();
    let b2 = s.update("/w/b", v("b2"), b.mod_revision).await.unwrap();
    let ev = put(b2, Some(b));
    assert_eq!(next(&mut live).await, ev);
    assert_eq!(next(&mut replay).await, ev);
}

pub async fn watch_from_past<S: Store>(s: S) {
    let expected = watch_script(&s).await;
    let from = expected[2].kv.mod_revision;
    let mut w = s.watch("/w/", from).await.unwrap();
    assert_eq!(collect(&mut w, 2).await, expected[3..]);
    assert_quiet(&mut w).await;

    let current = s.current_revision().await.unwrap();
    let mut now = s.watch("/w/", current).await.unwrap();
    assert_quiet(&mut now).await;
    // A watch from a future revision waits for it.
    let mut future = s.watch("/w/", current + 1).await.unwrap();
    let r1 = s.create("/w/n1", v("1")).await.unwrap();
    let r2 = s.create("/w/n2", v("2")).await.unwrap();
    assert_eq!(next(&mut now).await.kv.mod_revision, r1);
    assert_eq!(next(&mut now).await.kv.mod_revision, r2);
    assert_eq!(next(&mut future).await.kv.mod_revision, r2);
    assert_quiet(&mut future).await;
}

pub async fn watch_live_prefix_filter<S: Store>(s: S) {
    let mut w = s.watch("/registry/pods/", 0).await.unwrap();
    s.create("/registry/podsx/a", v("x")).await.unwrap();
    let ra = s.create("/registry/pods/a", v("a")).await.unwrap();
    s.create("/registry/services/x", v("x")).await.unwrap();
    s.create("/registry/pods", v("x")).await.unwrap();
    let rb = s.create("/registry/pods/ns/b", v("b")).await.unwrap();
    let a2 = s.update("/registry/pods/a", v("a2"), ra).await.unwrap();
    assert_eq!(
        collect(&mut w, 3).await,
        [
            put(kv("/registry/pods/a", "a", ra, ra), None),
            put(kv("/registry/pods/ns/b", "b", rb, rb), None),
            put(a2, Some(kv("/registry/pods/a", "a", ra, ra))),
        ]
    );
    assert_quiet(&mut w).await;
}

/// Several writers at once: every watcher sees the same strictly ordered
/// sequence, whether it started before, during or after the writes.
pub async fn watch_concurrent_writers<S: Store>(s: S) {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 25;
    const TOTAL: usize = WRITERS * PER_WRITER;
    let s = Arc::new(s);
    let mut before = s.watch("/cw/", 0).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/cw/{w}");
            let mut rev = s.create(&key, v("0")).await.unwrap();
            for i in 1..PER_WRITER {
                rev = s
                    .update(&key, v(&i.to_string()), rev)
                    .await
                    .unwrap()
                    .mod_revision;
            }
        }));
    }
    // Join mid-stream: it must see exactly the events after its start revision.
    tokio::task::yield_now().await;
    let mid_from = s.current_revision().await.unwrap();
    let mut during = s.watch("/cw/", mid_from).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let all = collect(&mut before, TOTAL).await;
    let revs: Vec<Revision> = all.iter().map(Event::revision).collect();
    assert_eq!(revs, (1..=TOTAL as Revision).collect::<Vec<_>>());
    for w in 0..WRITERS {
        let values: Vec<Vec<u8>> = all
            .iter()
            .filter(|e| e.kv.key == format!("/cw/{w}"))
            .map(|e| e.kv.value.clone())
            .collect();
        let expected: Vec<Vec<u8>> = (0..PER_WRITER).map(|i| v(&i.to_string())).collect();
        assert_eq!(values, expected);
    }
    let tail = &all[mid_from as usize..];
    assert_eq!(collect(&mut during, tail.len()).await, tail);
    let mut after = s.watch("/cw/", 0).await.unwrap();
    assert_eq!(collect(&mut after, TOTAL).await, all);
    for w in [&mut before, &mut during, &mut after] {
        assert_quiet(w).await;
    }
}

/// A client that drops its watch and re-watches from the last revision it saw
/// (while writes go on) gets every event exactly once.
pub async fn watch_resume_no_loss_no_dup<S: Store>(s: S) {
    const TOTAL: usize = 150;
    let s = Arc::new(s);
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                s.create(&format!("/rw/{i:04}"), v("x")).await.unwrap();
            }
        })
    };
    let mut seen: Vec<Revision> = Vec::new();
    let mut last = 0;
    while seen.len() < TOTAL {
        let mut w = s.watch("/rw/", last).await.unwrap();
        let n = 17.min(TOTAL - seen.len());
        for ev in collect(&mut w, n).await {
            seen.push(ev.revision());
            last = ev.revision();
        }
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=TOTAL as Revision).collect::<Vec<_>>());
}

/// A watcher that does not read for a while still gets every event in order
/// (or an error, never a silent gap). Most useful on a store built with a
/// small watch capacity, which forces the catch-up path.
pub async fn watch_slow_consumer<S: Store>(s: S) {
    const TOTAL: usize = 700;
    let mut w = s.watch("/slow/", 0).await.unwrap();
    for i in 0..TOTAL {
        s.create(&format!("/slow/{i:04}"), v("x")).await.unwrap();
    }
    let mut expect: Revision = 1;
    while (expect as usize) <= TOTAL {
        match tokio::time::timeout(EVENT_TIMEOUT, w.recv()).await {
            Ok(Some(Ok(ev))) => {
                assert_eq!(ev.revision(), expect, "no gap, no duplicate");
                expect += 1;
            }
            // Allowed by the contract: the watcher is told it fell behind.
            Ok(Some(Err(StoreError::Compacted { .. }))) => return,
            other => panic!("unexpected watch item: {other:?}"),
        }
    }
    assert_quiet(&mut w).await;
}

/// Dropping the last handle to the store ends its watch streams.
pub async fn watch_ends_when_store_dropped<S: Store>(s: S) {
    let mut w = s.watch("/", 0).await.unwrap();
    s.create("/x", v("x")).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), 1);
    drop(s);
    match tokio::time::timeout(EVENT_TIMEOUT, w.recv()).await {
        Ok(None) => {}
        other => panic!("expected the stream to end, got {other:?}"),
    }
}
