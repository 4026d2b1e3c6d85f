//! The conformance suite against every backend.

mod memory {
    bosun_store::conformance_tests!((bosun_store::MemoryStore::new(), ()));
}

/// A tiny broadcast ring forces watchers onto the catch-up-from-history path.
mod memory_small_watch_buffer {
    bosun_store::conformance_tests!((bosun_store::MemoryStore::with_watch_capacity(4), ()));
}

fn sqlite(opts: bosun_store::SqliteOptions) -> (bosun_store::SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        bosun_store::SqliteStore::open_with_options(&dir.path().join("db.sqlite"), &opts).unwrap();
    (store, dir)
}

mod sqlite_store {
    bosun_store::conformance_tests!(super::sqlite(Default::default()));
}

mod sqlite_small_watch_buffer {
    bosun_store::conformance_tests!(super::sqlite(bosun_store::SqliteOptions {
        watch_capacity: 4,
        sync_full: false,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_memory() {
    bosun_store::conformance::run_all(bosun_store::MemoryStore::new).await;
}
