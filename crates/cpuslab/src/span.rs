//! `Span`: the metadata record for a run of pages, and the pool of records.
//!
//! A span is a run of whole pages in one of these states (`SpanKind`):
//! - `FreeRun`: free pages owned by the page heap;
//! - `Allocated`: handed out by the page heap, not yet given a use;
//! - `Small`: carved into objects of one size class (owned by that class's
//!   central free list);
//! - `Large`: one large object in its own mapping (owned by its user);
//! - `Unused`: a record on the pool's free list.
//!
//! Free objects of a small span are tracked in a bitmap inside the record, not
//! in object memory, so a use-after-free write cannot corrupt the allocator,
//! and a double free reaching this tier is detected (the bit is already set).
//!
//! Records are carved from `meta` memory and never unmapped, so a record
//! reference is valid for the life of the process (`&'static Span`) and a
//! stale page-map entry can always be read. Concurrency protocol: `start`,
//! `pages`, `kind` and `class` are atomics, readable by anyone at any time
//! (that is what `lookup` does); every other field is a `Cell` touched only by
//! the span's current owner, under the owner's lock (page heap, central list)
//! or, for large spans, by the thread that owns the object.

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::meta;
use crate::os::{self, PAGE_SIZE};
use crate::size_class::{Class, MAX_OBJECTS_PER_SPAN};
use crate::sync::Lock;

/// Bits per bitmap word.
const WORD_BITS: usize = u64::BITS as usize;
/// Words of the free-object bitmap.
const BITMAP_WORDS: usize = MAX_OBJECTS_PER_SPAN / WORD_BITS;

/// What a span currently is (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SpanKind {
    Unused = 0,
    FreeRun = 1,
    Allocated = 2,
    Small = 3,
    Large = 4,
}

impl SpanKind {
    fn from_u8(v: u8) -> SpanKind {
        match v {
            1 => SpanKind::FreeRun,
            2 => SpanKind::Allocated,
            3 => SpanKind::Small,
            4 => SpanKind::Large,
            _ => SpanKind::Unused,
        }
    }
}

/// Links of an intrusive doubly linked list.
#[derive(Debug)]
pub struct Link {
    prev: Cell<Option<&'static Span>>,
    next: Cell<Option<&'static Span>>,
}

impl Link {
    const fn new() -> Link {
        Link {
            prev: Cell::new(None),
            next: Cell::new(None),
        }
    }
}

/// The record for a run of pages. C `free` reads `start`, `kind` and `class`
/// on every call: they come first, in one cache line (records are 64-byte
/// aligned).
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Span {
    // Readable without a lock.
    start: AtomicUsize,
    kind: AtomicU8,
    class: AtomicU8,
    pages: AtomicUsize,
    // Owner-only fields.
    /// Membership in one owner list (page heap bucket, central partial list,
    /// pool free list).
    link: Link,
    /// Membership in the page heap's decay (LRU) list of committed free runs.
    lru: Link,
    /// Free run: its pages are decommitted (read as zero). Allocated span:
    /// its pages were all decommitted or fresh when handed out (zeroed).
    zeroed: Cell<bool>,
    /// Free run: when it was freed (ms, CLOCK_MONOTONIC_COARSE).
    freed_at_ms: Cell<u64>,
    /// Small span: objects handed out / free.
    in_use: Cell<u32>,
    free_count: Cell<u32>,
    /// Small span: no free bit below this bitmap word.
    first_free_word: Cell<u32>,
    /// Small span: objects from this index up were never handed out of a span
    /// carved from zeroed pages, so they read as zero (objects leave lowest index
    /// first). The object count when the pages were not zeroed.
    clean_from: Cell<u32>,
    /// Small span: bit i set = object i is free.
    free_bits: [Cell<u64>; BITMAP_WORDS],
    /// Large span: the requested alignment.
    large_align: Cell<usize>,
}

impl Span {
    /// Starts loading what `free_object` reads first, for a use soon: the
    /// record's first line (start, kind, class) and the bitmap's first words
    /// (with the counters before them). Not the bitmap's far words: more
    /// prefetches than the CPU can have in flight slowed a batch of frees.
    #[inline]
    pub fn prefetch(&self) {
        os::prefetch(ptr::from_ref(self).cast());
        os::prefetch(ptr::from_ref(&self.free_bits).cast());
    }
}

// SAFETY: the atomics are thread-safe; the `Cell` fields are only accessed by
// the span's current owner under the owner's lock (module comment), which
// serializes all access to them across threads.
unsafe impl Sync for Span {}

/// Outcome of returning one object to its span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeOutcome {
    /// The object went back; the span's counters changed.
    Freed,
    /// The object was already free (double free); nothing changed.
    AlreadyFree,
    /// The pointer is not the start of an object of this span.
    NotAnObject,
}

impl Span {
    const fn new() -> Span {
        Span {
            start: AtomicUsize::new(0),
            pages: AtomicUsize::new(0),
            kind: AtomicU8::new(SpanKind::Unused as u8),
            class: AtomicU8::new(0),
            link: Link::new(),
            lru: Link::new(),
            zeroed: Cell::new(false),
            freed_at_ms: Cell::new(0),
            in_use: Cell::new(0),
            free_count: Cell::new(0),
            first_free_word: Cell::new(0),
            clean_from: Cell::new(0),
            free_bits: [const { Cell::new(0) }; BITMAP_WORDS],
            large_align: Cell::new(0),
        }
    }

    /// First byte of the run.
    #[inline]
    pub fn start(&self) -> usize {
        self.start.load(Ordering::Relaxed)
    }

    /// Length of the run in pages.
    #[inline]
    pub fn pages(&self) -> usize {
        self.pages.load(Ordering::Relaxed)
    }

    /// Length of the run in bytes (pages are bounded by the address space).
    #[inline]
    pub fn bytes(&self) -> usize {
        self.pages().wrapping_mul(PAGE_SIZE)
    }

    /// One past the last byte of the run.
    #[inline]
    pub fn end(&self) -> usize {
        self.start().wrapping_add(self.bytes())
    }

    /// Sets the page range (owner only; the page map is updated separately).
    pub fn set_range(&self, start: usize, pages: usize) {
        self.start.store(start, Ordering::Relaxed);
        self.pages.store(pages, Ordering::Relaxed);
    }

    #[inline]
    pub fn kind(&self) -> SpanKind {
        SpanKind::from_u8(self.kind.load(Ordering::Acquire))
    }

    /// Publishes a new state; `Release` so that a reader seeing `Small` also
    /// sees the class stored before it.
    #[inline]
    pub fn set_kind(&self, kind: SpanKind) {
        self.kind.store(kind as u8, Ordering::Release);
    }

    /// The size class of a small span.
    #[inline]
    pub fn class(&self) -> Option<Class> {
        Class::from_index(self.class.load(Ordering::Relaxed) as usize)
    }

    pub fn zeroed(&self) -> bool {
        self.zeroed.get()
    }

    pub fn set_zeroed(&self, zeroed: bool) {
        self.zeroed.set(zeroed);
    }

    pub fn freed_at_ms(&self) -> u64 {
        self.freed_at_ms.get()
    }

    pub fn set_freed_at_ms(&self, ms: u64) {
        self.freed_at_ms.set(ms);
    }

    // ---- small spans -------------------------------------------------------

    /// Turns an `Allocated` span into a span of `class` objects, all free.
    /// The span must have `class.span_pages()` pages.
    pub fn init_small(&self, class: Class) {
        let objects = class.objects_per_span();
        for (w, word) in self.free_bits.iter().enumerate() {
            let first = w * WORD_BITS;
            let bits = if objects >= first + WORD_BITS {
                u64::MAX
            } else if objects > first {
                (1u64 << (objects - first)) - 1
            } else {
                0
            };
            word.set(bits);
        }
        self.in_use.set(0);
        self.free_count.set(objects as u32);
        self.first_free_word.set(0);
        self.clean_from
            .set(if self.zeroed() { 0 } else { objects as u32 });
        self.class.store(class.index() as u8, Ordering::Relaxed);
        self.set_kind(SpanKind::Small);
    }

    /// Objects of this small span handed out.
    pub fn in_use(&self) -> usize {
        self.in_use.get() as usize
    }

    /// Free objects left in this small span.
    pub fn free_count(&self) -> usize {
        self.free_count.get() as usize
    }

    /// Moves up to `out.len()` free objects out of this small span, lowest
    /// addresses first; returns how many.
    pub fn take_objects(&self, out: &mut [*mut u8]) -> usize {
        let Some(class) = self.class() else { return 0 };
        let size = class.size();
        let start = self.start();
        let mut n = 0;
        let mut end = 0;
        let first = self.first_free_word.get() as usize;
        for (w, word) in self.free_bits.iter().enumerate().skip(first) {
            let mut bits = word.get();
            while bits != 0 {
                let Some(slot) = out.get_mut(n) else { break };
                let index = w * WORD_BITS + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // index < MAX_OBJECTS_PER_SPAN and index * size < span bytes.
                *slot = (start + index * size) as *mut u8;
                n += 1;
                end = index + 1;
            }
            word.set(bits);
            self.first_free_word.set(w as u32);
            if n == out.len() {
                break;
            }
        }
        // Taken in increasing index order: `end` is past the highest.
        if end as u32 > self.clean_from.get() {
            self.clean_from.set(end as u32);
        }
        // n <= MAX_OBJECTS_PER_SPAN; wrapping ops keep a corrupted count from
        // turning into a panic.
        self.in_use.set(self.in_use.get().wrapping_add(n as u32));
        self.free_count
            .set(self.free_count.get().wrapping_sub(n as u32));
        n
    }

    /// Takes the lowest free object, and says whether it reads as zero (never
    /// handed out of this span, which was carved from zeroed pages).
    pub fn take_one(&self) -> Option<(*mut u8, bool)> {
        let clean_from = self.clean_from.get() as usize;
        let mut out = [core::ptr::null_mut()];
        if self.take_objects(&mut out) == 0 {
            return None;
        }
        let class = self.class()?;
        let clean = object_index(self.start(), class, out[0] as usize)
            .is_some_and(|index| index >= clean_from);
        Some((out[0], clean))
    }

    /// Returns the object at `addr` to this small span.
    pub fn free_object(&self, addr: usize) -> FreeOutcome {
        let Some(class) = self.class() else {
            return FreeOutcome::NotAnObject;
        };
        let Some(index) = object_index(self.start(), class, addr) else {
            return FreeOutcome::NotAnObject;
        };
        let Some(word) = self.free_bits.get(index / WORD_BITS) else {
            return FreeOutcome::NotAnObject;
        };
        let bit = 1u64 << (index % WORD_BITS);
        let bits = word.get();
        if bits & bit != 0 {
            return FreeOutcome::AlreadyFree;
        }
        word.set(bits | bit);
        let w = (index / WORD_BITS) as u32;
        if w < self.first_free_word.get() {
            self.first_free_word.set(w);
        }
        self.in_use.set(self.in_use.get().wrapping_sub(1));
        self.free_count.set(self.free_count.get().wrapping_add(1));
        FreeOutcome::Freed
    }

    // ---- large spans -------------------------------------------------------

    pub fn set_large_align(&self, align: usize) {
        self.large_align.set(align);
    }

    pub fn large_align(&self) -> usize {
        self.large_align.get()
    }
}

/// Index of the object of `class` starting exactly at `addr` in a span
/// starting at `start`; `None` for interior, misaligned or outside addresses
/// (a stale page-map entry's record: the object count bounds the offset).
#[inline]
pub fn object_index(start: usize, class: Class, addr: usize) -> Option<usize> {
    class.object_index(addr.checked_sub(start)?)
}

/// An intrusive doubly linked list of spans through `Span::link` (or
/// `Span::lru` when `LRU`). A span is on at most one list of each kind.
/// Only the owner of the list (under its lock) may call its methods.
#[derive(Debug)]
pub struct SpanList<const LRU: bool> {
    head: Option<&'static Span>,
    tail: Option<&'static Span>,
}

impl<const LRU: bool> SpanList<LRU> {
    pub const fn new() -> Self {
        SpanList {
            head: None,
            tail: None,
        }
    }

    #[inline]
    fn link(span: &Span) -> &Link {
        if LRU {
            &span.lru
        } else {
            &span.link
        }
    }

    #[inline]
    pub fn first(&self) -> Option<&'static Span> {
        self.head
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub fn push_front(&mut self, span: &'static Span) {
        let l = Self::link(span);
        l.prev.set(None);
        l.next.set(self.head);
        match self.head {
            Some(h) => Self::link(h).prev.set(Some(span)),
            None => self.tail = Some(span),
        }
        self.head = Some(span);
    }

    pub fn push_back(&mut self, span: &'static Span) {
        let l = Self::link(span);
        l.next.set(None);
        l.prev.set(self.tail);
        match self.tail {
            Some(t) => Self::link(t).next.set(Some(span)),
            None => self.head = Some(span),
        }
        self.tail = Some(span);
    }

    /// Unlinks `span`, which must be on this list.
    pub fn remove(&mut self, span: &'static Span) {
        let l = Self::link(span);
        let (prev, next) = (l.prev.get(), l.next.get());
        match prev {
            Some(p) => Self::link(p).next.set(next),
            None => self.head = next,
        }
        match next {
            Some(n) => Self::link(n).prev.set(prev),
            None => self.tail = prev,
        }
        l.prev.set(None);
        l.next.set(None);
    }

    pub fn pop_front(&mut self) -> Option<&'static Span> {
        let head = self.head?;
        self.remove(head);
        Some(head)
    }

    /// The spans in list order.
    pub fn iter(&self) -> impl Iterator<Item = &'static Span> {
        core::iter::successors(self.head, |s| Self::link(s).next.get())
    }
}

impl<const LRU: bool> Default for SpanList<LRU> {
    fn default() -> Self {
        Self::new()
    }
}

/// The pool of span records: a free list of recycled records, refilled from
/// `meta` memory.
struct Pool {
    lock: Lock,
    free: core::cell::UnsafeCell<SpanList<false>>,
    /// Records in use (statistics).
    live: AtomicUsize,
}

// SAFETY: `free` is only accessed with `lock` held.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool {
    lock: Lock::new(),
    free: core::cell::UnsafeCell::new(SpanList::new()),
    live: AtomicUsize::new(0),
};

/// A record in state `Unused`, covering nothing; `None` when out of memory.
pub fn alloc_record() -> Option<&'static Span> {
    let recycled = {
        let _guard = POOL.lock.guard();
        // SAFETY: the pool lock is held.
        unsafe { (*POOL.free.get()).pop_front() }
    };
    let span = match recycled {
        Some(s) => s,
        None => {
            let p = meta::alloc(core::mem::size_of::<Span>(), core::mem::align_of::<Span>())?;
            let p = p.as_ptr().cast::<Span>();
            // SAFETY: `p` is fresh, suitably aligned metadata memory that
            // nobody else has seen; it is never unmapped, hence 'static.
            unsafe {
                ptr::write(p, Span::new());
                &*p
            }
        }
    };
    span.set_range(0, 0);
    span.zeroed.set(false);
    span.freed_at_ms.set(0);
    span.in_use.set(0);
    span.free_count.set(0);
    span.large_align.set(0);
    POOL.live.fetch_add(1, Ordering::Relaxed);
    Some(span)
}

/// Returns a record to the pool. Stale page-map entries may still name it;
/// readers see `Unused` (or, once reused, a range that excludes them).
pub fn free_record(span: &'static Span) {
    span.set_kind(SpanKind::Unused);
    let _guard = POOL.lock.guard();
    // SAFETY: the pool lock is held.
    unsafe { (*POOL.free.get()).push_front(span) };
    POOL.live.fetch_sub(1, Ordering::Relaxed);
}

/// Takes the record pool lock (for `fork`).
pub fn lock_pool() {
    POOL.lock.lock();
}

/// Releases the pool lock taken by `lock_pool`.
///
/// # Safety
///
/// The caller took it with `lock_pool` (here or, after `fork`, in the parent).
pub unsafe fn unlock_pool() {
    // SAFETY: caller's contract.
    unsafe { POOL.lock.unlock() };
}

/// Span records currently in use.
pub fn live_records() -> usize {
    POOL.live.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_span(class: Class) -> (&'static Span, usize) {
        let bytes = class.span_pages() * PAGE_SIZE;
        let base = crate::os::map(bytes).unwrap().as_ptr() as usize;
        let s = alloc_record().unwrap();
        s.set_range(base, class.span_pages());
        s.set_kind(SpanKind::Allocated);
        s.init_small(class);
        (s, base)
    }

    #[test]
    fn bitmap_hands_out_every_object_once() {
        for class in Class::all() {
            let (s, base) = small_span(class);
            let n = class.objects_per_span();
            assert_eq!(s.free_count(), n);
            let mut out = vec![ptr::null_mut(); n + 3];
            let mut got = 0;
            // Take in uneven chunks.
            while got < n {
                let k = s.take_objects(&mut out[got..(got + 7).min(n + 3)]);
                assert!(k > 0);
                got += k;
            }
            assert_eq!(got, n);
            assert_eq!(s.take_objects(&mut out[..1]), 0);
            assert_eq!(s.in_use(), n);
            for (i, &p) in out[..n].iter().enumerate() {
                assert_eq!(p as usize, base + i * class.size());
            }
            // Free in reverse, detect double free and junk.
            for &p in out[..n].iter().rev() {
                assert_eq!(s.free_object(p as usize), FreeOutcome::Freed);
                assert_eq!(s.free_object(p as usize), FreeOutcome::AlreadyFree);
            }
            assert_eq!(s.free_object(base + 1), FreeOutcome::NotAnObject);
            assert_eq!(
                s.free_object(base + n * class.size()),
                FreeOutcome::NotAnObject
            );
            assert_eq!(
                s.free_object(base.wrapping_sub(16)),
                FreeOutcome::NotAnObject
            );
            assert_eq!(s.in_use(), 0);
            assert_eq!(s.free_count(), n);
            free_record(s);
            // SAFETY: the mapping was made by small_span and is unused now.
            unsafe { crate::os::unmap(base as *mut u8, class.span_pages() * PAGE_SIZE) };
        }
    }

    #[test]
    fn lists_link_and_unlink() {
        let spans: Vec<_> = (0..4).map(|_| alloc_record().unwrap()).collect();
        let mut list = SpanList::<false>::new();
        let mut lru = SpanList::<true>::new();
        for &s in &spans {
            list.push_back(s);
            lru.push_front(s);
        }
        let order = |it: &mut dyn Iterator<Item = &'static Span>| {
            it.map(|s| spans.iter().position(|&x| ptr::eq(x, s)).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&mut list.iter()), [0, 1, 2, 3]);
        assert_eq!(order(&mut lru.iter()), [3, 2, 1, 0]);
        list.remove(spans[2]);
        list.remove(spans[0]);
        assert_eq!(order(&mut list.iter()), [1, 3]);
        assert!(ptr::eq(list.pop_front().unwrap(), spans[1]));
        assert!(ptr::eq(list.pop_front().unwrap(), spans[3]));
        assert!(list.is_empty() && list.pop_front().is_none());
        while lru.pop_front().is_some() {}
        for s in spans {
            free_record(s);
        }
    }
}
