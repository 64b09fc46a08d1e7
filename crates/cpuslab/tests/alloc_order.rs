//! A run of allocations of one size from fresh spans comes in ascending
//! address order, as from glibc, jemalloc, tcmalloc and mimalloc: a program
//! that allocates its nodes one after another then walks them forwards, and
//! the hardware prefetchers follow it (jq ran 10% slower on descending runs).
//! Only the batch's first object taken goes out last (see `alloc_batch`), and
//! a CPU's first batch of a class goes out in passes (`spread.rs`).
//! A binary of its own: the class it uses is untouched by anything else.

use std::alloc::{GlobalAlloc, Layout};

use cpuslab::CpuSlab;

#[test]
fn fresh_objects_come_in_ascending_order() {
    const SIZE: usize = 208;
    const COUNT: usize = 2000;
    let layout = Layout::from_size_align(SIZE, 16).unwrap();
    let blocks: Vec<usize> = (0..COUNT)
        // SAFETY: a valid layout of non-zero size.
        .map(|_| unsafe { CpuSlab.alloc(layout) } as usize)
        .collect();
    assert!(blocks.iter().all(|&b| b != 0));
    let next_up = blocks.windows(2).filter(|w| w[1] == w[0] + SIZE).count();
    let next_down = blocks.windows(2).filter(|w| w[0] == w[1] + SIZE).count();
    // Runs break only where a batch or a span ends.
    assert!(
        next_up >= COUNT * 9 / 10 && next_down == 0,
        "{next_up} of {COUNT} steps went to the next object up, {next_down} down"
    );
    for b in blocks {
        // SAFETY: live blocks of this layout, freed once.
        unsafe { CpuSlab.dealloc(b as *mut u8, layout) };
    }
}
