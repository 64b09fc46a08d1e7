//! Environment switches, read without allocating (see docs/tuning.md).
//!
//! * `CPUSLAB_INDEX=cpu`: index the per-CPU caches by CPU id instead of the
//!   concurrency id (`mm_cid`, the default where the kernel fills it).
//! * `CPUSLAB_RSEQ=0` (or `off`, `no`, `false`): no rseq at all; rseq-core is
//!   told before the allocator's first use (`first_use.rs`).
//! * `CPUSLAB_BACKGROUND=1` (or `on`, `yes`, `true`): the background decay
//!   thread, started at load time (`background.rs`).

use core::ffi::CStr;

use rseq_core::Index;

use crate::os;

/// The environment variable choosing the cache index.
pub const INDEX_SWITCH: &CStr = c"CPUSLAB_INDEX";

/// What indexes the per-CPU caches.
pub(crate) fn cache_index() -> Index {
    match os::getenv(INDEX_SWITCH) {
        Some(b"cpu") | Some(b"cpu_id") => Index::Cpu,
        _ => Index::ConcurrencyId,
    }
}

/// The environment variable that turns rseq off.
pub const RSEQ_SWITCH: &CStr = c"CPUSLAB_RSEQ";

/// Whether rseq may be used: false when [`RSEQ_SWITCH`] says off.
pub(crate) fn rseq_enabled() -> bool {
    !matches!(
        os::getenv(RSEQ_SWITCH),
        Some(b"0" | b"off" | b"no" | b"false" | b"OFF" | b"NO" | b"FALSE")
    )
}

/// The environment variable that starts the background decay thread.
pub const BACKGROUND_SWITCH: &CStr = c"CPUSLAB_BACKGROUND";

/// Whether [`BACKGROUND_SWITCH`] asks for the background thread.
pub(crate) fn background_wanted() -> bool {
    matches!(
        os::getenv(BACKGROUND_SWITCH),
        Some(b"1" | b"on" | b"yes" | b"true" | b"ON" | b"YES" | b"TRUE")
    )
}
