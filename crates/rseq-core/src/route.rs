//! Where an operation runs, and the bounded-restart contract.
//!
//! rseq modes run the operation as a critical section on the slot of the index the
//! thread reads now; an abort, or finding itself moved, restarts it from the top
//! (re-reading the index, re-arming `rseq_cs`), at most [`MAX_RESTARTS`] times before
//! the caller is told to take its slow path. The fallback takes the slot's per-CPU
//! lock instead.

use crate::arch::{CheckedIndex, Status};
use crate::area::Area;
use crate::counters;
use crate::fallback::run_locked;
use crate::mode::{self, Mode};
use crate::{OpError, PerCpu};

/// Consecutive restarts after which an operation returns [`OpError::Restarted`].
pub const MAX_RESTARTS: u32 = 16;

/// Runs an operation on the calling thread's slot of `region`.
///
/// `section` runs it as a critical section; `locked` runs it under the slot's
/// per-CPU lock (fallback mode); `refused` turns a refusal's value into the error.
/// The first attempt is inline and lean (a registered thread, its index inside the
/// region); everything else (deciding the mode, registering, restarting, the
/// fallback) is out of line.
#[inline(always)]
pub(crate) fn run<T, R>(
    region: &PerCpu<T>,
    mut section: impl FnMut(CheckedIndex, *mut T) -> (Status, R),
    locked: impl FnOnce(&T) -> Result<R, OpError>,
    refused: impl FnOnce(R) -> OpError,
) -> Result<R, OpError> {
    let mut first = None;
    // Batch, list and word operations are never on an inlined fast path; their
    // first attempt is this one.
    if let Some(area) = mode::this_thread_registered() {
        match attempt(region, area, &mut section) {
            Some((Status::DONE, value)) => return Ok(value),
            Some((Status::REFUSED, value)) => return Err(refused(value)),
            Some((status, _)) => first = Some(status),
            None => {}
        }
    } else if mode::decided() == Some(Mode::Fallback) {
        return run_locked(region, locked);
    }
    run_slow(*region, section, locked, refused, first)
}

/// Runs `section` once on `area`'s thread's slot: reads the index, finds the slot
/// (None when the index lies beyond the region), and returns how the section ended.
#[inline(always)]
fn attempt<T, R>(
    region: &PerCpu<T>,
    area: Area,
    section: &mut impl FnMut(CheckedIndex, *mut T) -> (Status, R),
) -> Option<(Status, R)> {
    let index_offset = region.index_offset();
    let index = area.read_u32(index_offset);
    let slot = region.slot_ptr(index)?;
    let checked = CheckedIndex {
        area: area.tp_offset(),
        index_offset,
        index,
    };
    Some(section(checked, slot.as_ptr()))
}

/// Everything but a first attempt that ran: the mode decision and registration,
/// the restarts up to [`MAX_RESTARTS`], and the fallback.
/// `first` is how the inline attempt ended, if it ran a section.
#[cold]
#[inline(never)]
pub(crate) fn run_slow<T, R>(
    region: PerCpu<T>,
    mut section: impl FnMut(CheckedIndex, *mut T) -> (Status, R),
    locked: impl FnOnce(&T) -> Result<R, OpError>,
    refused: impl FnOnce(R) -> OpError,
    first: Option<Status>,
) -> Result<R, OpError> {
    if !mode::uses_rseq() {
        return run_locked(&region, locked);
    }
    let mut restarts = 0;
    if let Some(status) = first {
        note_restart(status);
        restarts += 1;
    }
    loop {
        let Some(area) = mode::this_thread() else {
            return Err(OpError::Unavailable);
        };
        match attempt(&region, area, &mut section) {
            None => return Err(OpError::Unavailable),
            Some((Status::DONE, value)) => return Ok(value),
            Some((Status::REFUSED, value)) => return Err(refused(value)),
            Some((status, _)) => note_restart(status),
        }
        restarts += 1;
        if restarts >= MAX_RESTARTS {
            counters::note_gave_up();
            return Err(OpError::Restarted);
        }
    }
}

/// Counts why a section must be restarted (aborts count themselves, in the asm).
fn note_restart(status: Status) {
    if status == Status::MOVED {
        counters::note_cpu_moved();
    }
}
