//! A per-CPU bounded pointer stack: a 16-byte header (top, capacity, slots) whose
//! items live in a slot array the caller provides.
//!
//! The sections read `capacity`, then `top`, then `slots`, and commit by storing
//! `top` alone, so a remote thread can stop the stack by storing a zero
//! `capacity` without racing a local commit, and resume it by storing `capacity`
//! last (why this order, and no other, is correct: the arch module's "Load order"
//! and docs/rseq.md, "Remote access"). Zeroed memory is an inert stack: empty and
//! full at once, until [`PerCpu::with_stopped`] installs slots.

use core::mem::offset_of;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::arch;
use crate::area::{self, Area};
use crate::mode::{self, Mode};
use crate::route;
use crate::{fallback, fence, FenceError, OpError, PerCpu};

/// The header of one CPU's stack.
#[repr(C)]
#[derive(Debug)]
pub struct Stack {
    /// Number of items; the next push goes to `slots[top]`.
    top: AtomicU32,
    /// Number of slots; 0 while stopped.
    capacity: AtomicU32,
    /// The slot array, `capacity` pointers.
    slots: AtomicPtr<*mut u8>,
}

/// Offset of `top`.
pub(crate) const TOP_OFFSET: usize = offset_of!(Stack, top);
/// Offset of `capacity`.
pub(crate) const CAPACITY_OFFSET: usize = offset_of!(Stack, capacity);
/// Offset of the slot array pointer.
pub(crate) const SLOTS_OFFSET: usize = offset_of!(Stack, slots);

const _: () = assert!(TOP_OFFSET == 0 && CAPACITY_OFFSET == 4 && SLOTS_OFFSET == 8);
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the sections read top as the low half"
);

impl Stack {
    /// An inert stack: no slots, refuses every pop and push.
    pub const fn new() -> Self {
        Stack {
            top: AtomicU32::new(0),
            capacity: AtomicU32::new(0),
            slots: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The number of items now (a racy hint unless the stack is stopped).
    pub fn len(&self) -> u32 {
        self.top.load(Ordering::Relaxed)
    }

    /// Whether the stack holds no items now (a hint).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of slots now (0 while stopped or inert).
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Relaxed)
    }

    // The fallback engine, called with the slot's per-CPU lock held.

    fn pop_locked(&self) -> Result<*mut u8, OpError> {
        let top = self.top.load(Ordering::Relaxed);
        if top.wrapping_sub(1) >= self.capacity.load(Ordering::Relaxed) {
            return Err(OpError::Empty);
        }
        // SAFETY: top - 1 < capacity, and slots holds `capacity` pointers.
        let item = unsafe { *self.slots.load(Ordering::Relaxed).add(top as usize - 1) };
        self.top.store(top - 1, Ordering::Relaxed);
        Ok(item)
    }

    fn push_locked(&self, item: *mut u8) -> Result<(), OpError> {
        let top = self.top.load(Ordering::Relaxed);
        if top >= self.capacity.load(Ordering::Relaxed) {
            return Err(OpError::Full);
        }
        let slots = self.slots.load(Ordering::Relaxed);
        // SAFETY: top - 1 < top < capacity, and slots holds `capacity` pointers.
        if top > 0 && unsafe { *slots.add(top as usize - 1) } == item {
            return Err(OpError::Duplicate);
        }
        // SAFETY: top < capacity, and slots holds `capacity` pointers.
        unsafe { *slots.add(top as usize) = item };
        self.top.store(top + 1, Ordering::Relaxed);
        Ok(())
    }

    fn pop_batch_locked(&self, out: &mut [*mut u8]) -> Result<usize, OpError> {
        let top = self.top.load(Ordering::Relaxed);
        if top.wrapping_sub(1) >= self.capacity.load(Ordering::Relaxed) {
            return Err(OpError::Empty);
        }
        let n = out.len().min(top as usize);
        let first = top as usize - n;
        // SAFETY: [first, top) lies below capacity; `out` has room for n.
        unsafe {
            let slots = self.slots.load(Ordering::Relaxed).add(first);
            core::ptr::copy_nonoverlapping(slots, out.as_mut_ptr(), n);
        }
        self.top.store(first as u32, Ordering::Relaxed);
        Ok(n)
    }

    fn push_batch_locked(&self, items: &[*mut u8]) -> Result<usize, OpError> {
        let top = self.top.load(Ordering::Relaxed);
        let capacity = self.capacity.load(Ordering::Relaxed);
        if top >= capacity {
            return Err(OpError::Full);
        }
        let n = items.len().min((capacity - top) as usize);
        // SAFETY: [top, top + n) lies below capacity.
        unsafe {
            let slots = self.slots.load(Ordering::Relaxed).add(top as usize);
            core::ptr::copy_nonoverlapping(items.as_ptr(), slots, n);
        }
        self.top.store(top + n as u32, Ordering::Relaxed);
        Ok(n)
    }
}

impl Default for Stack {
    fn default() -> Self {
        Stack::new()
    }
}

/// A stopped stack's contents, handed to [`PerCpu::with_stopped`]'s closure to read
/// and change: the items are `slots[..top]`, the bottom first.
#[derive(Debug)]
pub struct StackParts {
    /// The slot array (null for an inert stack).
    pub slots: *mut *mut u8,
    /// The number of items.
    pub top: u32,
    /// The number of slots; must stay >= `top`.
    pub capacity: u32,
}

impl PerCpu<Stack> {
    /// Pops the top item of the calling thread's CPU's stack.
    #[inline(always)]
    pub fn pop(&self) -> Result<*mut u8, OpError> {
        if let Some(item) = area::this_thread_registered_any().and_then(|a| self.attempt_pop(a)) {
            return Ok(item);
        }
        self.pop_slow()
    }

    /// Pushes `item` onto the calling thread's CPU's stack. An item equal to the
    /// top item is refused with [`OpError::Duplicate`] (the cheapest double free to
    /// catch: stacks hold distinct items).
    // The item is an opaque value to the stack: it is stored, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    #[inline(always)]
    pub fn push(&self, item: *mut u8) -> Result<(), OpError> {
        if area::this_thread_registered_any().is_some_and(|a| self.attempt_push(a, item)) {
            return Ok(());
        }
        self.push_slow(item)
    }

    /// [`pop`](Self::pop) after its inline attempt: the fallback's lock, or the
    /// restarts and registration. One out-of-line call, so that `pop` stays short.
    #[cold]
    #[inline(never)]
    fn pop_slow(&self) -> Result<*mut u8, OpError> {
        if mode::decided() == Some(Mode::Fallback) {
            return route::run_locked(self, Stack::pop_locked);
        }
        route::run_slow(
            *self,
            // SAFETY: `run_slow` passes the registered area, the index it read and
            // that index's slot, which `PerCpu::new` guarantees valid.
            |site, stack| unsafe { pop_section(site, stack) },
            Stack::pop_locked,
            |_| OpError::Empty,
            None,
        )
    }

    /// [`push`](Self::push) after its inline attempt, as [`pop_slow`](Self::pop_slow).
    #[cold]
    #[inline(never)]
    fn push_slow(&self, item: *mut u8) -> Result<(), OpError> {
        if mode::decided() == Some(Mode::Fallback) {
            return route::run_locked(self, |stack| stack.push_locked(item));
        }
        route::run_slow(
            *self,
            // SAFETY: as in `pop_slow`.
            |site, stack| unsafe { push_section(site, stack, item) },
            |stack| stack.push_locked(item).map(|()| false),
            |duplicate| {
                if duplicate {
                    OpError::Duplicate
                } else {
                    OpError::Full
                }
            },
            None,
        )
        .map(drop)
    }

    /// One attempt at [`pop`](Self::pop), as one indexed section (it reads the
    /// index itself: see the arch module): `None` on anything but success (also
    /// when `pop` would succeed after a restart, in fallback mode, in own mode
    /// with the `shared-object` feature, and for a null item). For a fast path
    /// that falls back to its own slow path, which calls `pop`.
    #[inline(always)]
    pub fn try_pop(&self) -> Option<*mut u8> {
        self.attempt_pop(area::this_thread_registered()?)
    }

    /// One attempt at [`push`](Self::push), as one indexed section: false on
    /// anything but success.
    // The item is an opaque value to the stack: it is stored, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    #[inline(always)]
    pub fn try_push(&self, item: *mut u8) -> bool {
        area::this_thread_registered().is_some_and(|area| self.attempt_push(area, item))
    }

    /// One indexed pop section on `area`, the calling thread's registered area.
    #[inline(always)]
    fn attempt_pop(&self, area: Area) -> Option<*mut u8> {
        // SAFETY: a registered area of this thread, and a region whose slots below
        // `len` are valid stacks (`PerCpu::new`).
        let item = unsafe { try_pop_section(self.place(area.tp_offset())) };
        (!item.is_null()).then_some(item)
    }

    /// One indexed push section on `area`, the calling thread's registered area.
    #[inline(always)]
    fn attempt_push(&self, area: Area, item: *mut u8) -> bool {
        // SAFETY: as in `attempt_pop`.
        unsafe { try_push_section(self.place(area.tp_offset()), item) }
    }

    /// Pops up to `out.len()` items into `out[..n]` with one commit; returns n >= 1
    /// (or `Ok(0)` for an empty `out`). The items come bottom first.
    #[inline]
    pub fn pop_batch(&self, out: &mut [*mut u8]) -> Result<usize, OpError> {
        if out.is_empty() {
            return Ok(0);
        }
        let (buffer, want) = (out.as_mut_ptr(), out.len());
        route::run(
            self,
            // SAFETY: as in `pop`; `buffer` is valid for `want` writes.
            |site, stack| unsafe { arch::stack_pop_batch(site, stack, buffer, want) },
            |stack| stack.pop_batch_locked(out),
            |_| OpError::Empty,
        )
    }

    /// Pushes as many of `items` as fit with one commit; returns n >= 1 (or `Ok(0)`
    /// for no items). The caller keeps `items[n..]`.
    #[inline]
    pub fn push_batch(&self, items: &[*mut u8]) -> Result<usize, OpError> {
        if items.is_empty() {
            return Ok(0);
        }
        route::run(
            self,
            // SAFETY: as in `pop`; `items` is valid for `items.len()` reads.
            |site, stack| unsafe {
                arch::stack_push_batch(site, stack, items.as_ptr(), items.len())
            },
            |stack| stack.push_batch_locked(items),
            |_| OpError::Full,
        )
    }

    /// Gives slot `index`'s stack its slots, if it is inert (never given any): a
    /// first use needs no fence, since an inert stack's sections all refuse and
    /// never commit. Returns false (changing nothing) if the stack already has
    /// slots, or `index` lies beyond the region. Callable from any thread.
    ///
    /// # Safety
    /// `slots` is valid for `capacity` pointers for as long as the stack is used,
    /// and is not used for anything else.
    pub unsafe fn install(&self, index: u32, slots: *mut *mut u8, capacity: u32) -> bool {
        let Some(stack) = self.slot(index) else {
            return false;
        };
        let Some(_guard) = fallback::lock(index) else {
            return false;
        };
        if !stack.slots.load(Ordering::Acquire).is_null() || stack.capacity() != 0 {
            return false;
        }
        stack.slots.store(slots, Ordering::Relaxed);
        stack.top.store(0, Ordering::Relaxed);
        // A section that reads this capacity then reads the slots stored before it.
        stack.capacity.store(capacity, Ordering::Release);
        true
    }

    /// Runs `f` with exclusive access to slot `index`'s stack, from any thread.
    ///
    /// The remote protocol: take the slot's lock (one remote at a time); in rseq
    /// modes store a zero capacity (every section on that slot now refuses), then
    /// [`crate::fence`] it (a section that read the old header is aborted or done);
    /// then `f` reads and changes the parts; last, store the new header with the
    /// capacity written after `top` and `slots`, which resumes the stack. The
    /// sections load `capacity` before `top` and `slots`, so no section can pair
    /// a word from before the resume with one from after it: no second fence is
    /// needed. In fallback mode the lock alone excludes the slot's users. Local
    /// operations meanwhile see an empty and full stack. `f` must not operate on
    /// this region itself.
    pub fn with_stopped<R>(
        &self,
        index: u32,
        f: impl FnOnce(&mut StackParts) -> R,
    ) -> Result<R, FenceError> {
        let Some(stack) = self.slot(index) else {
            return Err(FenceError::NoSuchSlot);
        };
        let Some(_guard) = fallback::lock(index) else {
            return Err(FenceError::Reentered);
        };
        let capacity = stack.capacity.load(Ordering::Acquire);
        if route::uses_rseq() {
            stack.capacity.store(0, Ordering::SeqCst);
            if let Err(error) = fence(self.index(), index) {
                stack.capacity.store(capacity, Ordering::Release);
                return Err(error);
            }
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::hold_stopped();
        let mut parts = StackParts {
            slots: stack.slots.load(Ordering::Acquire),
            top: stack.top.load(Ordering::Acquire),
            capacity,
        };
        let result = f(&mut parts);
        debug_assert!(
            parts.top <= parts.capacity,
            "a stack cannot hold more than its capacity"
        );
        stack.slots.store(parts.slots, Ordering::Relaxed);
        stack
            .top
            .store(parts.top.min(parts.capacity), Ordering::Relaxed);
        stack.capacity.store(parts.capacity, Ordering::Release);
        Ok(result)
    }
}

/// Chooses between a shipped section and its broken twins: in test builds, the
/// twin of the bug a test asked for ([`crate::fault::set_broken`]).
macro_rules! section_or_twin {
    ($shipped:ident, $broken_restart:ident, $top_first:ident, ($($arg:expr),*)) => {{
        #[cfg(feature = "fault-injection")]
        match crate::fault::broken() {
            crate::fault::Broken::Nothing => {}
            // SAFETY: forwarded caller contract.
            crate::fault::Broken::Restart => return unsafe { arch::$broken_restart($($arg),*) },
            // SAFETY: forwarded caller contract.
            crate::fault::Broken::LoadOrder => return unsafe { arch::$top_first($($arg),*) },
        }
        // SAFETY: forwarded caller contract.
        unsafe { arch::$shipped($($arg),*) }
    }};
}

/// The indexed pop section (or a broken twin when a test asked for one).
#[inline(always)]
unsafe fn try_pop_section(place: arch::Place) -> *mut u8 {
    section_or_twin!(
        stack_try_pop,
        stack_try_pop_broken_restart,
        stack_try_pop_top_first,
        (place)
    )
}

/// The indexed push section (or a broken twin when a test asked for one).
#[inline(always)]
unsafe fn try_push_section(place: arch::Place, item: *mut u8) -> bool {
    section_or_twin!(
        stack_try_push,
        stack_try_push_broken_restart,
        stack_try_push_top_first,
        (place, item)
    )
}

/// The pop section (or a broken twin when a test asked for one).
#[inline(always)]
unsafe fn pop_section(site: arch::Site, stack: *mut Stack) -> (arch::Status, *mut u8) {
    section_or_twin!(
        stack_pop,
        stack_pop_broken_restart,
        stack_pop_top_first,
        (site, stack)
    )
}

/// The push section (or a broken twin when a test asked for one).
#[inline(always)]
unsafe fn push_section(site: arch::Site, stack: *mut Stack, item: *mut u8) -> (arch::Status, bool) {
    section_or_twin!(
        stack_push,
        stack_push_broken_restart,
        stack_push_top_first,
        (site, stack, item)
    )
}

/// The fallback's pop, callable in any mode (for benchmarks and tests).
///
/// # Safety
/// The region must never be used by the rseq engine: only through this module's
/// `*_locked` functions, in every thread.
pub(crate) unsafe fn pop_locked(region: &PerCpu<Stack>) -> Result<*mut u8, OpError> {
    let cpu = crate::cpu::sched_getcpu();
    let stack = region.slot(cpu).ok_or(OpError::Unavailable)?;
    let _guard = fallback::lock(cpu).ok_or(OpError::Unavailable)?;
    stack.pop_locked()
}

/// The fallback's push, callable in any mode (for benchmarks and tests).
///
/// # Safety
/// As for [`pop_locked`].
pub(crate) unsafe fn push_locked(region: &PerCpu<Stack>, item: *mut u8) -> Result<(), OpError> {
    let cpu = crate::cpu::sched_getcpu();
    let stack = region.slot(cpu).ok_or(OpError::Unavailable)?;
    let _guard = fallback::lock(cpu).ok_or(OpError::Unavailable)?;
    stack.push_locked(item)
}
