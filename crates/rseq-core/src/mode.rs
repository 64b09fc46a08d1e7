//! The process-wide rseq mode, chosen once on first use and never changed, and
//! where the calling thread's area lies in it.
//!
//! Mixing modes would be unsound: a thread using the lock-based fallback on a
//! CPU's data while another runs a critical section on it would race. So the mode
//! is per process; a thread that cannot run sections in an rseq mode (its
//! registration failed) gets [`crate::OpError::Unavailable`] and takes its slow path.

use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicU8, Ordering};

use crate::area::{self, Area};

/// How this process runs per-CPU operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// glibc registered an area for every thread; we use it (`__rseq_offset`).
    Glibc,
    /// glibc did not register (old glibc, musl, `GLIBC_TUNABLES=glibc.pthread.rseq=0`):
    /// each thread registers its own area on first use.
    Own,
    /// No rseq ([`disable_rseq`], ENOSYS, seccomp, or an architecture without
    /// sections here): per-CPU locks keyed by `sched_getcpu()`.
    Fallback,
}

const UNDECIDED: u8 = 0;
const GLIBC: u8 = 1;
const OWN: u8 = 2;
const FALLBACK: u8 = 3;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
/// Cleared by [`disable_rseq`]: the decision then picks `Fallback`.
static RSEQ_ALLOWED: AtomicBool = AtomicBool::new(true);

/// Runs every operation of this process under the fallback's locks, as if the
/// kernel had no rseq (for debugging: a debugger can single-step anywhere).
/// Takes effect only before the mode is decided (the first operation, or the
/// first call to [`mode`]); returns whether the mode is now `Fallback`. A library
/// on top reads its own configuration (cpuslab has an environment switch) and
/// calls this before its first operation.
pub fn disable_rseq() -> bool {
    RSEQ_ALLOWED.store(false, Ordering::Release);
    mode() == Mode::Fallback
}

/// The mode of this process, deciding it on the first call.
///
/// The mode is published with release (the decision's compare-exchange) and read
/// with acquire, so a thread that sees `Glibc` also sees glibc's offset, stored
/// before the decision, and never arms `fs:[8]` with an offset of 0. (On x86-64
/// both are plain moves.)
#[inline(always)]
pub fn mode() -> Mode {
    match decided() {
        Some(mode) => mode,
        None => decide(),
    }
}

/// The mode if it is decided already; never decides it (a library on top asks
/// whether [`disable_rseq`] can still take effect).
#[inline(always)]
pub fn mode_if_decided() -> Option<Mode> {
    decided()
}

/// The mode if it is decided already (never decides it).
#[inline(always)]
pub(crate) fn decided() -> Option<Mode> {
    match MODE.load(Ordering::Acquire) {
        GLIBC => Some(Mode::Glibc),
        OWN => Some(Mode::Own),
        FALLBACK => Some(Mode::Fallback),
        _ => None,
    }
}

/// Whether this process runs per-CPU operations as rseq critical sections.
#[inline(always)]
pub(crate) fn uses_rseq() -> bool {
    mode() != Mode::Fallback
}

#[cold]
#[inline(never)]
fn decide() -> Mode {
    let mode = if !RSEQ_ALLOWED.load(Ordering::Acquire) || !cfg!(target_arch = "x86_64") {
        Mode::Fallback
    } else if adopt_glibc_area() {
        Mode::Glibc
    } else if area::own_area().is_some() {
        Mode::Own
    } else {
        Mode::Fallback
    };
    let code = match mode {
        Mode::Glibc => GLIBC,
        Mode::Own => OWN,
        Mode::Fallback => FALLBACK,
    };
    // The first racer's answer wins (racers may differ only around a concurrent
    // `disable_rseq`); the others return the published mode.
    match MODE.compare_exchange(UNDECIDED, code, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // The fast path's shortcut, from now on, where every thread's area
            // lies at one offset from the thread pointer: glibc's, or our own
            // area in a shared-object build (initial-exec TLS).
            let offset = match mode {
                Mode::Glibc => Some(GLIBC_OFFSET.load(Ordering::Relaxed)),
                Mode::Own => area::own_area_fixed_offset(),
                Mode::Fallback => None,
            };
            // An area at offset 0 (never seen: that is the thread control
            // block's own first word) would not be published, and the fast
            // path would find it the long way: through the mode (own), or
            // the slow path (glibc); both correct.
            if let Some(offset) = offset.filter(|&offset| offset != NO_OFFSET) {
                FAST_OFFSET.store(offset, Ordering::Relaxed);
            }
            mode
        }
        Err(_) => self::mode(),
    }
}

// --- the calling thread's area ------------------------------------------------------

/// The calling thread's area if the mode is decided and the thread registered
/// already: the inline first attempt's test, which never decides or registers
/// anything. Where every thread's area lies at one offset (glibc mode; own mode
/// in a shared-object build) it is one load and one compare; own mode in an
/// executable reaches its thread-local area inline too (local-exec TLS).
#[inline(always)]
pub(crate) fn this_thread_registered() -> Option<Area> {
    let offset = FAST_OFFSET.load(Ordering::Relaxed);
    let area = if offset != NO_OFFSET {
        Area::at(offset)
    } else {
        // Keep the fixed-offset modes on the straight line.
        core::hint::cold_path();
        if decided() != Some(Mode::Own) {
            return None;
        }
        area::own_area_unregistered()
    };
    area.is_registered().then_some(area)
}

/// The calling thread's registered area, or None (fallback mode, or this thread's
/// registration failed).
#[inline(always)]
pub(crate) fn this_thread() -> Option<Area> {
    match mode() {
        // A negative cpu_id means "not registered" (glibc's -2 after its own
        // registration failed): sections must not run, the kernel would never
        // abort them.
        Mode::Glibc => {
            Some(Area::at(GLIBC_OFFSET.load(Ordering::Relaxed))).filter(|area| area.is_registered())
        }
        // Registered, or registering now; None if that failed.
        Mode::Own => area::own_area(),
        Mode::Fallback => None,
    }
}

// --- glibc's area -----------------------------------------------------------------

/// glibc's area: at this offset from the thread pointer in every thread. Stored
/// before the decision publishes `Glibc` (release), read after reading it
/// (acquire).
static GLIBC_OFFSET: AtomicIsize = AtomicIsize::new(0);

/// The offset of every thread's area once the mode is decided and that offset
/// is the same in every thread (glibc's area; our own in a shared-object
/// build), else `NO_OFFSET`: the fast path's one load (instead of dispatching
/// on the mode). The value is the whole
/// message (no other data is read because of it), so relaxed suffices: a reader
/// sees `NO_OFFSET` (and takes the slow path, which reads the mode with acquire)
/// or the offset itself.
static FAST_OFFSET: AtomicIsize = AtomicIsize::new(NO_OFFSET);
/// No fixed offset (yet). 0 is never an area's offset (the thread pointer
/// points at the thread control block), and the fast path tests it with one
/// instruction.
const NO_OFFSET: isize = 0;

/// Adopts glibc's registration if glibc made one; true on success.
fn adopt_glibc_area() -> bool {
    match crate::glibc::registration() {
        Some(glibc) => {
            GLIBC_OFFSET.store(glibc.offset, Ordering::Relaxed);
            true
        }
        None => false,
    }
}
