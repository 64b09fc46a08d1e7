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
//! Every 16 bytes of a range (the alignment of every class's objects) have
//! a bit in the class's *start map*: set while an object of a small-object
//! span starts there (`mark`, `clear`), clear everywhere else, so one bit
//! says both that the span is live and that an object starts at the
//! address. The maps lie after the ranges, in a column per class (staggered
//! like the ranges), mapped with the chunks they describe: a word of 64 bits
//! per KiB of range, 1/128 of the mapped prefix.
//!
//! `object_class` then answers C `free` from one line of per-class data (a
//! `Place`, found by a shift and a mask of the address): a subtraction and a
//! compare with the prefix, and one load and bit test of the start map,
//! found from the address alone. The page map still registers every span
//! and answers every other question.
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

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::os::{self, PAGE_SIZE};
use crate::size_class::{Class, MIN_ALIGN, NUM_CLASSES};
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
/// Bytes of a range one bit of its start map covers.
const GRANULE: usize = MIN_ALIGN;
/// log2 of the bytes of a range one word of its start map covers (64
/// granules: 1 KiB).
const WORD_SHIFT: u32 = (u64::BITS as usize * GRANULE).trailing_zeros();
const WORD_BYTES: usize = core::mem::size_of::<u64>();
/// Where the columns of start maps begin (one per class, staggered like the
/// ranges, so that every class's first words do not share a TLB set either),
/// and the room of one column (the map of a whole range).
const COLUMNS: usize = WINDOW + ALL_BYTES;
const COLUMN_ROOM: usize = (RANGE_BYTES >> WORD_SHIFT) * WORD_BYTES + STAGGER;

const _: () = assert!(NUM_CLASSES * STAGGER < RANGE_BYTES / 8);
const _: () = assert!(1 << WORD_SHIFT == u64::BITS as usize * GRANULE);
const _: () = assert!(WINDOW.is_multiple_of(RANGE_BYTES));
const _: () = assert!(COLUMNS + NUM_CLASSES * COLUMN_ROOM <= 1 << 47);

/// What `free` needs of a class from an address in its range: where the
/// range starts, its usable prefix (the bytes from the start that are mapped
/// and have their start map; written under the class's page-heap lock), and
/// where its column would hold the word for address 0 (so that an address's
/// word is found from the address alone, in parallel with the prefix's
/// check). Found with one index.
#[repr(C, align(32))]
struct Place {
    start: usize,
    usable: AtomicUsize,
    map_from_zero: usize,
}

/// Places in the table: the classes, rounded up to a power of two, so that
/// the low bits of an address's range number index it with no bounds check.
/// A range number whose low bits match a place's but lies elsewhere is
/// refused by the place's prefix (it is below `start` or a range or more
/// past it), and the places beyond the classes have an empty prefix.
const PLACE_SLOTS: usize = NUM_CLASSES.next_power_of_two();

const _: () = assert!((WINDOW >> RANGE_SHIFT).is_multiple_of(PLACE_SLOTS));
/// log2 of a place's size.
const PLACE_SHIFT: u32 = core::mem::size_of::<Place>().trailing_zeros();
const _: () = assert!(core::mem::size_of::<Place>() == 1 << PLACE_SHIFT);

/// Every class's place, by class index, then places that hold nothing.
static PLACES: [Place; PLACE_SLOTS] = {
    let mut places = [const {
        Place {
            start: 0,
            usable: AtomicUsize::new(0),
            map_from_zero: 0,
        }
    }; PLACE_SLOTS];
    let mut i = 0;
    while i < NUM_CLASSES {
        if let Some(class) = Class::from_index(i) {
            places[i].start = range_start(class);
            places[i].map_from_zero =
                column(class).wrapping_sub((range_start(class) >> WORD_SHIFT) * WORD_BYTES);
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
/// start maps are never unmapped, so a reader that saw a larger usable
/// prefix still reads a mapped word).
static COLUMN_MAPPED: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// The start of `class`'s range.
pub const fn range_start(class: Class) -> usize {
    WINDOW + (class.index() << RANGE_SHIFT) + class.index() * STAGGER
}

/// Bytes of `class`'s range (what its place leaves after the stagger).
const fn range_bytes(class: Class) -> usize {
    RANGE_BYTES - class.index() * STAGGER
}

/// Where `class`'s column (its start map) starts.
const fn column(class: Class) -> usize {
    COLUMNS + class.index() * COLUMN_ROOM
}

/// Whether `addr` lies where the class ranges are (mapped by us or not).
#[inline]
pub fn in_window(addr: usize) -> bool {
    addr.wrapping_sub(WINDOW) < ALL_BYTES
}

/// An address in a class range's mapped prefix, with its class and the
/// class's `Place`.
struct Located {
    class: Class,
    place: &'static Place,
    addr: usize,
}

impl Located {
    /// The start-map word of the KiB holding `addr + offset`; the address's
    /// bit is its granule's index modulo 64.
    ///
    /// # Safety
    /// That address lies in the range's mapped prefix (or did: start maps
    /// stay mapped).
    #[inline(always)]
    unsafe fn word(&self, offset: usize) -> &'static AtomicU64 {
        let at = self.word_address(offset);
        // SAFETY: mapped (caller), zero until written, aligned, never unmapped.
        unsafe { &*(at as *const AtomicU64) }
    }

    /// Where the start-map word of the KiB holding `addr + offset` lies.
    #[inline(always)]
    fn word_address(&self, offset: usize) -> usize {
        let word = (self.addr + offset) >> WORD_SHIFT;
        self.place.map_from_zero.wrapping_add(word * WORD_BYTES)
    }
}

/// Gives back the start-map pages of `run`, a free run of a class range that
/// was just decommitted (they would stay resident otherwise: 1/128 of the
/// run). Does nothing outside the ranges.
///
/// # Safety
/// `run` is a free run of its class's page heap, whose lock is held.
pub unsafe fn release_start_map(run: &Span) {
    // SAFETY: forwarded contract.
    unsafe { release_map(run.start(), run.bytes()) };
}

/// Gives back the start-map pages that describe nothing but the `len` bytes
/// from `addr`: they stay mapped and read as zero again. Does nothing outside
/// the ranges.
///
/// # Safety
/// Those bytes are a free run of their class's page heap (so their words are
/// zero, and no `mark` writes them meanwhile), whose lock is held.
unsafe fn release_map(addr: usize, len: usize) {
    let Some(at) = locate(addr) else {
        return;
    };
    let first = at.word_address(0);
    // SAFETY: the words of a free run are zero (caller), and `decommit` keeps
    // to the whole pages inside: a page it gives back holds no word of
    // anything else.
    unsafe { os::decommit(first as *mut u8, at.word_address(len) - first) };
}

/// `addr`'s bit in its start-map word.
#[inline(always)]
const fn bit(addr: usize) -> u64 {
    1 << ((addr / GRANULE) % u64::BITS as usize)
}

/// Where `addr` lies, if in a class range's mapped prefix.
#[inline(always)]
fn locate(addr: usize) -> Option<Located> {
    // The window starts at a multiple of the table's length in ranges: the
    // index is the low bits of the address's range number, taken already
    // scaled to a place's size (one shift and one mask).
    let at = (addr >> (RANGE_SHIFT - PLACE_SHIFT)) & ((PLACE_SLOTS - 1) << PLACE_SHIFT);
    // SAFETY: `at` is a multiple of a place's size below the table's size.
    let place = unsafe { &*PLACES.as_ptr().byte_add(at) };
    if addr.wrapping_sub(place.start) >= place.usable.load(Ordering::Acquire) {
        return None;
    }
    Some(Located {
        // SAFETY: only the places of classes have a prefix. Computed from
        // the address, not loaded from the place: the per-CPU section's slot
        // waits for the class, and a load there cost 1 ns per C pair.
        class: unsafe { Class::from_index_unchecked(at >> PLACE_SHIFT) },
        place,
        addr,
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
/// ranges. Safe on any address: reads only a mapped start map.
#[inline(always)]
pub fn object_class(addr: usize) -> Option<Class> {
    let at = locate(addr)?;
    if !addr.is_multiple_of(GRANULE) {
        return None;
    }
    // SAFETY: `addr` lies in the range's mapped prefix, whose start map is
    // mapped (`locate`'s Acquire pairs with the Release that published it).
    let word = unsafe { at.word(0) }.load(Ordering::Relaxed);
    (word & bit(addr) != 0).then_some(at.class)
}

/// Bytes of `class`'s range mapped from its start (its page heap's to move).
pub fn prefix(class: Class) -> usize {
    usable(class).load(Ordering::Relaxed)
}

/// Maps the next `len` bytes (a page multiple) of `class`'s range, after its
/// mapped prefix, and their start map; returns where they start, or `None` when
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
    let from = mapped.load(Ordering::Relaxed);
    let needed = (end.div_ceil(1 << WORD_SHIFT) * WORD_BYTES).next_multiple_of(PAGE_SIZE);
    if needed <= from {
        return true;
    }
    if !os::map_at(column(class) + from, needed - from) {
        return false;
    }
    mapped.store(needed, Ordering::Relaxed);
    true
}

/// Bytes mapped for start maps (statistics: metadata).
pub fn start_map_bytes() -> usize {
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
    // SAFETY: `[keep, end)` is a free run (caller), under the lock.
    unsafe { release_map(range_start(class) + keep, end - keep) };
    usable.store(keep, Ordering::Release);
    // SAFETY: mapped by `grow` and free (caller). New lookups no longer reach
    // it; one that read the old prefix reads only its start map, which stays
    // mapped, and the shared heap never merges with a run in the window.
    let unmapped = unsafe { os::unmap((range_start(class) + keep) as *mut u8, end - keep) };
    if !unmapped {
        usable.store(end, Ordering::Release);
    }
    unmapped
}

/// Sets the start-map bits of the objects of `span`, a small-object span in
/// a class range, its class set: `object_class` accepts them from now on.
pub fn mark(span: &Span) {
    let (Some(at), Some(class)) = (locate(span.start()), span.class()) else {
        return;
    };
    // The span's words are its own (a word covers a KiB of one page) and
    // zero (`clear`ed with the span before, or never used): each is stored
    // once, whole.
    let mut word_offset = 0;
    let mut bits = 0;
    for object in 0..class.objects_per_span() {
        let offset = object * class.size();
        if offset >> WORD_SHIFT != word_offset >> WORD_SHIFT {
            // SAFETY: the span lies in the mapped prefix of its range (it
            // came from there and is not given back yet).
            unsafe { at.word(word_offset) }.store(bits, Ordering::Release);
            word_offset = offset;
            bits = 0;
        }
        bits |= bit(span.start() + offset);
    }
    // SAFETY: as above.
    unsafe { at.word(word_offset) }.store(bits, Ordering::Release);
}

/// Clears the start-map words of `span` (given back to its page heap):
/// `object_class` rejects its addresses from now on.
pub fn clear(span: &Span) {
    let Some(at) = locate(span.start()) else {
        return;
    };
    for offset in (0..span.bytes()).step_by(1 << WORD_SHIFT) {
        // SAFETY: the span lies in the mapped prefix of its range (it came
        // from there and is not given back yet).
        unsafe { at.word(offset) }.store(0, Ordering::Release);
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
        // A range number whose low bits index this class's place.
        let alias = start + (PLACE_SLOTS << RANGE_SHIFT);
        for addr in [0, 16, WINDOW - 1, COLUMNS, usize::MAX - 15, alias] {
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

    /// Whether the 4 KiB page holding `addr` is resident.
    fn resident(addr: usize) -> bool {
        let mut vec = 0u8;
        let page = addr & !(PAGE_SIZE - 1);
        // SAFETY: a mapped page (a start map's), one byte of result.
        let rc = unsafe { libc::mincore(page as *mut libc::c_void, PAGE_SIZE, &mut vec) };
        assert_eq!(rc, 0, "mincore");
        vec & 1 != 0
    }

    #[test]
    fn map_pages_under_a_decommitted_run_go_back_and_live_neighbours_keep_their_bits() {
        let _serial = crate::test_serial();
        // A class nothing else here uses; more than 2 MiB of its spans.
        let class = crate::size_class::class_of(3072, 16).unwrap();
        let mut spans = std::vec::Vec::new();
        while spans.len() * class.span_pages() * PAGE_SIZE < 3 << 20 {
            let span = crate::page_heap::alloc_class_span(class).unwrap();
            span.init_small(class);
            mark(span);
            spans.push(span);
        }
        spans.sort_by_key(|span| span.start());
        let (first, last) = (spans[0], spans[spans.len() - 1]);
        let inner = &spans[1..spans.len() - 1];
        // A 512 KiB block of the range, described by one map page, inside
        // the spans that go back.
        let map_page_covers = (PAGE_SIZE / WORD_BYTES) << WORD_SHIFT;
        let block = (inner[0].start() + map_page_covers).next_multiple_of(map_page_covers);
        assert!(block + map_page_covers <= inner[inner.len() - 1].end());
        let word_at = |addr: usize| locate(addr).unwrap().word_address(0);
        assert!(resident(word_at(block)), "marked spans' map page");
        for &span in inner {
            clear(span);
            crate::page_heap::free_span(span);
        }
        crate::page_heap::trim();
        assert!(
            !resident(word_at(block)),
            "the map page of a decommitted run is still resident"
        );
        for span in [first, last] {
            let objects = class.objects_per_span();
            for object in [0, objects - 1] {
                let addr = span.start() + object * class.size();
                assert_eq!(object_class(addr), Some(class), "a live neighbour's object");
            }
            clear(span);
            crate::page_heap::free_span(span);
        }
    }

    #[test]
    fn the_start_map_agrees_with_division_at_every_address() {
        let _serial = crate::test_serial();
        for size in [16, 48, 80, 208, 1024, 1280, 5120, 40960] {
            let class = crate::size_class::class_of(size, 16).unwrap();
            let span = crate::page_heap::alloc_class_span(class).unwrap();
            span.init_small(class);
            mark(span);
            let objects = class.objects_per_span();
            for offset in (0..span.bytes()).step_by(8) {
                let starts = offset % class.size() == 0 && offset / class.size() < objects;
                assert_eq!(
                    object_class(span.start() + offset),
                    starts.then_some(class),
                    "size {size}, offset {offset}"
                );
            }
            assert_eq!(object_class(span.start() + 1), None, "unaligned");
            clear(span);
            for offset in (0..span.bytes()).step_by(16) {
                assert_eq!(object_class(span.start() + offset), None, "cleared");
            }
            crate::page_heap::free_span(span);
        }
    }
}
