//! A CPU's first objects of a small class, handed out one after another, lie
//! on different cache lines (`spread.rs`): a main thread that allocates a
//! block per worker back to back gives the workers blocks they can write
//! without taking lines from each other. A binary of its own: the class it uses
//! is untouched by anything else.

use std::alloc::{GlobalAlloc, Layout};

use cpuslab::CpuSlab;

#[test]
fn first_objects_handed_out_share_no_cache_line() {
    const SIZE: usize = 16;
    const COUNT: usize = 8;
    let layout = Layout::from_size_align(SIZE, 16).unwrap();
    let blocks: Vec<usize> = (0..COUNT)
        // SAFETY: a valid layout of non-zero size.
        .map(|_| unsafe { CpuSlab.alloc(layout) } as usize)
        .collect();
    assert!(blocks.iter().all(|&b| b != 0));
    let mut lines: Vec<usize> = blocks.iter().map(|&b| b / 64).collect();
    lines.sort_unstable();
    lines.dedup();
    // (A thread moved to another CPU between two calls starts on that CPU's
    // first batch, other memory altogether.)
    assert_eq!(
        lines.len(),
        COUNT,
        "{COUNT} blocks of {SIZE} B: {blocks:x?}"
    );
    for b in blocks {
        // SAFETY: live blocks of this layout, freed once.
        unsafe { CpuSlab.dealloc(b as *mut u8, layout) };
    }
}
