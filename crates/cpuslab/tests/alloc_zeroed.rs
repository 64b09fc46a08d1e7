//! `alloc_zeroed` (`calloc`): every block reads as zero, whether it is fresh,
//! reused from a per-CPU cache, or a used object back in a partly full span; and
//! blocks of page-sized classes carved from fresh memory are not cleared at all
//! (`Stats::zeroed_without_clearing` counts them).

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

fn all_zero(p: *const u8, size: usize) -> bool {
    // SAFETY: the callers pass live blocks of at least `size` bytes.
    unsafe { std::slice::from_raw_parts(p, size) }
        .iter()
        .all(|&b| b == 0)
}

fn zeroed_blocks(layout: Layout, count: usize) -> Vec<*mut u8> {
    (0..count)
        .map(|_| {
            // SAFETY: a non-zero size.
            let p = unsafe { GLOBAL.alloc_zeroed(layout) };
            assert!(!p.is_null());
            assert!(all_zero(p, layout.size()), "{layout:?} block not zeroed");
            p
        })
        .collect()
}

fn fill_and_free(blocks: &[*mut u8], layout: Layout) {
    for &p in blocks {
        // SAFETY: live blocks of `layout`, freed once.
        unsafe {
            p.write_bytes(0xA5, layout.size());
            GLOBAL.dealloc(p, layout);
        }
    }
}

#[test]
fn zeroed_blocks_read_as_zero_fresh_reused_and_from_partial_spans() {
    for size in [16, 64, 1000, 4096, 16 << 10, 100 << 10, 256 << 10] {
        let layout = Layout::from_size_align(size, 16).unwrap();
        let count = (8 << 20) / size;
        // Free pages left by the previous size go back to the OS, so new spans
        // are carved from memory that reads as zero (reused pages are not).
        cpuslab::trim();
        let cleared_before = cpuslab::stats().zeroed_without_clearing;

        // Fresh memory: page-sized classes skip the memset for most blocks.
        let blocks = zeroed_blocks(layout, count);
        let skipped = cpuslab::stats().zeroed_without_clearing - cleared_before;
        if size >= 4096 {
            assert!(
                skipped >= count / 2,
                "{size} B: only {skipped} of {count} fresh blocks skipped the memset"
            );
        } else {
            assert_eq!(skipped, 0, "{size} B: small classes always clear");
        }

        // Dirty blocks come back through the per-CPU cache and the depot.
        fill_and_free(&blocks, layout);
        let again = zeroed_blocks(layout, count);

        // Dirty free objects in partly used spans: free every other block, move
        // the caches back into the spans, and take zeroed blocks again.
        let (keep, give): (Vec<_>, Vec<_>) =
            again.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let give: Vec<*mut u8> = give.into_iter().map(|(_, &p)| p).collect();
        fill_and_free(&give, layout);
        cpuslab::trim();
        let third = zeroed_blocks(layout, give.len());

        let keep: Vec<*mut u8> = keep.into_iter().map(|(_, &p)| p).collect();
        fill_and_free(&keep, layout);
        fill_and_free(&third, layout);
    }
}
