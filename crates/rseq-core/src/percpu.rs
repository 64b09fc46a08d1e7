//! A region of per-CPU slots laid out by the caller: slot `i` at `base + (i << shift)`.

use core::marker::PhantomData;
use core::ptr::NonNull;

use rseq_sys::{RSEQ_CPU_ID_OFFSET, RSEQ_MM_CID_OFFSET};

use crate::cpu::mm_cid_available;

/// What indexes a region's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Index {
    /// The CPU id: one slot per possible CPU.
    Cpu,
    /// The concurrency id (`mm_cid`): dense in `0..min(threads, CPUs)`, so memory
    /// follows the number of running threads rather than the host's CPU count.
    /// Where the kernel does not fill it, regions fall back to [`Index::Cpu`].
    ConcurrencyId,
}

impl Index {
    /// What this index resolves to in this process.
    pub fn effective(self) -> Index {
        match self {
            Index::ConcurrencyId if mm_cid_available() => Index::ConcurrencyId,
            _ => Index::Cpu,
        }
    }

    /// Offset in the rseq area of the field holding this index.
    pub(crate) const fn field_offset(self) -> usize {
        match self {
            Index::Cpu => RSEQ_CPU_ID_OFFSET,
            Index::ConcurrencyId => RSEQ_MM_CID_OFFSET,
        }
    }

    /// The calling thread's value of this (effective) index: a hint, it may change
    /// right after.
    pub fn current(self) -> u32 {
        match self.effective() {
            Index::ConcurrencyId => crate::cpu::mm_cid().unwrap_or_else(crate::current_cpu),
            Index::Cpu => crate::current_cpu(),
        }
    }

    /// The calling thread's value of `self` where `self` is already effective (as a
    /// region's index is): no re-check of what the kernel fills.
    pub(crate) fn current_resolved(self) -> u32 {
        let area = crate::mode::this_thread();
        match (self, area) {
            (Index::ConcurrencyId, Some(area)) => area.mm_cid(),
            (Index::Cpu, Some(area)) => area.cpu_id(),
            (_, None) => crate::cpu::sched_getcpu(),
        }
    }
}

/// A region of `len` per-CPU slots of `T`, slot `i` at `base + (i << shift)`.
///
/// The caller owns the memory; this is a typed view through which the restartable
/// operations (on [`crate::Stack`], [`crate::ListHead`] and `AtomicUsize` slots) find
/// the calling thread's slot. Zeroed memory is a valid initial state for all three.
pub struct PerCpu<T> {
    /// Slot 0's address (any value in an empty region: it is never dereferenced).
    base: *mut u8,
    /// Bytes from one slot to the next (a power of two).
    stride: usize,
    len: u32,
    index: Index,
    /// `index.field_offset()`, kept for the fast path.
    index_offset: u32,
    _slots: PhantomData<*const T>,
}

impl<T> Clone for PerCpu<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for PerCpu<T> {}

impl<T> core::fmt::Debug for PerCpu<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PerCpu")
            .field("base", &self.base)
            .field("stride", &self.stride)
            .field("len", &self.len)
            .field("index", &self.index)
            .finish()
    }
}

// SAFETY: the slots are shared by design; every access goes through `T`'s own
// synchronisation (atomics) or the restartable operations, and T: Sync.
unsafe impl<T: Sync> Send for PerCpu<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for PerCpu<T> {}

impl<T> PerCpu<T> {
    /// A view of `len` slots at `base`, `1 << shift` bytes apart, indexed by `index`
    /// (resolved now: see [`Index::effective`]).
    ///
    /// # Safety
    /// For every `i < len`, `base + (i << shift)` is a valid, aligned `T` that stays
    /// valid while the view (or a copy) is used, and `1 << shift >= size_of::<T>()`.
    /// `len` should be at least [`crate::possible_cpus()`]: threads whose index lies
    /// beyond it get [`crate::OpError::Unavailable`].
    pub unsafe fn new(base: NonNull<T>, shift: u32, len: u32, index: Index) -> Self {
        debug_assert!(shift < usize::BITS && (1usize << shift) >= core::mem::size_of::<T>());
        let index = index.effective();
        PerCpu {
            base: base.as_ptr().cast(),
            stride: 1 << shift,
            len,
            index,
            index_offset: index.field_offset() as u32,
            _slots: PhantomData,
        }
    }

    /// The view's parts: base, stride in bytes, number of slots, index (already
    /// effective).
    pub(crate) fn into_parts(self) -> (*mut u8, usize, u32, Index) {
        (self.base, self.stride, self.len, self.index)
    }

    /// The view [`into_parts`](Self::into_parts) took apart, its index given as
    /// the offset of the index's field (which the fast path uses as is).
    ///
    /// # Safety
    /// As for [`PerCpu::new`]; `index_offset` is the field of an effective index.
    #[inline(always)]
    pub(crate) unsafe fn from_parts(
        base: *mut u8,
        stride: usize,
        len: u32,
        index_offset: u32,
    ) -> Self {
        let index = if index_offset == Index::Cpu.field_offset() as u32 {
            Index::Cpu
        } else {
            Index::ConcurrencyId
        };
        PerCpu {
            base,
            stride,
            len,
            index,
            index_offset,
            _slots: PhantomData,
        }
    }

    /// The number of slots.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the region has no slots.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index the region uses in this process.
    pub fn index(&self) -> Index {
        self.index
    }

    /// The calling thread's index into this region now (a hint: it may change
    /// right after).
    #[inline]
    pub fn current_index(&self) -> u32 {
        self.index.current_resolved()
    }

    /// The same region seen at a field: every slot's `U` at `offset` bytes into it
    /// (for example one of several stacks kept in each CPU's block).
    ///
    /// # Safety
    /// For every slot, `slot + offset` is a valid, aligned `U` inside the slot, with
    /// the same validity as the slot itself (see [`PerCpu::new`]).
    #[inline(always)]
    pub const unsafe fn project<U>(&self, offset: usize) -> PerCpu<U> {
        PerCpu {
            // Wrapping: an empty region's base points nowhere.
            base: self.base.wrapping_add(offset),
            stride: self.stride,
            len: self.len,
            index: self.index,
            index_offset: self.index_offset,
            _slots: PhantomData,
        }
    }

    /// Offset in the rseq area of the field holding this region's index.
    #[inline(always)]
    pub(crate) fn index_offset(&self) -> usize {
        self.index_offset as usize
    }

    /// Slot 0's address, the stride and the number of slots: what an indexed
    /// section needs to find its slot by itself.
    #[inline(always)]
    pub(crate) fn geometry(&self) -> (*mut u8, usize, u32) {
        (self.base, self.stride, self.len)
    }

    /// Slot `i`, or None beyond the region.
    #[inline(always)]
    pub fn slot(&self, i: u32) -> Option<&T> {
        // SAFETY: `new`'s contract: slots below `len` are valid for the view's life.
        self.slot_ptr(i).map(|slot| unsafe { slot.as_ref() })
    }

    #[inline(always)]
    pub(crate) fn slot_ptr(&self, i: u32) -> Option<NonNull<T>> {
        if i >= self.len {
            return None;
        }
        let offset = i as usize * self.stride;
        // SAFETY: below `len`, the offset stays inside the caller's region and
        // lands on a valid slot (`new`), which is not null.
        Some(unsafe { NonNull::new_unchecked(self.base.add(offset)).cast() })
    }
}
