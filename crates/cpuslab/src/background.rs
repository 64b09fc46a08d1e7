//! The optional background thread (off by default): for a process that goes
//! fully idle, so that no slow path runs the decay, one thread runs the same
//! sweeps every half interval. `CPUSLAB_BACKGROUND=1` starts it when the program
//! loads (`first_use::on_load`); [`start_background`] from code.
//!
//! It is detached and never holds a lock while it sleeps, so it neither keeps the
//! process alive nor blocks a `fork`. A fork's child has no such thread: the
//! child handler marks it gone (`decay::forked`), and the child's next slow path
//! starts a new one.

use crate::{cpu_cache, decay, os};

/// Starts the background decay thread, once; true if it runs (now or already).
pub fn start_background() -> bool {
    crate::first_use::ensure();
    if decay::set_background_running(true, start_background) {
        return true;
    }
    let started = os::spawn_detached(run);
    if !started {
        decay::set_background_running(false, start_background);
    }
    started
}

/// Whether the background thread runs.
pub fn background_running() -> bool {
    decay::background_running()
}

extern "C" fn run() {
    loop {
        let interval = decay::interval_ms();
        let nap = if interval == u64::MAX {
            1000
        } else {
            (interval / 2).clamp(1, 1000)
        };
        os::sleep_ms(nap);
        // At most one sweep per wake-up: with a short interval a new one would
        // be due as soon as the last ended, and the thread would never sleep.
        if decay::pending() {
            cpu_cache::decay_step();
            while decay::sweeping() {
                cpu_cache::decay_step();
            }
        }
    }
}
