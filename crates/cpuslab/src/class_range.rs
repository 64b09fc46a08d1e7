//! Class ranges: address space set aside per size class, so that C `free`
//! learns a small object's class, and checks it, from its address with one
//! load.
//!
//! Range `c` lies in the [`RANGE_BYTES`] at a fixed address, `WINDOW + c *
//! RANGE_BYTES`, from `c * STAGGER` on. Nothing is mapped ahead: each class's
//! page heap (`page_heap`) grows its range from the start, a chunk at a time,
//! mapped exactly there, so every span of that class lies in its range, the
//! mapped part of a range is one prefix (`Place::usable`), and the address
//! space a process uses is what it maps, as with any other chunk
//! (`RLIMIT_AS` and overcommit apply as before).
//!
//! Every page of a range has a *mark*, a `u16`: 0, or, while a small-object
//! span holds the page, the page's index in its span plus one (`mark`,
//! `clear`). The marks lie after the ranges, in a column per class (staggered
//! like the ranges), mapped with the chunks they describe.
//!
//! `object_class` then answers C `free` from one line of per-class data (a
//! `Place`, found by a shift of the address): a subtraction and a compare with
//! the prefix, one load (the page's mark: live, and where its span starts)
//! and one multiply and compare (`ObjectCheck`). The page map still registers
//! every span and answers every other question.
//!
//! Why: a `free` that walked the page map (root, leaf, span record) made the
//! per-CPU push wait for the walk's dependent loads
//! (docs/benchmarks-preload.md, "Why random sizes cost the C pair").
//!
//! When a chunk cannot be mapped at its place (something else is there: the
//! kernel never puts its own mappings this low unless the address space is
//! crowded; another copy of the allocator in the process), a class has used
//! its whole range, or the OS pages are not 4 KiB, spans come from the shared
//! page heap as before, and `free` finds them through the page map.

use core::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::size_class::{Class, ObjectCheck, NUM_CLASSES};
use crate::span::Span;

/// Where range 0 starts: 48 TiB, below where Linux loads programs (PIE
/// binaries near 85 TiB) and places mappings (down from near 128 TiB).
const WINDOW: usize = 0x3000_0000_0000;
/// log2 of one class's range: 16 GiB of spans per class.
pub const RANGE_SHIFT: u32 = 34;
/// Bytes of one class's range.
pub const RANGE_BYTES: usize = 1 << RANGE_SHIFT;
/// Bytes of every range together (1.5 TiB of the 128 TiB user address space).
const ALL_BYTES: usize = NUM_CLASSES << RANGE_SHIFT;
/// How far each range starts after the previous one's place: aligned alike,
/// the first pages of every class would share one set of the TLB, and a
/// working set of many classes thrashed it (`threads 30 1`: 13.4 -> 20 ns
/// per step). An odd number of pages spreads them over every set.
const STAGGER: usize = 9 * PAGE_SIZE;
const MARK_BYTES: usize = core::mem::size_of::<u16>();
/// Where the columns of marks start (one per class, staggered like the
/// ranges, so that every class's first marks do not share a TLB set either),
/// and the room of one column (the marks of every page of a range).
const COLUMNS: usize = WINDOW + ALL_BYTES;
const COLUMN_ROOM: usize = (RANGE_BYTES >> PAGE_SHIFT) * MARK_BYTES + STAGGER;

const _: () = assert!(NUM_CLASSES * STAGGER < RANGE_BYTES / 8);
const _: () = assert!(WINDOW.is_multiple_of(RANGE_BYTES));
const _: () = assert!(COLUMNS + NUM_CLASSES * COLUMN_ROOM <= 1 << 47);

/// What `free` needs of a class from an address in its range: where the
/// range and its column of marks start, its usable prefix (the bytes from
/// the start that are mapped and have their marks; written under the class's
/// page-heap lock), and its object check. In one cache line, found with one
/// index.
#[repr(C, align(64))]
struct Place {
    start: usize,
    usable: AtomicUsize,
    marks: usize,
    check: ObjectCheck,
}

/// Every class's place, by class index.
static PLACES: [Place; NUM_CLASSES] = {
    let mut places = [const {
        Place {
            start: 0,
            usable: AtomicUsize::new(0),
            marks: 0,
            check: ObjectCheck::NOTHING,
        }
    }; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        if let Some(class) = Class::from_index(i) {
            places[i].start = range_start(class);
            places[i].marks = column(class);
            places[i].check = class.object_check();
        }
        i += 1;
    }
    places
};

/// `class`'s usable prefix, in bytes.
fn usable(class: Class) -> &'static AtomicUsize {
    &PLACES[class.index()].usable
}

/// Per class: bytes of its column mapped (under the class's page-heap lock;
/// marks are never unmapped, so a reader that saw a larger usable prefix
/// still reads mapped marks).
static COLUMN_MAPPED: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// The start of `class`'s range.
pub const fn range_start(class: Class) -> usize {
    WINDOW + (class.index() << RANGE_SHIFT) + class.index() * STAGGER
}

/// Bytes of `class`'s range (what its place leaves after the stagger).
const fn range_bytes(class: Class) -> usize {
    RANGE_BYTES - class.index() * STAGGER
}

/// Where `class`'s column of marks starts.
const fn column(class: Class) -> usize {
    COLUMNS + class.index() * COLUMN_ROOM
}

/// Whether `addr` lies where the class ranges are (mapped by us or not).
#[inline]
pub fn in_window(addr: usize) -> bool {
    addr.wrapping_sub(WINDOW) < ALL_BYTES
}

/// Where an address lies in a class range's mapped prefix: the class, the
/// class's `Place`, and how far into the range.
struct Located {
    class: Class,
    place: &'static Place,
    in_range: usize,
}

impl Located {
    /// The mark of the page at `in_range + offset`.
    ///
    /// # Safety
    /// That page lies in the range's mapped prefix (or did: marks stay mapped).
    #[inline(always)]
    unsafe fn mark(&self, offset: usize) -> &'static AtomicU16 {
        let at = self.place.marks + ((self.in_range + offset) >> PAGE_SHIFT) * MARK_BYTES;
        // SAFETY: mapped (caller), zero until written, aligned, never unmapped.
        unsafe { &*(at as *const AtomicU16) }
    }
}

/// Where `addr` lies, if in a class range's mapped prefix.
#[inline(always)]
fn locate(addr: usize) -> Option<Located> {
    // The window starts at a multiple of the range size: the index is the
    // address's high bits less a constant, which folds into the table's
    // address.
    let index = (addr >> RANGE_SHIFT).wrapping_sub(WINDOW >> RANGE_SHIFT);
    let place = PLACES.get(index)?;
    let in_range = addr.wrapping_sub(place.start);
    if in_range >= place.usable.load(Ordering::Acquire) {
        return None;
    }
    Some(Located {
        class: Class::from_index(index)?,
        place,
        in_range,
    })
}

/// The class whose range holds `addr` in its mapped prefix, if any. Says
/// nothing about whether an object starts there.
#[inline(always)]
pub fn class_at(addr: usize) -> Option<Class> {
    locate(addr).map(|at| at.class)
}

/// The class of the object starting at `addr`, if `addr` is the start of an
/// object of a span in a class range (free objects included: their spans are
/// live); `None` for anything else, including every address outside the
/// ranges. Safe on any address: reads only mapped marks.
#[inline(always)]
pub fn object_class(addr: usize) -> Option<Class> {
    let at = locate(addr)?;
    // SAFETY: `addr` lies in the range's mapped prefix, whose marks are
    // mapped (`locate`'s Acquire pairs with the Release that published it).
    let mark = unsafe { at.mark(0) }.load(Ordering::Relaxed) as usize;
    // The offset from the span's start. A page with no span (mark 0) gives
    // an offset just below 0, wrapped, which `starts_object` refuses: no
    // branch of its own.
    let offset = ((mark << PAGE_SHIFT) | (addr & (PAGE_SIZE - 1))).wrapping_sub(PAGE_SIZE);
    at.place.check.starts_object(offset).then_some(at.class)
}

/// Bytes of `class`'s range mapped from its start (its page heap's to move).
pub fn prefix(class: Class) -> usize {
    usable(class).load(Ordering::Relaxed)
}

/// Maps the next `len` bytes (a page multiple) of `class`'s range, after its
/// mapped prefix, and their marks; returns where they start, or `None` when
/// the range is full, the place is taken or the OS pages are not ours (4 KiB:
/// the stagger would misalign the ranges).
///
/// # Safety
///
/// The class's page-heap lock is held (it orders the prefix's moves).
pub unsafe fn grow(class: Class, len: usize) -> Option<usize> {
    // SAFETY: forwarded contract; the prefix is the range's.
    unsafe { grow_after(class, prefix(class), len) }
}

/// [`grow`] after `used` bytes of the range.
///
/// # Safety
/// As for `grow`, and `used` is the range's mapped prefix.
unsafe fn grow_after(class: Class, used: usize, len: usize) -> Option<usize> {
    if os::page_size() != PAGE_SIZE {
        return None;
    }
    let end = used
        .checked_add(len)
        .filter(|&end| end <= range_bytes(class))?;
    if !map_column(class, end) {
        return None;
    }
    let start = range_start(class) + used;
    if !os::map_at(start, len) {
        return None;
    }
    usable(class).store(end, Ordering::Release);
    Some(start)
}

/// Maps `class`'s column far enough for a prefix of `end` bytes (the class's
/// page-heap lock is held).
fn map_column(class: Class, end: usize) -> bool {
    let Some(mapped) = COLUMN_MAPPED.get(class.index()) else {
        return false;
    };
    let pages = end.div_ceil(PAGE_SIZE);
    let from = mapped.load(Ordering::Relaxed);
    let needed = (pages * MARK_BYTES).next_multiple_of(PAGE_SIZE);
    if needed <= from {
        return true;
    }
    if !os::map_at(column(class) + from, needed - from) {
        return false;
    }
    mapped.store(needed, Ordering::Relaxed);
    true
}

/// Bytes mapped for marks (statistics: metadata).
pub fn marks_bytes() -> usize {
    COLUMN_MAPPED
        .iter()
        .map(|column| column.load(Ordering::Relaxed))
        .sum()
}

/// Gives back the end of `class`'s mapped prefix, from `keep` bytes on: it is
/// no longer in the range for `class_at`, then unmapped.
///
/// # Safety
///
/// The class's page-heap lock is held, `keep` is page aligned and below the
/// prefix, and nothing lives in `[keep, prefix)` (a free run).
pub unsafe fn shrink(class: Class, keep: usize) -> bool {
    let usable = usable(class);
    let end = usable.load(Ordering::Relaxed);
    if keep >= end || !os::os_page_aligned(keep) {
        return false;
    }
    usable.store(keep, Ordering::Release);
    // SAFETY: mapped by `grow` and free (caller). New lookups no longer reach
    // it; one that read the old prefix reads only marks, which stay mapped,
    // and the shared heap never merges with a run in the window.
    let unmapped = unsafe { os::unmap((range_start(class) + keep) as *mut u8, end - keep) };
    if !unmapped {
        usable.store(end, Ordering::Release);
    }
    unmapped
}

/// Marks the pages of `span`, a small-object span in a class range, as held
/// by it: `object_class` accepts its objects from now on.
pub fn mark(span: &Span) {
    set_marks(span, |page| (page + 1) as u16);
}

/// Clears the marks of `span` (given back to its page heap):
/// `object_class` rejects its addresses from now on.
pub fn clear(span: &Span) {
    set_marks(span, |_| 0);
}

fn set_marks(span: &Span, value: impl Fn(usize) -> u16) {
    let Some(at) = locate(span.start()) else {
        return;
    };
    for page in 0..span.pages() {
        // SAFETY: the span lies in the mapped prefix of its range (it came
        // from there and is not given back yet), whose marks are mapped.
        unsafe { at.mark(page << PAGE_SHIFT) }.store(value(page), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mapped_prefixes_of_ranges_have_a_class() {
        let _serial = crate::test_serial();
        let class = crate::size_class::class_of(48, 16).unwrap();
        let span = crate::page_heap::alloc_class_span(class).unwrap();
        assert_eq!(
            class_at(span.start()),
            Some(class),
            "a class span in its range"
        );
        let start = range_start(class);
        assert_eq!(class_at(start), Some(class));
        let prefix = prefix(class);
        assert_eq!(class_at(start + prefix - 1), Some(class));
        assert_eq!(class_at(start + prefix), None, "past the mapped prefix");
        assert_eq!(class_at(start - 1), None, "before the range's stagger");
        assert_ne!(
            class_at(start + range_bytes(class)),
            Some(class),
            "the next range"
        );
        for addr in [0, 16, WINDOW - 1, COLUMNS, usize::MAX - 15] {
            assert_eq!(class_at(addr), None, "{addr:#x}");
            assert_eq!(object_class(addr), None, "{addr:#x}");
        }
        let stack_word = 0u64;
        assert_eq!(class_at(&stack_word as *const u64 as usize), None);
        crate::page_heap::free_span(span);
    }

    #[test]
    fn growth_stays_inside_the_range_and_its_place() {
        let class = Class::from_index(3).unwrap();
        // SAFETY: both are refused before anything is mapped: past the range,
        // and straddling its end.
        unsafe {
            let bytes = range_bytes(class);
            assert_eq!(grow_after(class, bytes, PAGE_SIZE), None);
            assert_eq!(grow_after(class, bytes - PAGE_SIZE, 2 * PAGE_SIZE), None);
        }
        // A place taken by someone else is not mapped over.
        let taken = range_start(class) + range_bytes(class) - 64 * PAGE_SIZE;
        assert!(os::map_at(taken, PAGE_SIZE));
        assert!(!os::map_at(taken, PAGE_SIZE), "NOREPLACE");
        // SAFETY: mapped just above, unused.
        unsafe { os::unmap(taken as *mut u8, PAGE_SIZE) };
    }

    #[test]
    fn object_class_accepts_object_starts_of_marked_spans_only() {
        let _serial = crate::test_serial();
        let class = crate::size_class::class_of(48, 16).unwrap();
        let span = crate::page_heap::alloc_class_span(class).unwrap();
        span.init_small(class);
        let last = span.start() + (class.objects_per_span() - 1) * class.size();
        assert_eq!(object_class(span.start()), None, "not marked yet");
        mark(span);
        assert_eq!(object_class(span.start()), Some(class));
        assert_eq!(object_class(last), Some(class), "the span's last object");
        assert_eq!(object_class(span.start() + 16), None, "interior");
        assert_eq!(
            object_class(last + class.size()),
            None,
            "past the last object"
        );
        let object_on_page = span.start() + PAGE_SIZE.div_ceil(class.size()) * class.size();
        assert_eq!(
            object_class(object_on_page),
            Some(class),
            "a later page's object"
        );
        clear(span);
        assert_eq!(object_class(span.start()), None, "cleared");
        crate::page_heap::free_span(span);
    }
}
