//! Load-time switches, read without allocating: `CPUSLAB_STATS=1` prints the
//! statistics report to stderr at exit. (`CPUSLAB_RSEQ` and `CPUSLAB_INDEX` are read
//! by cpuslab on first use.)

use core::ffi::CStr;

const STATS_SWITCH: &CStr = c"CPUSLAB_STATS";

/// Runs when the library is loaded (before `main` under LD_PRELOAD).
extern "C" fn on_load() {
    let Some(value) = cpuslab::os::getenv(STATS_SWITCH) else {
        return;
    };
    if !matches!(value, b"" | b"0" | b"no" | b"off" | b"false") {
        cpuslab::os::atexit(print_stats_at_exit);
    }
}

extern "C" fn print_stats_at_exit() {
    crate::info::print_stats();
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
