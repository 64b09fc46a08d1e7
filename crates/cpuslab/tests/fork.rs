//! fork while other threads allocate: with lock_lower_tiers()/unlock_lower_tiers() around
//! fork (as pthread_atfork handlers will do), the child can allocate and free
//! through every lower tier.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::Rng;
use cpuslab::internals::{
    alloc_batch, alloc_large, class_of, free_batch, free_large, lock_lower_tiers,
    unlock_lower_tiers, Class, NUM_CLASSES,
};

fn churn(rng: &mut Rng) {
    let class = Class::from_index(rng.below(NUM_CLASSES)).unwrap();
    let mut objs = vec![std::ptr::null_mut(); class.batch_size()];
    assert_eq!(alloc_batch(class, &mut objs), objs.len());
    for &p in &objs {
        // SAFETY: fresh object of class.size() bytes.
        unsafe { p.write_bytes(1, class.size()) };
    }
    // SAFETY: given up.
    unsafe { free_batch(class, &objs) };
    let p = alloc_large(300_000 + rng.below(1 << 20), 16);
    assert!(!p.is_null());
    // SAFETY: live large object, given up.
    unsafe { free_large(p) };
}

#[test]
fn fork_while_allocating_child_can_allocate() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut rng = Rng::new(t + 7);
                while !stop.load(Ordering::Relaxed) {
                    churn(&mut rng);
                }
            })
        })
        .collect();
    for round in 0..20 {
        lock_lower_tiers();
        // SAFETY: fork in a multi-threaded process; the child only calls
        // async-signal-safe code and our allocator (whose locks it holds).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        // SAFETY: this thread took the locks (in the child: as the parent's
        // forking thread).
        unsafe { unlock_lower_tiers() };
        if pid == 0 {
            let ok = std::panic::catch_unwind(|| {
                let mut rng = Rng::new(round);
                for _ in 0..50 {
                    churn(&mut rng);
                }
                cpuslab::trim();
                let class = class_of(100, 16).unwrap();
                let mut one = [std::ptr::null_mut(); 1];
                alloc_batch(class, &mut one) == 1
            })
            .unwrap_or(false);
            // SAFETY: leaving the child without running destructors or the
            // test harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed: {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}
