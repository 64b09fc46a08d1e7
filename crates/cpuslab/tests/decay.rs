//! Free runs go back to the OS without a background thread and without trim():
//! past the page heap's retained budget at once, the rest on a decay, when a
//! later page-heap operation notices they have been idle. Alone in its file: it
//! measures the whole process.

mod common;

use common::{rss_bytes, stats};
use cpuslab::internals::{alloc_batch, class_of, free_batch, set_decay_ms};
use std::time::Duration;

const MIB: usize = 1 << 20;
const TOTAL: usize = 128 * MIB;
const SLACK: usize = 24 * MIB;
const DECAY_MS: u64 = 100;
/// The page heap's retained budget (`page_heap::RETAINED_BUDGET_BYTES`).
const RETAINED_BUDGET: usize = 4 * MIB;

#[test]
fn idle_free_memory_decays_back_to_the_os() {
    set_decay_ms(DECAY_MS);
    let class = class_of(32 * 1024, 16).unwrap();
    let n = TOTAL / class.size();
    let mut objs = vec![std::ptr::null_mut(); n];
    assert_eq!(alloc_batch(class, &mut objs), n);
    for &p in &objs {
        // SAFETY: each object is class.size() bytes and ours.
        unsafe { p.write_bytes(0x11, class.size()) };
    }
    let rss_touched = rss_bytes();
    // SAFETY: the objects are given up.
    unsafe { free_batch(class, &objs) };
    // Past the retained budget (4 MiB), freed runs were decommitted at once.
    let freed = stats();
    assert!(
        freed.page_heap.free_committed <= RETAINED_BUDGET,
        "{:?}",
        freed.page_heap
    );
    assert!(freed.page_heap.free_decommitted >= TOTAL - SLACK);
    assert!(
        rss_bytes() + TOTAL - SLACK <= rss_touched,
        "the freed memory stayed resident"
    );

    std::thread::sleep(Duration::from_millis(3 * DECAY_MS));
    // Any page-heap operation runs the decay: carve a span of an unused class.
    let other = class_of(200 * 1024, 16).unwrap();
    let mut one = [std::ptr::null_mut(); 1];
    assert_eq!(alloc_batch(other, &mut one), 1);

    let after = stats();
    assert!(
        after.page_heap.free_committed < RETAINED_BUDGET,
        "{:?}",
        after.page_heap
    );
    let rss_after = rss_bytes();
    assert!(
        rss_after + TOTAL - SLACK <= rss_touched,
        "rss {rss_touched} -> {rss_after}"
    );
    // SAFETY: given up.
    unsafe { free_batch(other, &one) };
}
