//! Alignment, sizes around class boundaries, zero sizes, realloc across classes
//! and into/out of large objects, and alloc_zeroed over reused memory, all
//! through `GlobalAlloc` directly.
//!
//! Zero-size requests: std never asks (`Vec::new()`, `Box<ZST>` use dangling
//! pointers), and `GlobalAlloc`'s contract makes a zero-size `alloc` the caller's
//! fault. cpuslab still answers one; this test accepts either null or a pointer
//! that is aligned, distinct from every other live zero-size allocation, and
//! accepted by `dealloc` — and reports which it got.

mod support;

use std::alloc::{GlobalAlloc, Layout};

use cpuslab::internals::Class;
use support::{check, check_zero, fill, pattern_word, Rng};

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// log2 of the largest alignment tested (1 MiB).
const MAX_ALIGN_SHIFT: u32 = 20;

/// Sizes around every class boundary, plus some large ones.
fn boundary_sizes() -> Vec<usize> {
    let mut sizes = vec![1, 2, 3, 7, 8, 9, 15];
    for class in Class::all() {
        let s = class.size();
        sizes.extend([s - 1, s, s + 1]);
    }
    sizes.extend([
        512 * KIB - 1,
        512 * KIB,
        MIB - 1,
        MIB,
        MIB + 1,
        2 * MIB + 12345,
    ]);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Sizes that matter for alignment `align`: below it, equal, k * align + 1.
fn alignment_sizes(align: usize) -> Vec<usize> {
    let mut sizes = vec![1, align.div_ceil(2), align.saturating_sub(1).max(1), align];
    for k in 1..=3 {
        sizes.push(k * align + 1);
    }
    sizes
}

/// Allocates three blocks of `layout` at once, checks each one, fills each over
/// its whole usable size with its own pattern, checks that none overwrote
/// another, and frees them.
fn exercise(layout: Layout, tag: u64) {
    let size = layout.size();
    let align = layout.align();
    let mut blocks = [std::ptr::null_mut::<u8>(); 3];
    let mut usable = [0usize; 3];
    for (i, slot) in blocks.iter_mut().enumerate() {
        // SAFETY: size >= 1.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(!p.is_null(), "alloc({layout:?}) returned null");
        assert_eq!(
            p as usize % align,
            0,
            "alloc({layout:?}) = {p:p}: misaligned"
        );
        assert!(cpuslab::owns(p), "owns({p:p}) false for alloc({layout:?})");
        let u = cpuslab::usable_size(p)
            .unwrap_or_else(|| panic!("usable_size({p:p}) is None for alloc({layout:?})"));
        assert!(
            u >= size,
            "usable_size({p:p}) = {u} < {size} for {layout:?}"
        );
        // The whole usable size is ours (malloc_usable_size semantics).
        // SAFETY: u bytes are usable at p.
        unsafe { fill(p, u, pattern_word(tag ^ i as u64)) };
        *slot = p;
        usable[i] = u;
    }
    let mut ranges: Vec<(usize, usize)> = blocks
        .iter()
        .zip(usable)
        .map(|(&p, u)| (p as usize, p as usize + u))
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "blocks of {layout:?} overlap: {:#x}..{:#x} and {:#x}..{:#x}",
            w[0].0,
            w[0].1,
            w[1].0,
            w[1].1
        );
    }
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: usable[i] bytes are ours at p.
        if let Some(off) = unsafe { check(p, usable[i], pattern_word(tag ^ i as u64)) } {
            panic!("block {i} of {layout:?} at {p:p} overwritten at offset {off}");
        }
        // SAFETY: allocated above with this layout.
        unsafe { GLOBAL.dealloc(p, layout) };
    }
}

#[test]
fn every_alignment_and_size_around_class_boundaries() {
    let start = std::time::Instant::now();
    let sizes = boundary_sizes();
    let mut count = 0;
    for shift in 0..=MAX_ALIGN_SHIFT {
        let align = 1usize << shift;
        let mut these: Vec<usize> = sizes.clone();
        these.extend(alignment_sizes(align));
        for (n, &size) in these.iter().enumerate() {
            let layout = Layout::from_size_align(size, align).unwrap();
            exercise(layout, (u64::from(shift) << 32) ^ n as u64);
            count += 1;
        }
    }
    println!(
        "{count} (size, align) pairs x 3 blocks in {:.0} ms; {}",
        start.elapsed().as_secs_f64() * 1e3,
        support::brief(&cpuslab::stats())
    );
}

#[test]
fn foreign_and_odd_addresses_are_not_owned() {
    let on_stack = 0u64;
    let from_libc = {
        // SAFETY: plain malloc from glibc, freed below.
        unsafe { libc::malloc(100) }
    };
    assert!(!from_libc.is_null());
    for (what, p) in [
        ("null", std::ptr::null::<u8>()),
        ("stack", (&raw const on_stack).cast::<u8>()),
        ("glibc malloc", from_libc.cast::<u8>().cast_const()),
        ("static", (&raw const GLOBAL).cast::<u8>()),
        ("high", usize::MAX as *const u8),
    ] {
        assert!(!cpuslab::owns(p), "owns({what} {p:p}) is true");
        assert_eq!(cpuslab::usable_size(p), None, "usable_size({what} {p:p})");
    }
    // SAFETY: from libc::malloc above.
    unsafe { libc::free(from_libc) };
    // SAFETY: free(NULL) is a no-op.
    unsafe { cpuslab::free(std::ptr::null_mut()) };
}

#[test]
fn zero_sizes() {
    // What std does: no allocation at all.
    let v: Vec<u8> = Vec::new();
    assert_eq!(v.capacity(), 0);
    let mut w: Vec<u64> = Vec::with_capacity(0);
    assert_eq!(w.capacity(), 0);
    w.push(7);
    w.clear();
    w.shrink_to_fit();
    assert_eq!(w.capacity(), 0);
    let unit = Box::new(());
    let zst_array = Box::new([(); 1000]);
    assert_eq!(std::mem::size_of_val(&*zst_array), 0);
    drop((unit, zst_array));
    let empty: Box<[u32]> = Vec::new().into_boxed_slice();
    assert!(empty.is_empty());

    // A direct zero-size request: null, or an aligned unique pointer that
    // dealloc accepts.
    let mut outcomes = Vec::new();
    for shift in [0u32, 3, 4, 6, 12, 13, 16, 20] {
        let layout = Layout::from_size_align(0, 1 << shift).unwrap();
        let mut held = Vec::new();
        for _ in 0..16 {
            // SAFETY: a zero-size layout: outside GlobalAlloc's contract for
            // callers, but cpuslab documents an answer (null or a real block).
            let p = unsafe { GLOBAL.alloc(layout) };
            if !p.is_null() {
                assert_eq!(p as usize % layout.align(), 0, "{layout:?} -> {p:p}");
                assert!(
                    !held.contains(&p),
                    "zero-size {layout:?} returned {p:p} twice"
                );
                held.push(p);
            }
        }
        let zeroed = {
            // SAFETY: as above.
            unsafe { GLOBAL.alloc_zeroed(layout) }
        };
        if !zeroed.is_null() {
            assert_eq!(zeroed as usize % layout.align(), 0);
            assert!(!held.contains(&zeroed));
            held.push(zeroed);
        }
        outcomes.push(format!(
            "align {}: {}",
            layout.align(),
            if held.is_empty() {
                "null".to_string()
            } else {
                format!("{} unique pointers", held.len())
            }
        ));
        for p in held {
            // SAFETY: returned by alloc / alloc_zeroed with this layout.
            unsafe { GLOBAL.dealloc(p, layout) };
        }
    }
    println!("zero-size alloc: {}", outcomes.join("; "));
}

/// A block under test: pointer, current size, alignment, pattern key.
struct Block {
    ptr: *mut u8,
    size: usize,
    layout_align: usize,
    key: u64,
}

impl Block {
    fn word(&self) -> u64 {
        pattern_word(self.key ^ self.size as u64)
    }

    fn new(size: usize, align: usize, key: u64) -> Block {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: size >= 1.
        let ptr = unsafe { GLOBAL.alloc(layout) };
        assert!(!ptr.is_null());
        let b = Block {
            ptr,
            size,
            layout_align: align,
            key,
        };
        // SAFETY: fresh block of `size` bytes.
        unsafe { fill(b.ptr, b.size, b.word()) };
        b
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.layout_align).unwrap()
    }

    /// Reallocates to `new_size`, checks the kept prefix and the alignment, and
    /// refills.
    fn realloc(&mut self, new_size: usize) {
        let old_word = self.word();
        let old = self.layout();
        // SAFETY: a live block with this layout; new_size >= 1 and small.
        let p = unsafe { GLOBAL.realloc(self.ptr, old, new_size) };
        assert!(!p.is_null(), "realloc {old:?} -> {new_size} returned null");
        assert_eq!(
            p as usize % self.layout_align,
            0,
            "realloc {old:?} -> {new_size} = {p:p}: misaligned"
        );
        let kept = old.size().min(new_size);
        // SAFETY: the new block holds new_size >= kept bytes.
        if let Some(off) = unsafe { check(p, kept, old_word) } {
            panic!("realloc {old:?} -> {new_size}: contents lost at offset {off} of {kept}");
        }
        let u = cpuslab::usable_size(p).unwrap_or(0);
        assert!(u >= new_size, "usable_size after realloc: {u} < {new_size}");
        self.ptr = p;
        self.size = new_size;
        // SAFETY: new_size bytes at p.
        unsafe { fill(p, new_size, self.word()) };
    }

    fn free(self) {
        // SAFETY: a live block of self.size bytes.
        assert!(unsafe { check(self.ptr, self.size, self.word()) }.is_none());
        // SAFETY: a live block with this layout.
        unsafe { GLOBAL.dealloc(self.ptr, self.layout()) };
    }
}

#[test]
fn realloc_across_classes_and_large_keeps_contents() {
    let chain = [
        1,
        15,
        16,
        17,
        100,
        128,
        129,
        1000,
        4096,
        4097,
        65_536,
        100_000,
        262_144,
        262_145,
        MIB,
        3 * MIB + 7,
        300_000,
        200_000,
        5000,
        48,
        3,
        2 * MIB,
        1,
    ];
    let mut steps = 0;
    for (n, align) in [1, 8, 16, 64, 256, 4096, 8192, 65_536, MIB]
        .into_iter()
        .enumerate()
    {
        let mut b = Block::new(chain[0], align, n as u64);
        for &size in &chain[1..] {
            b.realloc(size);
            steps += 1;
        }
        b.free();
    }
    // Random chains, several blocks alive at once.
    let mut rng = Rng::new(42);
    let mut blocks: Vec<Block> = (0..8)
        .map(|k| Block::new(1 + k * 1000, 1 << rng.below(13), 1000 + k as u64))
        .collect();
    for _ in 0..3000 {
        let i = rng.below(blocks.len());
        let size = match rng.below(10) {
            0..=5 => rng.range(1, 4096),
            6..=8 => rng.range(4097, 300_000),
            _ => rng.range(300_001, 3 * MIB),
        };
        blocks[i].realloc(size);
        steps += 1;
    }
    for b in blocks {
        b.free();
    }
    println!("{steps} realloc steps kept their contents");
}

#[test]
fn realloc_within_a_class_stays_in_place() {
    let mut checked = 0;
    let mut moved = Vec::new();
    let mut previous = 0;
    for class in Class::all() {
        let top = class.size();
        let bottom = previous + 1;
        previous = top;
        let mut b = Block::new(bottom, 8, top as u64);
        let p = b.ptr;
        b.realloc(top);
        let grew = b.ptr;
        b.realloc(bottom);
        let shrank = b.ptr;
        if grew != p || shrank != p {
            moved.push(format!("{bottom}->{top}->{bottom}"));
        }
        b.free();
        checked += 1;
    }
    println!("{checked} classes checked for in-place realloc");
    assert!(
        moved.is_empty(),
        "realloc within one class moved the block: {moved:?}"
    );
}

#[test]
fn alloc_zeroed_is_zero_over_reused_memory() {
    let sizes = [
        1,
        8,
        16,
        24,
        100,
        256,
        1000,
        4096,
        10_000,
        65_536,
        200_000,
        262_144,
        300_000,
        MIB,
        4 * MIB + 1,
    ];
    let mut count = 0;
    for &size in &sizes {
        for align in [1, 16, 4096, 65_536] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let rounds = if size > 256 * KIB { 8 } else { 50 };
            for _ in 0..rounds {
                // SAFETY: size >= 1; the block is filled and freed.
                unsafe {
                    let p = GLOBAL.alloc(layout);
                    assert!(!p.is_null());
                    p.write_bytes(0xAA, size);
                    GLOBAL.dealloc(p, layout);
                }
                // SAFETY: size >= 1; checked, dirtied and freed.
                unsafe {
                    let z = GLOBAL.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0);
                    if let Some(off) = check_zero(z, size) {
                        panic!("alloc_zeroed({layout:?}) = {z:p}: byte {off} is not zero");
                    }
                    z.write_bytes(0xAA, size);
                    GLOBAL.dealloc(z, layout);
                }
                count += 1;
            }
        }
    }
    // Many at once: a whole cache's worth of dirty objects comes back zeroed.
    for &size in &[16, 48, 200, 3000, 40_000] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        for _ in 0..5 {
            let dirty: Vec<*mut u8> = (0..500)
                .map(|_| {
                    // SAFETY: size >= 1; filled with 0xAA.
                    unsafe {
                        let p = GLOBAL.alloc(layout);
                        assert!(!p.is_null());
                        p.write_bytes(0xAA, size);
                        p
                    }
                })
                .collect();
            for p in dirty {
                // SAFETY: allocated above with this layout.
                unsafe { GLOBAL.dealloc(p, layout) };
            }
            let zeroed: Vec<*mut u8> = (0..500)
                .map(|_| {
                    // SAFETY: size >= 1.
                    let z = unsafe { GLOBAL.alloc_zeroed(layout) };
                    assert!(!z.is_null());
                    // SAFETY: size bytes at z.
                    if let Some(off) = unsafe { check_zero(z, size) } {
                        panic!("alloc_zeroed({layout:?}) = {z:p}: byte {off} is not zero");
                    }
                    z
                })
                .collect();
            for z in zeroed {
                // SAFETY: allocated above with this layout.
                unsafe {
                    z.write_bytes(0xAA, size);
                    GLOBAL.dealloc(z, layout);
                }
                count += 1;
            }
        }
    }
    println!("{count} zeroed allocations over dirtied memory were all zero");
}
