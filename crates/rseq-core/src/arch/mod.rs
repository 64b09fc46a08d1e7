//! The critical sections, per architecture. Only x86-64 has them; elsewhere the
//! process always runs in fallback mode and these entry points are never reached.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
mod unsupported;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) use unsupported::*;

/// How a section ended: the value its status register holds at the exit label,
/// compared raw (no conversion on the fast path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Status(u32);

pub(crate) const STATUS_DONE: u32 = 0;
pub(crate) const STATUS_REFUSED: u32 = 1;
pub(crate) const STATUS_MOVED: u32 = 2;
pub(crate) const STATUS_ABORTED: u32 = 3;

impl Status {
    /// The commit store ran.
    pub(crate) const DONE: Status = Status(STATUS_DONE);
    /// The data said no (empty, full, stopped, value mismatch); nothing was written.
    pub(crate) const REFUSED: Status = Status(STATUS_REFUSED);
    /// The thread was not on the CPU (or concurrency id) it indexed.
    pub(crate) const MOVED: Status = Status(STATUS_MOVED);
    /// The kernel aborted the section (any value above MOVED reads as this).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    pub(crate) const ABORTED: Status = Status(STATUS_ABORTED);

    #[inline(always)]
    pub(crate) fn from_register(value: u32) -> Status {
        Status(value)
    }
}

/// What a status-frame section checks: the thread's area (its offset from the
/// thread pointer), the offset of the index field (`cpu_id` or `mm_cid`), and the
/// index the caller read before the section to find its slot, which the section
/// compares with the live one first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckedIndex {
    pub area: isize,
    pub index_offset: usize,
    pub index: u32,
}

/// A region an indexed section finds its slot in by itself: the thread's area
/// (offset from the thread pointer), the offset of the index field, and the
/// region's geometry: slot `i < len` at `base + i * stride`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexedRegion {
    pub area: isize,
    pub index_offset: usize,
    pub len: u32,
    pub stride: usize,
    pub base: *mut u8,
}
