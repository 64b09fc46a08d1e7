//! Class ranges (class_range.rs): every span of a class comes from its range
//! while the range has room, C `free` takes the class from the address there,
//! a class whose range is taken is served from the shared page heap, and
//! `trim` gives a range's free end back. A binary of its own: the classes it
//! uses are untouched by anything else in the process.

use std::alloc::{GlobalAlloc, Layout};

use cpuslab::internals::{
    class_of, class_range_first_slot, class_range_object, class_range_of, class_range_start,
    lookup, Class, Owner, PAGE_SIZE,
};
use cpuslab::CpuSlab;

/// Serializes the tests: `trim` in one must not race another's allocations.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn allocate(size: usize, count: usize) -> Vec<*mut u8> {
    let layout = Layout::from_size_align(size, 16).unwrap();
    (0..count)
        .map(|i| {
            // SAFETY: a valid layout of non-zero size.
            let p = unsafe { CpuSlab.alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: `size` bytes are ours.
            unsafe { p.write_bytes(i as u8, size) };
            p
        })
        .collect()
}

fn free_by_address(blocks: Vec<*mut u8>) {
    for p in blocks {
        // SAFETY: live blocks of ours, freed once.
        unsafe { cpuslab::free(p) };
    }
}

#[test]
fn small_objects_live_in_their_class_range_and_free_by_address() {
    let _one = one_at_a_time();
    for size in [16, 80, 496, 3000, 40_000] {
        let class = class_of(size, 16).unwrap();
        let start = class_range_start(class);
        let blocks = allocate(size, 200);
        for &p in &blocks {
            let addr = p as usize;
            assert!(
                in_first_slot(class, addr) || addr >= start,
                "{size} B at {p:?}, neither in its first slot nor in its range from {start:#x}"
            );
            assert_eq!(class_range_of(addr), Some(class));
            assert_eq!(class_range_object(addr), Some(class));
            assert_eq!(class_range_object(addr + 8), None, "interior");
            assert_eq!(lookup(p), Some(Owner::Small(class)));
        }
        free_by_address(blocks);
        // Freed by address, pushed onto this CPU's stack: served again.
        free_by_address(allocate(size, 200));
    }
}

#[test]
fn a_class_whose_range_is_taken_is_served_from_the_shared_heap() {
    let _one = one_at_a_time();
    let size = 200 << 10; // a class nothing else in this binary uses
    let class = class_of(size, 16).unwrap();
    let start = class_range_start(class);
    // Someone else's mapping where the range begins, before its first span.
    // SAFETY: NOREPLACE maps only where nothing is mapped.
    let taken = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            PAGE_SIZE,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(taken as usize, start, "the range start was free");
    let blocks = allocate(size, 40);
    for &p in &blocks {
        assert_eq!(
            class_range_of(p as usize),
            None,
            "{p:?} is in the taken range"
        );
        assert_eq!(lookup(p), Some(Owner::Small(class)));
    }
    free_by_address(blocks);
    free_by_address(allocate(size, 40));
    // SAFETY: our mapping from above, which the allocator never touched.
    assert_eq!(unsafe { libc::munmap(taken, PAGE_SIZE) }, 0);
}

#[test]
fn trim_gives_back_the_free_end_of_a_range() {
    let _one = one_at_a_time();
    let size = 6000; // a class nothing else in this binary uses
    let class = class_of(size, 16).unwrap();
    // About 23 MiB (6144-byte objects): a dozen slots of the range, and
    // their start maps, mapped as the range grew.
    let blocks = allocate(size, 4000);
    for &p in &blocks {
        assert_eq!(class_range_object(p as usize), Some(class), "{p:?}");
        assert_eq!(class_range_object(p as usize + 8), None, "{p:?} + 8");
    }
    let last = *blocks.iter().max().unwrap() as usize;
    assert!(
        last - class_range_start(class) > 16 << 20,
        "the blocks should reach well into the range"
    );
    assert_eq!(class_range_of(last), Some(class));
    free_by_address(blocks);
    cpuslab::trim();
    assert_eq!(class_range_object(last), None, "its span went back");
    // Its first slot too, decommitted: the first slots stay one mapping.
    let (first_slot, _) = class_range_first_slot(class).unwrap();
    assert_eq!(class_range_of(first_slot), None, "its first slot went back");
    assert_eq!(
        class_range_of(class_range_start(class)),
        None,
        "its row-0 slot went back"
    );
    assert_eq!(mapping_length(first_slot), first_slots_bytes());
    assert_eq!(
        class_range_of(last),
        None,
        "the range's end is still mapped after everything was freed and trimmed: {}",
        cpuslab::stats()
    );
    // And it grows again from where it stopped, by a small chunk first.
    let again = allocate(size, 1);
    assert_first_chunk(class, again[0] as usize, "after a trim");
    let again: Vec<*mut u8> = again.into_iter().chain(allocate(size, 100)).collect();
    assert!(again
        .iter()
        .all(|&p| class_range_of(p as usize) == Some(class)));
    free_by_address(again);
}

/// This process's mappings: `(start, length)` of each.
fn mappings() -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| line.split_whitespace().next()?.split_once('-'))
        .map(|(start, end)| {
            let start = usize::from_str_radix(start, 16).unwrap();
            (start, usize::from_str_radix(end, 16).unwrap() - start)
        })
        .collect()
}

/// Mappings whose start lies in the class ranges' window or their start map.
fn mappings_in_window() -> usize {
    let window = class_range_start(class_of(16, 16).unwrap());
    mappings()
        .into_iter()
        .filter(|&(start, _)| start >= window && start - window < 1 << 40)
        .count()
}

/// The mapping that holds `addr`: `(start, length)`.
fn mapping_of(addr: usize) -> (usize, usize) {
    mappings()
        .into_iter()
        .find(|&(start, len)| (start..start + len).contains(&addr))
        .unwrap()
}

/// The length of the mapping that holds `addr`.
fn mapping_length(addr: usize) -> usize {
    mapping_of(addr).1
}

/// Bytes of all classes' first slots: 64 KiB each, one mapping.
fn first_slots_bytes() -> usize {
    cpuslab::internals::NUM_CLASSES << 16
}

/// Whether `addr` lies in `class`'s first slot.
fn in_first_slot(class: Class, addr: usize) -> bool {
    class_range_first_slot(class)
        .is_some_and(|(start, bytes)| (start..start + bytes).contains(&addr))
}

/// Asserts that `addr`, an object of `class`, lies in a first chunk: its
/// first slot (64 KiB beside every other class's, in one mapping) if its
/// spans fit in one, else a mapping of the whole spans within 64 KiB (or one
/// span), not 1 MiB. Each page of page tables, and each mapping, costs every
/// fork (docs: "Real programs and forks").
fn assert_first_chunk(class: Class, addr: usize, when: &str) {
    if class_range_first_slot(class).is_some() {
        assert!(
            in_first_slot(class, addr),
            "{addr:#x} {when}: not in its first slot"
        );
        return;
    }
    let len = mapping_length(addr);
    let span = class.span_pages() * PAGE_SIZE;
    assert!(
        len <= (64 << 10) / span * span + span,
        "a first chunk of {len} bytes {when} (spans of {span})"
    );
}

#[test]
fn a_class_that_grows_alone_makes_two_mappings_a_slot_and_no_more_than_its_range() {
    let _one = one_at_a_time();
    let size = 12 << 10; // a class nothing else in this binary uses
    let class = class_of(size, 16).unwrap();
    let before = mappings_in_window();
    // 48 MiB: at most 32 slots of 2 MiB (each holds 1.6 MiB or more after
    // its stagger), each its chunks and its start map.
    let blocks = allocate(size, 4096);
    let made = mappings_in_window() - before;
    assert!(made <= 2 * 32, "{made} mappings for 48 MiB of one class");
    // Past its range (512 MiB of slots) the class is served by the shared
    // heap: its slots, so its mappings, stop growing. (Without the bound a
    // class of 16 GiB would have made 16 384 mappings.) The blocks are not
    // touched: address space, not memory.
    let more: Vec<*mut u8> = (0..(640 << 20) / size)
        .map(|_| {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: a valid layout of non-zero size.
            let p = unsafe { CpuSlab.alloc(layout) };
            assert!(!p.is_null());
            p
        })
        .collect();
    let in_range = more
        .iter()
        .filter(|&&p| class_range_of(p as usize) == Some(class))
        .count();
    assert!(in_range < more.len(), "all 640 MiB in a range of 512");
    assert!(
        in_range > more.len() / 2,
        "{in_range} of {} in the range",
        more.len()
    );
    let made = mappings_in_window() - before;
    assert!(made <= 2 * 256 + 2, "{made} mappings for one class");
    free_by_address(more);
    free_by_address(blocks);
}

#[test]
fn a_class_maps_a_small_first_chunk_and_doubles() {
    let _one = one_at_a_time();
    let size = 5 << 10; // a class nothing else in this binary uses
    let class = class_of(size, 16).unwrap();
    let first = allocate(size, 1);
    assert_eq!(class_range_of(first[0] as usize), Some(class));
    assert_first_chunk(class, first[0] as usize, "at first");
    // Growing past its first slot, the chunks double and join one mapping
    // in the class's slot of row 0.
    let more = allocate(size, (1 << 20) / size);
    let past_first_slot = |p: &&*mut u8| !in_first_slot(class, **p as usize);
    let last = *more.iter().filter(past_first_slot).max().unwrap() as usize;
    let start = class_range_start(class);
    assert!(
        (start..start + (2 << 20)).contains(&last),
        "{last:#x} is not in the class's slot of row 0"
    );
    let grown = mapping_length(last);
    assert!(
        grown >= (1 << 20) - (64 << 10),
        "{grown} bytes mapped for 1 MiB"
    );
    assert!(grown < 3 << 20, "{grown} bytes mapped for 1 MiB");
    free_by_address(more);
    free_by_address(first);
}

#[test]
fn classes_that_stay_small_share_one_mapping_and_few_page_tables() {
    let _one = one_at_a_time();
    // A block of every class whose spans fit in a first slot, but for the
    // sizes the other tests here grow past theirs.
    let others = [80, 496, 3000, 5 << 10, 6000];
    let mut classes: Vec<Class> = (16..=(64 << 10))
        .step_by(16)
        .filter_map(|size| class_of(size, 16))
        .filter(|&class| class.span_pages() * PAGE_SIZE <= 64 << 10)
        .filter(|&class| others.iter().all(|&size| class_of(size, 16) != Some(class)))
        .collect();
    classes.dedup();
    assert!(classes.len() >= 40, "{} classes", classes.len());
    let blocks: Vec<*mut u8> = classes
        .iter()
        .map(|&class| allocate(class.size(), 1)[0])
        .collect();
    for (&class, &p) in classes.iter().zip(&blocks) {
        assert_first_chunk(class, p as usize, "for a class's first block");
    }
    // What a fork copies for them: one mapping, and a page of page tables
    // per 2 MiB that holds one (three for 96 first slots of 64 KiB), where
    // slots of their own took a mapping and a page each.
    let mappings: std::collections::BTreeSet<usize> =
        blocks.iter().map(|&p| mapping_of(p as usize).0).collect();
    let (area, _) = class_range_first_slot(Class::from_index(0).unwrap()).unwrap();
    assert_eq!(
        mappings.iter().copied().collect::<Vec<_>>(),
        [area],
        "the first slots' mapping starts at class 0's"
    );
    assert_eq!(
        mapping_length(area),
        first_slots_bytes(),
        "mapped whole, at once"
    );
    assert_eq!(
        mappings.len(),
        1,
        "{} mappings for {} classes",
        mappings.len(),
        classes.len()
    );
    let tables: std::collections::BTreeSet<usize> =
        blocks.iter().map(|&p| p as usize >> 21).collect();
    assert!(
        tables.len() <= 3,
        "{} page-table pages for {} classes",
        tables.len(),
        classes.len()
    );
    free_by_address(blocks);
}
