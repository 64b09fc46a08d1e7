//! The optional background thread: a process that frees its memory and then goes
//! fully idle (no slow path runs the decay) still gets its caches halved and its
//! idle pages returned, by the thread `CPUSLAB_BACKGROUND=1` starts at load time.
//! A fork's child starts without it, allocates freely, and its first slow path
//! starts a new one; the process exits while the thread sleeps. Off by default.
//! In each rseq mode.

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::time::Duration;

use rseq_core::Mode;
use support::mib;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

fn background(mode: Mode) {
    let scenario = format!("background:{}", support::mode_name(mode));
    let (code, text) = support::run_child(&scenario, mode, &[("CPUSLAB_BACKGROUND", "1")]);
    assert_eq!(code, 0, "the child failed:\n{text}");
    assert!(text.contains("BACKGROUND CLEAN"), "no verdict:\n{text}");
}

#[test]
fn the_background_thread_decays_an_idle_process_in_glibc_mode() {
    background(Mode::Glibc);
}

#[test]
fn the_background_thread_decays_an_idle_process_in_own_registration_mode() {
    background(Mode::Own);
}

#[test]
fn the_background_thread_decays_an_idle_process_in_fallback_mode() {
    background(Mode::Fallback);
}

#[test]
fn the_background_thread_is_off_by_default_and_starts_from_code() {
    let (code, text) = support::run_child("api", Mode::Glibc, &[]);
    assert_eq!(code, 0, "the child failed:\n{text}");
    assert!(text.contains("API CLEAN"), "no verdict:\n{text}");
}

/// Allocates and frees blocks of every small class, so that this CPU's caches
/// fill up; returns the bytes cached on CPUs afterwards.
fn fill_caches() -> usize {
    let layouts: Vec<Layout> = (1..=2048)
        .map(|i| Layout::from_size_align(i * 16, 8).unwrap())
        .collect();
    let mut blocks = Vec::with_capacity(layouts.len() * 8);
    for _ in 0..8 {
        for &layout in &layouts {
            // SAFETY: a non-zero size.
            let p = unsafe { GLOBAL.alloc(layout) };
            assert!(!p.is_null());
            blocks.push((p, layout));
        }
    }
    for (p, layout) in blocks {
        // SAFETY: allocated above with this layout.
        unsafe { GLOBAL.dealloc(p, layout) };
    }
    cpuslab::stats().cpu_cache_bytes
}

#[test]
fn child() {
    let Some(scenario) = support::child_scenario() else {
        return; // not a child: nothing to do
    };
    let mode = match scenario.split_once(':') {
        Some((_, mode)) => support::mode_named(mode),
        None => Mode::Glibc,
    };
    support::assert_mode(mode);
    if scenario == "api" {
        assert!(!cpuslab::background_running(), "on without being asked");
        assert!(cpuslab::start_background());
        assert!(cpuslab::background_running());
        println!("API CLEAN");
        return;
    }
    assert!(
        cpuslab::background_running(),
        "CPUSLAB_BACKGROUND=1 did not start the thread at load time"
    );
    let cached = fill_caches();
    let decays = cpuslab::stats().decays;
    // Idle: this thread makes no allocator call; only the background thread can
    // run the decay.
    std::thread::sleep(Duration::from_millis(3500));
    let stats = cpuslab::stats();
    println!(
        "cached on CPUs {:.2} MiB -> {:.2} MiB after 3.5 s idle; decays {decays} -> {}",
        mib(cached),
        mib(stats.cpu_cache_bytes),
        stats.decays
    );
    println!("{stats}");
    assert!(
        stats.decays >= decays + 2,
        "the background thread ran no decay"
    );
    assert!(
        stats.cpu_cache_bytes * 2 <= cached,
        "the per-CPU caches were not halved: {} -> {}",
        cached,
        stats.cpu_cache_bytes
    );
    // A fork's child has no background thread at first: it allocates all the
    // same, and its first slow path starts a new one.
    // SAFETY: the child only allocates, frees and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let gone = !cpuslab::background_running();
        let refilled = fill_caches();
        let ok = gone && refilled > 0 && cpuslab::background_running();
        // SAFETY: _exit ends the child without running the parent's handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child failed: {status}"
    );
    println!("BACKGROUND CLEAN");
}
