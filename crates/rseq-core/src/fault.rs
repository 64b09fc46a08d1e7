//! Test-only fault injection (feature `fault-injection`): never in production.
//!
//! * a delay spun inside every critical section, between the CPU check and the
//!   commit, so that preemption, signals and migrations land inside sections;
//! * a second delay between the loads of two words that a remote operation
//!   writes (the stack header's `capacity` and `top`), counted each time it runs,
//!   so that a remote stop, drain and resume lands between them;
//! * deliberately broken stack sections, to prove that the stress test catches
//!   each bug class: a restart that does not re-arm `rseq_cs`, and the header
//!   loaded `top` first (the remote-race bug); and a capacity raise that does
//!   not take the slot's lock;
//! * a delay in every capacity raise that will store, between its load of the
//!   capacity and its store, counted, so that a remote stop begins inside it;
//! * a hold: a remote stop keeps the stack stopped for a while after its fence,
//!   so that the sections the fence aborted restart while it is stopped, and
//!   again before it resumes, so that what it changes is in flight for a while;
//! * a switch that pretends membarrier is missing, to exercise the fence's fallback.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

static DELAY_SPINS: AtomicU32 = AtomicU32::new(0);
static HEADER_DELAY_SPINS: AtomicU32 = AtomicU32::new(0);
static STOP_HOLD_SPINS: AtomicU32 = AtomicU32::new(0);
static BROKEN: AtomicU8 = AtomicU8::new(Broken::Nothing as u8);
static NO_MEMBARRIER: AtomicBool = AtomicBool::new(false);

/// Header delays that ran (incremented by the sections themselves).
pub(crate) static HEADER_DELAYS: AtomicU64 = AtomicU64::new(0);

/// Which bug the stack sections carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Broken {
    /// None: the shipped sections.
    Nothing = 0,
    /// The abort handler jumps back into the section without storing `rseq_cs`
    /// again.
    Restart = 1,
    /// The header is loaded `top` first, then `capacity`: a section that starts
    /// after a remote stop's fence can pair the pre-drain `top` with the resumed
    /// `capacity`.
    LoadOrder = 2,
    /// `raise_capacity` without the slot's lock: a stop that begins between its
    /// load and its store ends at the store, while the remote still works.
    RaiseUnlocked = 3,
}

/// Spin `spins` `pause` instructions inside every section (0: none).
pub fn set_delay_spins(spins: u32) {
    DELAY_SPINS.store(spins, Ordering::Relaxed);
}

pub(crate) fn delay_spins() -> u32 {
    DELAY_SPINS.load(Ordering::Relaxed)
}

/// Spin `spins` `pause` instructions between the two loads of the stack header
/// (after the single load, in one-word sections) (0: none).
pub fn set_header_delay_spins(spins: u32) {
    HEADER_DELAY_SPINS.store(spins, Ordering::Relaxed);
}

pub(crate) fn header_delay_spins() -> u32 {
    HEADER_DELAY_SPINS.load(Ordering::Relaxed)
}

/// Spin `spins` `pause` instructions in every remote stop, after its fence and
/// before the caller's closure runs, and again after it, before the resume (0:
/// none).
pub fn set_stop_hold_spins(spins: u32) {
    STOP_HOLD_SPINS.store(spins, Ordering::Relaxed);
}

/// The hold of a remote stop (see [`set_stop_hold_spins`]).
pub(crate) fn hold_stopped() {
    for _ in 0..STOP_HOLD_SPINS.load(Ordering::Relaxed) {
        core::hint::spin_loop();
    }
}

/// How many times a section spun the header delay: proof that it ran.
pub fn header_delays() -> u64 {
    HEADER_DELAYS.load(Ordering::Relaxed)
}

/// Make the stack sections (single pop and push; the batch sections stay
/// correct), or the capacity raise, carry `bug`.
pub fn set_broken(bug: Broken) {
    BROKEN.store(bug as u8, Ordering::Relaxed);
}

pub(crate) fn broken() -> Broken {
    match BROKEN.load(Ordering::Relaxed) {
        1 => Broken::Restart,
        2 => Broken::LoadOrder,
        3 => Broken::RaiseUnlocked,
        _ => Broken::Nothing,
    }
}

/// Capacity raises that ran their delay: every one that stored (see
/// [`delay_raise`]).
static RAISE_DELAYS: AtomicU64 = AtomicU64::new(0);

/// How long the broken raise waits for a stop to begin, at most, in pauses
/// (about ten milliseconds here).
const BROKEN_RAISE_WAIT_SPINS: u32 = 1_000_000;

/// The delay of a capacity raise, between its load and its store: the header
/// delay's length (so that a stop, with its hold, fits inside), counted. The
/// broken raise (no lock) then waits, a while at most, until a stop of
/// `capacity`'s stack has begun, so that its store ends that stop early: the
/// bug the stress test must catch, made to happen rather than left to the
/// scheduler (which, under load, lined one up in 15 runs of 16).
pub(crate) fn delay_raise(capacity: &core::sync::atomic::AtomicU32) {
    RAISE_DELAYS.fetch_add(1, Ordering::Relaxed);
    for _ in 0..HEADER_DELAY_SPINS.load(Ordering::Relaxed) {
        core::hint::spin_loop();
    }
    if broken() == Broken::RaiseUnlocked {
        for _ in 0..BROKEN_RAISE_WAIT_SPINS {
            if capacity.load(Ordering::Acquire) == 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// How many capacity raises stored (each after its delay): proof that raises
/// happened.
pub fn raise_delays() -> u64 {
    RAISE_DELAYS.load(Ordering::Relaxed)
}

/// Raise `signal` once, in the next own-mode registration, between its check and
/// its syscall (where a handler that registers first would make it fail).
pub fn raise_during_next_registration(signal: i32) {
    crate::area::RAISE_DURING_REGISTRATION.store(signal, Ordering::Relaxed);
}

/// The raw `cpu_id` of the calling thread's own area (own mode): -1 until the
/// kernel registers it; we never write it.
pub fn own_area_cpu_id() -> i32 {
    crate::area::own_area_cpu_id()
}

/// `pause` instructions spun in `duration` on this machine, to turn the delays
/// above into time (a pause takes from a few to over a hundred cycles, depending
/// on the processor). The fastest of several samples, so that a preemption while
/// measuring (a loaded machine) does not shorten the delay.
pub fn pauses_in(duration: std::time::Duration) -> u32 {
    const SAMPLE: u32 = 20_000;
    let per_pause = (0..10)
        .map(|_| {
            let start = std::time::Instant::now();
            for _ in 0..SAMPLE {
                core::hint::spin_loop();
            }
            start.elapsed().as_secs_f64() / f64::from(SAMPLE)
        })
        .fold(f64::INFINITY, f64::min);
    (duration.as_secs_f64() / per_pause.max(1e-10)).clamp(1.0, 10_000_000.0) as u32
}

/// Pretend the kernel has no membarrier RSEQ command.
pub fn set_membarrier_disabled(on: bool) {
    NO_MEMBARRIER.store(on, Ordering::Relaxed);
}

pub(crate) fn membarrier_disabled() -> bool {
    NO_MEMBARRIER.load(Ordering::Relaxed)
}
