//! The page heap: runs of pages for spans, and returning memory to the OS.
//!
//! Address space is mapped from the OS in chunks (the kernel commits pages on
//! first touch); `trim()` unmaps free runs. Free runs of pages are kept in two
//! sets of free lists bucketed by
//! length (one list per length up to `MAX_EXACT_PAGES`, one list for longer
//! runs): *committed* runs (pages may be resident) and *decommitted* runs
//! (given back with `MADV_DONTNEED`, read as zero). Allocation is best fit,
//! committed runs first (warm memory), splitting off the low end of a run.
//! A freed run merges with adjacent free runs in the same state, found through
//! the page map (each free run registers its first and last page).
//!
//! A retained budget: when more than [`RETAINED_BUDGET_BYTES`] sit in committed
//! free runs, freeing a span decommits the oldest runs at once, so a program
//! that frees most of its memory gets it back without waiting for a decay tick
//! (unless the decay is off: `CPUSLAB_DECAY_MS=never` leaves it all to `trim`;
//! and not while the program is still refilling: `decay::budgets_apply`).
//!
//! Decay, with no background thread: committed free runs also sit on an LRU
//! list in the order they were freed. Every page-heap operation (at most once
//! per `DECAY_CHECK_MS`, by CLOCK_MONOTONIC_COARSE) decommits the runs that
//! have been idle longer than the decay time (default 1 s); `trim()` does it
//! for all of them now. Decommitted runs then merge with their decommitted
//! neighbours, so after an idle period free memory coalesces again.
//!
//! One heap per size class, plus a shared one. A class's heap grows its
//! class range (`class_range`) slot by slot, its first slot (64 KiB, mapped
//! already) whole, then chunks of up to 1 MiB mapped in place, so that every
//! span of that class lies there; it is the same
//! structure with a different source of chunks. The shared heap maps 64 MiB
//! chunks wherever the kernel puts them, and serves `alloc_span` callers and
//! the classes whose range cannot grow. Runs of different heaps never merge:
//! a class heap's runs lie in its own slots (whose mapped part moves only
//! under its lock), and two heaps' runs that touch (first slots lie side by
//! side) stay apart, as `coalesce` merges only runs of its own heap; the
//! shared heap never merges with a run inside the class ranges' window.
//! `trim` unmaps the shared heap's free runs, and of a class heap's the free
//! runs that end its range, one after the other (runs further in stay mapped,
//! decommitted: the range ends where it ends; a first slot's runs are
//! decommitted, never unmapped). The counters are shared by all
//! heaps.
//!
//! Each heap has its own lock. Lock order: central list -> page heaps (in
//! index order, the shared one last) -> span record pool -> metadata arena.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::class_range;
use crate::os::{self, now_ms, PAGE_SIZE};
use crate::pagemap;
use crate::size_class::{Class, NUM_CLASSES};
use crate::span::{self, Span, SpanKind, SpanList};
use crate::sync::Lock;

/// Address space reserved from the OS at a time (the shared heap).
const CHUNK_BYTES: usize = 64 << 20;
/// Bytes of a class's range made usable at a time, at most: whole spans, at
/// least one, fewer where its slot ends first.
const CLASS_CHUNK_BYTES: usize = 1 << 20;
/// A class's first chunk in its 2 MiB slots, at most; each next one is as
/// big as all before it (its first slot included), up to
/// [`CLASS_CHUNK_BYTES`]. Why: `fork` copies, and the child's exit
/// clears, the page-table entries of every mapping's whole length, used or
/// not; a 1 MiB first chunk for each of 47 classes cost 23 us a fork more
/// than 64 KiB ones (docs/benchmarks-preload.md, "Real programs and forks").
const FIRST_CLASS_CHUNK_BYTES: usize = 64 << 10;
/// Heaps: one per class, then the shared one.
const HEAPS: usize = NUM_CLASSES + 1;
/// Index of the shared heap.
const SHARED: usize = NUM_CLASSES;
/// Runs up to this many pages have a free list of their own (covers every
/// span size class uses).
const MAX_EXACT_PAGES: usize = 512;
/// Exact lists are indexed by length: 0 (unused) ..= MAX_EXACT_PAGES.
const EXACT_LISTS: usize = MAX_EXACT_PAGES + 1;
const BITS_PER_WORD: usize = u64::BITS as usize;
/// Words of the "exact list is non-empty" bitmap.
const NONEMPTY_WORDS: usize = EXACT_LISTS.div_ceil(BITS_PER_WORD);
/// Bytes of committed free runs kept at most (warm memory for the next spans);
/// past it, the oldest runs are decommitted when a span is freed.
pub(crate) const RETAINED_BUDGET_BYTES: usize = 4 << 20;
/// Decay is checked at most this often (unless the decay time is zero).
const DECAY_CHECK_MS: u64 = 4;

/// A heap's free runs, committed and decommitted, bucketed by length. The
/// two states' lists of one length lie side by side, after the bitmaps: a
/// class heap whose runs stay under 65 pages touches the first page of them
/// only. (With one set of lists per state, 8 KiB apart, each heap used three
/// or four pages of them; every page a process has written is copied at each
/// `fork`, and a shell that used 28 classes had 680 KiB of them resident.)
#[repr(C)]
struct FreeRuns {
    nonempty: [[u64; NONEMPTY_WORDS]; 2],
    long: [SpanList<false>; 2],
    exact: [[SpanList<false>; 2]; EXACT_LISTS],
}

impl FreeRuns {
    const fn new() -> FreeRuns {
        FreeRuns {
            nonempty: [[0; NONEMPTY_WORDS]; 2],
            long: [const { SpanList::new() }; 2],
            exact: [const { [const { SpanList::new() }; 2] }; EXACT_LISTS],
        }
    }
}

/// The free runs of one state (committed, or decommitted): a view of a
/// heap's lists.
struct Buckets<'a> {
    runs: &'a mut FreeRuns,
    /// 0 for committed runs, 1 for decommitted ones.
    state: usize,
}

impl Buckets<'_> {
    fn insert(&mut self, run: &'static Span) {
        let pages = run.pages();
        let state = self.state;
        match self.runs.exact.get_mut(pages) {
            Some(lists) => {
                lists[state].push_front(run);
                if let Some(w) = self.runs.nonempty[state].get_mut(pages / BITS_PER_WORD) {
                    *w |= 1 << (pages % BITS_PER_WORD);
                }
            }
            None => self.runs.long[state].push_front(run),
        }
    }

    fn remove(&mut self, run: &'static Span) {
        let pages = run.pages();
        let state = self.state;
        match self.runs.exact.get_mut(pages) {
            Some(lists) => {
                let list = &mut lists[state];
                list.remove(run);
                if list.is_empty() {
                    if let Some(w) = self.runs.nonempty[state].get_mut(pages / BITS_PER_WORD) {
                        *w &= !(1 << (pages % BITS_PER_WORD));
                    }
                }
            }
            None => self.runs.long[state].remove(run),
        }
    }

    /// The smallest free run of at least `pages` pages.
    fn best_fit(&self, pages: usize) -> Option<&'static Span> {
        let state = self.state;
        let mut word = pages / BITS_PER_WORD;
        let mut mask = u64::MAX
            .checked_shl((pages % BITS_PER_WORD) as u32)
            .unwrap_or(0);
        while let Some(&bits) = self.runs.nonempty[state].get(word) {
            let hits = bits & mask;
            if hits != 0 {
                let len = word * BITS_PER_WORD + hits.trailing_zeros() as usize;
                return self.runs.exact.get(len).and_then(|l| l[state].first());
            }
            word += 1;
            mask = u64::MAX;
        }
        self.runs.long[state]
            .iter()
            .filter(|r| r.pages() >= pages)
            .min_by_key(|r| r.pages())
    }
}

/// A heap's state. Its small fields come first, then its lists, so that
/// they share the heap's first page (`PageHeap` starts on a page).
#[repr(C)]
struct Inner {
    /// Committed free runs, least recently freed first.
    lru: SpanList<true>,
    /// When decay last ran (ms).
    last_decay_ms: u64,
    /// A class heap whose range could not grow (full, its place taken, or
    /// out of memory): its class's new spans come from the shared heap, with
    /// no further attempt.
    range_closed: bool,
    runs: FreeRuns,
}

// A heap's small fields and its lists of runs up to 64 pages (a first
// slot's 16, a 256 KiB chunk's 64) share its first page.
const _: () = assert!(
    core::mem::offset_of!(Inner, runs)
        + core::mem::offset_of!(FreeRuns, exact)
        + 65 * core::mem::size_of::<[SpanList<false>; 2]>()
        <= PAGE_SIZE
);

/// A heap's state, touched only under its lock in [`HEAP_LOCKS`], on pages
/// of its own.
#[repr(align(4096))]
struct PageHeap(UnsafeCell<Inner>);

impl PageHeap {
    const fn new() -> PageHeap {
        PageHeap(UnsafeCell::new(Inner {
            lru: SpanList::new(),
            last_decay_ms: 0,
            range_closed: false,
            runs: FreeRuns::new(),
        }))
    }
}

// SAFETY: the state is only accessed with the heap's lock held (`with_heap`).
unsafe impl Sync for PageHeap {}

/// A heap's lock, alone on its cache line. The locks lie together, apart
/// from the heaps (16 KiB of buckets each), so that the fork handlers, which
/// take and release every lock, write 2 pages rather than one per heap: after
/// a fork each page written is a page fault in the parent and a copy in the
/// child (a fork took 730 us against glibc's 250 with a lock in every heap).
#[repr(align(64))]
struct HeapLock(Lock);

/// Statistics of all heaps (written under a heap's lock, read without one).
struct Counters {
    mapped: AtomicUsize,
    in_use: AtomicUsize,
    free_committed: AtomicUsize,
    free_decommitted: AtomicUsize,
    decommits: AtomicUsize,
    returned: AtomicUsize,
}

static HEAP_LIST: [PageHeap; HEAPS] = [const { PageHeap::new() }; HEAPS];
static HEAP_LOCKS: [HeapLock; HEAPS] = [const { HeapLock(Lock::new()) }; HEAPS];

static COUNTERS: Counters = Counters {
    mapped: AtomicUsize::new(0),
    in_use: AtomicUsize::new(0),
    free_committed: AtomicUsize::new(0),
    free_decommitted: AtomicUsize::new(0),
    decommits: AtomicUsize::new(0),
    returned: AtomicUsize::new(0),
};

/// Page-heap counters, in bytes (plus a count of decommit calls).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageHeapStats {
    /// Address space reserved from the OS.
    pub mapped: usize,
    /// In spans handed out.
    pub in_use: usize,
    /// In free runs that may be resident.
    pub free_committed: usize,
    /// In free runs given back to the OS.
    pub free_decommitted: usize,
    /// madvise(MADV_DONTNEED) calls made so far.
    pub decommits: usize,
    /// Bytes given back to the OS so far (decommitted; unmapped runs were
    /// decommitted first).
    pub returned: usize,
}

impl PageHeapStats {
    /// Bytes that may be resident: in use plus committed free runs.
    pub fn resident(&self) -> usize {
        self.in_use.saturating_add(self.free_committed)
    }
}

/// Runs `f` with heap `which` (an index below `HEAPS`) locked.
fn with_heap<R>(which: usize, f: impl FnOnce(&mut Inner) -> R) -> R {
    let which = if which < HEAPS { which } else { SHARED };
    let _guard = HEAP_LOCKS[which].0.guard();
    // SAFETY: the heap's lock is held for the life of this reference.
    let inner = unsafe { &mut *HEAP_LIST[which].0.get() };
    f(inner)
}

/// The heap whose pages hold `addr`: its class's, inside a class range.
fn heap_of(addr: usize) -> usize {
    class_range::class_at(addr).map_or(SHARED, Class::index)
}

/// A span of `pages` pages in state `Allocated`, from the shared heap,
/// registered in the page map for every page. Its `zeroed()` says whether all
/// its pages read as zero. `None` when out of memory.
pub fn alloc_span(pages: usize) -> Option<&'static Span> {
    alloc_from(SHARED, pages)
}

/// A span for `class` (of its `span_pages()`), from the class's range when it
/// has room, else as [`alloc_span`].
pub fn alloc_class_span(class: Class) -> Option<&'static Span> {
    let pages = class.span_pages();
    alloc_from(class.index(), pages).or_else(|| alloc_span(pages))
}

fn alloc_from(which: usize, pages: usize) -> Option<&'static Span> {
    if pages == 0 {
        return None;
    }
    let bytes = pages.checked_mul(PAGE_SIZE)?;
    crate::decay::note_refill();
    with_heap(which, |h| {
        h.maybe_decay(now_ms());
        let (run, decommitted) = match h.committed().best_fit(pages) {
            Some(r) => (r, false),
            None => match h.decommitted().best_fit(pages) {
                Some(r) => (r, true),
                None => (h.grow(which, bytes)?, true),
            },
        };
        h.carve(run, pages, decommitted)
    })
}

/// Gives a span (any state but `FreeRun`/`Unused`, obtained from
/// `alloc_span` or `alloc_class_span`) back to its heap. Its pages become a
/// committed free run.
pub fn free_span(span: &'static Span) {
    crate::decay::note_freed(span.bytes());
    class_range::clear(span);
    with_heap(heap_of(span.start()), |h| {
        let now = now_ms();
        COUNTERS.in_use.fetch_sub(span.bytes(), Ordering::Relaxed);
        COUNTERS
            .free_committed
            .fetch_add(span.bytes(), Ordering::Relaxed);
        span.set_kind(SpanKind::FreeRun);
        span.set_zeroed(false);
        let run = h.coalesce(span, false);
        run.set_freed_at_ms(now);
        h.committed().insert(run);
        h.lru.push_back(run);
        h.maybe_decay(now);
        h.keep_within_budget();
    })
}

/// Runs every heap's decay now (for the allocator-wide decay, which calls it
/// from slow paths and the background thread).
pub fn decay() {
    let now = now_ms();
    for which in 0..HEAPS {
        with_heap(which, |h| h.maybe_decay(now));
    }
}

/// Returns every free run to the OS now: committed runs are decommitted, then
/// the shared heap's decommitted runs and the free end of each class range are
/// unmapped, so that the address space too goes back (under `RLIMIT_AS` or
/// strict overcommit, freed small-object memory can then serve large objects,
/// which are mapped on their own). A class range that stopped growing may
/// try again.
pub fn trim() {
    for which in 0..HEAPS {
        with_heap(which, |h| {
            while let Some(run) = h.lru.first() {
                if !h.decommit(run) {
                    break;
                }
            }
            match Class::from_index(which) {
                Some(class) => h.shrink_range(class),
                None => {
                    while let Some(run) = h.decommitted().best_fit(1) {
                        if !h.unmap(run) {
                            break;
                        }
                    }
                }
            }
        })
    }
}

/// Takes every heap's lock, in index order (for `fork`).
pub fn lock() {
    for lock in &HEAP_LOCKS {
        lock.0.lock();
    }
}

/// Releases the locks taken by `lock`.
///
/// # Safety
///
/// The caller took them with `lock` (in this process or, after `fork`, in the
/// parent).
pub unsafe fn unlock() {
    for lock in HEAP_LOCKS.iter().rev() {
        // SAFETY: caller's contract.
        unsafe { lock.0.unlock() };
    }
}

/// A snapshot of the counters (relaxed; no lock, no allocation).
pub fn stats() -> PageHeapStats {
    PageHeapStats {
        mapped: COUNTERS.mapped.load(Ordering::Relaxed),
        in_use: COUNTERS.in_use.load(Ordering::Relaxed),
        free_committed: COUNTERS.free_committed.load(Ordering::Relaxed),
        free_decommitted: COUNTERS.free_decommitted.load(Ordering::Relaxed),
        decommits: COUNTERS.decommits.load(Ordering::Relaxed),
        returned: COUNTERS.returned.load(Ordering::Relaxed),
    }
}

impl Inner {
    fn buckets(&mut self, decommitted: bool) -> Buckets<'_> {
        Buckets {
            runs: &mut self.runs,
            state: usize::from(decommitted),
        }
    }

    fn committed(&mut self) -> Buckets<'_> {
        self.buckets(false)
    }

    fn decommitted(&mut self) -> Buckets<'_> {
        self.buckets(true)
    }

    /// Adds a new chunk of at least `bytes` to heap `which` and files it as
    /// a decommitted free run (fresh pages read as zero).
    fn grow(&mut self, which: usize, bytes: usize) -> Option<&'static Span> {
        let class = Class::from_index(which);
        let (base, len) = match class {
            Some(class) => self.grow_in_range(class, bytes)?,
            None => {
                let len = os::round_up(bytes, CHUNK_BYTES)?;
                (os::map(len)?.as_ptr(), len)
            }
        };
        let record = if pagemap::ensure(base as usize, len) {
            span::alloc_record()
        } else {
            None
        };
        let Some(run) = record else {
            match class {
                // SAFETY: the chunk was just mapped at the range's end, and
                // holds nothing.
                Some(class) => unsafe { class_range::shrink(class, base as usize) },
                // SAFETY: the chunk was just mapped and never published.
                None => unsafe { os::unmap(base, len) },
            };
            return None;
        };
        run.set_range(base as usize, len / PAGE_SIZE);
        run.set_kind(SpanKind::FreeRun);
        run.set_zeroed(true);
        COUNTERS.mapped.fetch_add(len, Ordering::Relaxed);
        COUNTERS.free_decommitted.fetch_add(len, Ordering::Relaxed);
        let run = self.coalesce(run, true);
        self.decommitted().insert(run);
        Some(run)
    }

    /// The next chunk of `class`'s range (a whole number of its spans, so that
    /// spans stay at multiples of their size from the slot's first), mapped;
    /// `None` when the range is full or the place is taken. Only spans of the
    /// class come from its heap: `bytes` is one span.
    fn grow_in_range(&mut self, class: Class, bytes: usize) -> Option<(*mut u8, usize)> {
        if self.range_closed || bytes > class.span_pages() * PAGE_SIZE {
            return None;
        }
        // As big as what is mapped already (a range given back grows from
        // small chunks again).
        let want =
            class_range::mapped_bytes(class).clamp(FIRST_CLASS_CHUNK_BYTES, CLASS_CHUNK_BYTES);
        // SAFETY: this heap's lock is held.
        let grown = unsafe { class_range::grow(class, want) };
        self.range_closed = grown.is_none();
        let (start, len) = grown?;
        Some((start as *mut u8, len))
    }

    /// Takes `pages` pages off the low end of the free run `run` (which is in
    /// the `decommitted` or committed set) and returns them as an `Allocated`
    /// span registered in the page map.
    fn carve(
        &mut self,
        run: &'static Span,
        pages: usize,
        decommitted: bool,
    ) -> Option<&'static Span> {
        let bytes = pages * PAGE_SIZE; // checked by alloc_span
        let span = if run.pages() == pages {
            self.buckets(decommitted).remove(run);
            if !decommitted {
                self.lru.remove(run);
            }
            run
        } else {
            // The remainder keeps `run` (and its LRU position); the carved
            // piece gets a new record.
            let span = span::alloc_record()?;
            self.buckets(decommitted).remove(run);
            span.set_range(run.start(), pages);
            run.set_range(run.start() + bytes, run.pages() - pages);
            self.buckets(decommitted).insert(run);
            pagemap::set(run.start(), run);
            span
        };
        span.set_zeroed(decommitted);
        span.set_kind(SpanKind::Allocated);
        pagemap::set_range(span.start(), pages, span);
        let from = if decommitted {
            &COUNTERS.free_decommitted
        } else {
            &COUNTERS.free_committed
        };
        from.fetch_sub(bytes, Ordering::Relaxed);
        COUNTERS.in_use.fetch_add(bytes, Ordering::Relaxed);
        Some(span)
    }

    /// Merges the free run `run` (not yet on any list) with the adjacent
    /// free runs in the same state, takes them off their lists, registers the
    /// merged run's first and last pages and returns it.
    fn coalesce(&mut self, run: &'static Span, decommitted: bool) -> &'static Span {
        // `run` is this heap's: `heap` is stable while its lock is held. Of a
        // neighbour, only atomic fields are read until it is known to be this
        // heap's too (another heap's owner may be changing its `zeroed`).
        let heap = heap_of(run.start());
        let mine = |n: &Span| match heap {
            SHARED => !class_range::in_window(n.start()),
            _ => heap_of(n.start()) == heap,
        };
        let mergeable =
            |n: &Span| n.kind() == SpanKind::FreeRun && mine(n) && n.zeroed() == decommitted;
        // A stale page-map entry names a record whose range excludes the
        // page; the adjacency checks below reject it.
        if let Some(prev) = pagemap::get(run.start().wrapping_sub(PAGE_SIZE)) {
            if mergeable(prev) && prev.end() == run.start() && !core::ptr::eq(prev, run) {
                self.take_off_lists(prev, decommitted);
                run.set_range(prev.start(), prev.pages() + run.pages());
                span::free_record(prev);
            }
        }
        if let Some(next) = pagemap::get(run.end()) {
            if mergeable(next) && next.start() == run.end() && !core::ptr::eq(next, run) {
                self.take_off_lists(next, decommitted);
                run.set_range(run.start(), run.pages() + next.pages());
                span::free_record(next);
            }
        }
        pagemap::set(run.start(), run);
        pagemap::set(run.end() - PAGE_SIZE, run);
        run
    }

    fn take_off_lists(&mut self, run: &'static Span, decommitted: bool) {
        self.buckets(decommitted).remove(run);
        if !decommitted {
            self.lru.remove(run);
        }
    }

    /// Gives the pages of the committed free run `run` back to the OS and
    /// files it (merged with decommitted neighbours) as decommitted.
    /// Returns false if the OS refused (the run stays committed).
    fn decommit(&mut self, run: &'static Span) -> bool {
        self.take_off_lists(run, false);
        // SAFETY: the run is free: nobody holds pointers into it that they
        // may use, and it lies in one of our chunks.
        if !unsafe { os::decommit(run.start() as *mut u8, run.bytes()) } {
            // Keep it committed and retry on a later decay.
            run.set_freed_at_ms(now_ms());
            self.committed().insert(run);
            self.lru.push_back(run);
            return false;
        }
        COUNTERS.decommits.fetch_add(1, Ordering::Relaxed);
        COUNTERS.returned.fetch_add(run.bytes(), Ordering::Relaxed);
        COUNTERS
            .free_committed
            .fetch_sub(run.bytes(), Ordering::Relaxed);
        COUNTERS
            .free_decommitted
            .fetch_add(run.bytes(), Ordering::Relaxed);
        run.set_zeroed(true);
        let run = self.coalesce(run, true);
        // Merged with its decommitted neighbours, the run may now cover
        // whole pages of its class range's start map.
        // SAFETY: a free run of this heap, whose lock is held.
        unsafe { class_range::release_start_map(run) };
        self.decommitted().insert(run);
        true
    }

    /// Unmaps the decommitted free run `run` and forgets it. Returns false if
    /// the OS refused (the run stays where it was).
    fn unmap(&mut self, run: &'static Span) -> bool {
        // With OS pages larger than ours a run may share its end pages with a
        // neighbour: such a run stays mapped (decommitted).
        if !os::os_page_aligned(run.start()) || !os::os_page_aligned(run.end()) {
            return false;
        }
        // SAFETY: the run is free and decommitted: nobody holds pointers into
        // it that they may use, it lies in one of our chunks, and it covers
        // whole OS pages.
        if !unsafe { os::unmap(run.start() as *mut u8, run.bytes()) } {
            return false;
        }
        self.decommitted().remove(run);
        self.forget(run);
        true
    }

    /// Forgets the run `run`, unmapped and off every list: its page-map
    /// entries, counters and record.
    fn forget(&mut self, run: &'static Span) {
        pagemap::clear_if(run.start(), run);
        pagemap::clear_if(run.end() - PAGE_SIZE, run);
        COUNTERS.mapped.fetch_sub(run.bytes(), Ordering::Relaxed);
        COUNTERS
            .free_decommitted
            .fetch_sub(run.bytes(), Ordering::Relaxed);
        span::free_record(run);
    }

    /// Unmaps the decommitted free runs at the end of `class`'s range, while
    /// there is one (runs further in stay mapped: the range ends where it
    /// ends).
    fn shrink_range(&mut self, class: Class) {
        // Whatever made the range stop growing may be over (out of memory).
        self.range_closed = false;
        while let Some((start, end)) = class_range::mapped_end(class) {
            let Some(run) = pagemap::get(end - PAGE_SIZE) else {
                return;
            };
            // The last page is in the range, so its record is this heap's (or
            // a stale one, which the bounds reject) and its `Cell`s are ours
            // to read.
            if run.kind() != SpanKind::FreeRun || run.start() < start || run.end() != end {
                return;
            }
            if !run.zeroed() {
                return;
            }
            self.decommitted().remove(run);
            // SAFETY: this heap's lock is held; the run lies in the range's
            // last slot and ends it, free and decommitted.
            if !unsafe { class_range::shrink(class, run.start()) } {
                self.decommitted().insert(run);
                return;
            }
            self.forget(run);
        }
    }

    /// Decommits this heap's oldest committed free runs while more than the
    /// retained budget is committed free in all heaps (unless the decay is
    /// off: then only `trim`). Other heaps' runs wait for their own frees or
    /// for the decay.
    fn keep_within_budget(&mut self) {
        if crate::decay::interval_ms() == u64::MAX || !crate::decay::budgets_apply() {
            return;
        }
        while COUNTERS.free_committed.load(Ordering::Relaxed) > RETAINED_BUDGET_BYTES {
            let Some(run) = self.lru.first() else {
                break;
            };
            if !self.decommit(run) {
                break;
            }
        }
    }

    /// Decommits the runs idle for longer than the decay time.
    fn maybe_decay(&mut self, now: u64) {
        let decay = crate::decay::interval_ms();
        if decay == u64::MAX
            || (decay != 0 && now.wrapping_sub(self.last_decay_ms) < DECAY_CHECK_MS)
            || self.lru.first().is_none()
        {
            // (A heap with no committed free run is left unwritten: the
            // allocator-wide decay visits all `HEAPS`, and each page written is
            // one more that every `fork` copies.)
            return;
        }
        self.last_decay_ms = now;
        while let Some(run) = self.lru.first() {
            if now.saturating_sub(run.freed_at_ms()) < decay {
                break;
            }
            if !self.decommit(run) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_prefers_smallest_fitting_run() {
        let mut runs_of_heap = std::boxed::Box::new(FreeRuns::new());
        let mut b = Buckets {
            runs: &mut runs_of_heap,
            state: 0,
        };
        let runs: Vec<_> = [3usize, 70, 600, 9000]
            .iter()
            .map(|&p| {
                let r = span::alloc_record().unwrap();
                r.set_range(0x1000_0000 * p, p);
                b.insert(r);
                r
            })
            .collect();
        let fit = |b: &Buckets, n| b.best_fit(n).map(|r| r.pages());
        assert_eq!(fit(&b, 1), Some(3));
        assert_eq!(fit(&b, 3), Some(3));
        assert_eq!(fit(&b, 4), Some(70));
        assert_eq!(fit(&b, 64), Some(70));
        assert_eq!(fit(&b, 71), Some(600));
        assert_eq!(fit(&b, 512), Some(600));
        assert_eq!(fit(&b, 601), Some(9000));
        assert_eq!(fit(&b, 9001), None);
        {
            // The other state's lists, beside these, are apart from them.
            let other = Buckets {
                runs: b.runs,
                state: 1,
            };
            assert_eq!(fit(&other, 1), None);
        }
        b.remove(runs[1]);
        assert_eq!(fit(&b, 4), Some(600));
        b.remove(runs[2]);
        assert_eq!(fit(&b, 4), Some(9000));
        b.remove(runs[0]);
        b.remove(runs[3]);
        assert_eq!(fit(&b, 1), None);
        for r in runs {
            span::free_record(r);
        }
    }

    /// Restores the default decay time when a test ends (even by panic).
    struct DecayGuard;
    impl Drop for DecayGuard {
        fn drop(&mut self) {
            crate::decay::set_interval_ms(crate::decay::DEFAULT_INTERVAL_MS);
        }
    }

    fn fill(span: &Span, byte: u8) {
        // SAFETY: the span's pages are ours until freed.
        unsafe { (span.start() as *mut u8).write_bytes(byte, span.bytes()) };
    }

    fn reads_zero(start: usize, len: usize) -> bool {
        // SAFETY: page-heap memory stays mapped (chunks are never unmapped).
        (0..len)
            .step_by(64)
            .all(|i| unsafe { *((start + i) as *const u8) } == 0)
    }

    #[test]
    fn freed_neighbours_coalesce() {
        let _serial = crate::test_serial();
        let _decay = DecayGuard;
        crate::decay::set_interval_ms(u64::MAX);
        let a = alloc_span(4).unwrap();
        let b = alloc_span(8).unwrap();
        let c = alloc_span(16).unwrap();
        for s in [a, b, c] {
            assert_eq!(s.kind(), SpanKind::Allocated);
            assert!(core::ptr::eq(pagemap::get(s.end() - 1).unwrap(), s));
            fill(s, 0xa5);
        }
        let (lo, hi) = (a.start().min(c.start()), a.end().max(c.end()));
        let contiguous = b.start() == a.end() && c.start() == b.end();
        let in_use = stats().in_use;
        free_span(b);
        free_span(a);
        free_span(c);
        assert_eq!(stats().in_use, in_use - 28 * PAGE_SIZE);
        if contiguous {
            let run = pagemap::get(lo).unwrap();
            assert_eq!(run.kind(), SpanKind::FreeRun);
            assert!(run.start() <= lo && run.end() >= hi, "not merged");
            assert!(core::ptr::eq(pagemap::get(run.end() - 1).unwrap(), run));
        }
    }

    #[test]
    fn trim_returns_free_runs_and_pages_come_back_zeroed() {
        let _serial = crate::test_serial();
        let _decay = DecayGuard;
        crate::decay::set_interval_ms(u64::MAX);
        let pages = 64;
        let s = alloc_span(pages).unwrap();
        fill(s, 0x5a);
        free_span(s);
        let before = stats();
        assert!(before.free_committed >= pages * PAGE_SIZE);
        trim();
        let after = stats();
        assert_eq!(after.free_committed, 0);
        // The shared heap's free runs are unmapped (class heaps' stay
        // decommitted in their ranges).
        assert!(after.mapped <= before.mapped - pages * PAGE_SIZE);
        assert_eq!(
            after.mapped - after.free_decommitted,
            before.mapped - before.free_decommitted - before.free_committed
        );
        assert!(after.decommits > before.decommits);
        // Nothing free is left: whatever we get now is fresh and zeroed.
        let t = alloc_span(pages).unwrap();
        assert!(t.zeroed());
        assert!(reads_zero(t.start(), t.bytes()));
        fill(t, 1);
        free_span(t);
    }

    #[test]
    fn zero_decay_decommits_at_once_and_idle_runs_decay() {
        let _serial = crate::test_serial();
        let _decay = DecayGuard;
        // The counters cover the class heaps too, where earlier tests may
        // have left committed runs that this heap's decay does not reach:
        // what this test's spans add is measured from here.
        let held = stats().free_committed;
        crate::decay::set_interval_ms(0);
        let s = alloc_span(16).unwrap();
        fill(s, 9);
        free_span(s);
        assert!(stats().free_committed <= held, "{:?}", stats());

        crate::decay::set_interval_ms(50);
        let s = alloc_span(16).unwrap();
        fill(s, 9);
        free_span(s);
        assert!(stats().free_committed >= 16 * PAGE_SIZE);
        std::thread::sleep(std::time::Duration::from_millis(120));
        // Any page-heap operation runs the decay.
        let t = alloc_span(1).unwrap();
        free_span(t);
        // `t` itself was just freed and is not idle yet.
        assert!(stats().free_committed <= held + PAGE_SIZE, "{:?}", stats());
    }

    #[test]
    fn huge_requests_fail_cleanly() {
        assert!(alloc_span(0).is_none());
        assert!(alloc_span(usize::MAX / 2).is_none());
        assert!(alloc_span(1 << 40).is_none()); // 4 PiB: mmap refuses
    }
}
