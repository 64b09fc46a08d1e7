//! The lower tiers' entry points: what the per-CPU tier, the depot and the
//! `GlobalAlloc` front end call.
//!
//! Small objects move in batches through the central free lists; large
//! objects are mapped one by one; `lookup` answers "is this pointer the start
//! of one of our objects, and which?" from the address alone. Nothing here
//! allocates through the global allocator or panics; everything is O(1)
//! besides the tier work it delegates.

use crate::central::{self, ClassStats};
use crate::large::{self, LargeStats};
use crate::large_cache;
use crate::page_heap::{self, PageHeapStats};
use crate::pagemap;
use crate::size_class::{Class, NUM_CLASSES};
use crate::span::{self, Span, SpanKind};
use crate::{meta, span::object_index};

/// Who owns a pointer, as far as the lower tiers know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The start of an object of this size class.
    Small(Class),
    /// The start of a large object; `usable_size` is its whole mapping.
    Large { usable_size: usize },
}

impl Owner {
    /// Bytes usable at the pointer.
    pub fn usable_size(self) -> usize {
        match self {
            Owner::Small(class) => class.size(),
            Owner::Large { usable_size } => usable_size,
        }
    }
}

/// Counters of the lower tiers; a plain value, filled without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerStats {
    /// Page heap: address space reserved, bytes in use / free (committed or
    /// decommitted).
    pub page_heap: PageHeapStats,
    /// Large objects: bytes mapped and count.
    pub large: LargeStats,
    /// Bytes mapped for metadata (span records, page-map nodes).
    pub metadata_mapped: usize,
    /// Span records in use.
    pub span_records: usize,
    /// Per size class: spans, objects handed out, free objects in spans.
    pub classes: [ClassStats; NUM_CLASSES],
}

impl LowerStats {
    /// All counters zero.
    pub const fn new() -> LowerStats {
        const ZERO_CLASS: ClassStats = ClassStats {
            spans: 0,
            objects_in_use: 0,
            objects_free: 0,
            invalid_frees: 0,
        };
        LowerStats {
            page_heap: PageHeapStats {
                mapped: 0,
                in_use: 0,
                free_committed: 0,
                free_decommitted: 0,
                decommits: 0,
            },
            large: LargeStats {
                bytes: 0,
                count: 0,
                cached: 0,
            },
            metadata_mapped: 0,
            span_records: 0,
            classes: [ZERO_CLASS; NUM_CLASSES],
        }
    }

    /// Address space mapped from the OS: page-heap chunks, large objects and
    /// metadata.
    pub fn mapped(&self) -> usize {
        [
            self.page_heap.mapped,
            self.large.bytes,
            self.large.cached,
            self.metadata_mapped,
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }

    /// An upper bound of resident memory: page-heap memory not decommitted,
    /// large objects and metadata.
    pub fn resident(&self) -> usize {
        [
            self.page_heap.resident(),
            self.large.bytes,
            self.large.cached,
            self.metadata_mapped,
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
    }

    /// Bytes held free in spans of size classes.
    pub fn free_in_spans(&self) -> usize {
        Class::all()
            .zip(self.classes.iter())
            .map(|(c, s)| c.size().saturating_mul(s.objects_free))
            .fold(0, usize::saturating_add)
    }
}

impl Default for LowerStats {
    fn default() -> Self {
        LowerStats::new()
    }
}

/// Fills `out` with up to `out.len()` free objects of `class`; returns how
/// many (fewer only when out of memory). Objects are distinct, lie inside
/// spans of `class`, and are aligned to the class's natural alignment (the
/// largest power of two dividing its size, at most a page).
#[inline]
pub fn alloc_batch(class: Class, out: &mut [*mut u8]) -> usize {
    central::alloc_batch(class, out)
}

/// One free object of `class` from its spans, and whether it reads as zero
/// (fresh memory never handed out). Null when out of memory.
#[inline]
pub fn alloc_one(class: Class) -> (*mut u8, bool) {
    central::alloc_one(class)
}

/// Returns objects of `class`. Pointers that are not live objects of `class`
/// are ignored and counted (`ClassStats::invalid_frees`).
///
/// # Safety
///
/// Nobody uses the objects after this call.
#[inline]
pub unsafe fn free_batch(class: Class, objects: &[*mut u8]) {
    // SAFETY: forwarded contract.
    unsafe { central::free_batch(class, objects) }
}

/// Maps a large object (any size, any power-of-two alignment). Its memory
/// reads as zero (`alloc_zeroed` need not clear it). Null when out of memory.
#[inline]
pub fn alloc_large(size: usize, align: usize) -> *mut u8 {
    crate::fork::ensure_handlers();
    large::alloc_large(size, align)
}

/// As [`alloc_large`], but the memory may hold old contents (a reused mapping):
/// for `alloc` and `realloc`, which need not clear it.
#[inline]
pub fn alloc_large_uninit(size: usize, align: usize) -> *mut u8 {
    crate::fork::ensure_handlers();
    large::alloc_large_uninit(size, align)
}

/// Unmaps the large object at `ptr`; ignores pointers that are not the start
/// of a live large object.
///
/// # Safety
///
/// Nobody uses the object after this call.
#[inline]
pub unsafe fn dealloc_large(ptr: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { large::free_large(ptr) };
}

/// Resizes the large object at `ptr` (see `large::realloc_large`); null on
/// failure, leaving the object untouched.
///
/// # Safety
///
/// `ptr` is a live large object owned by the caller; on success the caller
/// uses only the returned pointer.
#[inline]
pub unsafe fn realloc_large(ptr: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { large::realloc_large(ptr, new_size) }
}

/// Which object `ptr` is the start of, or `None` if it is not the start of an
/// object of ours (null, foreign, interior, one past the end, free run...).
/// Safe on any pointer value; never faults. For small objects it cannot tell
/// a free object from a live one (free objects sit in upper-tier caches).
#[inline]
pub fn lookup(ptr: *const u8) -> Option<Owner> {
    let addr = ptr as usize;
    let span = pagemap::get(addr)?;
    match span.kind() {
        SpanKind::Small => small_class_in(span, addr).map(Owner::Small),
        SpanKind::Large if span.start() == addr => Some(Owner::Large {
            usable_size: span.bytes(),
        }),
        _ => None,
    }
}

/// The class of the small object `ptr` is the start of, or `None` (null,
/// foreign, interior, large, free run...): the part of [`lookup`] on C `free`'s
/// fast path. Safe on any pointer value; never faults.
#[inline]
pub fn small_class(ptr: *const u8) -> Option<Class> {
    let addr = ptr as usize;
    let span = pagemap::get(addr)?;
    if span.kind() != SpanKind::Small {
        return None;
    }
    small_class_in(span, addr)
}

/// The class of the small span `span` if `addr` starts one of its objects.
#[inline]
fn small_class_in(span: &Span, addr: usize) -> Option<Class> {
    let class = span.class()?;
    object_index(span.start(), class, addr)?;
    Some(class)
}

/// Returns every free page-heap run's memory to the OS now.
pub fn trim() {
    page_heap::trim();
    large_cache::release();
}

/// Sets the page heap's decay time in milliseconds (0: return memory at
/// once; `u64::MAX`: only on `trim`).
pub fn set_decay_ms(ms: u64) {
    page_heap::set_decay_ms(ms);
}

/// Takes every lock of the lower tiers in lock order (central lists, page
/// heap, span record pool, metadata arena): call from a `pthread_atfork`
/// prepare handler, after the upper tiers' locks, so that the child never
/// inherits a lock held by a thread that does not exist there.
pub fn lock_all() {
    central::lock_all();
    page_heap::lock();
    large_cache::lock();
    span::lock_pool();
    meta::lock();
}

/// Releases what `lock_all` took, in reverse order: call from both the parent
/// and the child `pthread_atfork` handlers.
///
/// # Safety
///
/// The calling thread took the locks with `lock_all` (in the child: the
/// parent's thread that forked did).
pub unsafe fn unlock_all() {
    // SAFETY: all four were taken by `lock_all` (caller's contract).
    unsafe {
        meta::unlock();
        span::unlock_pool();
        large_cache::unlock();
        page_heap::unlock();
        central::unlock_all();
    }
}

/// Copies the current counters into `out` (relaxed reads, no locks).
pub fn stats_into(out: &mut LowerStats) {
    out.page_heap = page_heap::stats();
    out.large = large::stats();
    out.metadata_mapped = meta::mapped_bytes() + pagemap::node_bytes();
    out.span_records = span::live_records();
    for (class, slot) in Class::all().zip(out.classes.iter_mut()) {
        *slot = central::class_stats(class);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::class_of;

    #[test]
    fn lookup_tells_small_large_and_garbage() {
        let _serial = crate::test_serial();
        let class = class_of(48, 16).unwrap();
        let mut objs = [core::ptr::null_mut(); 4];
        assert_eq!(alloc_batch(class, &mut objs), 4);
        for &p in &objs {
            assert_eq!(lookup(p), Some(Owner::Small(class)));
            assert_eq!(lookup(p.wrapping_add(1)), None);
            assert_eq!(lookup(p.wrapping_add(47)), None);
        }
        let big = alloc_large(1 << 20, 16);
        assert_eq!(
            lookup(big),
            Some(Owner::Large {
                usable_size: 1 << 20
            })
        );
        assert_eq!(lookup(big.wrapping_add(4096)), None);
        assert_eq!(lookup(big.wrapping_add(1 << 20)), None);
        let local = 0u64;
        for p in [
            core::ptr::null(),
            &local as *const u64 as *const u8,
            usize::MAX as *const u8,
        ] {
            assert_eq!(lookup(p), None);
        }
        let mut stats = LowerStats::new();
        stats_into(&mut stats);
        assert!(stats.large.count >= 1 && stats.classes[class.index()].objects_in_use >= 4);
        // SAFETY: the objects are given up.
        unsafe {
            free_batch(class, &objs);
            dealloc_large(big);
        }
        assert_eq!(lookup(big), None);
    }

    #[test]
    fn one_past_the_last_object_is_not_an_object() {
        let _serial = crate::test_serial();
        for class in Class::all() {
            let mut obj = [core::ptr::null_mut(); 1];
            assert_eq!(alloc_batch(class, &mut obj), 1);
            let span = pagemap::get(obj[0] as usize).unwrap();
            let past = span.start() + class.objects_per_span() * class.size();
            if past < span.end() {
                assert_eq!(
                    lookup(past as *const u8),
                    None,
                    "tail of class {}",
                    class.size()
                );
            }
            // The page after the span belongs to something else (or nothing).
            assert!(pagemap::get(span.end()).is_none_or(|s| !core::ptr::eq(s, span)));
            assert_eq!(
                lookup((span.start() - 1) as *const u8).filter(|o| *o == Owner::Small(class)),
                None
            );
            // SAFETY: given up.
            unsafe { free_batch(class, &obj) };
        }
    }
}
