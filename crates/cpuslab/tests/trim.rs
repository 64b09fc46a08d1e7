//! trim() gives freed span memory back to the OS: the process's resident set
//! (from /proc/self/statm) drops after ~256 MiB of objects are freed and
//! trimmed. Alone in its file: it measures the whole process.

mod common;

use common::{rss_bytes, stats};
use cpuslab::internals::{alloc_batch, class_of, free_batch, set_decay_ms};
use cpuslab::trim;

const MIB: usize = 1 << 20;
const TOTAL: usize = 256 * MIB;
/// Allowance for the resident set moving for other reasons (test harness).
const SLACK: usize = 32 * MIB;

#[test]
fn trim_returns_freed_memory_to_the_os() {
    set_decay_ms(u64::MAX); // only trim() may decommit
    let class = class_of(64 * 1024, 16).unwrap();
    let n = TOTAL / class.size();
    let mut objs = vec![std::ptr::null_mut(); n];
    assert_eq!(alloc_batch(class, &mut objs), n);
    let rss_before = rss_bytes();
    for &p in &objs {
        // SAFETY: each object is class.size() bytes and ours.
        unsafe { p.write_bytes(0x6b, class.size()) };
    }
    let rss_touched = rss_bytes();
    assert!(
        rss_touched >= rss_before + TOTAL - SLACK,
        "{rss_before} -> {rss_touched}"
    );

    // SAFETY: the objects are given up.
    unsafe { free_batch(class, &objs) };
    let freed = stats();
    assert_eq!(freed.classes[class.index()].spans, 0);
    assert!(freed.page_heap.free_committed >= TOTAL);
    assert!(
        rss_bytes() + SLACK >= rss_touched,
        "decommitted before trim()"
    );

    trim();
    let trimmed = stats();
    assert_eq!(trimmed.page_heap.free_committed, 0);
    assert!(trimmed.page_heap.resident() + TOTAL <= freed.page_heap.resident());
    let rss_after = rss_bytes();
    assert!(
        rss_after + TOTAL - SLACK <= rss_touched,
        "rss {rss_touched} -> {rss_after}"
    );

    // The memory is reusable and comes back zeroed.
    let mut again = vec![std::ptr::null_mut(); n];
    assert_eq!(alloc_batch(class, &mut again), n);
    for &p in again.iter().step_by(97) {
        // SAFETY: fresh objects of class.size() bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, class.size()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
    // SAFETY: given up.
    unsafe { free_batch(class, &again) };
}
