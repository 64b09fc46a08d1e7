//! The process-wide rseq mode, chosen once on first use and never changed.
//!
//! Mixing modes would be unsound: a thread using the lock-based fallback on a
//! CPU's data while another runs a critical section on it would race. So the mode
//! is per process; a thread that cannot run sections in an rseq mode (its
//! registration failed) gets [`crate::OpError::Unavailable`] and takes its slow path.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::area;

/// How this process runs per-CPU operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// glibc registered an area for every thread; we use it (`__rseq_offset`).
    Glibc,
    /// glibc did not register (old glibc, musl, `GLIBC_TUNABLES=glibc.pthread.rseq=0`):
    /// each thread registers its own area on first use.
    Own,
    /// No rseq (`CPUSLAB_RSEQ=0`, ENOSYS, seccomp, or an architecture without
    /// sections here): per-CPU locks keyed by `sched_getcpu()`.
    Fallback,
}

/// The environment switch that turns rseq off ("0", "off", "no", "false").
pub const ENV_SWITCH: &core::ffi::CStr = c"CPUSLAB_RSEQ";

const UNDECIDED: u8 = 0;
const GLIBC: u8 = 1;
const OWN: u8 = 2;
const FALLBACK: u8 = 3;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// The mode of this process, deciding it on the first call.
///
/// The mode is published with release (the decision's compare-exchange) and read
/// with acquire, so a thread that sees `Glibc` also sees glibc's offset, stored
/// before the decision (`area::adopt_glibc_area`), and never arms `fs:[8]` with
/// an offset of 0. (On x86-64 both are plain moves.)
#[inline(always)]
pub fn mode() -> Mode {
    match MODE.load(Ordering::Acquire) {
        GLIBC => Mode::Glibc,
        OWN => Mode::Own,
        FALLBACK => Mode::Fallback,
        _ => decide(),
    }
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

#[cold]
#[inline(never)]
fn decide() -> Mode {
    let mode = if env_disables_rseq() || !cfg!(target_arch = "x86_64") {
        Mode::Fallback
    } else if area::adopt_glibc_area() {
        Mode::Glibc
    } else if area::register_own_area() {
        Mode::Own
    } else {
        Mode::Fallback
    };
    let code = match mode {
        Mode::Glibc => GLIBC,
        Mode::Own => OWN,
        Mode::Fallback => FALLBACK,
    };
    // Every racer computes the same answer from the same facts; the first wins.
    match MODE.compare_exchange(UNDECIDED, code, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            area::mode_decided(mode);
            mode
        }
        Err(_) => self::mode(),
    }
}

/// True when `CPUSLAB_RSEQ` is set to a value meaning "off".
fn env_disables_rseq() -> bool {
    // SAFETY: getenv reads the environment without allocating; the name is a
    // NUL-terminated literal. The result is either null or a NUL-terminated string
    // owned by the environment, read immediately.
    let value = unsafe { libc::getenv(ENV_SWITCH.as_ptr()) };
    if value.is_null() {
        return false;
    }
    // SAFETY: non-null results of getenv point to NUL-terminated strings.
    let value = unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes();
    matches!(
        value,
        b"0" | b"off" | b"no" | b"false" | b"OFF" | b"NO" | b"FALSE"
    )
}
