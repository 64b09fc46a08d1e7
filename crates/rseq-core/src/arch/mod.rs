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

/// How a section ended (the value its status register holds at the exit label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// The commit store ran.
    Done,
    /// The data said no (empty, full, stopped, value mismatch); nothing was written.
    Refused,
    /// The thread was not on the CPU (or concurrency id) it indexed.
    Moved,
    /// The kernel aborted the section.
    Aborted,
}

pub(crate) const STATUS_DONE: u32 = 0;
pub(crate) const STATUS_REFUSED: u32 = 1;
pub(crate) const STATUS_MOVED: u32 = 2;
pub(crate) const STATUS_ABORTED: u32 = 3;

impl Status {
    #[inline(always)]
    pub(crate) fn from_register(value: u32) -> Status {
        match value {
            STATUS_DONE => Status::Done,
            STATUS_REFUSED => Status::Refused,
            STATUS_MOVED => Status::Moved,
            _ => Status::Aborted,
        }
    }
}

/// Where a section runs: the thread's area (its offset from the thread pointer), the
/// offset of the index field it checks (`cpu_id` or `mm_cid`), and the index value the
/// caller used to find its slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Site {
    pub area: isize,
    pub index_offset: usize,
    pub index: u32,
}
