//! Permanent metadata memory: a bump allocator over mmap'ed chunks.
//!
//! Allocator metadata (span records today; per-CPU headers and depot nodes
//! later) must not come from the global allocator. This hands out zeroed,
//! aligned pieces of large mmap'ed chunks and never gives them back: metadata
//! is recycled by its owners (e.g. the span record free list), and because it
//! is never unmapped, a stale pointer to a metadata record can always be read
//! without faulting (the page map relies on that).

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::os::{self, PAGE_SIZE};
use crate::sync::Lock;

/// Bytes mapped per metadata chunk.
const CHUNK_BYTES: usize = 1 << 20;

struct Bump {
    /// Next free byte of the current chunk.
    next: usize,
    /// End of the current chunk.
    end: usize,
}

struct Arena {
    lock: Lock,
    bump: UnsafeCell<Bump>,
    /// Bytes of metadata mapped so far (statistics).
    mapped: AtomicUsize,
}

// SAFETY: `bump` is only accessed with `lock` held.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    lock: Lock::new(),
    bump: UnsafeCell::new(Bump { next: 0, end: 0 }),
    mapped: AtomicUsize::new(0),
};

/// Allocates `size` zeroed bytes aligned to `align` (a power of two <= 4096)
/// that live for the rest of the process. `None` when out of memory.
pub fn alloc(size: usize, align: usize) -> Option<NonNull<u8>> {
    if !align.is_power_of_two() || align > PAGE_SIZE || size == 0 {
        return None;
    }
    let _guard = ARENA.lock.guard();
    // SAFETY: the arena lock is held, so this is the only reference.
    let bump = unsafe { &mut *ARENA.bump.get() };
    let start = os::round_up(bump.next, align)?;
    match start.checked_add(size) {
        Some(end) if bump.next != 0 && end <= bump.end => {
            bump.next = end;
            return NonNull::new(start as *mut u8);
        }
        _ => {}
    }
    // Start a new chunk (the rest of the old one is abandoned: at most one
    // record's worth per chunk).
    let chunk_len = os::round_up(size, PAGE_SIZE)?.max(CHUNK_BYTES);
    let chunk = os::map(chunk_len)?.as_ptr() as usize;
    ARENA.mapped.fetch_add(chunk_len, Ordering::Relaxed);
    bump.next = chunk + size;
    bump.end = chunk + chunk_len;
    NonNull::new(chunk as *mut u8)
}

/// Takes the arena lock (for `fork`).
pub fn lock() {
    ARENA.lock.lock();
}

/// Releases the arena lock taken by `lock`.
///
/// # Safety
///
/// The caller took it with `lock` (here or, after `fork`, in the parent).
pub unsafe fn unlock() {
    // SAFETY: caller's contract.
    unsafe { ARENA.lock.unlock() };
}

/// Bytes of metadata mapped so far.
pub fn mapped_bytes() -> usize {
    ARENA.mapped.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_aligned_zeroed_and_disjoint() {
        let mut seen = Vec::new();
        for i in 0..5000usize {
            let align = 1 << (i % 7);
            let size = 1 + i % 300;
            let p = alloc(size, align).unwrap().as_ptr();
            assert_eq!(p as usize % align, 0);
            // SAFETY: `size` fresh bytes owned by this test.
            unsafe {
                assert!((0..size).all(|j| *p.add(j) == 0));
                p.write_bytes(0xee, size);
            }
            seen.push((p as usize, size));
        }
        seen.sort();
        for w in seen.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0);
        }
        assert!(mapped_bytes() >= CHUNK_BYTES);
        assert!(alloc(0, 8).is_none());
        assert!(alloc(8, 3).is_none());
    }
}
