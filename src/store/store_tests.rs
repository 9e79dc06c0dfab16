use super::*;

#[test]
fn batches_are_atomic_across_trees_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Store::open(&path).unwrap();
        let mut b = Batch::new();
        b.put(Tree::Jobs, "job1", &serde_json::json!({"state": "queued"}))
            .unwrap();
        b.put_raw(Tree::LaneQueue, key2("lane", &be(1)), "job1");
        store.apply(b).unwrap();
        store.flush_blocking().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let job: serde_json::Value = store.get(Tree::Jobs, "job1").unwrap().unwrap();
    assert_eq!(job["state"], "queued");
    assert_eq!(store.count_prefix(Tree::LaneQueue, prefix_of("lane")), 1);
    assert_eq!(migrations::version(&store).unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Store::open(&path).unwrap();
        let mut b = Batch::new();
        b.put(Tree::Meta, "schema_version", &(SCHEMA_VERSION + 1))
            .unwrap();
        store.apply(b).unwrap();
        store.flush_blocking().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
    assert!(err.to_string().contains("upgrade kimaki"));
}

#[test]
fn garbage_files_give_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("conf"),
        b"\x00\x01garbage that is not a sled config",
    )
    .unwrap();
    std::fs::write(path.join("db"), vec![0xAB; 4096]).unwrap();
    let err = Store::open(&path).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("Move it aside") || text.contains("I/O"),
        "{text}"
    );
}

#[test]
fn scans_are_ordered_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s")).unwrap();
    let mut b = Batch::new();
    for i in [3u64, 1, 2, 10] {
        b.put(Tree::Events, key2("job", &be(i)), &i).unwrap();
    }
    b.put(Tree::Events, key2("jobx", &be(1)), &99u64).unwrap();
    store.apply(b).unwrap();
    let all: Vec<u64> = store
        .scan_prefix::<u64>(Tree::Events, prefix_of("job"))
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(all, vec![1, 2, 3, 10]);
    let from2: Vec<u64> = store
        .scan_from::<u64>(Tree::Events, &prefix_of("job"), &key2("job", &be(2)), 2)
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(from2, vec![2, 3]);
    assert!(store.next_id().unwrap() < store.next_id().unwrap());
}

#[tokio::test]
async fn every_applied_batch_is_covered_by_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s")).unwrap();
    let flushes = || store.flush.completed.load(Ordering::SeqCst);
    let mut multi = Batch::new();
    multi.put_raw(Tree::Jobs, "a", "1");
    multi.put_raw(Tree::Lanes, "a", "1");
    store.commit(multi).await.unwrap();
    let after_multi = flushes();
    assert!(after_multi >= 1);
    // Nothing new: nothing to flush.
    store.flush().await.unwrap();
    assert_eq!(flushes(), after_multi);
    // A batch on one tree takes sled's cheaper path, and must still be flushed.
    let mut single = Batch::new();
    single.put_raw(Tree::Adapter, "mesh/out/x", "1");
    store.commit(single).await.unwrap();
    assert_eq!(
        flushes(),
        after_multi + 1,
        "a one-tree write was not flushed"
    );
}
