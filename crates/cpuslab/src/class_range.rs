//! Class ranges: address space set aside per size class, so that C `free`
//! learns a small object's class, and checks it, from its address with one
//! load.
//!
//! Range `c` lies in the [`RANGE_BYTES`] at a fixed address, `WINDOW + c *
//! RANGE_BYTES`, from `c * STAGGER` on. Nothing is mapped ahead: each class's
//! page heap (`page_heap`) grows its range from the start, a chunk at a time,
//! mapped exactly there, so every span of that class lies in its range, the
//! mapped part of a range is one prefix (`USABLE`), and the address space a
//! process uses is what it maps, as with any other chunk (`RLIMIT_AS` and
//! overcommit apply as before).
//!
//! Every page of a range has a *mark*, a `u16`: 0, or, while a small-object
//! span holds the page, the page's index in its span plus one (`mark`,
//! `clear`). The marks lie after the ranges, mapped with the chunks they
//! describe: those of each range's first `ROW_PAGES` pages in rows (row `p`
//! holds every class's mark of its page `p`, so a working set of many classes
//! reads one page of marks), the rest in a column per class.
//!
//! `object_class` then answers C `free` with a subtraction and a shift (the
//! class), a compare with the prefix, one load (the page's mark: live, and
//! where its span starts) and the object-boundary arithmetic. The page map
//! still registers every span and answers every other question.
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

use core::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};

use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::size_class::{Class, NUM_CLASSES};
use crate::span::Span;
use crate::sync::Lock;

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
/// Pages of each range whose marks lie in rows.
const ROW_PAGES: usize = 512;
/// Where the rows of marks start, and the bytes of one row (one page of every
/// range) and of all of them (96 KiB, mapped at the first growth).
const ROWS: usize = WINDOW + ALL_BYTES;
const ROW_BYTES: usize = NUM_CLASSES * MARK_BYTES;
const ALL_ROWS_BYTES: usize = ROW_PAGES * ROW_BYTES;
/// Where the columns of marks start (one per class, staggered like the
/// ranges), and the room of one column (the marks of every page of a range).
const COLUMNS: usize = ROWS + ALL_ROWS_BYTES;
const COLUMN_ROOM: usize = (RANGE_BYTES >> PAGE_SHIFT) * MARK_BYTES + STAGGER;

const _: () = assert!(NUM_CLASSES * STAGGER < RANGE_BYTES / 8);
const _: () = assert!(ALL_ROWS_BYTES.is_multiple_of(PAGE_SIZE));
const _: () = assert!(COLUMNS + NUM_CLASSES * COLUMN_ROOM <= 1 << 47);

/// Per class: bytes from the range's start that are mapped and have their
/// marks (written under the class's page-heap lock).
static USABLE: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];
/// Whether the rows are mapped (once; marks are never unmapped, so a reader
/// that saw a larger `USABLE` still reads mapped marks).
static ROWS_MAPPED: AtomicBool = AtomicBool::new(false);
/// Orders the mapping of the rows among the classes' page heaps. Taken only
/// under a page-heap lock, so `fork`, which holds all of those, needs not
/// take it.
static ROWS_LOCK: Lock = Lock::new();
/// Per class: bytes of its column mapped (under the class's page-heap lock).
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

/// The class whose range holds `addr` in its mapped prefix, and how far into
/// the range `addr` lies.
#[inline(always)]
fn locate(addr: usize) -> Option<(Class, usize)> {
    let offset = addr.wrapping_sub(WINDOW);
    if offset >= ALL_BYTES {
        return None;
    }
    let class = Class::from_index(offset >> RANGE_SHIFT)?;
    let in_range = (offset & (RANGE_BYTES - 1)).wrapping_sub(class.index() * STAGGER);
    let usable = USABLE.get(class.index())?.load(Ordering::Acquire);
    (in_range < usable).then_some((class, in_range))
}

/// The class whose range holds `addr` in its mapped prefix, if any. Says
/// nothing about whether an object starts there.
#[inline(always)]
pub fn class_at(addr: usize) -> Option<Class> {
    locate(addr).map(|(class, _)| class)
}

/// The class of the object starting at `addr`, if `addr` is the start of an
/// object of a span in a class range (free objects included: their spans are
/// live); `None` for anything else, including every address outside the
/// ranges. Safe on any address: reads only mapped marks.
#[inline(always)]
pub fn object_class(addr: usize) -> Option<Class> {
    let (class, in_range) = locate(addr)?;
    // SAFETY: `in_range` lies in the range's mapped prefix, whose marks are
    // mapped (`locate`'s Acquire pairs with the Release that published it).
    let mark = unsafe { mark_of(class, in_range) }.load(Ordering::Relaxed) as usize;
    let page_in_span = mark.checked_sub(1)?;
    let span_start = (addr & !(PAGE_SIZE - 1)).wrapping_sub(page_in_span << PAGE_SHIFT);
    class
        .starts_object(addr.wrapping_sub(span_start))
        .then_some(class)
}

/// The mark of the page `in_range` bytes into `class`'s range.
///
/// # Safety
/// That page lies in the range's mapped prefix (or did: marks stay mapped).
#[inline(always)]
unsafe fn mark_of(class: Class, in_range: usize) -> &'static AtomicU16 {
    let page = in_range >> PAGE_SHIFT;
    let at = if page < ROW_PAGES {
        ROWS + page * ROW_BYTES + class.index() * MARK_BYTES
    } else {
        column(class) + page * MARK_BYTES
    };
    // SAFETY: mapped (caller), zero until written, aligned, never unmapped.
    unsafe { &*(at as *const AtomicU16) }
}

/// Bytes of `class`'s range mapped from its start (its page heap's to move).
pub fn prefix(class: Class) -> usize {
    USABLE
        .get(class.index())
        .map_or(0, |usable| usable.load(Ordering::Relaxed))
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
    if !map_rows() || !map_column(class, end) {
        return None;
    }
    let start = range_start(class) + used;
    if !os::map_at(start, len) {
        return None;
    }
    USABLE.get(class.index())?.store(end, Ordering::Release);
    Some(start)
}

/// Maps the rows of marks, once.
fn map_rows() -> bool {
    if ROWS_MAPPED.load(Ordering::Acquire) {
        return true;
    }
    let _guard = ROWS_LOCK.guard();
    if ROWS_MAPPED.load(Ordering::Relaxed) || os::map_at(ROWS, ALL_ROWS_BYTES) {
        ROWS_MAPPED.store(true, Ordering::Release);
        return true;
    }
    false
}

/// Maps `class`'s column far enough for a prefix of `end` bytes (the class's
/// page-heap lock is held).
fn map_column(class: Class, end: usize) -> bool {
    let Some(mapped) = COLUMN_MAPPED.get(class.index()) else {
        return false;
    };
    let pages = end.div_ceil(PAGE_SIZE);
    if pages <= ROW_PAGES {
        return true;
    }
    let have = mapped.load(Ordering::Relaxed);
    // The column's marks for pages below ROW_PAGES are never read: it is
    // mapped from the page holding the first mark it serves.
    let from = if have == 0 {
        (ROW_PAGES * MARK_BYTES) & !(PAGE_SIZE - 1)
    } else {
        have
    };
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
    let rows = if ROWS_MAPPED.load(Ordering::Relaxed) {
        ALL_ROWS_BYTES
    } else {
        0
    };
    COLUMN_MAPPED
        .iter()
        .fold(rows, |sum, column| sum + column.load(Ordering::Relaxed))
}

/// Gives back the end of `class`'s mapped prefix, from `keep` bytes on: it is
/// no longer in the range for `class_at`, then unmapped.
///
/// # Safety
///
/// The class's page-heap lock is held, `keep` is page aligned and below the
/// prefix, and nothing lives in `[keep, prefix)` (a free run).
pub unsafe fn shrink(class: Class, keep: usize) -> bool {
    let Some(usable) = USABLE.get(class.index()) else {
        return false;
    };
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
    let Some((class, in_range)) = locate(span.start()) else {
        return;
    };
    for page in 0..span.pages() {
        // SAFETY: the span lies in the mapped prefix of its range (it came
        // from there and is not given back yet), whose marks are mapped.
        unsafe { mark_of(class, in_range + (page << PAGE_SHIFT)) }
            .store(value(page), Ordering::Release);
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
        let prefix = USABLE[class.index()].load(Ordering::Relaxed);
        assert_eq!(class_at(start + prefix - 1), Some(class));
        assert_eq!(class_at(start + prefix), None, "past the mapped prefix");
        assert_eq!(class_at(start - 1), None, "before the range's stagger");
        assert_ne!(
            class_at(start + range_bytes(class)),
            Some(class),
            "the next range"
        );
        for addr in [0, 16, WINDOW - 1, ROWS, COLUMNS, usize::MAX - 15] {
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
