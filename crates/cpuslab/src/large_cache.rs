//! Freed large mappings kept for reuse, so that a program that allocates and frees
//! blocks above 256 KiB in a loop does not pay an mmap, page faults and a munmap
//! every time (the whole-program "server" benchmark made 421k page faults
//! without it).
//!
//! A few dozen entries, a byte budget that follows the large working set, and a
//! decay: an entry unused for the decay interval (`CPUSLAB_DECAY_MS`) is unmapped
//! by the next operation or decay sweep; `release` unmaps everything (for `trim`, and
//! when the address space runs out). A request takes the head of the smallest
//! entry that holds it (the tail stays an entry: no system call), or grows the
//! largest smaller one with `mremap`, so a program that replaces buffers of
//! varying sizes faults only on net growth (a program keeping twenty 5-25 MiB
//! buffers and replacing them at random took 1.27 s with whole-mapping reuse,
//! 3x tcmalloc's time, nearly all of it in page faults). Reused memory is not
//! zero.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::os;
use crate::os::now_ms;
use crate::sync::Lock;

/// Mappings kept at most.
const ENTRIES: usize = 32;
/// Bytes kept at most, whatever the program holds.
const BASE_BUDGET_BYTES: usize = 64 << 20;
/// Bytes kept at most: `BASE_BUDGET_BYTES`, plus half of what the program holds
/// in large blocks, up to this. A program that replaces twenty 5-25 MiB buffers
/// faulted 247k pages with a fixed 64 MiB (0.64 s) and 133k with 256 MiB (0.41 s;
/// tcmalloc 117k, 0.37-0.40 s), so the budget follows the large working set.
const MAX_BUDGET_BYTES: usize = 1 << 30;

/// The budget while the program holds `live` bytes in large blocks.
fn budget(live: usize) -> usize {
    BASE_BUDGET_BYTES
        .saturating_add(live / 2)
        .min(MAX_BUDGET_BYTES)
}

#[derive(Clone, Copy)]
struct Entry {
    base: usize,
    /// 0: the entry is empty.
    len: usize,
    freed_ms: u64,
}

const EMPTY: Entry = Entry {
    base: 0,
    len: 0,
    freed_ms: 0,
};

struct Cache {
    lock: Lock,
    entries: UnsafeCell<[Entry; ENTRIES]>,
    bytes: AtomicUsize,
}

// SAFETY: `entries` is only touched with `lock` held; `bytes` is atomic.
unsafe impl Sync for Cache {}

static CACHE: Cache = Cache {
    lock: Lock::new(),
    entries: UnsafeCell::new([EMPTY; ENTRIES]),
    bytes: AtomicUsize::new(0),
};

/// Runs `f` on the entries with the lock held; unmaps what it evicts afterwards
/// (outside the lock).
fn with_entries<R>(f: impl FnOnce(&mut [Entry; ENTRIES], &mut Evicted) -> R) -> R {
    let mut evicted = Evicted {
        entries: [EMPTY; ENTRIES + 1],
        count: 0,
    };
    let result = {
        let _guard = CACHE.lock.guard();
        // SAFETY: the lock is held.
        let entries = unsafe { &mut *CACHE.entries.get() };
        let now = now_ms();
        let decay_ms = crate::decay::interval_ms();
        for entry in entries.iter_mut() {
            if entry.len != 0 && now.saturating_sub(entry.freed_ms) >= decay_ms {
                evicted.push(*entry);
                *entry = EMPTY;
            }
        }
        let result = f(entries, &mut evicted);
        // The counter changes under the lock, so a reader never sees it below zero.
        let kept: usize = entries.iter().map(|e| e.len).sum();
        CACHE.bytes.store(kept, Ordering::Relaxed);
        result
    };
    for entry in &evicted.entries[..evicted.count] {
        // SAFETY: an evicted entry is a mapping of ours that nobody uses.
        unsafe { os::unmap(entry.base as *mut u8, entry.len) };
    }
    result
}

/// Entries taken out under the lock, to unmap after it.
struct Evicted {
    entries: [Entry; ENTRIES + 1],
    count: usize,
}

impl Evicted {
    fn push(&mut self, entry: Entry) {
        if let Some(slot) = self.entries.get_mut(self.count) {
            *slot = entry;
            self.count += 1;
        }
    }
}

/// At least `len` bytes (an OS page multiple) of cached memory, most of it
/// resident already, with their length: the smallest cached mapping that holds
/// `len`, whole if it is at most twice as long, else its head (the tail stays
/// cached: no system call); or else the largest one of at least half of `len`,
/// grown by `mremap` (its pages move without a copy, and only the growth
/// faults). `None` when neither exists, or the kernel refused to grow it.
///
/// Cached pieces are never put together into one block: the kernel would keep
/// them as separate mappings, and `mremap` refuses a range across two, so such
/// a block could never grow again.
pub(crate) fn take(len: usize) -> Option<(*mut u8, usize)> {
    if CACHE.bytes.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let found = with_entries(|entries, _| {
        if let Some(entry) = entries
            .iter_mut()
            .filter(|e| e.len >= len)
            .min_by_key(|e| e.len)
        {
            if entry.len / 2 <= len {
                // Close enough: used whole, so that blocks of mixed sizes do not
                // cut the kept mappings into pieces too small to reuse.
                let whole = Found::Whole(entry.base as *mut u8, entry.len);
                *entry = EMPTY;
                return Some(whole);
            }
            let head = entry.base;
            entry.base += len;
            entry.len -= len;
            return Some(Found::Head(head as *mut u8, len));
        }
        let entry = entries
            .iter_mut()
            .filter(|e| e.len != 0 && e.len >= len / 2)
            .max_by_key(|e| e.len)?;
        let smaller = Found::Smaller(entry.base as *mut u8, entry.len);
        *entry = EMPTY;
        Some(smaller)
    })?;
    match found {
        Found::Whole(base, len) | Found::Head(base, len) => Some((base, len)),
        // SAFETY: the entry was taken out of the cache: a mapping of ours that
        // nobody uses; on failure it is still mapped and goes back.
        Found::Smaller(base, old_len) => match unsafe { os::remap(base, old_len, len) } {
            Some(grown) => Some((grown, len)),
            None => {
                if !put(base, old_len, 0) {
                    // SAFETY: as above; the cache declined it.
                    unsafe { os::unmap(base, old_len) };
                }
                None
            }
        },
    }
}

/// What `take` found under the lock.
enum Found {
    /// A whole cached mapping of `len` to `2 * len` bytes, and its length.
    Whole(*mut u8, usize),
    /// The head of a cached mapping more than twice as long, `len` bytes.
    Head(*mut u8, usize),
    /// A smaller cached mapping and its length, to grow outside the lock.
    Smaller(*mut u8, usize),
}

/// Keeps the free mapping `[base, base + len)` for reuse; false if it does not
/// fit (the caller unmaps it). Entries are never merged, even when they touch:
/// two mappings side by side may still be two kernel mappings, and `mremap`
/// refuses a range across both.
pub(crate) fn put(base: *mut u8, len: usize, live: usize) -> bool {
    let budget = budget(live);
    if len > budget {
        return false;
    }
    let base = base as usize;
    with_entries(|entries, evicted| {
        // Make room: the budget first, then a free entry (evicting the oldest).
        let mut bytes: usize = entries.iter().map(|e| e.len).sum();
        while bytes + len > budget || entries.iter().all(|e| e.len != 0) {
            let Some(oldest) = entries
                .iter_mut()
                .filter(|e| e.len != 0)
                .min_by_key(|e| e.freed_ms)
            else {
                break;
            };
            bytes -= oldest.len;
            evicted.push(*oldest);
            *oldest = EMPTY;
        }
        match entries.iter_mut().find(|e| e.len == 0) {
            Some(entry) => {
                *entry = Entry {
                    base,
                    len,
                    freed_ms: now_ms(),
                };
                true
            }
            None => false,
        }
    })
}

/// Unmaps the mappings unused for the decay interval (the decay's sweep: a program
/// that stops using large blocks gets their memory back without another large
/// operation).
pub(crate) fn decay() {
    if CACHE.bytes.load(Ordering::Relaxed) != 0 {
        with_entries(|_, _| {});
    }
}

/// Unmaps every cached mapping.
pub(crate) fn release() {
    with_entries(|entries, evicted| {
        for entry in entries.iter_mut().filter(|e| e.len != 0) {
            evicted.push(*entry);
            *entry = EMPTY;
        }
    });
}

/// Bytes of mappings kept.
pub(crate) fn cached_bytes() -> usize {
    CACHE.bytes.load(Ordering::Relaxed)
}

/// Takes the cache lock (before `fork`).
pub(crate) fn lock() {
    CACHE.lock.lock();
}

/// Releases the lock taken by [`lock`].
///
/// # Safety
/// The calling thread (or, in a child, the parent's forking thread) took it.
pub(crate) unsafe fn unlock() {
    // SAFETY: caller's contract.
    unsafe { CACHE.lock.unlock() };
}
