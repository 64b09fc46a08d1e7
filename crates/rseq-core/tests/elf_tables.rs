//! Checks the rseq critical-section tables (`__rseq_cs`, `__rseq_cs_ptr_array`,
//! `__rseq_exit_point_array`) that rseq-core's inline asm links into this very
//! test binary: descriptor layout, abort signatures and exit points.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

#[path = "support/elf_tables.rs"]
mod elf_tables;

/// The fewest descriptors this binary must carry once every restartable
/// operation below is linked in.
const MIN_DESCRIPTORS: usize = 8;

/// Calls each restartable operation of `rseq_core` once, so that the code of
/// every critical section, and with it its table entries, is linked in.
fn use_every_section() {
    use rseq_core::{Index, ListHead, ListNode, PerCpu, Stack};
    use std::ptr::NonNull;
    use std::sync::atomic::AtomicUsize;

    let cpus = rseq_core::possible_cpus();
    let mut stacks: Vec<Stack> = (0..cpus).map(|_| Stack::new()).collect();
    let mut lists: Vec<ListHead> = (0..cpus).map(|_| ListHead::new()).collect();
    let mut words: Vec<AtomicUsize> = (0..cpus).map(|_| AtomicUsize::new(0)).collect();
    // SAFETY: each Vec holds `cpus` slots of a power-of-two size, alive until the end.
    let (stack, list, word) = unsafe {
        (
            PerCpu::new(
                NonNull::new(stacks.as_mut_ptr()).unwrap(),
                4,
                cpus,
                Index::Cpu,
            ),
            PerCpu::new(
                NonNull::new(lists.as_mut_ptr()).unwrap(),
                3,
                cpus,
                Index::Cpu,
            ),
            PerCpu::new(
                NonNull::new(words.as_mut_ptr()).unwrap(),
                3,
                cpus,
                Index::Cpu,
            ),
        )
    };
    // The stacks are inert (no slots): every call returns an error, which is fine:
    // the point is that each section's code is linked in and has run once.
    let _ = stack.push(std::ptr::null_mut());
    let _ = stack.pop();
    let _ = stack.push_batch(&[std::ptr::null_mut()]);
    let _ = stack.pop_batch(&mut [std::ptr::null_mut()]);
    let mut node = ListNode::new();
    // SAFETY: the node outlives the list's use and is popped right back.
    let _ = unsafe { list.push(NonNull::from(&mut node)) };
    let _ = list.pop();
    let _ = word.add(1);
    let _ = word.compare_and_store(1, 2);
}

#[test]
fn rseq_tables_of_this_binary_are_consistent() {
    use_every_section();
    let exe = std::env::current_exe().expect("path of the test binary");
    let report = elf_tables::check_rseq_tables(&exe).unwrap_or_else(|e| panic!("{e}"));
    println!("{}: {report:?}", exe.display());
    assert!(
        report.descriptors >= MIN_DESCRIPTORS,
        "only {} rseq descriptors linked in, expected at least {MIN_DESCRIPTORS}: {report:?}",
        report.descriptors
    );
}
