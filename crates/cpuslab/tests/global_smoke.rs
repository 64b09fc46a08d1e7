//! The first use of `CpuSlab` as the global allocator: the fast path, the miss and
//! overflow paths, large blocks, the by-address API and statistics, in one thread.

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

#[test]
fn first_allocations_round_trip_through_every_tier() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..4_000usize {
        let size = [8, 24, 64, 100, 1000, 5000, 40_000, 300_000][i % 8];
        blocks.push(vec![i as u8; size]);
    }
    for (i, block) in blocks.iter().enumerate() {
        assert!(block.iter().all(|&b| b == i as u8));
        assert!(cpuslab::owns(block.as_ptr()));
        assert!(cpuslab::usable_size(block.as_ptr()).unwrap() >= block.len());
    }
    let stats = cpuslab::stats();
    println!("{stats}");
    assert!(stats.allocated >= blocks.iter().map(Vec::len).sum::<usize>());
    drop(blocks);
    cpuslab::trim();
    let after = cpuslab::stats();
    println!("after trim:\n{after}");
    assert_eq!(after.cpu_cache_bytes, 0);
    assert_eq!(after.depot_bytes, 0);
    assert!(!cpuslab::owns(std::ptr::null()));
    assert_eq!(cpuslab::usable_size(&after as *const _ as *const u8), None);
}
