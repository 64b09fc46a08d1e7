//! Central free lists: the span tier of each size class.
//!
//! Each class has a `CentralFreeList` with its own lock and a list of its
//! *partial* spans (spans with at least one free object); full spans are on no
//! list and are found again through the page map when an object comes back.
//! Objects move in batches: `alloc_batch` takes free objects from partial
//! spans (carving a new span from the page heap when there are none, and
//! taking from it before it is published), `free_batch` puts objects back
//! into their spans' bitmaps and gives a span back to the page heap as soon
//! as none of its objects is in use. So every span on the partial list has an
//! object in use, and the last free of one returns it.
//!
//! Frees of pointers that are not objects of this class (foreign, interior,
//! already free) are ignored and counted, never trusted.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::class_range;
use crate::page_heap;
use crate::pagemap;
use crate::size_class::{Class, NUM_CLASSES};
use crate::span::{FreeOutcome, Span, SpanKind, SpanList};
use crate::sync::{add_under_lock, sub_under_lock, Lock};

/// One class's span tier. Cache-line aligned so classes do not share lines.
#[repr(align(64))]
struct CentralFreeList {
    lock: Lock,
    /// Spans of this class with at least one free object.
    partial: UnsafeCell<SpanList<false>>,
    // Statistics (written under the lock, read without it: `add_under_lock`).
    /// Objects handed out (held by upper tiers or by the program).
    in_use: AtomicUsize,
    /// Free objects held in this class's spans.
    free: AtomicUsize,
    /// Spans of this class.
    spans: AtomicUsize,
    /// Frees ignored because the pointer was not a live object of the class.
    invalid_frees: AtomicUsize,
}

// SAFETY: `partial` and the Cell fields of the spans of this class are only
// accessed with `lock` held.
unsafe impl Sync for CentralFreeList {}

impl CentralFreeList {
    const fn new() -> Self {
        CentralFreeList {
            lock: Lock::new(),
            partial: UnsafeCell::new(SpanList::new()),
            in_use: AtomicUsize::new(0),
            free: AtomicUsize::new(0),
            spans: AtomicUsize::new(0),
            invalid_frees: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on the partial list with the lock held.
    fn with_partial<R>(&self, f: impl FnOnce(&mut SpanList<false>) -> R) -> R {
        let _guard = self.lock.guard();
        // SAFETY: the lock is held for the life of this reference.
        f(unsafe { &mut *self.partial.get() })
    }
}

static CENTRAL: [CentralFreeList; NUM_CLASSES] = [const { CentralFreeList::new() }; NUM_CLASSES];

/// Per-class counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Spans of this class.
    pub spans: usize,
    /// Objects handed out by the central list (in upper tiers or live).
    pub objects_in_use: usize,
    /// Free objects held in this class's spans.
    pub objects_free: usize,
    /// Frees ignored (not a live object of this class: foreign, interior,
    /// double free).
    pub invalid_frees: usize,
}

/// Fills `out[..n]` with up to `out.len()` distinct free objects of `class`
/// and returns n, fewer than asked only when out of memory.
///
/// The order: every cache above hands out the last item of a batch first.
/// The objects come highest address first, so that a program that allocates
/// a run of objects gets them in ascending order, as from the peers, and its
/// walks over them run forwards (jq ran 10% slower on descending runs:
/// docs/benchmarks-preload.md, "Real programs and forks"). But the object
/// taken first (the lowest of the first span the batch came from) comes
/// first, to be handed out last: it is often a span's first object, at offset
/// 0 of a page in every class, and a program that keeps one block of each of
/// many sizes (the C pair) would find them all in one set of the L1 cache
/// (5.7 ns a pair against 5.3). (A CPU's first batch of a class is reordered
/// further: `spread.rs`.)
pub fn alloc_batch(class: Class, out: &mut [*mut u8]) -> usize {
    let n = take_batch(class, out);
    // Not `rotate_right` on an empty batch (out of memory): it would panic.
    if let Some(taken) = out.get_mut(..n).filter(|taken| taken.len() > 1) {
        taken.reverse();
        taken.rotate_right(1);
    }
    n
}

/// [`alloc_batch`] in the spans' order: each span's objects lowest first.
fn take_batch(class: Class, out: &mut [*mut u8]) -> usize {
    let Some(list) = CENTRAL.get(class.index()) else {
        return 0;
    };
    let mut n = 0;
    loop {
        n += list.with_partial(|partial| {
            take_from_partial(list, partial, out.get_mut(n..).unwrap_or_default())
        });
        if n >= out.len() {
            return n;
        }
        // No partial span left: carve a new one.
        let rest = out.get_mut(n..).unwrap_or_default();
        match carve(list, class, |span| span.take_objects(rest)) {
            Some(taken) => n += taken,
            None => return n,
        }
        if n >= out.len() {
            return n;
        }
    }
}

/// One free object of `class`, and whether it reads as zero (never handed out
/// since its span was carved from zeroed pages: `calloc` need not clear it).
/// Null when out of memory.
pub fn alloc_one(class: Class) -> (*mut u8, bool) {
    let Some(list) = CENTRAL.get(class.index()) else {
        return (core::ptr::null_mut(), false);
    };
    loop {
        let taken = list.with_partial(|partial| {
            let span = partial.first()?;
            let taken = span.take_one();
            if taken.is_none() || span.free_count() == 0 {
                partial.remove(span);
            }
            if taken.is_some() {
                add_under_lock(&list.in_use, 1);
                sub_under_lock(&list.free, 1);
            }
            taken
        });
        if let Some(taken) = taken {
            return taken;
        }
        match carve(list, class, Span::take_one) {
            Some(Some(taken)) => return taken,
            Some(None) => {}
            None => return (core::ptr::null_mut(), false),
        }
    }
}

/// Carves a new span of `class` from the page heap (without holding the class
/// lock meanwhile), runs `take` on it, and puts what is left of it on the
/// partial list; `None` when out of memory.
///
/// The carver takes its objects before any other thread can see the span.
/// Published whole, the span could be passed over: two threads that found no
/// partial span both carve, the second span goes in front, and both take from
/// it. The first would then sit on the partial list with nothing in use, and
/// only a free that empties a span gives it back to the page heap.
fn carve<R>(list: &CentralFreeList, class: Class, take: impl FnOnce(&Span) -> R) -> Option<R> {
    let span = page_heap::alloc_class_span(class)?;
    #[cfg(test)]
    carve_hook::at(carve_hook::Stage::Carved);
    let taken = list.with_partial(|partial| {
        span.init_small(class);
        // The page-map entries learn the class (C `free` of a span outside the
        // class ranges reads it there); the page heap registered the span's
        // pages already, so this cannot fail.
        pagemap::set_small(span, class);
        // In its class range, the start map: C `free` accepts its objects now.
        class_range::mark(span);
        let taken = take(span);
        if span.free_count() > 0 {
            partial.push_front(span);
        }
        add_under_lock(&list.spans, 1);
        add_under_lock(&list.in_use, span.in_use());
        add_under_lock(&list.free, span.free_count());
        taken
    });
    #[cfg(test)]
    carve_hook::at(carve_hook::Stage::Installed);
    Some(taken)
}

/// Takes objects from partial spans into `out`; returns how many.
fn take_from_partial(
    list: &CentralFreeList,
    partial: &mut SpanList<false>,
    out: &mut [*mut u8],
) -> usize {
    let mut n = 0;
    while let (Some(span), Some(rest)) = (partial.first(), out.get_mut(n..)) {
        if rest.is_empty() {
            break;
        }
        let got = span.take_objects(rest);
        n += got;
        if got == 0 || span.free_count() == 0 {
            partial.remove(span);
        }
    }
    add_under_lock(&list.in_use, n);
    sub_under_lock(&list.free, n);
    n
}

/// Returns objects of `class` to their spans. Pointers that are not live
/// objects of `class` are ignored (and counted in `invalid_frees`).
///
/// # Safety
///
/// The caller gives up every object in `objects`: nobody uses them after
/// this call (they may be handed out again at once).
pub unsafe fn free_batch(class: Class, objects: &[*mut u8]) {
    let Some(list) = CENTRAL.get(class.index()) else {
        return;
    };
    prefetch_spans(objects);
    list.with_partial(|partial| {
        // Counted here and added once, after the loop.
        let (mut freed, mut released, mut emptied) = (0, 0, 0);
        for &object in objects {
            let addr = object as usize;
            let span = match pagemap::get(addr) {
                Some(s) if s.kind() == SpanKind::Small && s.class() == Some(class) => s,
                _ => {
                    list.invalid_frees.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            if span.free_object(addr) != FreeOutcome::Freed {
                list.invalid_frees.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            freed += 1;
            if span.in_use() == 0 {
                // Empty: back to the page heap (lock order central -> page heap).
                if span.free_count() > 1 {
                    partial.remove(span);
                }
                emptied += 1;
                released += span.free_count();
                page_heap::free_span(span);
            } else if span.free_count() == 1 {
                // Was full: now partial. In front, so nearly-full spans are
                // used first and nearly-empty ones get a chance to drain.
                partial.push_front(span);
            }
        }
        sub_under_lock(&list.in_use, freed);
        add_under_lock(&list.free, freed);
        sub_under_lock(&list.free, released);
        sub_under_lock(&list.spans, emptied);
    });
}

/// Starts the loads [`free_batch`] makes for each object, its page-map entry
/// and then its span's record, before it takes the lock. Objects that come
/// back in an order unrelated to their spans (a program freeing a big
/// structure, most of which overflows to this tier) miss the cache at both;
/// started all together, the misses overlap instead of queueing one behind
/// the other (a span looked up here may be stale: only the prefetch uses it).
fn prefetch_spans(objects: &[*mut u8]) {
    for &object in objects {
        pagemap::prefetch(object as usize);
    }
    for &object in objects {
        if let Some(span) = pagemap::get(object as usize) {
            span.prefetch();
        }
    }
}

/// Takes every class lock, in class order (for `fork`).
pub fn lock_all() {
    for list in &CENTRAL {
        list.lock.lock();
    }
}

/// Releases what `lock_all` took.
///
/// # Safety
///
/// The caller took the locks with `lock_all` (in this process or, after
/// `fork`, in the parent).
pub unsafe fn unlock_all() {
    for list in CENTRAL.iter().rev() {
        // SAFETY: held since `lock_all` (caller's contract).
        unsafe { list.lock.unlock() };
    }
}

/// Counters of `class` (relaxed reads, no lock).
pub fn class_stats(class: Class) -> ClassStats {
    match CENTRAL.get(class.index()) {
        Some(list) => ClassStats {
            spans: list.spans.load(Ordering::Relaxed),
            objects_in_use: list.in_use.load(Ordering::Relaxed),
            objects_free: list.free.load(Ordering::Relaxed),
            invalid_frees: list.invalid_frees.load(Ordering::Relaxed),
        },
        None => ClassStats::default(),
    }
}

/// A test's hold on `carve`: in a thread that set one, the hook runs at each
/// stage of the thread's carves, so that a test can line up two carvers (and
/// no other test's thread is held).
#[cfg(test)]
mod carve_hook {
    use std::cell::Cell;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Stage {
        /// The span came from the page heap; the class lock is not taken yet.
        Carved,
        /// The span is installed and the class lock released.
        Installed,
    }

    std::thread_local! {
        static HOOK: Cell<Option<fn(Stage)>> = const { Cell::new(None) };
    }

    /// Runs `hook` at every stage of the calling thread's carves.
    pub fn set(hook: fn(Stage)) {
        HOOK.with(|h| h.set(Some(hook)));
    }

    pub fn at(stage: Stage) {
        if let Some(hook) = HOOK.with(Cell::get) {
            hook(stage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::PAGE_SIZE;
    use std::collections::HashSet;

    #[test]
    fn objects_are_distinct_aligned_and_inside_their_span() {
        let _serial = crate::test_serial();
        for class in Class::all() {
            let n = 2 * class.objects_per_span() + 3;
            let mut objs = vec![core::ptr::null_mut(); n];
            assert_eq!(alloc_batch(class, &mut objs), n);
            let natural = class.size() & class.size().wrapping_neg();
            let mut seen = HashSet::new();
            for &p in &objs {
                let a = p as usize;
                assert!(seen.insert(a), "duplicate {a:#x}");
                assert_eq!(a % natural.min(PAGE_SIZE), 0);
                let span = pagemap::get(a).unwrap();
                assert_eq!(span.class(), Some(class));
                assert!(a >= span.start() && a + class.size() <= span.end());
                // SAFETY: the object is ours and class.size() bytes long.
                unsafe { p.write_bytes(class.index() as u8, class.size()) };
            }
            let s = class_stats(class);
            assert!(s.spans >= 3 && s.objects_in_use >= n);
            for &p in &objs {
                // SAFETY: written above.
                assert_eq!(unsafe { *p.add(class.size() - 1) }, class.index() as u8);
            }
            // SAFETY: the objects are not used after this.
            unsafe { free_batch(class, &objs) };
        }
    }

    #[test]
    fn empty_spans_go_back_and_bad_frees_are_ignored() {
        let _serial = crate::test_serial();
        let class = crate::size_class::class_of(1000, 16).unwrap();
        let before = class_stats(class);
        let heap_before = page_heap::stats().in_use;
        let n = class.objects_per_span() * 3;
        let mut objs = vec![core::ptr::null_mut(); n];
        assert_eq!(alloc_batch(class, &mut objs), n);
        assert!(page_heap::stats().in_use >= heap_before + 3 * class.span_pages() * PAGE_SIZE);
        let garbage = [
            core::ptr::null_mut(),
            (objs[0] as usize + 1) as *mut u8,
            &n as *const usize as *mut u8,
        ];
        // SAFETY: garbage pointers are ignored; the real ones are given up.
        unsafe {
            free_batch(class, &garbage);
            free_batch(class, &objs);
            free_batch(class, &objs[..1]); // double free
        }
        let after = class_stats(class);
        assert_eq!(after.spans, before.spans);
        assert_eq!(after.objects_in_use, before.objects_in_use);
        assert_eq!(after.invalid_frees, before.invalid_frees + 4);
        assert_eq!(page_heap::stats().in_use, heap_before);
    }

    #[test]
    fn racing_carvers_leave_no_span_unused() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Barrier;
        use std::thread;

        let _serial = crate::test_serial();
        // A class no earlier test left a span in: both carvers find no
        // partial span.
        let class = Class::all()
            .filter(|&c| class_stats(c) == ClassStats::default())
            .last()
            .expect("a class without spans");
        static CARVED: Barrier = Barrier::new(2);
        static INSTALLED: Barrier = Barrier::new(2);
        static STAGES: AtomicUsize = AtomicUsize::new(0);
        // Both carvers hold a span before either takes the lock, and neither
        // goes on until both have installed theirs: the window in which the
        // first span's objects could all go to the second's carver.
        fn hold(stage: carve_hook::Stage) {
            STAGES.fetch_add(1, Ordering::Relaxed);
            match stage {
                carve_hook::Stage::Carved => CARVED.wait(),
                carve_hook::Stage::Installed => INSTALLED.wait(),
            };
        }
        let carvers: Vec<_> = (0..2)
            .map(|_| {
                thread::spawn(move || {
                    carve_hook::set(hold);
                    let mut one = [core::ptr::null_mut()];
                    assert_eq!(alloc_batch(class, &mut one), 1);
                    one[0] as usize
                })
            })
            .collect();
        let objects: Vec<*mut u8> = carvers
            .into_iter()
            .map(|c| c.join().unwrap() as *mut u8)
            .collect();
        assert_eq!(STAGES.load(Ordering::Relaxed), 4, "both carvers held");
        assert_eq!(class_stats(class).spans, 2);
        // SAFETY: the objects are not used after this.
        unsafe { free_batch(class, &objects) };
        assert_eq!(class_stats(class), ClassStats::default(), "a span left");
    }
}
