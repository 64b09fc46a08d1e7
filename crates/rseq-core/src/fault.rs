//! Test-only fault injection (feature `fault-injection`): never in production.
//!
//! * a delay spun inside every critical section, between the CPU check and the
//!   commit, so that preemption, signals and migrations land inside sections;
//! * a deliberately broken restart for stack pop/push (the abort handler jumps back
//!   into the section without storing `rseq_cs` again), to prove the stress test
//!   catches that bug class;
//! * a switch that pretends membarrier is missing, to exercise the fence's fallback.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static DELAY_SPINS: AtomicU32 = AtomicU32::new(0);
static BROKEN_RESTART: AtomicBool = AtomicBool::new(false);
static NO_MEMBARRIER: AtomicBool = AtomicBool::new(false);

/// Spin `spins` `pause` instructions inside every section (0: none).
pub fn set_delay_spins(spins: u32) {
    DELAY_SPINS.store(spins, Ordering::Relaxed);
}

pub(crate) fn delay_spins() -> u32 {
    DELAY_SPINS.load(Ordering::Relaxed)
}

/// Make stack pop/push restart without re-arming `rseq_cs` (a real bug class).
pub fn set_broken_restart(on: bool) {
    BROKEN_RESTART.store(on, Ordering::Relaxed);
}

pub(crate) fn broken_restart() -> bool {
    BROKEN_RESTART.load(Ordering::Relaxed)
}

/// Pretend the kernel has no membarrier RSEQ command.
pub fn set_membarrier_disabled(on: bool) {
    NO_MEMBARRIER.store(on, Ordering::Relaxed);
}

pub(crate) fn membarrier_disabled() -> bool {
    NO_MEMBARRIER.load(Ordering::Relaxed)
}
