//! Load-time switches, read without allocating: `CPUSLAB_STATS=1` prints the
//! statistics report to stderr at exit. (`CPUSLAB_RSEQ` and `CPUSLAB_INDEX` are read
//! by rseq-core and cpuslab on first use.)

use core::ffi::CStr;

const STATS_SWITCH: &CStr = c"CPUSLAB_STATS";

/// Runs when the library is loaded (before `main` under LD_PRELOAD).
extern "C" fn on_load() {
    // SAFETY: getenv does not allocate; the name is a NUL-terminated literal.
    let value = unsafe { libc::getenv(STATS_SWITCH.as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: a non-null getenv result is NUL-terminated.
    let value = unsafe { CStr::from_ptr(value) }.to_bytes();
    if !matches!(value, b"" | b"0" | b"no" | b"off" | b"false") {
        // SAFETY: registering a plain function; atexit's own storage is static for
        // the first 32 handlers.
        unsafe { libc::atexit(print_stats_at_exit) };
    }
}

extern "C" fn print_stats_at_exit() {
    crate::info::print_stats();
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
