//! `Stats::to_json` writes valid JSON whose figures are the statistics', and the
//! per-shelf counters add up to the per-class ones. scripts/test.sh runs it
//! again with the `op-counters` feature.

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

#[test]
fn json_parses_and_matches_the_stats() {
    let blocks: Vec<Box<[u8; 40]>> = (0..10_000).map(|_| Box::new([1; 40])).collect();
    drop(blocks);
    let stats = cpuslab::stats();
    let mut buffer = vec![0u8; cpuslab::Stats::JSON_MAX_BYTES];
    let len = stats.to_json(&mut buffer).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&buffer[..len]).unwrap();
    assert_eq!(json["allocated"], stats.allocated);
    assert_eq!(json["resident"], stats.resident);
    assert_eq!(json["mode"], format!("{:?}", stats.mode));
    assert_eq!(json["shelves"], stats.shelves);
    assert_eq!(json["rseq"]["aborts"], stats.rseq.aborts);
    let classes = json["classes"].as_array().unwrap();
    assert_eq!(classes.len(), cpuslab::NUM_CLASSES);
    for (class, value) in stats.classes.iter().zip(classes) {
        assert_eq!(value["size"], class.size);
        assert_eq!(value["alloc_misses"], class.cache.alloc_misses);
        assert_eq!(value["to_depot"], class.cache.to_depot);
    }

    // 10 000 frees of 48-byte objects overflowed some shelf's stack.
    let class = stats.classes.iter().position(|c| c.size == 48).unwrap();
    let mut sum = cpuslab::CacheCounters::default();
    for shelf in 0..stats.shelves {
        sum.add(&cpuslab::shelf_counters(shelf).unwrap()[class]);
    }
    assert!(sum.alloc_misses > 0 && sum.free_overflows > 0, "{sum:?}");
    assert!(sum.from_depot >= sum.alloc_misses);
    assert!(cpuslab::shelf_counters(stats.shelves).is_none());
    if cpuslab::OP_COUNTERS {
        // Most of the 10 000 allocations and frees hit the per-CPU stacks.
        assert!(sum.allocations >= 5_000 && sum.frees >= 5_000, "{sum:?}");
    } else {
        assert_eq!((sum.allocations, sum.frees), (0, 0));
    }
    let later = cpuslab::stats().classes[class].cache;
    assert!(later.alloc_misses >= sum.alloc_misses && later.to_depot >= sum.to_depot);
}
