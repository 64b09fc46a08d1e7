//! Tier 2, the global depot: per size class, batches of free objects shared by
//! all CPUs.
//!
//! A per-CPU cache goes here on a miss (for a batch to refill from), on overflow
//! (to leave a batch), and for every object when it cannot use its cache. The
//! depot is sharded so it does not become the bottleneck that TCMalloc's transfer
//! cache is under producer/consumer patterns: each class has [`SHARDS`] shards,
//! each behind its own lock, holding a stack of batches, one partial batch that
//! collects single objects, and spare batch records. A CPU uses its home shard
//! (`index % SHARDS`) and steals from the others only when that is empty, so a
//! consumer finds a producer's overflow with one lock per batch, and producers on
//! different CPUs never share a lock. Two budgets bound what it holds: bytes per
//! shard and class, and, once the program shrinks (`decay::budgets_apply`),
//! [`BUDGET_BYTES`] in all, with no object above 8 KiB: beyond either, batches
//! go back to the central lists at once, and so their spans to the page heap.
//! `flush` empties the depot (for `trim` and the decay).
//!
//! Batch records come from the metadata arena and are recycled through each
//! shard's spare list; object memory holds no depot metadata.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::central;
use crate::meta;
use crate::size_class::{Class, NUM_CLASSES};
use crate::sync::{add_under_lock, sub_under_lock, Lock};

/// Shards per class (a power of two).
pub(crate) const SHARDS: usize = 8;
/// The most objects a batch record holds (the largest `Class::batch_size`).
pub(crate) const MAX_BATCH: usize = 64;
/// Free objects a shard may hold per class before returning batches to the
/// central lists, within [`SHARD_MIN_BYTES`] and [`SHARD_MAX_BYTES`]: a
/// program that frees a few thousand objects of a class at once and then
/// takes them again (rounds of allocations, a request's temporaries) keeps
/// them here, where they cost a pointer each, instead of sending them to
/// their spans' bitmaps and taking them out again, one object at a time and
/// often with the span given back and carved again in between.
const SHARD_OBJECTS: usize = 8192;
/// Small classes may hold more than [`SHARD_OBJECTS`] in this many bytes.
const SHARD_MIN_BYTES: usize = 1024 * 1024;
/// Big classes hold fewer than [`SHARD_OBJECTS`]: at most this many bytes.
const SHARD_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Every shard may hold at least this many batches, however big the class
/// (within the total budget).
const MIN_BATCHES_PER_SHARD: usize = 2;
/// Bytes of free objects the whole depot may hold: past it, batches go back to
/// their spans at once.
pub(crate) const BUDGET_BYTES: usize = 4 << 20;

/// Bytes of free objects in the depot now, per shard index (all classes'
/// shards of that index), each word on a cache line of its own: the CPUs
/// whose home is one index write one line, not every CPU the same one.
static HELD_BYTES: [HeldBytes; SHARDS] = [const { HeldBytes(AtomicUsize::new(0)) }; SHARDS];

#[repr(align(64))]
struct HeldBytes(AtomicUsize);

/// Bytes of free objects in the whole depot now.
fn held_bytes() -> usize {
    HELD_BYTES
        .iter()
        .map(|held| held.0.load(Ordering::Relaxed))
        .fold(0, usize::wrapping_add)
}

/// Counts `n` objects of `class` into shard `index` (its lock held).
fn count_in(class: Class, index: usize, n: usize) {
    add_under_lock(&shard(class, index).objects, n);
    HELD_BYTES[index % SHARDS]
        .0
        .fetch_add(n * class.size(), Ordering::Relaxed);
}

/// Counts `n` objects of `class` out of shard `index` (its lock held).
fn count_out(class: Class, index: usize, n: usize) {
    sub_under_lock(&shard(class, index).objects, n);
    HELD_BYTES[index % SHARDS]
        .0
        .fetch_sub(n * class.size(), Ordering::Relaxed);
}

/// The shrinking phase (`decay::phase`) whose excess was shed: one pass per
/// phase.
static SHED_IN_PHASE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// While the program shrinks, objects bigger than this skip the depot: a few of
/// them would keep whole spans alive (a span of 8 objects of 200 KiB stays
/// resident for one object cached), spans that could otherwise go back.
const SHRINKING_MAX_OBJECT: usize = 8 << 10;

/// Whether `n` more objects of `class` fit in the total budget (always, while
/// the program cycles its memory: see `decay::budgets_apply`).
fn within_budget(class: Class, n: usize) -> bool {
    if !crate::decay::budgets_apply() {
        return true;
    }
    class.size() <= SHRINKING_MAX_OBJECT
        && held_bytes().wrapping_add(n * class.size()) <= BUDGET_BYTES
}

/// Returns batches to the central lists until the depot is within its budget,
/// and every object too big to keep while shrinking: what it kept while the
/// program was cycling its memory, once the budget applies.
fn shed_excess() {
    for class in Class::all() {
        let shed_all = class.size() > SHRINKING_MAX_OBJECT;
        for index in 0..SHARDS {
            return_to_spans(class, index, || shed_all || held_bytes() > BUDGET_BYTES);
        }
    }
}

/// Moves batches of `class` from shard `index` back to the central lists while
/// `more()` says so and the shard holds any.
fn return_to_spans(class: Class, index: usize, more: impl Fn() -> bool) {
    let shard = shard(class, index);
    let mut buffer = [ptr::null_mut(); MAX_BATCH];
    while more() && shard.objects.load(Ordering::Relaxed) > 0 {
        let n = shard.with(|state| {
            let n = state.take(&mut buffer);
            count_out(class, index, n);
            n
        });
        if n == 0 {
            break;
        }
        // SAFETY: objects taken from the depot are free objects of `class`.
        unsafe { central::free_batch(class, &buffer[..n]) };
    }
}

/// A batch of free objects of one class.
struct Batch {
    next: *mut Batch,
    count: usize,
    objects: [*mut u8; MAX_BATCH],
}

/// One shard of one class. Everything but `objects` is guarded by `lock`.
#[repr(align(64))]
struct Shard {
    lock: Lock,
    /// Free objects held (batches + partial), changed only under `lock` so that it
    /// never runs below zero: a lock-free hint for stealing and the statistics.
    objects: AtomicUsize,
    state: UnsafeCell<ShardState>,
}

struct ShardState {
    /// Stack of batches, each with 1..=batch_size objects.
    full: *mut Batch,
    full_count: usize,
    /// Collects objects pushed one at a time; may be null.
    partial: *mut Batch,
    /// Empty records for reuse.
    spare: *mut Batch,
}

// SAFETY: `state` is only touched with `lock` held; `objects` is atomic.
unsafe impl Sync for Shard {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SHARD: Shard = Shard {
    lock: Lock::new(),
    objects: AtomicUsize::new(0),
    state: UnsafeCell::new(ShardState {
        full: ptr::null_mut(),
        full_count: 0,
        partial: ptr::null_mut(),
        spare: ptr::null_mut(),
    }),
};

static DEPOT: [[Shard; SHARDS]; NUM_CLASSES] = [const { [EMPTY_SHARD; SHARDS] }; NUM_CLASSES];

/// The batches one shard may hold for `class`.
const fn batch_limit(class: Class) -> usize {
    let per_batch = class.batch_size() * class.size();
    let limit = shard_byte_budget(class) / per_batch;
    if limit < MIN_BATCHES_PER_SHARD {
        MIN_BATCHES_PER_SHARD
    } else {
        limit
    }
}

/// The bytes of free objects of `class` one shard may hold.
const fn shard_byte_budget(class: Class) -> usize {
    let bytes = SHARD_OBJECTS * class.size();
    if bytes < SHARD_MIN_BYTES {
        SHARD_MIN_BYTES
    } else if bytes > SHARD_MAX_BYTES {
        SHARD_MAX_BYTES
    } else {
        bytes
    }
}

fn shard(class: Class, index: usize) -> &'static Shard {
    &DEPOT[class.index()][index % SHARDS]
}

impl Shard {
    /// Runs `f` on the state with the lock held.
    fn with<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> R {
        let _guard = self.lock.guard();
        // SAFETY: the lock is held, so this is the only reference to the state.
        f(unsafe { &mut *self.state.get() })
    }
}

impl ShardState {
    /// A record for a new batch: a spare one, else fresh metadata memory.
    fn take_record(&mut self) -> *mut Batch {
        let record = self.spare;
        if !record.is_null() {
            // SAFETY: records on the spare list are valid and owned by the shard.
            self.spare = unsafe { (*record).next };
            return record;
        }
        let size = core::mem::size_of::<Batch>();
        match meta::alloc(size, core::mem::align_of::<Batch>()) {
            Some(memory) => memory.as_ptr().cast(),
            None => ptr::null_mut(),
        }
    }

    fn give_record(&mut self, record: *mut Batch) {
        // SAFETY: the record is valid and no longer on any list.
        unsafe { (*record).next = self.spare };
        self.spare = record;
    }

    /// Moves up to `out.len()` objects into `out`; returns how many.
    fn take(&mut self, out: &mut [*mut u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let source = if self.partial.is_null() {
                self.full
            } else {
                self.partial
            };
            if source.is_null() {
                break;
            }
            // SAFETY: batches on the shard's lists are valid records it owns.
            let batch = unsafe { &mut *source };
            let k = batch.count.min(out.len() - n);
            let from = batch.count - k;
            out[n..n + k].copy_from_slice(&batch.objects[from..batch.count]);
            batch.count = from;
            n += k;
            if batch.count == 0 {
                if source == self.partial {
                    self.partial = ptr::null_mut();
                } else {
                    self.full = batch.next;
                    self.full_count -= 1;
                }
                self.give_record(source);
            }
        }
        n
    }
}

/// Takes up to `out.len()` (<= MAX_BATCH) objects of `class`: from the home shard,
/// else by stealing from the others, else fresh from the central lists. Returns
/// how many; 0 only when out of memory.
pub(crate) fn pop_batch(class: Class, home: usize, out: &mut [*mut u8]) -> usize {
    crate::decay::note_refill();
    match take_cached(class, home, out) {
        0 => central::alloc_batch(class, out),
        n => n,
    }
}

/// Takes up to `out.len()` objects of `class` from the depot alone (the home
/// shard, else the others); 0 when it holds none.
pub(crate) fn take_cached(class: Class, home: usize, out: &mut [*mut u8]) -> usize {
    for step in 0..SHARDS {
        let index = home + step;
        let shard = shard(class, index);
        if shard.objects.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let n = shard.with(|state| {
            let n = state.take(out);
            count_out(class, index, n);
            n
        });
        if n > 0 {
            return n;
        }
    }
    0
}

/// Takes one object of `class` (null when out of memory).
pub(crate) fn pop_one(class: Class, home: usize) -> *mut u8 {
    let mut one = [ptr::null_mut()];
    if pop_batch(class, home, &mut one) == 1 {
        one[0]
    } else {
        ptr::null_mut()
    }
}

/// Leaves free objects of `class` (at most MAX_BATCH) in the home shard, or
/// returns them to the central lists if the shard is at its budget.
///
/// # Safety
/// The objects are free objects of `class` that nobody uses any more.
pub(crate) unsafe fn push_batch(class: Class, home: usize, objects: &[*mut u8]) {
    if objects.is_empty() {
        return;
    }
    let objects = &objects[..objects.len().min(MAX_BATCH)];
    crate::decay::note_freed(objects.len() * class.size());
    let shard = shard(class, home);
    let kept = shard.with(|state| {
        if state.full_count >= batch_limit(class) || !within_budget(class, objects.len()) {
            return false;
        }
        let record = state.take_record();
        if record.is_null() {
            return false;
        }
        // SAFETY: a record just taken is ours alone.
        let batch = unsafe { &mut *record };
        batch.objects[..objects.len()].copy_from_slice(objects);
        batch.count = objects.len();
        batch.next = state.full;
        state.full = record;
        state.full_count += 1;
        count_in(class, home, objects.len());
        true
    });
    if !kept {
        // SAFETY: forwarded contract: free objects of `class`.
        unsafe { central::free_batch(class, objects) };
        let phase = crate::decay::phase();
        if crate::decay::budgets_apply() && SHED_IN_PHASE.swap(phase, Ordering::Relaxed) != phase {
            shed_excess();
        }
    }
}

/// Leaves one free object of `class` in the home shard's partial batch.
///
/// # Safety
/// As for [`push_batch`].
pub(crate) unsafe fn push_one(class: Class, home: usize, object: *mut u8) {
    crate::decay::note_freed(class.size());
    let shard = shard(class, home);
    let mut overflow = [ptr::null_mut(); MAX_BATCH];
    let batch_size = class.batch_size();
    let (kept, spilled) = shard.with(|state| {
        if !within_budget(class, 1) {
            return (false, 0);
        }
        if state.partial.is_null() {
            state.partial = state.take_record();
            if state.partial.is_null() {
                return (false, 0);
            }
            // SAFETY: a record just taken is ours alone.
            unsafe { (*state.partial).count = 0 };
        }
        // SAFETY: the partial batch is a valid record owned by the shard.
        let partial = unsafe { &mut *state.partial };
        partial.objects[partial.count] = object;
        partial.count += 1;
        count_in(class, home, 1);
        if partial.count < batch_size {
            return (true, 0);
        }
        // The partial batch is complete: keep it as a batch, or spill it.
        let record = state.partial;
        state.partial = ptr::null_mut();
        if state.full_count < batch_limit(class) && within_budget(class, 0) {
            partial.next = state.full;
            state.full = record;
            state.full_count += 1;
            return (true, 0);
        }
        let n = partial.count;
        overflow[..n].copy_from_slice(&partial.objects[..n]);
        state.give_record(record);
        count_out(class, home, n);
        (true, n)
    });
    if !kept {
        // SAFETY: forwarded contract.
        unsafe { central::free_batch(class, &[object]) };
        return;
    }
    if spilled > 0 {
        // SAFETY: the spilled objects were free objects of `class` in the depot.
        unsafe { central::free_batch(class, &overflow[..spilled]) };
    }
}

/// Returns every object in the depot to the central lists.
pub(crate) fn flush() {
    for class in Class::all() {
        for index in 0..SHARDS {
            return_to_spans(class, index, || true);
        }
    }
}

/// Free objects of `class` held in the depot (a racy sum).
pub(crate) fn cached_objects(class: Class) -> usize {
    DEPOT[class.index()]
        .iter()
        .map(|shard| shard.objects.load(Ordering::Relaxed))
        .sum()
}

/// Takes every shard lock (before `fork`).
pub(crate) fn lock_all() {
    for shard in DEPOT.iter().flatten() {
        shard.lock.lock();
    }
}

/// Releases what [`lock_all`] took.
///
/// # Safety
/// The calling thread (or, in a child, the parent's forking thread) took them.
pub(crate) unsafe fn unlock_all() {
    for shard in DEPOT.iter().flatten() {
        // SAFETY: taken by `lock_all` (caller's contract).
        unsafe { shard.lock.unlock() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::class_of;

    #[test]
    fn a_shard_holds_thousands_of_objects_within_its_byte_bounds() {
        for class in Class::all() {
            let objects = batch_limit(class) * class.batch_size();
            let bytes = objects * class.size();
            assert!(bytes <= SHARD_MAX_BYTES);
            if class.size() * SHARD_OBJECTS <= SHARD_MAX_BYTES {
                // Room for SHARD_OBJECTS (less one batch's rounding), and 1 MiB's
                // worth for the small classes.
                assert!(
                    objects + class.batch_size() > SHARD_OBJECTS,
                    "{}",
                    class.size()
                );
                assert!(bytes + class.batch_size() * class.size() > SHARD_MIN_BYTES);
            } else {
                assert!(bytes + class.batch_size() * class.size() > SHARD_MAX_BYTES);
            }
        }
        assert_eq!(
            shard_byte_budget(class_of(16, 16).unwrap()),
            SHARD_MIN_BYTES
        );
        assert_eq!(shard_byte_budget(class_of(256, 16).unwrap()), 2 << 20);
        assert_eq!(
            shard_byte_budget(class_of(8192, 16).unwrap()),
            SHARD_MAX_BYTES
        );
    }

    #[test]
    fn batches_come_back_from_the_home_shard_then_by_stealing() {
        let _serial = crate::test_serial();
        let class = class_of(4000, 16).unwrap();
        let mut objects = [ptr::null_mut(); 8];
        assert_eq!(central::alloc_batch(class, &mut objects), 8);
        // SAFETY: fresh objects from the central list, unused.
        unsafe { push_batch(class, 3, &objects[..5]) };
        assert_eq!(cached_objects(class), 5);
        let mut out = [ptr::null_mut(); 8];
        // Home shard 4 is empty: steals from shard 3.
        assert_eq!(pop_batch(class, 4, &mut out), 5);
        assert_eq!(&out[..5], &objects[..5]);
        assert_eq!(cached_objects(class), 0);
        // SAFETY: as above.
        unsafe { central::free_batch(class, &objects) };
    }

    #[test]
    fn single_objects_collect_into_batches_and_flush_to_central() {
        let _serial = crate::test_serial();
        let class = class_of(64, 16).unwrap();
        let mut objects = [ptr::null_mut(); 64];
        assert_eq!(central::alloc_batch(class, &mut objects), 64);
        for &object in &objects {
            // SAFETY: fresh objects, unused.
            unsafe { push_one(class, 1, object) };
        }
        assert_eq!(cached_objects(class), 64);
        let one = pop_one(class, 1);
        assert!(objects.contains(&one));
        // SAFETY: the object is back in our hands, unused.
        unsafe { push_one(class, 1, one) };
        flush();
        assert_eq!(cached_objects(class), 0);
    }
}
