//! What the allocator does once: at load time (before `main`), and on its first
//! use, before that use takes any lock or lets rseq-core decide its mode.
//!
//! [`ensure`] stands at the top of every path that can be a process's first use
//! (the per-CPU tier's creation, a zeroed miss, a large allocation, `stats`,
//! `trim`): the per-CPU caches may never exist (their mapping can fail), so no
//! single tier is always first. It reads the configuration (`config.rs`),
//! applies its rseq switch, and registers the fork handlers.
//!
//! At load time ([`on_load`], from `.init_array`, after the C library is ready)
//! the configuration's start-up actions run: the background thread, the report
//! at exit, the start-up line.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::config;

static DONE: AtomicBool = AtomicBool::new(false);

/// Runs the first-use steps if they have not run yet (one load afterwards).
#[inline]
pub(crate) fn ensure() {
    if !DONE.load(Ordering::Acquire) {
        run();
    }
}

/// The steps are idempotent, so racing first uses may both run them; `DONE` is
/// set last, so nobody skips them before they are done. Registering the fork
/// handlers may allocate: the reentered allocator runs the steps again,
/// harmlessly.
#[cold]
#[inline(never)]
fn run() {
    if !config::rseq_enabled() {
        rseq_core::disable_rseq();
    }
    crate::fork::register_handlers();
    DONE.store(true, Ordering::Release);
}

/// Registers the report at exit, once (`atexit` may allocate: the flag is set
/// first, so a reentered call does nothing).
pub(crate) fn print_stats_at_exit() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        crate::os::atexit(at_exit);
    }
}

extern "C" fn at_exit() {
    if config::stats_at_exit() {
        crate::stats::print_stats();
    }
}

/// At load time: the start-up actions the configuration asks for.
extern "C" fn on_load() {
    if config::verbose() {
        config::print_report();
    }
    if config::stats_at_exit() {
        print_stats_at_exit();
    }
    if config::background_wanted() {
        crate::start_background();
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
