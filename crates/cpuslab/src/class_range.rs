//! Class ranges: address space set aside per size class, so that C `free`
//! learns a small object's class, and checks it, from its address with one
//! load.
//!
//! The window is cut into 2 MiB *slots*, one page table's reach, dealt out
//! in rows: row `r` holds slot `r` of every class, class `c`'s at `WINDOW +
//! (r * LANES + c) * SLOT_BYTES`, so an address's class is a field of its
//! bits (its *lane*). A class has 256 slots, 512 MiB; beyond, the shared
//! heap serves it. Each class's page heap (`page_heap`) grows its range a
//! chunk at a time, mapped exactly there, filling one slot (from a small
//! per-class offset, the stagger) before it starts the next row's, so every
//! span of a class lies in one of its slots and, but for the first slots
//! below, the address space a process uses is what it maps, as with any
//! other chunk (`RLIMIT_AS` and overcommit apply as before). Each slot's
//! mapped part ends at its *end*: every slot of its lane below it is in use,
//! or was.
//!
//! Before its first slot of 2 MiB, a class whose spans fit in 64 KiB fills a
//! *first slot* of 64 KiB: the first slots of all classes lie side by side in
//! lanes no class has (after the classes' lanes, in row 0), mapped as one
//! mapping when the window is first used (with row 0's start map: 8 MiB of
//! address space, and of commit charge under strict overcommit, mapped at a
//! process's first small allocation; a first slot given back is decommitted,
//! never unmapped). Why: `fork` copies, and the child's
//! exit frees, a page of page tables for every 2 MiB that holds a touched
//! page, and the kernel keeps a record per mapping; a class that started in
//! a slot of its own cost both. A shell uses 28 classes, most with a page or
//! two of objects: 28 page-table pages and 45 mappings, 350 us a fork
//! (docs/benchmarks-preload.md, "Real programs and forks"); in first slots,
//! 3 page-table pages and 2 mappings. Only a class that outgrows its first
//! slot takes slots of 2 MiB, in which its spans lie together (a 64 KiB slot
//! per row instead would cost a page table per 64 KiB of a big class).
//!
//! Why rows: every class's slot in a row lies in that row (256 MiB for all
//! of them), as do their start maps, so a program whose classes outgrow their
//! first slots has about one page-table page per class, not 3 as with a
//! range of 16 GiB per class far from the next one (`fork` costs less, and
//! so does a working set spread over many classes, whose page walks share the
//! cache lines of one page directory). Why 2 MiB and at most 256: a class
//! that grows alone takes a slot per row, each with two mappings of its own
//! (its chunks and its start map) and a page-map leaf of its own (128 MiB of
//! address space, 288 KiB mapped, two pages of it touched). Without a bound
//! a 16 GiB class would have made 16 384 mappings (the kernel's default limit
//! for a process is 65 530); with 256 slots a class makes at most 512, and
//! maps at most 72 MiB of leaves. Slots of 8 MiB, which would have allowed 4
//! GiB for as many mappings, ran the working-set loop 7% slower (`threads 20
//! 1`: 12.4-12.5 against 11.6 ns a step).
//!
//! Every 16 bytes of the window (the alignment of every class's objects)
//! have a bit in the *start map*: set while an object of a small-object span
//! starts there (`mark`, `clear`), clear everywhere else, so one bit says
//! both that the span is live and that an object starts at the address. The
//! map lies after the window, a word of 64 bits per KiB of it, so an
//! address's word is found from the address alone. Row 0's map (2 MiB, for
//! every lane, first slots included) is mapped with the first slots; a later
//! row's 16 KiB of a lane with the class's first chunk in that row; none is
//! ever unmapped (pages under decommitted runs are given back).
//!
//! What `free` reads: the 64 KiB *position* of an address in its row (4096
//! of them) indexes one table of two columns, the end of the slot there (a first slot's
//! own, or its lane's, the same in all 32 positions of a lane) and its
//! class (fixed). Below a slot's end, its first pages (a
//! stagger) and its tail after the last whole span are not the class's:
//! `object_class` finds their words zero, and `class_at` and `mark` refuse
//! them, so that a mapping the kernel might put there (a crowded address
//! space) is never taken for the class's.
//!
//! `object_class` then answers C `free` with two loads of per-position data
//! (the end and the class) and a compare, and one load and bit test of the
//! start map. The page map still registers every span and answers every
//! other question.
//!
//! Why: a `free` that walked the page map (root, leaf, span record) made the
//! per-CPU push wait for the walk's dependent loads
//! (docs/benchmarks-preload.md, "Why random sizes cost the C pair").
//!
//! When a chunk cannot be mapped at its place (something else is there: the
//! kernel never puts its own mappings this low unless the address space is
//! crowded; another copy of the allocator in the process), a class has used
//! its every slot, or the OS pages are not 4 KiB, spans come from the shared
//! page heap as before, and `free` finds them through the page map.

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::os::{self, PAGE_SIZE};
use crate::size_class::{Class, MIN_ALIGN, NUM_CLASSES};
use crate::span::Span;

/// Where the window starts: 48 TiB, below where Linux loads programs (PIE
/// binaries near 85 TiB) and places mappings (down from near 128 TiB).
const WINDOW: usize = 0x3000_0000_0000;
/// log2 of a slot: 2 MiB, what one page of page tables maps (the module
/// comment says why).
const SLOT_SHIFT: u32 = 21;
/// Bytes of a slot.
const SLOT_BYTES: usize = 1 << SLOT_SHIFT;
/// Lanes in a row: the classes and the first slots' lanes, rounded up to a
/// power of two, so that an address's lane is a mask of its slot number
/// (lanes beyond stay empty).
const LANES: usize = (NUM_CLASSES + FIRST_LANES).next_power_of_two();
/// log2 of a row's bytes (a slot of every lane: 256 MiB).
const ROW_SHIFT: u32 = SLOT_SHIFT + LANES.trailing_zeros();
/// Rows in the window.
const ROWS: usize = 256;
/// Bytes one class can have in its slots: 512 MiB (beyond, the shared heap
/// serves it).
pub const RANGE_BYTES: usize = ROWS * SLOT_BYTES;
/// Bytes of the window (64 GiB of the 128 TiB user address space).
const WINDOW_BYTES: usize = ROWS << ROW_SHIFT;
/// log2 of a first slot, and of a position: 64 KiB.
const FIRST_SLOT_SHIFT: u32 = 16;
/// Bytes of a first slot.
const FIRST_SLOT_BYTES: usize = 1 << FIRST_SLOT_SHIFT;
/// Lanes of first slots, after the classes' lanes: one first slot per class.
const FIRST_LANES: usize = NUM_CLASSES.div_ceil(LANE_POSITIONS);
/// Where the first slots lie: row 0, from the first lane after the classes'.
const FIRST_SLOTS: usize = WINDOW + (NUM_CLASSES << SLOT_SHIFT);
/// Bytes of the first slots, all classes', mapped as one.
const FIRST_SLOTS_BYTES: usize = NUM_CLASSES * FIRST_SLOT_BYTES;
/// Positions in a row: its 64 KiB pieces. `POSITIONS_TABLE` has an entry
/// for each, and an address's entry is a field of its bits.
const POSITIONS: usize = 1 << (ROW_SHIFT - FIRST_SLOT_SHIFT);
/// Positions in a lane (first slots in a lane of them).
const LANE_POSITIONS: usize = SLOT_BYTES / FIRST_SLOT_BYTES;
/// Bytes of a range one bit of the start map covers.
const GRANULE: usize = MIN_ALIGN;
/// log2 of the bytes one word of the start map covers (64 granules: 1 KiB).
const WORD_SHIFT: u32 = (u64::BITS as usize * GRANULE).trailing_zeros();
const WORD_BYTES: usize = core::mem::size_of::<u64>();
/// Where the start map begins (the window's, word by word).
const MAP: usize = WINDOW + WINDOW_BYTES;
/// Bytes of start map for one slot (16 KiB: whole pages).
const SLOT_MAP_BYTES: usize = (SLOT_BYTES >> WORD_SHIFT) * WORD_BYTES;
/// Bytes of start map for row 0, all lanes (mapped with the first slots).
const ROW_MAP_BYTES: usize = LANES * SLOT_MAP_BYTES;
/// How far into each of its slots of 2 MiB a class starts, in pages per
/// class index: aligned alike, the first pages of every class would share
/// one set of the TLB, and a working set of many classes thrashed it
/// (`threads 30 1`: 13.4 -> 20 ns per step). First slots, 64 KiB apart,
/// fall in different sets already.
const STAGGER_PAGES: usize = 1;

const _: () = assert!(WINDOW.is_multiple_of(1 << ROW_SHIFT));
const _: () = assert!(1 << WORD_SHIFT == u64::BITS as usize * GRANULE);
const _: () = assert!(SLOT_MAP_BYTES.is_multiple_of(PAGE_SIZE));
const _: () = assert!(map_word(WINDOW_BYTES) <= 1 << 47);
const _: () = assert!(NUM_CLASSES * STAGGER_PAGES * PAGE_SIZE < SLOT_BYTES / 4);
// The first slots fit in their lanes, in row 0, and a class's position
// holds a class index.
const _: () = assert!(NUM_CLASSES + FIRST_LANES <= LANES);
const _: () = assert!(FIRST_SLOTS + FIRST_SLOTS_BYTES <= WINDOW + (1 << ROW_SHIFT));
const _: () = assert!(NUM_CLASSES <= u8::MAX as usize + 1);
// The first slots of every class lie in one row, their maps one after the
// other: what keeps page tables few (the module's why).
const _: () = assert!(LANES << SLOT_SHIFT == 1 << ROW_SHIFT);
const _: () = assert!(ROW_MAP_BYTES <= SLOT_BYTES);

/// Per position, what `free` reads (one table, so that one address reaches
/// both): the end of the slot there and its class.
#[repr(C)]
struct Positions {
    /// The window offset just past the mapped part of the slot there (0
    /// where nothing was ever mapped, and in the lanes of no class; where
    /// it was, the slot's start while none of it is); a lane's positions all
    /// hold its class's end in its last row in use. Every offset of a
    /// position below its end is in a slot whose start map is mapped.
    /// Written under the class's page-heap lock, after the mappings
    /// (Release).
    ends: [AtomicUsize; POSITIONS],
    /// The index of the class whose slots lie there (0 in lanes of no
    /// class, whose ends stay 0). Fixed.
    classes: [u8; POSITIONS],
}

static POSITIONS_TABLE: Positions = Positions {
    ends: [const { AtomicUsize::new(0) }; POSITIONS],
    classes: {
        let mut classes = [0; POSITIONS];
        let mut position = 0;
        while position < POSITIONS {
            let lane = position / LANE_POSITIONS;
            if lane < NUM_CLASSES {
                classes[position] = lane as u8;
            } else if position - NUM_CLASSES * LANE_POSITIONS < NUM_CLASSES {
                classes[position] = (position - NUM_CLASSES * LANE_POSITIONS) as u8;
            }
            position += 1;
        }
        classes
    },
};

/// Per class, under its page-heap lock: its last slot in use and how far
/// into it the class is mapped, as `Slot::number << 32 | filled` (0 before
/// its first grow, read as its initial slot, empty).
static LAST: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// Per class, under its page-heap lock: rows after row 0 whose slot has its
/// start map mapped (never unmapped; row 0's comes with the first slots).
static MAPPED_ROWS: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// The first slots and row 0's start map: not mapped (yet, or the last try
/// failed; then no class grows a range), being mapped, or mapped.
static FIRST_USE: AtomicU8 = AtomicU8::new(UNMAPPED);
const UNMAPPED: u8 = 0;
const MAPPING: u8 = 1;
const MAPPED: u8 = 2;

/// Where the start-map word of the KiB at `offset` in the window lies.
const fn map_word(offset: usize) -> usize {
    MAP + (offset >> WORD_SHIFT) * WORD_BYTES
}

/// The position of the window offset `offset` in its row.
#[inline(always)]
const fn position(offset: usize) -> usize {
    (offset >> FIRST_SLOT_SHIFT) % POSITIONS
}

/// Where `class`'s slot in `row` starts.
const fn slot_start(class: Class, row: usize) -> usize {
    WINDOW + (row << ROW_SHIFT) + (class.index() << SLOT_SHIFT)
}

/// Where `class`'s first slot starts.
const fn first_slot_start(class: Class) -> usize {
    FIRST_SLOTS + (class.index() << FIRST_SLOT_SHIFT)
}

/// Bytes of one span of `class`: every chunk is a whole number of them, so
/// spans lie at multiples of their size from the slot's first span (after
/// its stagger).
const fn span_bytes(class: Class) -> usize {
    class.span_pages() * PAGE_SIZE
}

/// Whether `class` starts in a first slot: its spans fit in one.
const fn has_first_slot(class: Class) -> bool {
    span_bytes(class) <= FIRST_SLOT_BYTES
}

/// How far into each slot of 2 MiB `class` starts: its stagger, or 0 for a
/// class whose span would not fit after it.
const fn stagger(class: Class) -> usize {
    let stagger = class.index() * STAGGER_PAGES * PAGE_SIZE;
    if span_bytes(class) + stagger <= SLOT_BYTES {
        stagger
    } else {
        0
    }
}

/// How far into a slot of 2 MiB each class is mapped when the slot is full:
/// whole spans from its stagger on (a table: `class_at` needs it).
const FULL: [usize; NUM_CLASSES] = {
    let mut full = [0; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        if let Some(class) = Class::from_index(i) {
            let stagger = stagger(class);
            full[i] = stagger + (SLOT_BYTES - stagger) / span_bytes(class) * span_bytes(class);
        }
        i += 1;
    }
    full
};

const fn full(class: Class) -> usize {
    FULL[class.index()]
}

/// How far into its first slot a class is mapped when that is full.
const fn first_slot_full(class: Class) -> usize {
    FIRST_SLOT_BYTES / span_bytes(class) * span_bytes(class)
}

/// One of a class's slots, in the order it fills them: its first slot (if
/// its spans fit in one), then its slot in each row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    First,
    Row(usize),
}

impl Slot {
    /// The slot a class fills first.
    const fn initial(class: Class) -> Slot {
        if has_first_slot(class) {
            Slot::First
        } else {
            Slot::Row(0)
        }
    }

    /// Its number in `LAST`: 0 for the first slot, then 1 + the row.
    const fn number(self) -> usize {
        match self {
            Slot::First => 0,
            Slot::Row(row) => row + 1,
        }
    }

    const fn from_number(number: usize) -> Slot {
        match number {
            0 => Slot::First,
            n => Slot::Row(n - 1),
        }
    }

    /// Where it starts.
    const fn start(self, class: Class) -> usize {
        match self {
            Slot::First => first_slot_start(class),
            Slot::Row(row) => slot_start(class, row),
        }
    }

    /// How far into it the class's spans start.
    const fn spans_from(self, class: Class) -> usize {
        match self {
            Slot::First => 0,
            Slot::Row(_) => stagger(class),
        }
    }

    /// How far into it the class is mapped when it is full.
    const fn full(self, class: Class) -> usize {
        match self {
            Slot::First => first_slot_full(class),
            Slot::Row(_) => full(class),
        }
    }

    /// The slot the class filled before this one.
    const fn previous(self, class: Class) -> Option<Slot> {
        match self {
            Slot::Row(0) if has_first_slot(class) => Some(Slot::First),
            Slot::Row(row) if row > 0 => Some(Slot::Row(row - 1)),
            _ => None,
        }
    }
}

/// Where `class`'s first chunk of 2 MiB slots goes: its slot in row 0, after
/// its stagger (a class with a first slot starts there before).
pub const fn range_start(class: Class) -> usize {
    slot_start(class, 0) + stagger(class)
}

/// `class`'s first slot: where it starts and how many bytes of spans it
/// holds; `None` for a class whose spans do not fit in one.
pub const fn first_slot(class: Class) -> Option<(usize, usize)> {
    if has_first_slot(class) {
        Some((first_slot_start(class), first_slot_full(class)))
    } else {
        None
    }
}

/// Whether `addr` lies where the class ranges are (mapped by us or not).
#[inline]
pub fn in_window(addr: usize) -> bool {
    addr.wrapping_sub(WINDOW) < WINDOW_BYTES
}

/// An address in a class's mapped part, with its class.
struct Located {
    class: Class,
    /// The address's offset in the window.
    offset: usize,
}

impl Located {
    /// The start-map word of the KiB holding the address plus `bytes`; that
    /// address's bit is its granule's index modulo 64.
    ///
    /// # Safety
    /// That address lies in the same slot as this one.
    #[inline(always)]
    unsafe fn word(&self, bytes: usize) -> &'static AtomicU64 {
        let at = self.word_address(bytes);
        // SAFETY: the slot's map is mapped (`locate` found the address below
        // its position's end), zero until written, aligned, never unmapped.
        unsafe { &*(at as *const AtomicU64) }
    }

    /// Where the start-map word of the KiB holding the address plus `bytes`
    /// lies.
    #[inline(always)]
    fn word_address(&self, bytes: usize) -> usize {
        map_word(self.offset + bytes)
    }

    /// The slot the address lies in, its start and the offset of the
    /// address in it.
    fn slot(&self) -> (Slot, usize) {
        let lane = (self.offset >> SLOT_SHIFT) % LANES;
        if lane >= NUM_CLASSES {
            (Slot::First, self.offset % FIRST_SLOT_BYTES)
        } else {
            (
                Slot::Row(self.offset >> ROW_SHIFT),
                self.offset % SLOT_BYTES,
            )
        }
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
/// Those bytes are a free run of their class's page heap, in one slot (so
/// their words are zero, and no `mark` writes them meanwhile), whose lock is
/// held.
unsafe fn release_map(addr: usize, len: usize) {
    let Some(at) = locate_in_spans(addr) else {
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

/// Where `addr` lies, if below its position's end.
#[inline(always)]
fn locate(addr: usize) -> Option<Located> {
    let offset = addr.wrapping_sub(WINDOW);
    let position = position(offset);
    // An offset outside the window is at least WINDOW_BYTES, past any end.
    // SAFETY: `position` is below POSITIONS.
    let end = unsafe { POSITIONS_TABLE.ends.get_unchecked(position) };
    if offset >= end.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: as above; a position with an end holds a class's index.
    let class = unsafe { POSITIONS_TABLE.classes.get_unchecked(position) };
    // SAFETY: every entry is a class's index.
    let class = unsafe { Class::from_index_unchecked(*class as usize) };
    Some(Located { class, offset })
}

/// Where `addr` lies, if below its position's end and in the part of its
/// slot that holds spans (not the stagger before it, nor the tail after).
fn locate_in_spans(addr: usize) -> Option<Located> {
    let at = locate(addr)?;
    let (slot, in_slot) = at.slot();
    (in_slot >= slot.spans_from(at.class) && in_slot < slot.full(at.class)).then_some(at)
}

/// The class whose slots hold `addr` in their spans' part, below the slot's
/// end, if any. Says nothing about whether an object starts there.
pub fn class_at(addr: usize) -> Option<Class> {
    locate_in_spans(addr).map(|at| at.class)
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
    // SAFETY: the address itself (`locate`'s Acquire pairs with the Release
    // that published the end after mapping the map).
    let word = unsafe { at.word(0) }.load(Ordering::Relaxed);
    (word & bit(addr) != 0).then_some(at.class)
}

/// Publishes `class`'s mapped part: `filled` bytes into `slot`, its last in
/// use. The slot's positions only: a class that goes back from its row-0
/// slot to its first slot has just set the lane's end to that slot's start.
///
/// An empty slot's end is its start, never 0: that accepts nothing of the
/// slot, and in a lane it keeps the rows below covered while a shrink that
/// emptied the slot unmaps it (at 0, a span of theirs freed meanwhile would
/// have found no class, and gone to the shared heap).
fn set_end(class: Class, slot: Slot, filled: usize) {
    let end = end_offset(class, slot, filled);
    match slot {
        Slot::First => POSITIONS_TABLE.ends[position(first_slot_start(class) - WINDOW)]
            .store(end, Ordering::Release),
        Slot::Row(_) => {
            let lane_start = position(slot_start(class, 0) - WINDOW);
            for position in &POSITIONS_TABLE.ends[lane_start..lane_start + LANE_POSITIONS] {
                position.store(end, Ordering::Release);
            }
        }
    }
    LAST[class.index()].store(slot.number() << 32 | filled, Ordering::Relaxed);
}

/// The end of `class`'s slot `slot` mapped `filled` bytes in: the window
/// offset just past its mapped part.
const fn end_offset(class: Class, slot: Slot, filled: usize) -> usize {
    slot.start(class) - WINDOW + filled
}

/// `class`'s last slot in use and how far into it the class is mapped;
/// its initial slot and 0 while nothing is mapped.
fn last_slot(class: Class) -> (Slot, usize) {
    let last = LAST[class.index()].load(Ordering::Relaxed);
    if last == 0 {
        return (Slot::initial(class), 0);
    }
    (Slot::from_number(last >> 32), last & u32::MAX as usize)
}

/// Where `class`'s mapped part ends now, and where its last slot's mapped
/// part starts: `(start, end)`; `None` while nothing is mapped.
pub fn mapped_end(class: Class) -> Option<(usize, usize)> {
    let (slot, filled) = last_slot(class);
    let start = slot.start(class);
    let spans_from = slot.spans_from(class);
    (filled > spans_from).then_some((start + spans_from, start + filled))
}

/// Bytes of `class`'s range mapped now, all its slots together: every slot
/// before its last one in use is full.
pub fn mapped_bytes(class: Class) -> usize {
    let (slot, filled) = last_slot(class);
    let before = match slot {
        Slot::First => 0,
        Slot::Row(row) => {
            let first_slot = first_slot(class).map_or(0, |(_, bytes)| bytes);
            first_slot + row * (full(class) - stagger(class))
        }
    };
    before + filled.saturating_sub(slot.spans_from(class))
}

/// Maps the next `want` bytes (whole spans of `class`) after `class`'s mapped
/// part, or fewer, at least one span, where its slot has less room left (the
/// next chunk starts the next slot), and their slot's start map; returns
/// where they start and how many bytes, or `None` when every slot is used,
/// the place is taken or the OS pages are not ours (4 KiB: the stagger would
/// misalign the slots). A first slot is mapped already: it is handed out
/// whole.
///
/// # Safety
///
/// The class's page-heap lock is held (it orders the end's moves).
pub unsafe fn grow(class: Class, want: usize) -> Option<(usize, usize)> {
    if os::page_size() != PAGE_SIZE || !map_first_use() {
        return None;
    }
    let span = span_bytes(class);
    let (mut slot, filled) = last_slot(class);
    let mut filled = filled.max(slot.spans_from(class));
    if filled + span > slot.full(class) {
        slot = match slot {
            Slot::First => Slot::Row(0),
            Slot::Row(row) => Slot::Row(row + 1),
        };
        filled = slot.spans_from(class);
    }
    if slot.spans_from(class) + span > slot.full(class) || slot == Slot::Row(ROWS) {
        return None;
    }
    let start = slot.start(class) + filled;
    let len = match slot {
        Slot::First => slot.full(class) - filled,
        Slot::Row(row) => {
            let len = want.min(full(class) - filled).max(span) / span * span;
            if !map_start_maps(class, row) || !os::map_at(start, len) {
                return None;
            }
            len
        }
    };
    set_end(class, slot, filled + len);
    Some((start, len))
}

/// Maps the first slots and row 0's start map, once (every class's grow
/// calls it, under its own lock: a racer waits for the one mapping); false
/// if they could not be had now (something is there, or the kernel refused
/// the memory), to be tried again by the next grow (which a class heap
/// makes after a `trim`).
fn map_first_use() -> bool {
    if FIRST_USE.load(Ordering::Acquire) == MAPPED {
        return true;
    }
    loop {
        match FIRST_USE.compare_exchange(UNMAPPED, MAPPING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(MAPPED) => return true,
            Err(_) => core::hint::spin_loop(),
        }
    }
    let row_map = map_word(0);
    let mapped = os::map_at(FIRST_SLOTS, FIRST_SLOTS_BYTES)
        && (os::map_at(row_map, ROW_MAP_BYTES) || {
            // SAFETY: mapped just above, and nothing uses it yet.
            unsafe { os::unmap(FIRST_SLOTS as *mut u8, FIRST_SLOTS_BYTES) };
            false
        });
    if mapped {
        // SAFETY: our two mappings, just made. Where THP is `always`, their
        // 2 MiB-aligned parts would take a huge page at their first touch;
        // a refusal only costs memory.
        unsafe {
            os::advise_no_huge_pages(FIRST_SLOTS as *mut u8, FIRST_SLOTS_BYTES);
            os::advise_no_huge_pages(row_map as *mut u8, ROW_MAP_BYTES);
        }
    }
    FIRST_USE.store(if mapped { MAPPED } else { UNMAPPED }, Ordering::Release);
    mapped
}

/// Maps the start maps of `class`'s slots up to `row`, whole (under the
/// class's page-heap lock): every address of its lane below its end then has
/// its word mapped, and the maps of one row, one after the other, make one
/// mapping. Row 0's is mapped with the first slots.
fn map_start_maps(class: Class, row: usize) -> bool {
    let mapped = &MAPPED_ROWS[class.index()];
    for r in mapped.load(Ordering::Relaxed) + 1..=row {
        let map = map_word(slot_start(class, r) - WINDOW);
        if !os::map_at(map, SLOT_MAP_BYTES) {
            return false;
        }
        mapped.store(r, Ordering::Relaxed);
    }
    true
}

/// Bytes mapped for start maps (statistics: metadata): row 0's, and each
/// class's later rows'.
pub fn start_map_bytes() -> usize {
    if FIRST_USE.load(Ordering::Acquire) != MAPPED {
        return 0;
    }
    let later_rows: usize = MAPPED_ROWS
        .iter()
        .map(|rows| rows.load(Ordering::Relaxed))
        .sum();
    ROW_MAP_BYTES + later_rows * SLOT_MAP_BYTES
}

/// Gives back the end of `class`'s mapped part, from `from` on (an address in
/// its last slot in use): it is no longer in the range for `class_at`, then
/// unmapped (decommitted in a first slot, which stays mapped). A slot given
/// back whole leaves the one before it, full, as the last in use.
///
/// # Safety
///
/// The class's page-heap lock is held, `from` is page aligned, and nothing
/// lives in `[from, end)` (a free run).
pub unsafe fn shrink(class: Class, from: usize) -> bool {
    let Some((start, end)) = mapped_end(class) else {
        return false;
    };
    if from < start || from >= end || !os::os_page_aligned(from) {
        return false;
    }
    let (slot, filled) = last_slot(class);
    // SAFETY: `[from, end)` is a free run in one slot (caller), under the lock.
    unsafe { release_map(from, end - from) };
    let kept = from - slot.start(class);
    set_end(class, slot, kept);
    // SAFETY: mapped by `grow` (or with the first slots) and free (caller).
    // New lookups no longer reach it; one that read the old end reads only
    // its start map, which stays mapped, and the shared heap never merges
    // with a run in the window.
    let given_back = unsafe {
        match slot {
            Slot::First => os::decommit(from as *mut u8, end - from),
            Slot::Row(_) => os::unmap(from as *mut u8, end - from),
        }
    };
    if !given_back {
        set_end(class, slot, filled);
    } else if kept == slot.spans_from(class) {
        if let Some(previous) = slot.previous(class) {
            set_end(class, previous, previous.full(class));
        }
    }
    given_back
}

/// Sets the start-map bits of the objects of `span`, a small-object span in
/// a class range, its class set: `object_class` accepts them from now on.
pub fn mark(span: &Span) {
    let (Some(at), Some(class)) = (locate_in_spans(span.start()), span.class()) else {
        return;
    };
    if at.class != class {
        return;
    }
    // The span's words are its own (a word covers a KiB of one page) and
    // zero (`clear`ed with the span before, or never used): each is stored
    // once, whole.
    let mut word_offset = 0;
    let mut bits = 0;
    for object in 0..class.objects_per_span() {
        let offset = object * class.size();
        if offset >> WORD_SHIFT != word_offset >> WORD_SHIFT {
            // SAFETY: the span lies in one slot, mapped (it came from there
            // and is not given back yet).
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
    let Some(at) = locate_in_spans(span.start()) else {
        return;
    };
    for offset in (0..span.bytes()).step_by(1 << WORD_SHIFT) {
        // SAFETY: the span lies in one slot, mapped (it came from there and
        // is not given back yet).
        unsafe { at.word(offset) }.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mapped_parts_of_first_slots_have_a_class() {
        let _serial = crate::test_serial();
        let class = crate::size_class::class_of(48, 16).unwrap();
        let span = crate::page_heap::alloc_class_span(class).unwrap();
        let (start, bytes) = first_slot(class).unwrap();
        assert!(
            (start..start + bytes).contains(&span.start()),
            "a first span in the first slot"
        );
        assert_eq!(class_at(span.start()), Some(class));
        assert_eq!(class_at(start), Some(class), "no stagger in a first slot");
        let (_, end) = mapped_end(class).unwrap();
        assert_eq!(end, start + bytes, "a first slot is handed out whole");
        assert_eq!(class_at(end - 1), Some(class));
        assert_ne!(class_at(end), Some(class), "the next class's first slot");
        assert_ne!(
            class_at(start - 1),
            Some(class),
            "the previous class's first slot"
        );
        assert_eq!(
            class_at(range_start(class)),
            None,
            "its 2 MiB slots, unused"
        );
        // The same position in a later row, where the first slot's bits
        // would name this class again.
        assert_eq!(class_at(start + (1 << ROW_SHIFT)), None, "a later row");
        assert_eq!(object_class(start + (1 << ROW_SHIFT)), None, "a later row");
        crate::page_heap::free_span(span);
    }

    #[test]
    fn only_mapped_parts_of_lanes_have_a_class() {
        let _serial = crate::test_serial();
        // A class whose spans (96 KiB) are too big for a first slot.
        let class = crate::size_class::class_of(12 << 10, 16).unwrap();
        assert_eq!(first_slot(class), None);
        let span = crate::page_heap::alloc_class_span(class).unwrap();
        assert_eq!(
            class_at(span.start()),
            Some(class),
            "a class span in its range"
        );
        let start = range_start(class);
        assert_eq!(class_at(start), Some(class));
        let (_, end) = mapped_end(class).unwrap();
        assert_eq!(class_at(end - 1), Some(class));
        assert_eq!(class_at(end), None, "past the mapped part");
        let Slot::Row(row) = last_slot(class).0 else {
            panic!("in a first slot");
        };
        assert_eq!(class_at(slot_start(class, row + 1)), None, "a later row");
        let next = Class::from_index(class.index() + 1).unwrap();
        assert_ne!(class_at(slot_start(next, 0)), Some(class), "the next lane");
        // The stagger before the class's first span is below its end, but
        // not its: nothing of the class's is ever there.
        assert!(stagger(class) > 0);
        assert_eq!(class_at(slot_start(class, 0)), None, "the stagger");
        assert_eq!(object_class(slot_start(class, 0)), None, "the stagger");
        // Past the window, where the lane's bits would name this class again.
        let alias = start + WINDOW_BYTES;
        for addr in [0, 16, WINDOW - 1, MAP, usize::MAX - 15, alias] {
            assert_eq!(class_at(addr), None, "{addr:#x}");
            assert_eq!(object_class(addr), None, "{addr:#x}");
        }
        let stack_word = 0u64;
        assert_eq!(class_at(&stack_word as *const u64 as usize), None);
        crate::page_heap::free_span(span);
    }

    #[test]
    fn every_position_names_the_class_of_its_slots() {
        for class in Class::all() {
            let lane = position(slot_start(class, 0) - WINDOW);
            for p in lane..lane + LANE_POSITIONS {
                assert_eq!(POSITIONS_TABLE.classes[p] as usize, class.index());
            }
            let first = position(first_slot_start(class) - WINDOW);
            assert!(first >= NUM_CLASSES * LANE_POSITIONS);
            assert_eq!(POSITIONS_TABLE.classes[first] as usize, class.index());
            // A first slot lies in one position, after every class's lane.
            assert_eq!(
                position(first_slot_start(class) + FIRST_SLOT_BYTES - 1 - WINDOW),
                first
            );
        }
    }

    #[test]
    fn an_empty_slot_accepts_nothing_of_its_own_and_keeps_the_rows_below() {
        for class in Class::all() {
            let first = position(first_slot_start(class) - WINDOW);
            // Nothing at the first slot's position lies below its start.
            assert_eq!(
                end_offset(class, Slot::First, 0),
                first_slot_start(class) - WINDOW
            );
            assert_eq!(position(end_offset(class, Slot::First, 0)), first);
            assert_eq!(
                end_offset(class, Slot::Row(0), 0),
                slot_start(class, 0) - WINDOW
            );
            // Emptied while a shrink unmaps it, a later row's slot keeps
            // every address of the rows below in the class.
            let below = slot_start(class, 0) + SLOT_BYTES - 1 - WINDOW;
            assert!(end_offset(class, Slot::Row(1), 0) > below, "{class:?}");
        }
    }

    #[test]
    fn a_span_outside_its_own_lanes_spans_is_never_marked() {
        let _serial = crate::test_serial();
        // A class that starts in its slots of 2 MiB (spans of 96 KiB), so
        // that its lane has an end and its stagger lies below it.
        let class = crate::size_class::class_of(12 << 10, 16).unwrap();
        let other = crate::size_class::class_of(1024, 16).unwrap();
        let span = crate::page_heap::alloc_class_span(class).unwrap();
        // Records as the shared heap would make them for a chunk the kernel
        // put in this class's lane: in the stagger before its spans, and
        // among them but of another class.
        let in_stagger = crate::span::alloc_record().unwrap();
        in_stagger.set_range(slot_start(class, 0), class.span_pages());
        in_stagger.init_small(class);
        let foreign = crate::span::alloc_record().unwrap();
        foreign.set_range(span.start(), other.span_pages());
        foreign.init_small(other);
        for stray in [in_stagger, foreign] {
            mark(stray);
            assert_eq!(object_class(stray.start()), None, "{:#x}", stray.start());
            crate::span::free_record(stray);
        }
        assert_eq!(class_at(slot_start(class, 0)), None);
        crate::page_heap::free_span(span);
    }

    #[test]
    fn every_slot_lies_in_the_window_and_holds_a_span() {
        for class in Class::all() {
            let last = slot_start(class, ROWS - 1) + SLOT_BYTES;
            assert!(last <= WINDOW + WINDOW_BYTES, "{class:?}");
            assert!(slot_start(class, 0) >= WINDOW);
            // A class whose span does not fit in a slot never grows a range.
            if span_bytes(class) <= SLOT_BYTES {
                assert!(
                    stagger(class) + span_bytes(class) <= full(class),
                    "{class:?}"
                );
                assert!(full(class) <= SLOT_BYTES);
            }
            // Its slots' start maps lie in the map, each on whole pages.
            let map = map_word(slot_start(class, ROWS - 1) - WINDOW);
            assert!(map + SLOT_MAP_BYTES <= map_word(WINDOW_BYTES));
            assert!(map.is_multiple_of(PAGE_SIZE));
            // Its first slot, if any, holds a span and lies in row 0, whose
            // map is mapped with the first slots.
            if let Some((start, bytes)) = first_slot(class) {
                assert!(bytes >= span_bytes(class) && bytes <= FIRST_SLOT_BYTES);
                assert!(start >= FIRST_SLOTS && start + bytes <= FIRST_SLOTS + FIRST_SLOTS_BYTES);
                assert!(map_word(start + bytes - WINDOW) <= map_word(0) + ROW_MAP_BYTES);
            }
        }
        // A place taken by someone else is not mapped over.
        let taken = slot_start(Class::from_index(3).unwrap(), ROWS - 1);
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
