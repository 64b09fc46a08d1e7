//! Per-CPU capacity that follows demand: how many objects each class's stack
//! on a shelf may hold, now.
//!
//! A stack starts at its class's *base* (a quarter of the most bytes a class
//! may cache on one CPU, `CPUSLAB_CPU_CACHE_BYTES`: 64 KiB of objects by
//! default, at most 2048). A real miss (the stack empty) or overflow (full),
//! one that moves a batch from or to the depot, is noted; from the one that
//! makes the second change of kind by one thread since the last decay sweep
//! (empty, then full, then empty again) on, each raises the stack's capacity
//! by a batch, up to the class's *most* (all of `CPUSLAB_CPU_CACHE_BYTES`, at
//! most 2048 objects), while the shelf's growth (the bytes its classes hold
//! above their bases) stays within [`growth_budget`]. A raise takes the slot's
//! lock but no fence (`PerCpu::raise_capacity`). The sweep, which halves every
//! stack, puts one that did not miss or overflow since the sweep before and,
//! halved, holds no more than its base back to that base, through the remote
//! protocol, and gives its growth back to the shelf's budget: a stack that
//! grew to hold its working set keeps it while it is used.
//!
//! Why: a class whose working set outgrows its base paid a batch through the
//! depot every few operations (1-8 KiB blocks in a 4000-block working set: a
//! miss per 25 steps, 21.5 ns per step against tcmalloc's 14.5). Why changes
//! of kind: a stack that swings from empty to full and back holds a working
//! set larger than its capacity, which a bigger one keeps local; one that only
//! misses (a program allocating) or only overflows (one freeing), or changes
//! once (a program that allocated, now freeing), moves every object through
//! the depot whatever its capacity, and growing it would only keep more memory
//! cached. Why one thread: a producer that only misses and a consumer that
//! only overflows, taking turns on one shelf, swing it too, and growing for
//! them cost 1.5-3 MiB more resident memory in `prodcons` and `xmalloc`
//! (35-48% at 4 threads) for no time.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use rseq_core::{PerCpu, Stack};

use crate::size_class::{Class, NUM_CLASSES};

/// A class's most is this many times its base.
pub(crate) const GROWTH_FACTOR: usize = 4;

/// A shelf's growth may reach this many classes' full growth (at the default
/// `CPUSLAB_CPU_CACHE_BYTES` of 256 KiB: 2 MiB above the bases).
const BUDGET_CLASSES: usize = 8;

/// A real miss: the stack was empty.
pub(crate) const UNDERFLOW: u32 = 1;
/// A real overflow: the stack was full.
pub(crate) const OVERFLOW: u32 = 2;
/// The low bits of a class's miss state: the kind of its last miss.
const KIND_BITS: u32 = 2;
/// Changes of kind since the sweep from which a stack grows.
const GROW_FROM_CHANGE: u32 = 2;

/// What a shelf keeps for this policy (zeroed memory: nothing grown, no
/// misses): after its counters, beside its stacks.
#[repr(C)]
pub(crate) struct ShelfGrowth {
    /// Bytes this shelf's stacks hold above their bases, all together: the sum
    /// of `grown` times the class sizes, kept in one word so that a raise
    /// reserves its share of the budget with one compare-and-swap.
    grown_bytes: AtomicUsize,
    /// Per class, since the last sweep: the kind of the last real miss
    /// ([`UNDERFLOW`], [`OVERFLOW`], or 0) in the low [`KIND_BITS`], and the
    /// changes of kind above them.
    misses: [AtomicU32; NUM_CLASSES],
    /// Per class: the thread (its `os::thread_word`) of the last real miss.
    /// Only one thread's changes count.
    missed_by: [AtomicUsize; NUM_CLASSES],
    /// Per class: objects its stack holds above the capacity it was installed
    /// with. Changed only under the stack's slot lock (in a raise, or in a
    /// stop), so it matches the capacity.
    grown: [AtomicU32; NUM_CLASSES],
}

/// The capacity a stack of `class` starts with, and returns to when idle,
/// given the slots a shelf reserves for it (`slots`): a [`GROWTH_FACTOR`]th of
/// the configured bytes per class. 0 (a class bigger than that) bypasses the
/// per-CPU tier.
pub(crate) fn base(class: Class, slots: usize) -> usize {
    slots.min(crate::config::cpu_cache_bytes() / GROWTH_FACTOR / class.size())
}

/// The most objects a stack of `class` may hold: all the configured bytes per
/// class (0 where the class bypasses the tier).
pub(crate) fn most(class: Class, slots: usize) -> usize {
    if base(class, slots) == 0 {
        return 0;
    }
    slots.min(crate::config::cpu_cache_bytes() / class.size())
}

/// The most bytes a shelf's stacks may hold above their bases, all together.
pub(crate) fn growth_budget() -> usize {
    crate::config::cpu_cache_bytes() * BUDGET_CLASSES
}

impl ShelfGrowth {
    /// After a real miss of `kind` ([`UNDERFLOW`] or [`OVERFLOW`]) of `class`
    /// on shelf `index` (this one): notes it, and from the
    /// [`GROW_FROM_CHANGE`]th change of kind since the sweep raises the
    /// stack's capacity by a batch, as far as the class's most and the shelf's
    /// budget allow.
    ///
    /// # Safety
    /// `stacks` is `class`'s stacks in the region this shelf belongs to, and
    /// the slot array of its stack at `index` holds `slots` pointers.
    pub(crate) unsafe fn note_miss(
        &self,
        stacks: PerCpu<Stack>,
        index: u32,
        class: Class,
        slots: usize,
        kind: u32,
    ) {
        // A stopped stack refuses too; that is no miss of the program's.
        let Some(now) = stacks
            .slot(index)
            .map(Stack::capacity)
            .filter(|&now| now != 0)
        else {
            return;
        };
        // Another thread's misses start the count again: a producer that only
        // misses and a consumer that only overflows, taking turns on one
        // shelf, hold no working set a bigger stack would keep.
        let me = crate::os::thread_word();
        let same_thread = self.missed_by[class.index()].swap(me, Ordering::Relaxed) == me;
        let mut changes = 0;
        let _ = self.misses[class.index()].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |state| {
                let last = state & ((1 << KIND_BITS) - 1);
                let before = if same_thread { state >> KIND_BITS } else { 0 };
                changes = before + u32::from(same_thread && last != 0 && last != kind);
                Some(changes.min(GROW_FROM_CHANGE) << KIND_BITS | kind)
            },
        );
        let most = most(class, slots);
        // A full stack or a spent budget: no raise, so no lock to take.
        let spent = self.grown_bytes() + class.size() > growth_budget();
        if changes < GROW_FROM_CHANGE || now as usize >= most || spent {
            return;
        }
        let raise = |now: u32| {
            let now = now as usize;
            let wanted = (now + class.batch_size()).min(most).saturating_sub(now);
            let taken = self.reserve(wanted, class.size());
            if taken > 0 {
                self.grown[class.index()].fetch_add(taken as u32, Ordering::Relaxed);
            }
            now + taken
        };
        // SAFETY: the stack's slot array holds `slots` >= `most` pointers (the
        // caller's contract), and `raise` never asks for more than `most`.
        let _ = unsafe { stacks.raise_capacity(index, |now| raise(now) as u32) };
    }

    /// Takes up to `objects` objects of `size` bytes from the shelf's budget;
    /// returns how many it took.
    fn reserve(&self, objects: usize, size: usize) -> usize {
        let budget = growth_budget();
        let mut taken = 0;
        let _ = self
            .grown_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |grown| {
                taken = objects.min(budget.saturating_sub(grown) / size);
                (taken > 0).then_some(grown + taken * size)
            });
        taken
    }

    /// For a stopped stack of `class` on this shelf (its slot lock held): the
    /// capacity it was installed with, given its capacity now.
    pub(crate) fn installed(&self, class: Class, capacity: u32) -> u32 {
        capacity.saturating_sub(self.grown[class.index()].load(Ordering::Relaxed))
    }

    /// For a stopped stack of `class` on this shelf (its slot lock held): puts
    /// its growth back in the shelf's budget and returns the capacity it was
    /// installed with, given its capacity now.
    pub(crate) fn ungrow(&self, class: Class, capacity: u32) -> u32 {
        let grown = self.grown[class.index()].swap(0, Ordering::Relaxed);
        let bytes = grown as usize * class.size();
        let _ = self
            .grown_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |all| {
                Some(all.saturating_sub(bytes))
            });
        capacity.saturating_sub(grown)
    }

    /// Bytes this shelf's stacks may hold above their bases now.
    pub(crate) fn grown_bytes(&self) -> usize {
        self.grown_bytes.load(Ordering::Relaxed)
    }

    /// Whether `class`'s stack on this shelf holds more than it was installed
    /// with.
    pub(crate) fn has_grown(&self, class: Class) -> bool {
        self.grown[class.index()].load(Ordering::Relaxed) != 0
    }

    /// The sweep's question for `class`: did it miss since the last sweep?
    /// Starts the count again (writing only where there was one, so that the
    /// sweep leaves a page it never needed untouched).
    pub(crate) fn take_missed(&self, class: Class) -> bool {
        let misses = &self.misses[class.index()];
        misses.load(Ordering::Relaxed) != 0 && misses.swap(0, Ordering::Relaxed) != 0
    }
}
