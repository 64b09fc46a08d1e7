//! Tier 1, the per-CPU caches: per CPU (or concurrency id) and size class, a
//! bounded stack of free object pointers driven by rseq-core's restartable
//! operations. malloc is one restartable pop, sized free one restartable push;
//! object memory holds no metadata on this path.
//!
//! Layout: one region reserved for every possible index, one shelf per index,
//! `1 << SHELF_SHIFT` bytes apart; a shelf holds the stack headers of all classes,
//! then each class's slot array. The region is mapped but not touched; a
//! shelf's pages are touched, so made resident, only when a thread
//! runs there and uses a class, whose stack is then installed (fence-free: an
//! inert stack never commits). Slots per class are bounded by a byte budget, so
//! the memory one CPU can cache is bounded; classes whose base is 0 (above a
//! quarter of the budget) bypass this tier and use the depot. A stack's
//! capacity starts at its class's base and follows its misses (`capacity.rs`).
//!
//! Misses and overflows move whole batches to and from the depot (rseq-core's
//! batch operations: one commit per batch). The slow paths live here; the fast
//! path is in `global.rs`.

use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use rseq_core::{OpError, PerCpu, PublishedPerCpu, Stack, StackParts};

use crate::cache_counters::{CacheCounters, ClassCounters};
use crate::capacity::{self, ShelfGrowth};
use crate::central;
use crate::config::MAX_CPU_CACHE_BYTES;
use crate::decay;
use crate::depot::{self, MAX_BATCH};
use crate::os;
use crate::report;
use crate::size_class::{Class, NUM_CLASSES};

/// The most objects one CPU caches per class.
const MAX_CACHED_OBJECTS: usize = 2048;

/// Slots a shelf reserves for a class: min(MAX_CACHED_OBJECTS,
/// MAX_CPU_CACHE_BYTES / size); 0 for classes above the budget. (Classes above
/// a quarter of it have slots but a base of 0, and bypass the tier too.)
const fn slots(class: Class) -> usize {
    let n = MAX_CPU_CACHE_BYTES / class.size();
    if n > MAX_CACHED_OBJECTS {
        MAX_CACHED_OBJECTS
    } else {
        n
    }
}

/// Objects a stack of `class` holds when installed (`capacity::base`); 0
/// bypasses the tier.
#[inline]
pub(crate) fn base_capacity(class: Class) -> usize {
    capacity::base(class, slots(class))
}

/// The most bytes of free objects one shelf can cache now, all classes
/// together: every class at its base, and the growth the shelf's budget allows
/// (no class above its most).
pub(crate) fn shelf_bound_bytes() -> usize {
    let bytes = |objects: fn(Class) -> usize| -> usize {
        Class::all()
            .map(|class| objects(class) * class.size())
            .sum()
    };
    let bases = bytes(base_capacity);
    let mosts = bytes(|class| capacity::most(class, slots(class)));
    bases + mosts.saturating_sub(bases).min(capacity::growth_budget())
}

/// Bytes of stack headers at the start of a shelf.
const HEADER_BYTES: usize = NUM_CLASSES * size_of::<Stack>();

/// Offset of the slow paths' counters in a shelf, after the headers.
const COUNTERS_OFFSET: usize = HEADER_BYTES;

/// Offset of the capacity policy's state in a shelf, after the counters.
const GROWTH_OFFSET: usize = COUNTERS_OFFSET + NUM_CLASSES * size_of::<ClassCounters>();

/// Offset of each class's slot array in a shelf, after the policy's state.
const SLOT_OFFSETS: [usize; NUM_CLASSES] = {
    let mut offsets = [0; NUM_CLASSES];
    let mut offset = (GROWTH_OFFSET + size_of::<ShelfGrowth>()).next_multiple_of(8);
    let mut i = 0;
    while i < NUM_CLASSES {
        offsets[i] = offset;
        if let Some(class) = Class::from_index(i) {
            offset += slots(class) * size_of::<*mut u8>();
        }
        i += 1;
    }
    offsets
};

/// Bytes one shelf needs.
const SHELF_BYTES: usize = {
    let last = NUM_CLASSES - 1;
    match Class::from_index(last) {
        Some(class) => SLOT_OFFSETS[last] + slots(class) * size_of::<*mut u8>(),
        None => SLOT_OFFSETS[last],
    }
};

/// log2 of the distance between shelves.
const SHELF_SHIFT: u32 = SHELF_BYTES.next_power_of_two().trailing_zeros();

const _: () = assert!(SHELF_BYTES <= 1 << SHELF_SHIFT);

/// What one index's shelf is, to rseq-core: an opaque slot.
pub(crate) struct Shelf;

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;
const DISABLED: u8 = 3;

struct Caches {
    state: AtomicU8,
    region: PublishedPerCpu<Shelf>,
}

static CACHES: Caches = Caches {
    state: AtomicU8::new(UNINIT),
    region: PublishedPerCpu::new(),
};

/// The per-CPU region, once it exists.
#[inline(always)]
pub(crate) fn region() -> Option<PerCpu<Shelf>> {
    CACHES.region.is_published().then(|| CACHES.region.get())
}

/// The per-CPU region for the fast path: no check, an empty region until it
/// exists (every operation on it fails, and the slow path creates it).
#[inline(always)]
pub(crate) fn fast_region() -> PerCpu<Shelf> {
    CACHES.region.get()
}

/// The stacks of `class` in every shelf.
#[inline(always)]
pub(crate) fn stacks(region: PerCpu<Shelf>, class: Class) -> PerCpu<Stack> {
    // SAFETY: every shelf starts with NUM_CLASSES stack headers; the class index
    // is below NUM_CLASSES.
    unsafe { region.project(class.index() * size_of::<Stack>()) }
}

/// Creates the region on first use; true once it exists. Reentrant: a thread
/// that gets here while another initializes (or that allocates during the
/// initialization) simply goes without per-CPU caches for now.
#[cold]
fn init() -> bool {
    match CACHES
        .state
        .compare_exchange(UNINIT, INITIALIZING, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {}
        Err(state) => return state == READY,
    }
    crate::first_use::ensure();
    let len = rseq_core::possible_cpus();
    let index = crate::config::cache_index();
    let bytes = (len as usize).checked_mul(1 << SHELF_SHIFT);
    let Some(base) = bytes.and_then(os::map) else {
        CACHES.state.store(DISABLED, Ordering::Release);
        return false;
    };
    // SAFETY: the mapping holds `len` zeroed shelves of 1 << SHELF_SHIFT bytes,
    // lives forever, and zeroed memory is a valid (inert) stack header.
    let region = unsafe { PerCpu::new(base.cast::<Shelf>(), SHELF_SHIFT, len, index) };
    CACHES.region.publish(region);
    CACHES.state.store(READY, Ordering::Release);
    true
}

/// The depot shard a thread should use: its index now, as a hint.
#[inline]
pub(crate) fn home() -> usize {
    match region() {
        Some(region) => region.current_index() as usize,
        None => rseq_core::current_cpu() as usize,
    }
}

/// The slow paths' counters of `class` in shelf `index`.
fn counters(region: PerCpu<Shelf>, index: u32, class: Class) -> Option<&'static ClassCounters> {
    let shelf = region.slot(index)?;
    let at = COUNTERS_OFFSET + class.index() * size_of::<ClassCounters>();
    let counters = (shelf as *const Shelf).cast::<u8>().wrapping_add(at);
    // SAFETY: the counters of every class lie inside each shelf at this offset,
    // aligned (the shelf is page-aligned, the headers' size a multiple of 8),
    // zeroed at first (valid atomics), written only atomically, and live forever.
    Some(unsafe { &*counters.cast::<ClassCounters>() })
}

/// The capacity policy's state of shelf `index`.
fn growth(region: PerCpu<Shelf>, index: u32) -> Option<&'static ShelfGrowth> {
    let shelf = region.slot(index)?;
    let at = (shelf as *const Shelf)
        .cast::<u8>()
        .wrapping_add(GROWTH_OFFSET);
    // SAFETY: as for `counters`: inside every shelf at this (8-aligned) offset,
    // zeroed at first (valid atomics: nothing grown), atomics only, forever.
    Some(unsafe { &*at.cast::<ShelfGrowth>() })
}

/// After a miss of `kind` (`capacity::UNDERFLOW` or `OVERFLOW`: the stack
/// was empty, or full) of `class`, whose stacks in `region` are `stacks`, on
/// shelf `index`: the capacity policy's turn (`ShelfGrowth::note_miss`).
fn note_miss(region: PerCpu<Shelf>, stacks: PerCpu<Stack>, index: u32, class: Class, kind: u32) {
    if let Some(growth) = growth(region, index) {
        // SAFETY: the class's stacks in this region, whose slot arrays each
        // hold `slots(class)` pointers (`SLOT_OFFSETS`).
        unsafe { growth.note_miss(stacks, index, class, slots(class), kind) };
    }
}

/// Counts a fast-path operation on `class` (the `op-counters` feature), on the
/// shelf the thread runs on now.
#[cfg(feature = "op-counters")]
#[inline(always)]
pub(crate) fn note_operation(class: Class, alloc: bool) {
    let region = fast_region();
    if let Some(counters) = counters(region, region.current_index(), class) {
        counters.note_operation(alloc);
    }
}

/// The slow paths' counters of `class` on shelf `index` (`None`: no such
/// shelf, or no per-CPU tier).
pub(crate) fn shelf_counters(index: u32, class: Class) -> Option<CacheCounters> {
    Some(counters(region()?, index, class)?.read())
}

/// Makes sure the calling thread's stack of `class` has its slots.
fn install(stacks: PerCpu<Stack>, region: PerCpu<Shelf>, class: Class) {
    let index = stacks.current_index();
    let Some(stack) = stacks.slot(index) else {
        return;
    };
    if stack.capacity() != 0 {
        return;
    }
    let Some(shelf) = region.slot(index) else {
        return;
    };
    let slots = (shelf as *const Shelf)
        .cast::<u8>()
        .wrapping_add(SLOT_OFFSETS[class.index()]);
    // SAFETY: the slot array lies inside this index's shelf, reserved for this
    // class's stack alone, and lives forever. A stack that already has slots (or
    // is stopped by a remote) makes this a no-op.
    unsafe { stacks.install(index, slots.cast_mut().cast(), base_capacity(class) as u32) };
}

/// Allocation miss: the fast path's attempt failed. Without rseq, the
/// thread's cache serves it (`thread_cache`); else `refill`.
#[cold]
#[inline(never)]
pub(crate) fn alloc_miss(class: Class) -> *mut u8 {
    match crate::thread_cache::pop(class) {
        Some(object) => object,
        None => refill(class),
    }
}

/// Refills this CPU's stack of `class` with a batch from the depot and returns
/// one object of it; null, with errno ENOMEM, when out of memory (so that C
/// `malloc`'s miss path returns what it gets, as a tail call).
#[inline(never)]
fn refill(class: Class) -> *mut u8 {
    let object = refill_from_depot(class);
    if object.is_null() {
        os::set_errno(os::ENOMEM);
    }
    object
}

/// [`refill`] but for errno.
fn refill_from_depot(class: Class) -> *mut u8 {
    crate::thread_cache::set_up_for_next_time();
    let region = match region() {
        Some(region) => region,
        None if init() => return refill_from_depot(class),
        None => {
            decay_step();
            return depot::pop_one(class, home());
        }
    };
    let capacity = base_capacity(class);
    if capacity == 0 {
        decay_step();
        return depot::pop_one(class, home());
    }
    let stacks = stacks(region, class);
    // The fast path tried once; this retries through restarts (or the
    // fallback's lock, where every operation comes here).
    let empty = match stacks.pop() {
        Ok(object) => return object,
        Err(error) => error == OpError::Empty,
    };
    // A real miss: the decay's turn (not before the retry: in the fallback mode
    // its clock read would cost every operation).
    decay_step();
    install(stacks, region, class);
    let home = home();
    if empty {
        note_miss(region, stacks, home as u32, class, capacity::UNDERFLOW);
    }
    let mut batch = [core::ptr::null_mut(); MAX_BATCH];
    let want = class.batch_size().min(capacity).clamp(1, MAX_BATCH);
    let n = depot::pop_batch(class, home, &mut batch[..want]);
    if let Some(counters) = counters(region, home as u32, class) {
        // The shelf's first batch of the class goes out a line apart.
        if !counters.refilled_before() {
            crate::spread::spread(class, &mut batch[..n]);
        }
        counters.note_alloc_miss(n);
    }
    let Some(last) = n.checked_sub(1) else {
        return core::ptr::null_mut();
    };
    let rest = &batch[..last];
    let kept = stacks.push_batch(rest).unwrap_or(0);
    if kept < rest.len() {
        // SAFETY: fresh free objects of `class` that did not fit.
        unsafe { depot::push_batch(class, home, &rest[kept..]) };
    }
    batch[last]
}

/// Classes from this size up serve a zeroed allocation that misses the per-CPU
/// cache from never-used span memory when they can, without clearing it.
const FRESH_ZEROED_MIN_SIZE: usize = os::PAGE_SIZE;

/// Zeroed allocations served from never-used memory without clearing it.
static FRESH_ZEROED: AtomicUsize = AtomicUsize::new(0);

/// How many zeroed allocations needed no clearing (for `Stats`).
pub(crate) fn fresh_zeroed() -> usize {
    FRESH_ZEROED.load(Ordering::Relaxed)
}

/// `alloc_zeroed` after the per-CPU cache missed, returning `size` zero bytes.
/// Small classes refill as `alloc` does and clear the object. Page-sized and
/// bigger ones take an object cached nearby (used before: cleared) or else one
/// straight from the spans, cleared only if it was ever handed out: a fresh
/// span's memory already reads as zero. Null when out of memory.
#[cold]
#[inline(never)]
pub(crate) fn alloc_zeroed_miss(class: Class, size: usize) -> *mut u8 {
    crate::first_use::ensure();
    let object = if class.size() < FRESH_ZEROED_MIN_SIZE {
        alloc_miss(class)
    } else if let Some(object) = region().and_then(|region| stacks(region, class).pop().ok()) {
        object
    } else {
        let mut one = [core::ptr::null_mut()];
        if depot::take_cached(class, home(), &mut one) == 1 {
            one[0]
        } else {
            let (object, clean) = central::alloc_one(class);
            if clean {
                FRESH_ZEROED.fetch_add(1, Ordering::Relaxed);
                return object;
            }
            object
        }
    };
    if !object.is_null() {
        // SAFETY: a free object of `class`, at least `size` bytes, now ours.
        unsafe { core::ptr::write_bytes(object, 0, size) };
    }
    object
}

/// Free miss: the fast path's attempt failed. Without rseq, the thread's
/// cache keeps the object (`thread_cache`); else `overflow`.
///
/// # Safety
/// `object` is a free object of `class` that nobody uses any more.
#[cold]
#[inline(never)]
pub(crate) unsafe fn dealloc_miss(class: Class, object: *mut u8) {
    // SAFETY: forwarded contract (twice: `push` keeps it only when it returns true).
    unsafe {
        if !crate::thread_cache::push(class, object) {
            overflow(class, object);
        }
    }
}

/// Free overflow: move a batch from this CPU's stack of `class` to the depot to
/// make room, then push `object` (or leave it in the depot).
///
/// # Safety
/// `object` is a free object of `class` that nobody uses any more.
#[inline(never)]
unsafe fn overflow(class: Class, object: *mut u8) {
    crate::thread_cache::set_up_for_next_time();
    let region = match region() {
        Some(region) => region,
        // SAFETY: forwarded contract.
        None if init() => return unsafe { overflow(class, object) },
        None => {
            decay_step();
            // SAFETY: forwarded contract.
            return unsafe { depot::push_one(class, home(), object) };
        }
    };
    let capacity = base_capacity(class);
    if capacity == 0 {
        decay_step();
        // SAFETY: forwarded contract.
        return unsafe { depot::push_one(class, home(), object) };
    }
    let stacks = stacks(region, class);
    // The fast path tried once; this retries through restarts (or the
    // fallback's lock, where every operation comes here).
    let full = match stacks.push(object) {
        Ok(()) => return,
        Err(OpError::Duplicate) => report::double_free("free", object),
        Err(error) => error == OpError::Full,
    };
    // A real overflow: the decay's turn (see `alloc_miss`), then the capacity
    // policy's, which may make room.
    decay_step();
    install(stacks, region, class);
    let home = home();
    if full {
        note_miss(region, stacks, home as u32, class, capacity::OVERFLOW);
        if pushed(stacks, object) {
            return;
        }
    }
    let mut batch = [core::ptr::null_mut(); MAX_BATCH];
    let want = class.batch_size().min(capacity).clamp(1, MAX_BATCH);
    if let Ok(n) = stacks.pop_batch(&mut batch[..want]) {
        if let Some(counters) = counters(region, home as u32, class) {
            counters.note_free_overflow(n);
        }
        // SAFETY: objects from the cache are free objects of `class`.
        unsafe { depot::push_batch(class, home, &batch[..n]) };
    }
    if !pushed(stacks, object) {
        // SAFETY: forwarded contract.
        unsafe { depot::push_one(class, home, object) };
    }
}

/// Pushes `object` onto this CPU's stack in `stacks`: true if it went there.
/// The stack's top item already (the cheapest double free to catch) is
/// reported, and the process aborts.
fn pushed(stacks: PerCpu<Stack>, object: *mut u8) -> bool {
    match stacks.push(object) {
        Ok(()) => true,
        Err(OpError::Duplicate) => report::double_free("free", object),
        Err(_) => false,
    }
}

/// Up to `out.len()` (<= MAX_BATCH) free objects of `class` for a thread's
/// cache (`thread_cache`, the fallback's front): from this CPU's stack, else
/// from the depot. Returns how many; 0 only when out of memory.
pub(crate) fn take_batch(class: Class, out: &mut [*mut u8]) -> usize {
    if let Some(region) = region() {
        if let Ok(n) = stacks(region, class).pop_batch(out) {
            return n;
        }
    }
    decay_step();
    depot::pop_batch(class, home(), out)
}

/// Keeps free objects of `class` from a thread's cache: on this CPU's stack as
/// far as they fit, the rest in the depot.
///
/// # Safety
/// `objects` are free objects of `class` that nobody uses any more.
pub(crate) unsafe fn give_batch(class: Class, objects: &[*mut u8]) {
    let mut kept = 0;
    let region = match region() {
        Some(region) => Some(region),
        None => init().then(region).flatten(),
    };
    if let Some(region) = region.filter(|_| base_capacity(class) != 0) {
        let stacks = stacks(region, class);
        install(stacks, region, class);
        kept = stacks.push_batch(objects).unwrap_or(0);
    }
    if kept < objects.len() {
        decay_step();
        // SAFETY: forwarded contract.
        unsafe { depot::push_batch(class, home(), &objects[kept..]) };
    }
}

/// Free objects of `class` cached on all CPUs (a racy sum).
pub(crate) fn cached_objects(class: Class) -> usize {
    sum_over_stacks(class, Stack::len)
}

/// `of` every stack of `class`, summed over the shelves (racy; 0 before the
/// per-CPU tier exists).
fn sum_over_stacks(class: Class, of: fn(&Stack) -> u32) -> usize {
    let Some(region) = region() else {
        return 0;
    };
    let stacks = stacks(region, class);
    (0..stacks.len())
        .filter_map(|i| stacks.slot(i))
        .map(|stack| of(stack) as usize)
        .sum()
}

/// Bytes every shelf's stacks may hold above their bases now (a racy sum).
pub(crate) fn growth_bytes() -> usize {
    let Some(region) = region() else {
        return 0;
    };
    (0..region.len())
        .filter_map(|index| growth(region, index))
        .map(ShelfGrowth::grown_bytes)
        .sum()
}

/// Objects the stacks of `class` may hold now, all shelves together (a racy
/// sum; 0 for stacks never used).
pub(crate) fn capacity_objects(class: Class) -> usize {
    sum_over_stacks(class, Stack::capacity)
}

/// The decay's work, from the slow paths (and the background thread): when a
/// sweep is due, the depot goes back to the spans and the page heap decays its
/// idle runs; then, a few per call, the stacks give half their objects back
/// (`decay.rs` decides, this does it). Called with no lock held.
#[inline]
pub(crate) fn decay_step() {
    decay::restart_background_if_wanted();
    let stacks = region().map_or(0, |region| region.len() as usize * NUM_CLASSES);
    match decay::due(stacks) {
        decay::Due::Nothing => {}
        decay::Due::Start(range) => {
            depot::flush();
            crate::page_heap::decay();
            crate::large_cache::decay();
            range.for_each(halve);
        }
        decay::Due::Halve(range) => range.for_each(halve),
    }
}

/// Gives the bottom half of stack `n` (shelf `n / NUM_CLASSES`, class
/// `n % NUM_CLASSES`) back to the spans, through the remote protocol: the decay's
/// unit of work. A stack that grew, did not miss since the last sweep and,
/// halved, holds no more than its base goes back to that base (`capacity.rs`).
/// A stack never used (its shelf's pages stay untouched), or one that holds
/// under two objects and cannot shrink, costs no stop.
fn halve(n: usize) {
    let Some(region) = region() else {
        return;
    };
    let (index, class) = (n / NUM_CLASSES, n % NUM_CLASSES);
    let Some(class) = Class::from_index(class) else {
        return;
    };
    if slots(class) == 0 {
        return;
    }
    let stacks = stacks(region, class);
    let index = index as u32;
    let Some(stack) = stacks.slot(index).filter(|stack| stack.capacity() != 0) else {
        return;
    };
    let Some(growth) = growth(region, index) else {
        return;
    };
    let shrink = !growth.take_missed(class) && growth.has_grown(class);
    if !shrink && stack.len() < 2 {
        return;
    }
    let _ = stacks.with_stopped(index, |parts| {
        let keep = parts.top - parts.top / 2;
        if shrink && keep <= growth.installed(class, parts.capacity) {
            parts.capacity = growth.ungrow(class, parts.capacity);
        }
        give_back_bottom(parts, keep, |chunk| {
            // SAFETY: cached objects are free objects of `class`.
            unsafe { central::free_batch(class, chunk) }
        });
    });
}

/// Of a stopped stack, gives every item but the top `keep` to `give` (in
/// chunks of at most MAX_BATCH): the bottom ones, the coldest.
fn give_back_bottom(parts: &mut StackParts, keep: u32, mut give: impl FnMut(&[*mut u8])) {
    let Some(slots) = NonNull::new(parts.slots) else {
        return;
    };
    let top = parts.top as usize;
    let gone = top.saturating_sub(keep as usize);
    // SAFETY: the stack is stopped: its items slots[..top] are ours.
    let items = unsafe { core::slice::from_raw_parts_mut(slots.as_ptr(), top) };
    items[..gone].chunks(MAX_BATCH).for_each(&mut give);
    items.copy_within(gone..top, 0);
    parts.top = (top - gone) as u32;
}

/// Moves every CPU's cached objects to the depot (for `trim`), and puts every
/// stack that grew back to the capacity it was installed with. Each stack is
/// stopped remotely (rseq-core's fence), emptied and resumed.
pub(crate) fn drain_all() {
    let Some(region) = region() else {
        return;
    };
    for class in Class::all() {
        if slots(class) == 0 {
            continue;
        }
        let stacks = stacks(region, class);
        for index in 0..stacks.len() {
            let Some(stack) = stacks.slot(index) else {
                continue;
            };
            let growth = growth(region, index);
            let grown = growth.is_some_and(|growth| growth.has_grown(class));
            if !grown && stack.is_empty() {
                continue;
            }
            let _ = stacks.with_stopped(index, |parts| {
                // Under the stop, whatever a raise added before it.
                if let Some(growth) = growth {
                    parts.capacity = growth.ungrow(class, parts.capacity);
                    growth.take_missed(class);
                }
                let moved = parts.top as usize;
                give_back_bottom(parts, 0, |chunk| {
                    // SAFETY: cached objects are free objects of `class`.
                    unsafe { depot::push_batch(class, index as usize, chunk) }
                });
                if let Some(counters) = counters(region, index, class) {
                    counters.note_to_depot(moved);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shelves_hold_every_class_and_bound_what_a_cpu_caches() {
        let mut cached_bytes = 0;
        let mut growth_bytes = 0;
        for class in Class::all() {
            let end = SLOT_OFFSETS[class.index()] + slots(class) * 8;
            assert!(end <= SHELF_BYTES);
            assert!(slots(class) * class.size() <= MAX_CPU_CACHE_BYTES);
            let (base, most) = (base_capacity(class), capacity::most(class, slots(class)));
            assert!(base <= most && most <= slots(class), "{class:?}");
            assert_eq!(
                base == 0,
                class.size() > MAX_CPU_CACHE_BYTES / capacity::GROWTH_FACTOR
            );
            assert!(most <= capacity::GROWTH_FACTOR * (base + 1), "{class:?}");
            cached_bytes += base * class.size();
            growth_bytes += (most - base) * class.size();
        }
        let cached_bytes = cached_bytes + growth_bytes.min(capacity::growth_budget());
        assert!(cached_bytes <= NUM_CLASSES * MAX_CPU_CACHE_BYTES);
        assert_eq!(cached_bytes, shelf_bound_bytes());
        println!(
            "shelf {} bytes (stride {}), at most {} bytes cached per CPU",
            SHELF_BYTES,
            1 << SHELF_SHIFT,
            cached_bytes
        );
    }
}
