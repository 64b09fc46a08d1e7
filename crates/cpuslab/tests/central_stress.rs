//! Many threads (more than CPUs) hammer the span tier with batches of random
//! classes, handing objects to each other; every object must be distinct and
//! intact, and everything must go back to the page heap at the end.

mod common;

use std::sync::mpsc;
use std::thread;

use common::{check_stamp, stamp, stats, Rng};
use cpuslab::internals::{alloc_batch, free_batch, lookup, Class, Owner, NUM_CLASSES};

const THREADS: usize = 8;
const ROUNDS: usize = 20_000;
/// Classes above this index are used less often (they are big).
const CHEAP_CLASSES: usize = 64;

/// One batch in flight: objects of a class with the tag stamped into them.
struct Batch {
    class: Class,
    tag: u64,
    objects: Vec<usize>,
}

fn pick_class(rng: &mut Rng) -> Class {
    let index = if rng.below(8) == 0 {
        rng.below(NUM_CLASSES)
    } else {
        rng.below(CHEAP_CLASSES)
    };
    Class::from_index(index).unwrap()
}

fn verify_and_free(batch: Batch) {
    let size = batch.class.size();
    for &p in &batch.objects {
        // SAFETY: we own the object (it was handed to us).
        let intact = unsafe { check_stamp(p as *const u8, size, batch.tag) };
        assert!(
            intact,
            "object {p:#x} of class {size} was overwritten: handed out twice?"
        );
        assert_eq!(lookup(p as *const u8), Some(Owner::Small(batch.class)));
    }
    let ptrs: Vec<*mut u8> = batch.objects.iter().map(|&p| p as *mut u8).collect();
    // SAFETY: the objects are given up.
    unsafe { free_batch(batch.class, &ptrs) };
}

#[test]
fn threads_hammer_batches_and_everything_returns() {
    let before = stats();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Batch>()).unzip();
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(t, inbox)| {
            // Each thread sends to the next one: cross-thread frees.
            let outbox = senders[(t + 1) % THREADS].clone();
            thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let mut held: Vec<Batch> = Vec::new();
                for round in 0..ROUNDS {
                    let class = pick_class(&mut rng);
                    let want = 1 + rng.below(class.batch_size() * 2);
                    let mut out = vec![std::ptr::null_mut(); want];
                    assert_eq!(alloc_batch(class, &mut out), want, "out of memory?");
                    let tag = ((t as u64) << 48) | round as u64;
                    for &p in &out {
                        assert_eq!(
                            p as usize % (class.size() & class.size().wrapping_neg()).min(4096),
                            0
                        );
                        // SAFETY: a fresh object of class.size() bytes.
                        unsafe { stamp(p, class.size(), tag) };
                    }
                    let batch = Batch {
                        class,
                        tag,
                        objects: out.iter().map(|&p| p as usize).collect(),
                    };
                    match rng.below(4) {
                        0 => drop(outbox.send(batch)),
                        1 => verify_and_free(batch),
                        _ => held.push(batch),
                    }
                    if held.len() > 16 {
                        let i = rng.below(held.len());
                        verify_and_free(held.swap_remove(i));
                    }
                    while let Ok(b) = inbox.try_recv() {
                        if rng.below(2) == 0 {
                            verify_and_free(b);
                        } else {
                            held.push(b);
                        }
                    }
                    if round % 256 == 0 {
                        thread::yield_now();
                    }
                }
                drop(outbox);
                (held, inbox)
            })
        })
        .collect();
    drop(senders);
    let leftovers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (held, inbox) in leftovers {
        held.into_iter().for_each(verify_and_free);
        inbox.try_iter().for_each(verify_and_free);
    }
    let after = stats();
    for (i, (a, b)) in after.classes.iter().zip(before.classes.iter()).enumerate() {
        assert_eq!(a.objects_in_use, b.objects_in_use, "class {i}");
        assert_eq!(a.spans, b.spans, "class {i}: spans not returned");
        assert_eq!(a.invalid_frees, b.invalid_frees, "class {i}");
    }
    assert_eq!(after.page_heap.in_use, before.page_heap.in_use);
}
