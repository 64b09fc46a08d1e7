//! A per-CPU region published once and read by fast paths with no readiness check:
//! until it is published it reads as an empty region (no slots), on which every
//! operation fails, so a fast path simply falls to its slow path, which publishes.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::{Index, PerCpu};

/// A [`PerCpu`] region behind atomics, for a `static`: [`get`](Self::get) is a few
/// relaxed loads (plain moves on x86-64) and never fails.
pub struct PublishedPerCpu<T> {
    claimed: AtomicBool,
    base: AtomicPtr<u8>,
    stride: AtomicUsize,
    /// 0 until published; stored last (release), read first (acquire).
    len: AtomicU32,
    /// Which index the region uses, as the offset of its field in the rseq area.
    index_offset: AtomicU32,
    _slots: PhantomData<*const T>,
}

// SAFETY: the fields are atomics; the region they describe is Sync when T is
// (see PerCpu's own impls).
unsafe impl<T: Sync> Sync for PublishedPerCpu<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Send for PublishedPerCpu<T> {}

impl<T> PublishedPerCpu<T> {
    /// An unpublished region: reads as empty.
    pub const fn new() -> Self {
        PublishedPerCpu {
            claimed: AtomicBool::new(false),
            base: AtomicPtr::new(NonNull::<T>::dangling().as_ptr().cast()),
            stride: AtomicUsize::new(0),
            len: AtomicU32::new(0),
            index_offset: AtomicU32::new(Index::Cpu.field_offset() as u32),
            _slots: PhantomData,
        }
    }

    /// Publishes `region`; only the first call does (it returns true), later ones
    /// change nothing. Readers see either the empty region or all of `region`.
    pub fn publish(&self, region: PerCpu<T>) -> bool {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let (base, stride, len, index) = region.into_parts();
        self.base.store(base, Ordering::Relaxed);
        self.stride.store(stride, Ordering::Relaxed);
        self.index_offset
            .store(index.field_offset() as u32, Ordering::Relaxed);
        self.len.store(len, Ordering::Release);
        true
    }

    /// Whether the region is published.
    pub fn is_published(&self) -> bool {
        self.len.load(Ordering::Acquire) != 0
    }

    /// The region: the published one, or an empty one before that.
    #[inline(always)]
    pub fn get(&self) -> PerCpu<T> {
        let len = self.len.load(Ordering::Acquire);
        let base = self.base.load(Ordering::Relaxed);
        let index_offset = self.index_offset.load(Ordering::Relaxed);
        // SAFETY: before publication `len` is 0: an empty region has no slots to
        // be valid. After
        // it, acquiring `len` makes the other fields the published region's, which
        // `PerCpu::new`'s contract made valid for as long as it is used.
        unsafe { PerCpu::from_parts(base, self.stride.load(Ordering::Relaxed), len, index_offset) }
    }
}

impl<T> core::fmt::Debug for PublishedPerCpu<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("PublishedPerCpu").field(&self.get()).finish()
    }
}

impl<T> Default for PublishedPerCpu<T> {
    fn default() -> Self {
        Self::new()
    }
}
