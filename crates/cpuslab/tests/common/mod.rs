//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cpuslab::internals::{stats_into, LowerStats, PAGE_SIZE};

/// Resident set size of this process in bytes, from /proc/self/statm.
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident_pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident_pages * PAGE_SIZE
}

pub fn stats() -> LowerStats {
    let mut s = LowerStats::new();
    stats_into(&mut s);
    s
}

#[path = "../shared/rng.rs"]
mod rng;
#[allow(unused_imports)]
pub use rng::Rng;

/// Writes `tag` at the start, at every page boundary and at the end of the
/// `size`-byte object at `p` (size >= 16; unaligned stores).
///
/// # Safety
/// `p` points to `size` writable bytes.
pub unsafe fn stamp(p: *mut u8, size: usize, tag: u64) {
    for off in offsets(size) {
        // SAFETY: off + 8 <= size.
        unsafe { p.add(off).cast::<u64>().write_unaligned(tag) };
    }
}

/// Checks what `stamp` wrote.
///
/// # Safety
/// `p` points to `size` readable bytes.
pub unsafe fn check_stamp(p: *const u8, size: usize, tag: u64) -> bool {
    // SAFETY: off + 8 <= size.
    offsets(size).all(|off| unsafe { p.add(off).cast::<u64>().read_unaligned() } == tag)
}

/// Page-strided offsets plus the last 8 bytes, never overlapping.
fn offsets(size: usize) -> impl Iterator<Item = usize> {
    (0..size - 15).step_by(PAGE_SIZE).chain([size - 8])
}
