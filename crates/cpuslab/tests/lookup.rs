//! The ownership test: lookup() must say None for anything that is not the
//! start of one of our objects, and never fault.

mod common;

use cpuslab::internals::{
    alloc_batch, alloc_large, class_of, free_batch, free_large, lookup, Class, Owner, NUM_CLASSES,
};

#[test]
fn garbage_pointers_are_not_ours() {
    let local = [0u8; 64];
    let heap = Box::new([0u64; 16]);
    let candidates = [
        std::ptr::null(),
        std::ptr::dangling::<u8>(),
        0xfff as *const u8,
        local.as_ptr(),
        local.as_ptr().wrapping_add(32),
        heap.as_ptr().cast::<u8>(),
        garbage_pointers_are_not_ours as *const u8,
        usize::MAX as *const u8,
        (1usize << 47) as *const u8,
        (1usize << 63) as *const u8,
    ];
    for p in candidates {
        assert_eq!(lookup(p), None, "{p:?}");
    }
}

#[test]
fn interior_and_one_past_the_end_pointers_are_not_objects() {
    for index in (0..NUM_CLASSES).step_by(5) {
        let class = Class::from_index(index).unwrap();
        let n = class.objects_per_span();
        let mut objs = vec![std::ptr::null_mut(); n];
        assert_eq!(alloc_batch(class, &mut objs), n);
        let size = class.size();
        for &p in &objs {
            assert_eq!(lookup(p), Some(Owner::Small(class)));
            for off in [1, 8, size / 2, size - 1] {
                assert_eq!(lookup(p.wrapping_add(off)), None, "class {size} +{off}");
            }
        }
        // SAFETY: the objects are given up.
        unsafe { free_batch(class, &objs) };
    }
}

#[test]
fn large_objects_only_at_their_start() {
    let p = alloc_large(1 << 20, 1 << 16);
    assert!(matches!(lookup(p), Some(Owner::Large { usable_size }) if usable_size == 1 << 20));
    for off in [1usize, 16, 4096, (1 << 20) - 1, 1 << 20] {
        assert_eq!(lookup(p.wrapping_add(off)), None, "+{off}");
    }
    // SAFETY: live large object.
    unsafe { free_large(p) };
    assert_eq!(lookup(p), None);
}

#[test]
fn freed_spans_are_not_ours() {
    // A class big enough that one batch fills whole spans we then free.
    let class = class_of(100_000, 16).unwrap();
    let n = class.objects_per_span();
    let mut objs = vec![std::ptr::null_mut(); n];
    assert_eq!(alloc_batch(class, &mut objs), n);
    let first = objs[0];
    // SAFETY: the objects are given up.
    unsafe { free_batch(class, &objs) };
    // The span went back to the page heap (unless another test reused it).
    match lookup(first) {
        None | Some(Owner::Small(_)) => {}
        Some(other) => panic!("{other:?}"),
    }
}
