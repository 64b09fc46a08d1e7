//! Large objects: anything above `MAX_SMALL` or aligned beyond a page.
//!
//! Each large object is its own mapping, starting exactly at the pointer
//! returned (alignments above a page are served by over-mapping and trimming,
//! see `os::map_aligned`), its length a multiple of the OS page. Freeing hands
//! the mapping to `large_cache` for reuse, or unmaps it when the cache
//! declines; an allocation aligned to at most a page takes a cached mapping of
//! 1 to 2 times its page-rounded size whole, and clears it only for
//! `alloc_large` (fresh mappings read as zero). Its metadata is a `Large` span
//! record registered in the page map for the object's first page only: that is
//! enough for `free(ptr)` and the ownership test, which require the exact start
//! pointer.
//!
//! No lock here: mmap is thread-safe, a large object's record is touched only
//! by the object's owner, and `large_cache` has its own lock. Clearing the
//! page-map entry with a compare-and-swap before caching or unmapping keeps a
//! racing double free from releasing the mapping twice.

use core::ptr;

/// Fresh large mappings from this size up ask for transparent huge pages: a
/// program that fills a new 20 MiB buffer then takes 10 page faults, not 5120.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::large_cache;
use crate::os::{self, PAGE_SIZE};
use crate::owner::{self, Found, LargeAt};
use crate::pagemap;
use crate::span::{self, Span, SpanKind};

/// Bytes of large mappings live.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Large mappings live.
static LIVE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Large-object counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Bytes mapped for live large objects (page-rounded).
    pub bytes: usize,
    /// Live large objects (one mapping each).
    pub count: usize,
    /// Bytes of freed mappings kept for reuse.
    pub cached: usize,
}

/// Maps a large object of `size` bytes aligned to `align` (a power of two).
/// The memory reads as zero. Null when out of memory or on a bad request.
pub fn alloc_large(size: usize, align: usize) -> *mut u8 {
    alloc(size, align, true)
}

/// As [`alloc_large`], but the memory may hold old contents (a reused mapping).
pub fn alloc_large_uninit(size: usize, align: usize) -> *mut u8 {
    alloc(size, align, false)
}

fn alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let Some(len) = os::round_up(size.max(1), os::page_size()) else {
        return ptr::null_mut();
    };
    let reused = if align <= PAGE_SIZE {
        large_cache::take(len)
    } else {
        None
    };
    let (base, len) = match reused {
        Some((base, kept_len)) => {
            if zeroed {
                // SAFETY: `kept_len >= len` bytes of a mapping that nobody else
                // uses; the caller may touch `size` of them.
                unsafe { ptr::write_bytes(base, 0, size) };
            }
            (base, kept_len)
        }
        None => match os::map_aligned(len, align).or_else(|| {
            // Out of address space: give back what the cache holds, then retry.
            large_cache::release();
            os::map_aligned(len, align)
        }) {
            Some(base) => {
                if len >= HUGE_PAGE_MIN_BYTES && crate::config::huge_pages() {
                    // SAFETY: the fresh mapping of `len` bytes made above.
                    unsafe { os::advise_huge_pages(base.as_ptr(), len) };
                }
                (base.as_ptr(), len)
            }
            None => return ptr::null_mut(),
        },
    };
    match register(base, len, align) {
        Some(_) => base,
        None => {
            // SAFETY: mapped just above and never published.
            unsafe { os::unmap(base, len) };
            ptr::null_mut()
        }
    }
}

/// Creates and publishes the record of the large mapping `[base, base+len)`.
fn register(base: *mut u8, len: usize, align: usize) -> Option<&'static Span> {
    if !pagemap::ensure(base as usize, PAGE_SIZE) {
        return None;
    }
    let span = span::alloc_record()?;
    span.set_range(base as usize, len / PAGE_SIZE);
    span.set_large_align(align);
    span.set_kind(SpanKind::Large);
    pagemap::set(base as usize, span);
    LIVE_BYTES.fetch_add(len, Ordering::Relaxed);
    LIVE_COUNT.fetch_add(1, Ordering::Relaxed);
    Some(span)
}

/// The large object starting exactly at `ptr`, if any.
pub fn find(ptr: *const u8) -> Option<LargeAt> {
    match owner::find(ptr)? {
        Found::Large(large) => Some(large),
        Found::Small(_) => None,
    }
}

/// Returns the record of a large object that is no longer published.
fn retire(span: &'static Span) {
    LIVE_BYTES.fetch_sub(span.bytes(), Ordering::Relaxed);
    LIVE_COUNT.fetch_sub(1, Ordering::Relaxed);
    span::free_record(span);
}

/// Unmaps the large object at `ptr`. Pointers that are not the start of a
/// live large object are ignored (returns `false`).
///
/// # Safety
///
/// Nobody uses the object after this call.
pub unsafe fn free_large(ptr: *mut u8) -> bool {
    match find(ptr) {
        // SAFETY: forwarded contract; `large` was found at `ptr`.
        Some(large) => unsafe { free_found(ptr, large) },
        None => false,
    }
}

/// Unmaps (or caches) the large object at `ptr`, which `owner::find` found as
/// `large`; false if another thread freed it first.
///
/// # Safety
///
/// Nobody uses the object after this call.
pub(crate) unsafe fn free_found(ptr: *mut u8, large: LargeAt) -> bool {
    let LargeAt { entry, span } = large;
    let len = span.bytes();
    // Only the thread that unpublishes the object may unmap it.
    if !entry.clear_if(span) {
        return false;
    }
    retire(span);
    if large_cache::put(ptr, len, LIVE_BYTES.load(Ordering::Relaxed)) {
        return true;
    }
    // SAFETY: the object's mapping is exactly [ptr, ptr + len); this thread
    // won the page-map entry, so nobody else unmaps it, and the caller gave it up.
    unsafe { os::unmap(ptr, len) }
}

/// Resizes the large object at `ptr` to `new_size` bytes, keeping its
/// alignment and its contents up to the smaller size; the pointer may move.
/// Shrinking and growth within the mapping stay in place; growth beyond it
/// moves the pages to a new mapping with `mremap` (no copy). Returns null
/// (and leaves the object alone) when out of memory or `ptr` is not a live
/// large object.
///
/// # Safety
///
/// `ptr` is a live large object owned by the caller; on success the caller
/// uses only the returned pointer.
pub unsafe fn realloc_large(ptr: *mut u8, new_size: usize) -> *mut u8 {
    match find(ptr) {
        // SAFETY: forwarded contract; `large` was found at `ptr`.
        Some(large) => unsafe { realloc_found(ptr, large, new_size) },
        None => ptr::null_mut(),
    }
}

/// [`realloc_large`] of the object at `ptr`, which `owner::find` found as `large`.
///
/// # Safety
///
/// As for [`realloc_large`].
pub(crate) unsafe fn realloc_found(ptr: *mut u8, large: LargeAt, new_size: usize) -> *mut u8 {
    let LargeAt { entry, span } = large;
    let Some(new_len) = os::round_up(new_size.max(1), os::page_size()) else {
        return ptr::null_mut();
    };
    let old_len = span.bytes();
    let align = span.large_align();
    if new_len <= old_len {
        if new_len < old_len {
            // SAFETY: the tail [ptr + new_len, ptr + old_len) belongs to this
            // object's mapping and is past the new size.
            if !unsafe { os::unmap(ptr.add(new_len), old_len - new_len) } {
                return ptr::null_mut();
            }
            span.set_range(ptr as usize, new_len / PAGE_SIZE);
            LIVE_BYTES.fetch_sub(old_len - new_len, Ordering::Relaxed);
        }
        return ptr;
    }
    // Grow: map the destination (aligned, registered), then move the old
    // pages onto it; copy only if the kernel refuses the move.
    let new = alloc_large_uninit(new_size, align);
    if new.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: both mappings are ours; `new` is a fresh mapping of `new_len`
    // bytes that nobody else knows yet; the caller gives up `ptr` on success.
    let moved = unsafe { os::remap_into(ptr, old_len, new_len, new) };
    if moved {
        // The old range is no longer mapped (another thread may already have
        // mapped and registered something there, hence the conditional
        // clear): retire the record without unmapping.
        entry.clear_if(span);
        retire(span);
    } else {
        // SAFETY: both ranges are live mappings of at least `old_len` bytes
        // (old_len < new_len) and do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, old_len);
            free_found(ptr, large);
        }
    }
    new
}

/// Large-object counters (relaxed reads).
pub fn stats() -> LargeStats {
    LargeStats {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        count: LIVE_COUNT.load(Ordering::Relaxed),
        cached: large_cache::cached_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable_size(p: *const u8) -> Option<usize> {
        find(p).map(|large| large.span.bytes())
    }

    #[test]
    fn freed_mappings_are_reused_and_cleared_when_asked() {
        let _serial = crate::test_serial();
        let size = 3 << 20;
        let p = alloc_large_uninit(size, 16);
        assert!(!p.is_null());
        // SAFETY: `size` fresh bytes, then freed once.
        unsafe {
            p.write_bytes(0xab, size);
            assert!(free_large(p));
        }
        assert!(large_cache::cached_bytes() >= size);
        // A smaller request reuses the whole mapping.
        let q = alloc_large_uninit(size - 100_000, 16);
        assert_eq!(q, p, "reused");
        // SAFETY: q is live; then freed.
        unsafe {
            assert_eq!(*q, 0xab, "reused memory keeps its contents");
            assert!(free_large(q));
        }
        let z = alloc_large(size - 100_000, 16);
        assert_eq!(z, p, "reused again");
        // SAFETY: z is live; then freed.
        unsafe {
            assert!(
                (0..size - 100_000).step_by(4093).all(|i| *z.add(i) == 0),
                "cleared"
            );
            assert!(free_large(z));
        }
        large_cache::release();
        assert_eq!(large_cache::cached_bytes(), 0);
    }

    #[test]
    fn a_cached_mapping_is_split_for_smaller_blocks_and_grown_for_larger_ones() {
        let _serial = crate::test_serial();
        large_cache::release();
        let mib = 1 << 20;
        let p = alloc_large_uninit(10 * mib, 16);
        // SAFETY: fresh, then freed once.
        unsafe {
            p.write_bytes(0x11, 10 * mib);
            assert!(free_large(p));
        }
        // Two smaller blocks out of the one mapping: its head, then the rest.
        let a = alloc_large_uninit(4 * mib, 16);
        let b = alloc_large_uninit(6 * mib, 16);
        assert_eq!(a, p);
        assert_eq!(b, p.wrapping_add(4 * mib));
        assert_eq!(large_cache::cached_bytes(), 0);
        assert_eq!(usable_size(b), Some(6 * mib));
        // SAFETY: both live; contents kept; then freed.
        unsafe {
            assert_eq!((*a, *b.add(6 * mib - 1)), (0x11, 0x11));
            assert!(free_large(a));
            assert!(free_large(b));
        }
        // A larger block grows the largest cached piece (6 MiB) in place or
        // moved: its pages come along, the growth reads as zero.
        let c = alloc_large_uninit(9 * mib, 16);
        assert!(!c.is_null());
        assert_eq!(usable_size(c), Some(9 * mib));
        assert_eq!(large_cache::cached_bytes(), 4 * mib);
        // SAFETY: live; then freed.
        unsafe {
            assert_eq!(*c, 0x11, "the grown piece's pages came along");
            assert_eq!(*c.add(9 * mib - 1), 0, "the growth is fresh");
            c.write_bytes(0x22, 9 * mib);
            assert!(free_large(c));
        }
        large_cache::release();
        assert_eq!(large_cache::cached_bytes(), 0);
    }

    #[test]
    fn alloc_free_and_ownership() {
        let _serial = crate::test_serial();
        for (size, align) in [(300_000, 16), (1, 8192), (5 << 20, 1 << 21), (4096, 4096)] {
            let p = alloc_large(size, align);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            assert_eq!(usable_size(p), os::round_up(size, os::page_size()));
            assert!(usable_size(p.wrapping_add(16)).is_none());
            // SAFETY: `size` fresh bytes.
            unsafe {
                assert!((0..size).step_by(997).all(|i| *p.add(i) == 0));
                p.write_bytes(0x3c, size);
                assert!(free_large(p));
                assert!(!free_large(p));
            }
            assert!(usable_size(p).is_none());
        }
        assert!(alloc_large(usize::MAX - 10, 16).is_null());
        assert!(alloc_large(10, 3).is_null());
    }

    #[test]
    fn realloc_keeps_contents_and_alignment() {
        let align = 1 << 16;
        let mut p = alloc_large(300_000, align);
        assert!(!p.is_null());
        // SAFETY: the object is live and at least `len` bytes at each step.
        unsafe {
            for i in 0..300_000 {
                *p.add(i) = (i % 251) as u8;
            }
            for new_size in [1 << 20, 8 << 20, 500_000, 100_000, 3 << 20] {
                let keep = new_size.min(100_000);
                let q = realloc_large(p, new_size);
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0);
                assert!((0..keep).all(|i| *q.add(i) == (i % 251) as u8));
                assert_eq!(usable_size(q), os::round_up(new_size, os::page_size()));
                if new_size > 100_000 {
                    q.add(new_size - 1).write(7);
                }
                p = q;
            }
            assert!(free_large(p));
        }
    }
}
