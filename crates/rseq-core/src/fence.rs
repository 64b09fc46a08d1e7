//! The fence for remote access: after it returns, no critical section that started
//! before it is still running on the target slot.
//!
//! The kernel's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` interrupts the
//! process's threads running on the target CPU (`MEMBARRIER_CMD_FLAG_CPU`) or on any
//! CPU, which aborts any section they are in. Concurrency ids are not CPUs, so a slot
//! indexed by `mm_cid` is fenced on every CPU. Where membarrier is missing, a slot
//! indexed by CPU is fenced by migrating the calling thread onto that CPU: once it
//! runs there, whatever ran there before has been preempted, and its section will
//! abort when it resumes.

use core::sync::atomic::{AtomicU8, Ordering};

use rseq_sys::{MEMBARRIER_CMD_FLAG_CPU, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ};
use rseq_sys::{MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, SYS_MEMBARRIER};

use crate::{FenceError, Index};

const UNKNOWN: u8 = 0;
const REGISTERED: u8 = 1;
const UNAVAILABLE: u8 = 2;

static MEMBARRIER: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Waits until no section that started before this call still runs on slot `index`
/// of a region indexed by `kind`. A no-op in fallback mode (the locks exclude).
pub fn fence(kind: Index, index: u32) -> Result<(), FenceError> {
    if !crate::mode::uses_rseq() {
        return Ok(());
    }
    if membarrier_registered() {
        let done = match kind {
            Index::Cpu => membarrier(MEMBARRIER_CMD_FLAG_CPU, index) || membarrier(0, 0),
            Index::ConcurrencyId => membarrier(0, 0),
        };
        if done {
            return Ok(());
        }
    }
    match kind {
        Index::Cpu => fence_by_migrating(index),
        Index::ConcurrencyId => Err(FenceError::Unsupported),
    }
}

fn membarrier_registered() -> bool {
    #[cfg(feature = "fault-injection")]
    if crate::fault::membarrier_disabled() {
        return false;
    }
    match MEMBARRIER.load(Ordering::Acquire) {
        REGISTERED => true,
        UNAVAILABLE => false,
        _ => {
            // SAFETY: membarrier registration takes no pointers.
            let ok = unsafe {
                libc::syscall(
                    SYS_MEMBARRIER,
                    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
                    0,
                    0,
                )
            } == 0;
            MEMBARRIER.store(if ok { REGISTERED } else { UNAVAILABLE }, Ordering::Release);
            ok
        }
    }
}

fn membarrier(flags: u32, cpu: u32) -> bool {
    // SAFETY: the RSEQ command takes no pointers; the process is registered for it.
    unsafe {
        libc::syscall(
            SYS_MEMBARRIER,
            MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
            flags,
            cpu,
        ) == 0
    }
}

/// Bound on yields while waiting to land on the target CPU after pinning to it.
const MIGRATION_YIELDS: u32 = 1000;

fn fence_by_migrating(cpu: u32) -> Result<(), FenceError> {
    let size = core::mem::size_of::<libc::cpu_set_t>();
    if cpu as usize >= size * 8 {
        return Err(FenceError::Unsupported);
    }
    // SAFETY: cpu_set_t is plain data; the affinity calls only read and write the
    // sets we pass, for the calling thread; the CPU index is within the set.
    unsafe {
        let mut saved: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut saved) != 0 {
            return Err(FenceError::Unsupported);
        }
        let mut target: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut target);
        if libc::sched_setaffinity(0, size, &target) != 0 {
            return Err(FenceError::Unsupported);
        }
        let mut yields = 0;
        while crate::cpu::sched_getcpu() != cpu && yields < MIGRATION_YIELDS {
            libc::sched_yield();
            yields += 1;
        }
        let landed = crate::cpu::sched_getcpu() == cpu;
        libc::sched_setaffinity(0, size, &saved);
        if landed {
            Ok(())
        } else {
            Err(FenceError::Unsupported)
        }
    }
}
