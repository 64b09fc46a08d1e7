//! The operations on a region of stacks: pop and push (one attempt, with
//! restarts, locked), batch pop and push, and remote access (`install`,
//! `raise_capacity`, `with_stopped`).

use core::sync::atomic::Ordering;

use crate::arch::{self, IndexedRegion};
use crate::area::Area;
use crate::fallback;
use crate::mode::{self, Mode};
use crate::route;
use crate::stack::{Stack, StackParts};
use crate::{fence, FenceError, OpError, PerCpu};

/// Runs a stack section: the shipped one, or in test builds the broken twin of
/// the bug a test asked for ([`crate::fault::set_broken`]). The caller's
/// contract is the section's.
#[cfg(all(feature = "fault-injection", target_arch = "x86_64"))]
macro_rules! section {
    ($shipped:ident, $broken_restart:ident, $top_first:ident, ($($arg:expr),*)) => {
        match crate::fault::broken() {
            // SAFETY: the caller's contract, forwarded. (A broken raise leaves
            // the sections as shipped.)
            crate::fault::Broken::Nothing | crate::fault::Broken::RaiseUnlocked => unsafe {
                arch::$shipped($($arg),*)
            },
            // SAFETY: the caller's contract, forwarded.
            crate::fault::Broken::Restart => unsafe { arch::$broken_restart($($arg),*) },
            // SAFETY: the caller's contract, forwarded.
            crate::fault::Broken::LoadOrder => unsafe { arch::$top_first($($arg),*) },
        }
    };
}

#[cfg(not(all(feature = "fault-injection", target_arch = "x86_64")))]
macro_rules! section {
    ($shipped:ident, $broken_restart:ident, $top_first:ident, ($($arg:expr),*)) => {
        // SAFETY: the caller's contract, forwarded.
        unsafe { arch::$shipped($($arg),*) }
    };
}

impl PerCpu<Stack> {
    /// One attempt at popping the top item of the calling thread's CPU's stack,
    /// as one indexed section (it reads the index itself: see the arch module):
    /// `None` on anything but success (also when [`pop`](Self::pop) would succeed
    /// after a restart, in fallback mode, before the thread registered, and for
    /// a null item). For a fast path that falls back to its own slow path, which
    /// calls `pop`.
    #[inline(always)]
    pub fn try_pop(&self) -> Option<*mut u8> {
        self.try_pop_in::<false>(mode::this_thread_registered()?)
    }

    /// [`try_pop`](Self::try_pop), and a hint to the CPU to fetch the memory the
    /// item left on top points to (`prefetcht0`; never a fault, whatever the
    /// item): for items that are addresses the next pop hands out, such as an
    /// allocator's free blocks, which a program then writes (docs/rseq.md,
    /// "Critical sections"). For items that are not mapped addresses a
    /// prefetch can cost a page walk that finds nothing: use `try_pop` there.
    #[inline(always)]
    pub fn try_pop_and_prefetch(&self) -> Option<*mut u8> {
        self.try_pop_in::<true>(mode::this_thread_registered()?)
    }

    /// One attempt at pushing `item`, as [`try_pop`](Self::try_pop): false on
    /// anything but success.
    // The item is an opaque value to the stack: it is stored, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    #[inline(always)]
    pub fn try_push(&self, item: *mut u8) -> bool {
        mode::this_thread_registered().is_some_and(|area| self.try_push_in(area, item))
    }

    /// Pops the top item of the calling thread's CPU's stack.
    #[inline(always)]
    pub fn pop(&self) -> Result<*mut u8, OpError> {
        if let Some(item) = self.try_pop() {
            return Ok(item);
        }
        self.pop_restarting()
    }

    /// Pushes `item` onto the calling thread's CPU's stack. An item equal to the
    /// top item is refused with [`OpError::Duplicate`] (the cheapest double free to
    /// catch: stacks hold distinct items).
    // The item is an opaque value to the stack: it is stored, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    #[inline(always)]
    pub fn push(&self, item: *mut u8) -> Result<(), OpError> {
        if self.try_push(item) {
            return Ok(());
        }
        self.push_restarting(item)
    }

    /// The fallback's pop on this region, whatever the process mode (for
    /// benchmarks: the lock-based engine beside rseq in one process).
    ///
    /// # Safety
    /// The region must only ever be used through the `*_locked` operations, in
    /// every thread (a section and a locked body on one stack would race).
    pub unsafe fn pop_locked(&self) -> Result<*mut u8, OpError> {
        fallback::run_locked(self, fallback::stack_pop)
    }

    /// The fallback's push on this region, whatever the process mode.
    ///
    /// # Safety
    /// As for [`pop_locked`](Self::pop_locked).
    // The item is an opaque value to the stack: it is stored, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub unsafe fn push_locked(&self, item: *mut u8) -> Result<(), OpError> {
        fallback::run_locked(self, |stack| fallback::stack_push(stack, item))
    }

    /// The region as the indexed sections see it from `area`.
    #[inline(always)]
    fn indexed(&self, area: Area) -> IndexedRegion {
        let (base, stride, len) = self.geometry();
        IndexedRegion {
            area: area.tp_offset(),
            index_offset: self.index_offset(),
            len,
            stride,
            base,
        }
    }

    /// One indexed pop section on `area`, the calling thread's registered area;
    /// `PREFETCH` chooses the section that prefetches the next item.
    #[inline(always)]
    fn try_pop_in<const PREFETCH: bool>(&self, area: Area) -> Option<*mut u8> {
        let region = self.indexed(area);
        // SAFETY: a registered area of this thread, and a region whose slots below
        // `len` are valid stacks (`PerCpu::new`). (The broken twins of test
        // builds do not prefetch: what they break is elsewhere.)
        let item: *mut u8 = if PREFETCH {
            section!(
                stack_try_pop_prefetch,
                stack_try_pop_broken_restart,
                stack_try_pop_top_first,
                (region)
            )
        } else {
            section!(
                stack_try_pop,
                stack_try_pop_broken_restart,
                stack_try_pop_top_first,
                (region)
            )
        };
        (!item.is_null()).then_some(item)
    }

    /// One indexed push section on `area`, the calling thread's registered area.
    #[inline(always)]
    fn try_push_in(&self, area: Area, item: *mut u8) -> bool {
        let region = self.indexed(area);
        // SAFETY: as in `try_pop_in`.
        section!(
            stack_try_push,
            stack_try_push_broken_restart,
            stack_try_push_top_first,
            (region, item)
        )
    }

    /// [`pop`](Self::pop) after its inline attempt: the fallback's lock, or the
    /// restarts and registration. One out-of-line call, so that `pop` stays short.
    #[cold]
    #[inline(never)]
    fn pop_restarting(&self) -> Result<*mut u8, OpError> {
        // The fallback mode's every operation comes here: straight to the
        // lock, not through `run_slow`, another call out of line (which tests
        // the mode as well): 16.4 against 20.0 ns a pop+push pair (rseq-bench.md).
        if mode::decided() == Some(Mode::Fallback) {
            return fallback::run_locked(self, fallback::stack_pop);
        }
        route::run_slow(
            *self,
            // SAFETY: `run_slow` passes the registered area, the index it read and
            // that index's slot, which `PerCpu::new` guarantees valid.
            |checked, stack| {
                section!(
                    stack_pop,
                    stack_pop_broken_restart,
                    stack_pop_top_first,
                    (checked, stack)
                )
            },
            fallback::stack_pop,
            |_| OpError::Empty,
            None,
        )
    }

    /// [`push`](Self::push) after its inline attempt, as
    /// [`pop_restarting`](Self::pop_restarting).
    #[cold]
    #[inline(never)]
    fn push_restarting(&self, item: *mut u8) -> Result<(), OpError> {
        // As in `pop_restarting`.
        if mode::decided() == Some(Mode::Fallback) {
            return fallback::run_locked(self, |stack| fallback::stack_push(stack, item));
        }
        route::run_slow(
            *self,
            // SAFETY: as in `pop_restarting`.
            |checked, stack| {
                section!(
                    stack_push,
                    stack_push_broken_restart,
                    stack_push_top_first,
                    (checked, stack, item)
                )
            },
            |stack| fallback::stack_push(stack, item).map(|()| false),
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
            // SAFETY: as in `pop_restarting`; `buffer` is valid for `want` writes.
            |checked, stack| unsafe { arch::stack_pop_batch(checked, stack, buffer, want) },
            |stack| fallback::stack_pop_batch(stack, out),
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
            // SAFETY: as in `pop_restarting`; `items` is valid for `items.len()` reads.
            |checked, stack| unsafe {
                arch::stack_push_batch(checked, stack, items.as_ptr(), items.len())
            },
            |stack| fallback::stack_push_batch(stack, items),
            |_| OpError::Full,
        )
    }

    /// Gives slot `index`'s stack its slots, if it is inert (never given any): a
    /// first use needs no fence, since an inert stack's sections all refuse and
    /// never commit. Returns false (changing nothing) if the stack already has
    /// slots, or `index` lies beyond the region, or the calling thread holds that
    /// slot's lock (a signal handler). Callable from any thread.
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

    /// Raises slot `index`'s stack's capacity to `to(capacity)` (if that is more),
    /// from any thread, without stopping it; returns the new capacity, or None
    /// when nothing changed: an inert stack (`to` is not called), `to` not above
    /// the capacity, an `index` beyond the region, or a caller that holds the
    /// slot's lock (a signal handler). `to` runs under the slot's lock and must
    /// not operate on this region.
    ///
    /// No fence: a section that read the old capacity commits only a `top` the
    /// new one admits too, and `top` and `slots` do not change. The lock keeps
    /// `install` and `with_stopped` out, whose stop (a zero capacity) a plain
    /// store would otherwise end early. In fallback mode the lock excludes every
    /// operation on the slot.
    ///
    /// # Safety
    /// The stack's slot array is valid for the new capacity's pointers for as
    /// long as the stack is used, and its slots beyond the old capacity are used
    /// for nothing else.
    pub unsafe fn raise_capacity(&self, index: u32, to: impl FnOnce(u32) -> u32) -> Option<u32> {
        let stack = self.slot(index)?;
        // The broken twin (test builds): the same raise without the lock, so a
        // stop that begins between its load and its store is ended by the store
        // while the remote still works on the stack.
        #[cfg(feature = "fault-injection")]
        if crate::fault::broken() == crate::fault::Broken::RaiseUnlocked {
            return raise(stack, to);
        }
        let _guard = fallback::lock(index)?;
        raise(stack, to)
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
        if mode::uses_rseq() {
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
        // And again before the resume: a capacity raised without the lock lets
        // sections commit meanwhile, which the header stored below then loses.
        #[cfg(feature = "fault-injection")]
        crate::fault::hold_stopped();
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

/// [`PerCpu::raise_capacity`]'s load, check and store, for a caller that holds
/// the slot's lock (its broken twin calls it without).
fn raise(stack: &Stack, to: impl FnOnce(u32) -> u32) -> Option<u32> {
    let now = stack.capacity.load(Ordering::Acquire);
    if now == 0 {
        return None;
    }
    let new = to(now);
    if new <= now {
        return None;
    }
    // Test builds: a raise that will store spins here, after its load, so
    // that stops begin inside it.
    #[cfg(feature = "fault-injection")]
    crate::fault::delay_raise(&stack.capacity);
    stack.capacity.store(new, Ordering::Release);
    Some(new)
}
