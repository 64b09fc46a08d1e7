//! Single-threaded semantics of every operation, in whatever mode this process runs
//! (`.ci/run` runs this file in all three).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use rseq_core::{Index, ListHead, ListNode, Mode, OpError, PerCpu, Stack, StackParts};

#[path = "support/affinity.rs"]
mod affinity;
use affinity::pin_to_first_allowed_cpu;

/// Owns the memory of a region of `possible_cpus()` slots of T (zeroed).
struct Region<T> {
    slots: Vec<T>,
}

impl<T: Default> Region<T> {
    fn new() -> Self {
        let n = rseq_core::possible_cpus() as usize;
        Region {
            slots: (0..n).map(|_| T::default()).collect(),
        }
    }

    fn view(&mut self, index: Index) -> PerCpu<T> {
        let shift = std::mem::size_of::<T>()
            .next_power_of_two()
            .trailing_zeros();
        assert_eq!(
            1 << shift,
            std::mem::size_of::<T>(),
            "test types have power-of-two sizes"
        );
        // SAFETY: the Vec holds len valid slots, size_of::<T>() apart, for the test.
        unsafe {
            PerCpu::new(
                NonNull::new(self.slots.as_mut_ptr()).unwrap(),
                shift,
                self.slots.len() as u32,
                index,
            )
        }
    }
}

/// Pins the calling thread to one CPU so that "this CPU's slot" stays the same.
/// Set (to anything) to run these tests with rseq off: the process's first call
/// turns it off with `rseq_core::disable_rseq()` (rseq-core reads no environment).
const NO_RSEQ: &str = "RSEQ_CORE_TEST_NO_RSEQ";

/// Every test's first call: applies [`NO_RSEQ`] before any operation.
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os(NO_RSEQ).is_some() {
            assert!(rseq_core::disable_rseq());
        }
    });
}

fn install(stack: &PerCpu<Stack>, index: u32, slots: &mut [*mut u8]) {
    stack
        .with_stopped(index, |parts: &mut StackParts| {
            parts.slots = slots.as_mut_ptr();
            parts.capacity = slots.len() as u32;
            parts.top = 0;
        })
        .unwrap();
}

/// Whether the single attempts (`try_pop`, `try_push`) run their section in
/// this process: not in fallback mode (they never take a lock), nor, built
/// for a shared object, in own mode (a thread-local lookup there is a call).
fn single_attempt_runs_a_section() -> bool {
    match rseq_core::mode() {
        Mode::Glibc => true,
        Mode::Own => !cfg!(feature = "shared-object"),
        Mode::Fallback => false,
    }
}

fn item(n: usize) -> *mut u8 {
    (n * 16) as *mut u8
}

#[test]
fn mode_matches_the_environment() {
    setup();
    let expected = if std::env::var_os(NO_RSEQ).is_some() {
        Mode::Fallback
    } else if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.pthread.rseq=0")) {
        Mode::Own
    } else {
        Mode::Glibc
    };
    assert_eq!(rseq_core::mode(), expected);
    println!(
        "mode {:?}, mm_cid available: {}",
        rseq_core::mode(),
        rseq_core::mm_cid_available()
    );
}

#[test]
fn current_cpu_agrees_with_sched_getcpu_when_pinned() {
    setup();
    let cpu = pin_to_first_allowed_cpu();
    assert_eq!(rseq_core::current_cpu(), cpu);
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::sched_getcpu() } as u32, cpu);
    assert!(cpu < rseq_core::possible_cpus());
    if let Some(cid) = rseq_core::mm_cid() {
        assert!(cid < rseq_core::possible_cpus());
    }
}

#[test]
fn an_inert_stack_is_empty_and_full() {
    setup();
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::Cpu);
    assert_eq!(stack.pop(), Err(OpError::Empty));
    assert_eq!(stack.push(item(1)), Err(OpError::Full));
    assert_eq!(
        stack.pop_batch(&mut [std::ptr::null_mut(); 4]),
        Err(OpError::Empty)
    );
    assert_eq!(stack.push_batch(&[item(1)]), Err(OpError::Full));
}

#[test]
fn stack_is_lifo_and_bounded() {
    setup();
    for index in [Index::Cpu, Index::ConcurrencyId] {
        let cpu = pin_to_first_allowed_cpu();
        let mut memory = Region::<Stack>::new();
        let stack = memory.view(index);
        let mut slots = vec![std::ptr::null_mut(); 4];
        let here = index.current();
        install(&stack, here, &mut slots);
        assert_eq!(index.current(), here, "pinned to cpu {cpu}");
        for n in 1..=4 {
            stack.push(item(n)).unwrap();
        }
        assert_eq!(stack.push(item(5)), Err(OpError::Full));
        assert_eq!(stack.pop(), Ok(item(4)));
        assert_eq!(
            stack.push(item(3)),
            Err(OpError::Duplicate),
            "the top item again"
        );
        assert!(!stack.try_push(item(3)));
        stack.push(item(4)).unwrap();
        assert_eq!(stack.slot(here).unwrap().len(), 4);
        for n in (1..=4).rev() {
            assert_eq!(stack.pop(), Ok(item(n)));
        }
        assert_eq!(stack.pop(), Err(OpError::Empty));
    }
}

#[test]
fn the_last_pop_reads_nothing_below_the_slot_array() {
    setup();
    pin_to_first_allowed_cpu();
    // A slot array at the start of a page whose predecessor is inaccessible: a
    // pop that prefetched "the item below" the last one would read there.
    let page = 4096;
    // SAFETY: a fresh private mapping of two pages, nobody else's.
    let pages = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(pages, libc::MAP_FAILED);
    // SAFETY: the first of those two pages.
    assert_eq!(unsafe { libc::mprotect(pages, page, libc::PROT_NONE) }, 0);
    // SAFETY: the start of the second page, readable and writable.
    let slots = unsafe {
        std::slice::from_raw_parts_mut(pages.cast::<u8>().add(page).cast::<*mut u8>(), 4)
    };
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::Cpu);
    install(&stack, Index::Cpu.current(), slots);
    for n in 1..=2 {
        stack.push(item(n)).unwrap();
    }
    // The first pop prefetches item 1 (any value: a hint never faults), the
    // second takes the last item and must not look below it. A fault inside
    // the section would not show at once: the kernel aborts the section to
    // deliver the signal, and std's SIGSEGV handler, finding no stack
    // overflow, restores the default action and returns to the abort path,
    // so that attempt returns None. Hence the retries: the next fault kills
    // the process. (Where the single attempt never runs the section, `pop`
    // does the work.)
    let inline = single_attempt_runs_a_section();
    let pop = || {
        if inline {
            (0..1000).find_map(|_| stack.try_pop_and_prefetch())
        } else {
            stack.pop().ok()
        }
    };
    assert_eq!(pop(), Some(item(2)));
    assert_eq!(pop(), Some(item(1)));
    assert_eq!(stack.pop(), Err(OpError::Empty));
    // SAFETY: the mapping made above; the stack that used it is not used again.
    assert_eq!(unsafe { libc::munmap(pages, 2 * page) }, 0);
}

#[test]
fn install_gives_an_inert_stack_its_slots_once() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::Cpu);
    let here = Index::Cpu.current();
    let mut slots = vec![std::ptr::null_mut(); 2];
    let mut other = vec![std::ptr::null_mut(); 2];
    // SAFETY: both slot arrays outlive the region's use in this test.
    unsafe {
        assert!(stack.install(here, slots.as_mut_ptr(), 2));
        assert!(
            !stack.install(here, other.as_mut_ptr(), 2),
            "only an inert stack"
        );
        assert!(!stack.install(u32::MAX, other.as_mut_ptr(), 2));
    }
    stack.push(item(1)).unwrap();
    assert_eq!(slots[0], item(1));
    assert_eq!(stack.pop(), Ok(item(1)));
}

#[test]
fn a_raised_capacity_admits_more_without_a_stop() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::Cpu);
    let here = Index::Cpu.current();
    let mut slots = vec![std::ptr::null_mut(); 4];
    // SAFETY: the slot array (4 pointers) outlives the region's use in this test.
    unsafe {
        assert_eq!(
            stack.raise_capacity(here, |_| 4),
            None,
            "an inert stack has no slots to grow into"
        );
        assert!(stack.install(here, slots.as_mut_ptr(), 2));
    }
    stack.push(item(1)).unwrap();
    stack.push(item(2)).unwrap();
    assert_eq!(stack.push(item(3)), Err(OpError::Full));
    // SAFETY: as above.
    unsafe {
        assert_eq!(stack.raise_capacity(here, |now| now + 2), Some(4));
        assert_eq!(stack.raise_capacity(here, |_| 3), None, "raise only");
        assert_eq!(stack.raise_capacity(u32::MAX, |_| 8), None);
    }
    assert_eq!(stack.slot(here).unwrap().capacity(), 4);
    stack.push(item(3)).unwrap();
    stack.push(item(4)).unwrap();
    assert_eq!(stack.push(item(5)), Err(OpError::Full));
    for n in (1..=4).rev() {
        assert_eq!(stack.pop(), Ok(item(n)));
    }
}

#[test]
fn projection_views_a_field_of_every_slot() {
    setup();
    pin_to_first_allowed_cpu();
    #[derive(Default)]
    #[repr(C)]
    struct Block {
        first: Stack,
        second: Stack,
    }
    let mut memory = Region::<Block>::new();
    let blocks = memory.view(Index::Cpu);
    // SAFETY: `second` sits at offset 16 of every 32-byte block.
    let second: PerCpu<Stack> = unsafe { blocks.project(16) };
    let here = Index::Cpu.current();
    let mut slots = vec![std::ptr::null_mut(); 1];
    // SAFETY: the slots outlive the test's use of the stack.
    assert!(unsafe { second.install(here, slots.as_mut_ptr(), 1) });
    second.push(item(9)).unwrap();
    let block = blocks.slot(here).unwrap();
    assert_eq!((block.first.len(), block.second.len()), (0, 1));
}

#[test]
fn single_attempts_succeed_where_the_full_operations_would() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::ConcurrencyId);
    assert_eq!(stack.try_pop(), None, "inert");
    assert!(!stack.try_push(item(1)), "inert");
    let mut slots = vec![std::ptr::null_mut(); 1];
    install(&stack, Index::ConcurrencyId.current(), &mut slots);
    // Where the single attempt declines, the full operations do the work.
    let inline = single_attempt_runs_a_section();
    assert_eq!(stack.try_push(item(1)), inline);
    if !inline {
        stack.push(item(1)).unwrap();
    }
    assert!(!stack.try_push(item(2)), "full");
    assert_eq!(stack.try_pop(), inline.then_some(item(1)));
    if !inline {
        assert_eq!(stack.pop(), Ok(item(1)));
    }
    assert_eq!(stack.try_pop(), None, "empty");
}

#[test]
fn batches_move_as_many_as_fit_with_one_commit() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::Cpu);
    let mut slots = vec![std::ptr::null_mut(); 6];
    install(&stack, Index::Cpu.current(), &mut slots);
    let items: Vec<_> = (1..=8).map(item).collect();
    assert_eq!(stack.push_batch(&items), Ok(6));
    assert_eq!(stack.push_batch(&items[6..]), Err(OpError::Full));
    let mut out = [std::ptr::null_mut(); 4];
    assert_eq!(stack.pop_batch(&mut out), Ok(4));
    assert_eq!(out, [item(3), item(4), item(5), item(6)], "bottom first");
    let mut out = [std::ptr::null_mut(); 4];
    assert_eq!(stack.pop_batch(&mut out), Ok(2));
    assert_eq!(&out[..2], &[item(1), item(2)]);
    assert_eq!(stack.pop_batch(&mut out), Err(OpError::Empty));
    assert_eq!(stack.pop_batch(&mut []), Ok(0));
    assert_eq!(stack.push_batch(&[]), Ok(0));
}

#[test]
fn a_stopped_stack_refuses_and_resumes_with_its_new_contents() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::Cpu);
    let mut slots = vec![std::ptr::null_mut(); 8];
    let here = Index::Cpu.current();
    install(&stack, here, &mut slots);
    stack.push_batch(&[item(1), item(2), item(3)]).unwrap();
    let drained = stack
        .with_stopped(here, |parts| {
            // SAFETY: the stack is stopped; its items are slots[..top].
            let items =
                unsafe { std::slice::from_raw_parts(parts.slots, parts.top as usize) }.to_vec();
            parts.top = 1; // keep only the bottom item
            items
        })
        .unwrap();
    assert_eq!(drained, vec![item(1), item(2), item(3)]);
    assert_eq!(stack.pop(), Ok(item(1)));
    assert_eq!(stack.pop(), Err(OpError::Empty));
    assert_eq!(
        stack.with_stopped(u32::MAX, |_| ()),
        Err(rseq_core::FenceError::NoSuchSlot)
    );
}

#[test]
fn list_push_pop_and_take_all() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<ListHead>::new();
    let list = memory.view(Index::ConcurrencyId);
    let mut nodes: Vec<ListNode> = (0..3).map(|_| ListNode::new()).collect();
    let addresses: Vec<_> = nodes.iter_mut().map(NonNull::from).collect();
    assert_eq!(list.pop(), Err(OpError::Empty));
    for &node in &addresses {
        // SAFETY: the nodes live in `nodes` until the end of the test, on no list.
        unsafe { list.push(node) }.unwrap();
    }
    assert_eq!(list.pop(), Ok(addresses[2]));
    let here = Index::ConcurrencyId.current();
    // SAFETY: single-threaded test: nothing else touches the list.
    let chain = unsafe { list.slot(here).unwrap().take_all() }.unwrap();
    assert_eq!(chain, addresses[1]);
    // SAFETY: the chain's nodes are alive in `nodes`.
    assert_eq!(unsafe { chain.as_ref() }.next(), Some(addresses[0]));
    assert_eq!(list.pop(), Err(OpError::Empty));
}

#[test]
fn words_compare_and_store_and_add() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<AtomicUsize>::new();
    let words = memory.view(Index::Cpu);
    let here = Index::Cpu.current();
    assert_eq!(words.add(5), Ok(0));
    assert_eq!(words.add(2), Ok(5));
    assert_eq!(words.compare_and_store(3, 9), Err(OpError::Mismatch(7)));
    assert_eq!(words.compare_and_store(7, 9), Ok(()));
    assert_eq!(words.slot(here).unwrap().load(Ordering::Relaxed), 9);
    assert_eq!(words.add(usize::MAX), Ok(9), "wrapping add of -1");
    assert_eq!(words.slot(here).unwrap().load(Ordering::Relaxed), 8);
}

#[test]
fn the_fallback_engine_works_beside_rseq_on_its_own_region() {
    setup();
    pin_to_first_allowed_cpu();
    let mut memory = Region::<Stack>::new();
    let stack = memory.view(Index::Cpu);
    let mut slots = vec![std::ptr::null_mut(); 2];
    install(&stack, Index::Cpu.current(), &mut slots);
    // SAFETY: this region is used only through the fallback functions below.
    unsafe {
        stack.push_locked(item(7)).unwrap();
        assert_eq!(stack.pop_locked(), Ok(item(7)));
        assert_eq!(stack.pop_locked(), Err(OpError::Empty));
    }
}
