//! Environment switches, read without allocating (see docs/tuning.md).
//!
//! * `CPUSLAB_INDEX=cpu`: index the per-CPU caches by CPU id instead of the
//!   concurrency id (`mm_cid`, the default where the kernel fills it).
//! * `CPUSLAB_RSEQ=0`: no rseq at all (read by rseq-core).

use core::ffi::CStr;

use rseq_core::Index;

/// The environment variable choosing the cache index.
pub const INDEX_SWITCH: &CStr = c"CPUSLAB_INDEX";

/// What indexes the per-CPU caches.
pub(crate) fn cache_index() -> Index {
    match env(INDEX_SWITCH) {
        Some(b"cpu") | Some(b"cpu_id") => Index::Cpu,
        _ => Index::ConcurrencyId,
    }
}

/// The value of an environment variable, if set.
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads the environment without allocating; the result is null
    // or a NUL-terminated string owned by the environment, which we only read.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: a non-null getenv result is NUL-terminated.
    Some(unsafe { CStr::from_ptr(value) }.to_bytes())
}
