//! Asking an allocator to give its free memory back to the OS now, by name: the
//! memory timeline's trim phase.
//!
//! * cpuslab: `cpuslab::trim()`;
//! * glibc: `malloc_trim(0)`;
//! * jemalloc: `thread.tcache.flush`, then `arena.<all>.purge` (mallctl);
//! * mimalloc: `mi_collect(true)`;
//! * snmalloc and anything else: no such call.

use std::ffi::CStr;

/// Trims `allocator`; `false` when it has no call for that.
pub fn trim(allocator: &str) -> bool {
    match allocator {
        "cpuslab" => cpuslab::trim(),
        "glibc" => {
            // SAFETY: malloc_trim takes glibc's arena locks itself; any pad is valid.
            unsafe { libc::malloc_trim(0) };
        }
        "jemalloc" => {
            jemalloc_void_ctl(c"thread.tcache.flush");
            // MALLCTL_ARENAS_ALL (4096): every arena.
            jemalloc_void_ctl(c"arena.4096.purge");
        }
        "mimalloc" => {
            // SAFETY: mi_collect has no preconditions; `force` also frees what
            // other threads abandoned.
            unsafe { libmimalloc_sys::mi_collect(true) };
        }
        _ => return false,
    }
    true
}

/// A jemalloc control that takes and returns nothing (a failure is ignored: the
/// timeline shows what the trim achieved).
fn jemalloc_void_ctl(name: &CStr) {
    let null = std::ptr::null_mut();
    // SAFETY: the name is NUL-terminated; these controls read and write no value,
    // so every value pointer is null and every length 0.
    unsafe { tikv_jemalloc_sys::mallctl(name.as_ptr(), null, null.cast(), null, 0) };
}
