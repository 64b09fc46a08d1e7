//! The optional background thread (off by default): for a process that goes
//! fully idle, so that no slow path runs the decay, one thread runs the same
//! decay every half interval. `CPUSLAB_BACKGROUND=1` starts it when the program
//! loads; [`start_background`] from code.
//!
//! It is detached and never holds a lock while it sleeps, so it neither keeps the
//! process alive nor blocks a `fork`. A fork's child has no such thread: the
//! child handler marks it gone, and the child's next slow path starts a new one.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::{config, decay, os, page_heap};

const OFF: u8 = 0;
const RUNNING: u8 = 1;
/// Wanted, but not running (a fork's child): the next slow path starts it.
const WANTED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OFF);

/// Starts the background decay thread, once; true if it runs (now or already).
pub fn start_background() -> bool {
    crate::first_use::ensure();
    match STATE.swap(RUNNING, Ordering::AcqRel) {
        RUNNING => true,
        _ => {
            let started = os::spawn_detached(run);
            if !started {
                STATE.store(OFF, Ordering::Release);
            }
            started
        }
    }
}

/// Whether the background thread runs.
pub fn background_running() -> bool {
    STATE.load(Ordering::Acquire) == RUNNING
}

/// From a slow path: restarts the thread in a fork's child that wanted it.
#[inline]
pub(crate) fn restart_if_wanted() {
    if STATE.load(Ordering::Relaxed) == WANTED {
        start_background();
    }
}

/// In a fork's child (from the atfork handler): the thread did not come along.
pub(crate) fn forked() {
    let _ = STATE.compare_exchange(RUNNING, WANTED, Ordering::AcqRel, Ordering::Relaxed);
}

extern "C" fn run() {
    loop {
        let interval = page_heap::decay_ms();
        let nap = if interval == u64::MAX {
            1000
        } else {
            (interval / 2).clamp(1, 1000)
        };
        os::sleep_ms(nap);
        decay::run_due();
    }
}

/// At load time (before `main`), after the C library is ready: starts the thread
/// when the environment asks for it.
extern "C" fn on_load() {
    if config::background_wanted() {
        start_background();
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
