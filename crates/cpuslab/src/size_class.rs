//! Size classes: which object size serves a request of (size, align).
//!
//! Classes are multiples of 16 bytes. Up to 128 bytes they step by 16
//! (16, 32, ..., 128); above that every power-of-two band (2^k, 2^(k+1)] is
//! cut into 8 equal steps of 2^(k-3) (144, 160, ..., 256, 288, ..., 256 KiB).
//! So for every size >= 128 the class is at most size * 9/8 (waste <= 12.5%);
//! below 128 the waste is under 16 bytes (the 16-byte granularity: 12.5% is
//! not reachable there with 16-byte-aligned classes).
//!
//! Alignment: objects sit at `k * class_size` from a page-aligned span start,
//! so a class serves alignment `a` (<= 4096) when its size is a multiple of
//! `a`. Rounding the size up to `a` first always lands on such a class
//! (multiples of `a` that are >= 2^(k-3)-granular are class sizes, smaller
//! steps round to a multiple of the step, itself a multiple of `a`).
//!
//! The lookup is arithmetic on leading zeros, no loop; the per-class tables
//! (size, pages per span, objects per span, batch size) are computed at
//! compile time by `const fn` and indexed by the `u8` class index.

use crate::os::PAGE_SIZE;

/// Largest size served by size classes; bigger requests take the large path.
pub const MAX_SMALL: usize = 256 * 1024;
/// Largest alignment served by size classes.
pub const MAX_CLASS_ALIGN: usize = PAGE_SIZE;
/// Alignment every class guarantees (all class sizes are multiples of it).
pub const MIN_ALIGN: usize = 16;
/// Sizes up to this step linearly by `MIN_ALIGN`.
const LINEAR_LIMIT: usize = 128;
/// Number of linear classes: 16, 32, ..., 128.
const LINEAR_CLASSES: usize = LINEAR_LIMIT / MIN_ALIGN;
/// log2(LINEAR_LIMIT): the first geometric band is (2^7, 2^8].
const LINEAR_LIMIT_SHIFT: u32 = LINEAR_LIMIT.trailing_zeros();
/// log2 of the number of steps per power-of-two band.
const STEPS_SHIFT: u32 = 3;
/// Steps per power-of-two band (8 steps: waste <= 1/8).
const STEPS_PER_BAND: usize = 1 << STEPS_SHIFT;
/// Number of geometric bands: (2^7, 2^8], ..., (2^17, 2^18].
const BANDS: usize = (MAX_SMALL.trailing_zeros() - LINEAR_LIMIT_SHIFT) as usize;
/// Number of size classes.
pub const NUM_CLASSES: usize = LINEAR_CLASSES + BANDS * STEPS_PER_BAND;

/// A span holds at least this many objects (so big classes are not one-per-span).
const MIN_OBJECTS_PER_SPAN: usize = 8;
/// A span holds at most this many objects (the size of the span's bitmap).
pub const MAX_OBJECTS_PER_SPAN: usize = 512;
/// Spans of small classes are at least this big (fewer trips to the page heap).
const MIN_SPAN_BYTES: usize = 16 * 1024;
/// The unusable tail of a span is at most 1/WASTE_DIVISOR of the span.
const WASTE_DIVISOR: usize = 8;
/// Bytes moved per batch between tiers, before clamping.
const BATCH_BYTES: usize = 64 * 1024;
/// Batch size bounds (objects).
const MIN_BATCH: usize = 2;
const MAX_BATCH: usize = 64;
/// Tables are indexed by the `u8` class index: 256 entries, no bounds checks.
const TABLE_LEN: usize = 256;

/// A size class. Invariant: `index() < NUM_CLASSES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class(u8);

impl Class {
    /// The class with this index, if there is one.
    #[inline]
    pub const fn from_index(index: usize) -> Option<Class> {
        if index < NUM_CLASSES {
            Some(Class(index as u8))
        } else {
            None
        }
    }

    /// The class with this index, unchecked (for a fast path that knows
    /// the index from an invariant rather than a compare).
    ///
    /// # Safety
    /// `index < NUM_CLASSES`.
    #[inline(always)]
    pub const unsafe fn from_index_unchecked(index: usize) -> Class {
        debug_assert!(index < NUM_CLASSES);
        Class(index as u8)
    }

    /// Position of this class in `0..NUM_CLASSES`.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Object size in bytes (a multiple of 16).
    #[inline]
    pub const fn size(self) -> usize {
        CLASS_SIZE[self.0 as usize] as usize
    }

    /// Pages per span of this class.
    #[inline]
    pub const fn span_pages(self) -> usize {
        SPAN_PAGES[self.0 as usize] as usize
    }

    /// Objects per span of this class (1..=MAX_OBJECTS_PER_SPAN).
    #[inline]
    pub const fn objects_per_span(self) -> usize {
        // A table, not a division: free by address checks it on every call.
        OBJECTS_PER_SPAN[self.0 as usize] as usize
    }

    /// Objects moved per batch between the per-CPU tier, the depot and the
    /// central lists: clamp(64 KiB / size, 2, 64).
    #[inline]
    pub const fn batch_size(self) -> usize {
        let n = BATCH_BYTES / self.size();
        if n < MIN_BATCH {
            MIN_BATCH
        } else if n > MAX_BATCH {
            MAX_BATCH
        } else {
            n
        }
    }

    /// The index of the object of this class starting `offset` bytes into a
    /// span of it; `None` for any other offset (see [`ObjectCheck`]).
    #[inline]
    pub const fn object_index(self, offset: usize) -> Option<usize> {
        OBJECT_CHECKS[self.0 as usize].object_index(offset)
    }

    /// Every class in increasing size order.
    pub fn all() -> impl Iterator<Item = Class> {
        (0..NUM_CLASSES as u8).map(Class)
    }
}

/// The class serving `size` bytes at alignment `align` (a power of two), or
/// `None` when the large path must: size > MAX_SMALL, align > 4096, or align
/// not a power of two. Size 0 gets the smallest class. Pure: the same
/// arguments always give the same class (it is recomputed on free).
#[inline]
pub const fn class_of(size: usize, align: usize) -> Option<Class> {
    if size > MAX_SMALL || align > MAX_CLASS_ALIGN || !align.is_power_of_two() {
        return None;
    }
    // size <= 256 KiB and align <= 4096 divides 256 KiB: no overflow, and the
    // rounded size is still <= MAX_SMALL. Size 0 counts as 1 so that it too
    // lands on a multiple of `align`.
    let size = if align > MIN_ALIGN {
        let s = if size == 0 { 1 } else { size };
        (s + align - 1) & !(align - 1)
    } else {
        size
    };
    Some(Class(index_of_size(size) as u8))
}

/// Requests up to this size (at alignments up to `MIN_ALIGN`) find their class in
/// [`SMALL_CLASS`] with one load: the common case, on every alloc and sized free.
/// 32 KiB covers the buffers programs ask for most (4 and 8 KiB I/O buffers, a
/// `Vec`'s doublings) with a 2 KiB table, of which a program touches only the
/// lines of the sizes it uses.
const TABLE_LIMIT: usize = 32 * 1024;

/// Class index of every size up to `TABLE_LIMIT`, by `size.div_ceil(MIN_ALIGN)`.
static SMALL_CLASS: [u8; TABLE_LIMIT / MIN_ALIGN + 1] = {
    let mut table = [0; TABLE_LIMIT / MIN_ALIGN + 1];
    let mut i = 0;
    while i < table.len() {
        table[i] = index_of_size(i * MIN_ALIGN) as u8;
        i += 1;
    }
    table
};

/// The class of a request up to `TABLE_LIMIT` bytes at an alignment (a power
/// of two, which `Layout` guarantees) up to [`MIN_ALIGN`], by one table load;
/// None for any other request (which [`class_of_layout`] answers). The Rust
/// entry points' straight line.
#[inline(always)]
pub fn table_class(size: usize, align: usize) -> Option<Class> {
    debug_assert!(align.is_power_of_two());
    // Two compare-and-branch pairs (not a combined flag, which costs two more
    // instructions on the straight line).
    if size > TABLE_LIMIT {
        core::hint::cold_path();
        return None;
    }
    if align > MIN_ALIGN {
        core::hint::cold_path();
        return None;
    }
    Some(table_load(size))
}

/// The table's class of `size` (<= `TABLE_LIMIT`) at an alignment up to
/// [`MIN_ALIGN`].
#[inline(always)]
fn table_load(size: usize) -> Class {
    // Every class is a multiple of MIN_ALIGN: no rounding to the alignment.
    Class(SMALL_CLASS[size.div_ceil(MIN_ALIGN)])
}

/// [`class_of`] for a `Layout`'s size and alignment (a power of two, which `Layout`
/// guarantees): small requests take one table load.
#[inline(always)]
pub fn class_of_layout(size: usize, align: usize) -> Option<Class> {
    debug_assert!(align.is_power_of_two());
    if align > MIN_ALIGN {
        return class_of(size, align);
    }
    if size <= TABLE_LIMIT {
        Some(table_load(size))
    } else if size <= MAX_SMALL {
        Some(Class(index_of_size(size) as u8))
    } else {
        None
    }
}

/// Class index of `size` (<= MAX_SMALL) ignoring alignment.
#[inline]
const fn index_of_size(size: usize) -> usize {
    if size <= LINEAR_LIMIT {
        // 0 and 1..=16 -> 0, 17..=32 -> 1, ...
        let s = if size == 0 { 1 } else { size };
        s.div_ceil(MIN_ALIGN) - 1
    } else {
        // size in (2^k, 2^(k+1)] with k >= 7; step 2^(k-3).
        let k = usize::BITS - 1 - (size - 1).leading_zeros();
        let step_shift = k - STEPS_SHIFT;
        let step = ((size - 1 - (1 << k)) >> step_shift) + 1; // 1..=8
        LINEAR_CLASSES + (k - LINEAR_LIMIT_SHIFT) as usize * STEPS_PER_BAND + step - 1
    }
}

/// Size of the class with index `i` (0 for indices past the last class).
const fn size_of_index(i: usize) -> usize {
    if i < LINEAR_CLASSES {
        (i + 1) * MIN_ALIGN
    } else if i < NUM_CLASSES {
        let band = (i - LINEAR_CLASSES) / STEPS_PER_BAND;
        let step = (i - LINEAR_CLASSES) % STEPS_PER_BAND + 1;
        let k = band as u32 + LINEAR_LIMIT_SHIFT;
        (1 << k) + step * (1 << (k - STEPS_SHIFT))
    } else {
        0
    }
}

/// Pages per span for objects of `size`: the fewest pages such that the span
/// holds at least MIN_OBJECTS_PER_SPAN objects and MIN_SPAN_BYTES, wastes at
/// most 1/8 at its end, and holds at most MAX_OBJECTS_PER_SPAN objects.
const fn span_pages_for(size: usize) -> usize {
    if size == 0 {
        return 0;
    }
    let mut pages = 1;
    loop {
        let bytes = pages * PAGE_SIZE;
        let objects = bytes / size;
        let waste = bytes - objects * size;
        let big_enough = objects >= MIN_OBJECTS_PER_SPAN
            && (bytes >= MIN_SPAN_BYTES || (bytes + PAGE_SIZE) / size > MAX_OBJECTS_PER_SPAN);
        if big_enough && waste * WASTE_DIVISOR <= bytes && objects <= MAX_OBJECTS_PER_SPAN {
            return pages;
        }
        pages += 1;
    }
}

const fn build_sizes() -> [u32; TABLE_LEN] {
    let mut t = [0u32; TABLE_LEN];
    let mut i = 0;
    while i < NUM_CLASSES {
        t[i] = size_of_index(i) as u32;
        i += 1;
    }
    // Indices past the last class are never built (Class invariant); give
    // them a non-zero size anyway so no division by these entries can trap.
    while i < TABLE_LEN {
        t[i] = MAX_SMALL as u32;
        i += 1;
    }
    t
}

const fn build_span_pages() -> [u16; TABLE_LEN] {
    let mut t = [0u16; TABLE_LEN];
    let mut i = 0;
    while i < TABLE_LEN {
        t[i] = span_pages_for(CLASS_SIZE[i] as usize) as u16;
        i += 1;
    }
    t
}

const fn build_objects_per_span() -> [u16; TABLE_LEN] {
    let mut t = [0u16; TABLE_LEN];
    let mut i = 0;
    while i < TABLE_LEN {
        t[i] = (SPAN_PAGES[i] as usize * PAGE_SIZE / CLASS_SIZE[i] as usize) as u16;
        i += 1;
    }
    t
}

/// Which object of one class starts at an offset into a span, if one does:
/// `offset` is `j * size` for some `j < objects`, and `j` is the answer. One
/// multiply (by the inverse of the size's odd part), a rotation (by the size's
/// power of two) and one compare (Hacker's Delight, 10-17): for such an offset
/// the product, rotated, is `j` itself, and for any other 64-bit value it is
/// not below the object count:
/// a result `q` below it, rotated back, is `q * 2^twos` without wrapping (as
/// `q * size` is below the span's bytes), so `offset` equals `q * size`
/// modulo 2^64, and both are below 2^64. C `free` checks every pointer
/// outside the class ranges with it (`span::object_index`); inside them the
/// start map answers (`class_range`).
#[derive(Clone, Copy, Debug)]
pub struct ObjectCheck {
    odd_inverse: u64,
    objects: u16,
    twos: u8,
}

impl ObjectCheck {
    /// The check for objects of `size` bytes, `objects` to a span.
    const fn new(size: u64, objects: u16) -> ObjectCheck {
        let twos = size.trailing_zeros();
        let odd = size >> twos;
        // Newton's iteration doubles the correct low bits: 3 -> 6 -> ... -> 96.
        let mut x = odd;
        let mut step = 0;
        while step < 5 {
            x = x.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(x)));
            step += 1;
        }
        ObjectCheck {
            odd_inverse: x,
            objects,
            twos: twos as u8,
        }
    }

    /// A check that accepts nothing.
    const NOTHING: ObjectCheck = ObjectCheck {
        odd_inverse: 0,
        objects: 0,
        twos: 0,
    };

    /// The index of the object starting `offset` bytes into the span, if one
    /// does.
    #[inline(always)]
    pub const fn object_index(&self, offset: usize) -> Option<usize> {
        let q = (offset as u64)
            .wrapping_mul(self.odd_inverse)
            .rotate_right(self.twos as u32);
        if q < self.objects as u64 {
            Some(q as usize)
        } else {
            None
        }
    }
}

const fn build_object_checks() -> [ObjectCheck; TABLE_LEN] {
    let mut checks = [ObjectCheck::NOTHING; TABLE_LEN];
    let mut i = 0;
    while i < TABLE_LEN {
        let size = CLASS_SIZE_TABLE[i] as u64;
        if size > 0 {
            checks[i] = ObjectCheck::new(size, OBJECTS_PER_SPAN_TABLE[i]);
        }
        i += 1;
    }
    checks
}

const CLASS_SIZE_TABLE: [u32; TABLE_LEN] = build_sizes();
const OBJECTS_PER_SPAN_TABLE: [u16; TABLE_LEN] = build_objects_per_span();
static OBJECT_CHECKS: [ObjectCheck; TABLE_LEN] = build_object_checks();

static CLASS_SIZE: [u32; TABLE_LEN] = CLASS_SIZE_TABLE;
static SPAN_PAGES: [u16; TABLE_LEN] = build_span_pages();
static OBJECTS_PER_SPAN: [u16; TABLE_LEN] = OBJECTS_PER_SPAN_TABLE;

// Compile-time checks of the table's shape.
const _: () = assert!(NUM_CLASSES <= u8::MAX as usize);
const _: () = assert!(MAX_OBJECTS_PER_SPAN <= u16::MAX as usize);
const _: () = assert!(size_of_index(NUM_CLASSES - 1) == MAX_SMALL);
const _: () = assert!(index_of_size(MAX_SMALL) == NUM_CLASSES - 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_index_agrees_with_division_on_every_offset_of_a_span() {
        for class in Class::all() {
            let size = class.size();
            let end = class.span_pages() * PAGE_SIZE + 2 * size;
            for offset in (0..end).step_by(16).chain([1, 8, size - 1, size + 1]) {
                let expected = offset % size == 0 && offset / size < class.objects_per_span();
                assert_eq!(
                    class.object_index(offset).is_some(),
                    expected,
                    "{size} B at {offset}"
                );
                assert_eq!(
                    class.object_index(offset),
                    expected.then_some(offset / size),
                    "{size} B at {offset}"
                );
            }
            // Offsets wrapped below 0 (an address before a span's start, as a
            // subtraction without a check would give): never an object start.
            for back in (1..=2 * PAGE_SIZE).step_by(8).chain([size]) {
                assert!(
                    class.object_index(0usize.wrapping_sub(back)).is_none(),
                    "{size} B, {back} below 0"
                );
            }
        }
    }

    fn check(size: usize, align: usize) {
        let c = class_of(size, align).unwrap_or_else(|| panic!("no class for {size} {align}"));
        let cs = c.size();
        assert!(cs >= size.max(1), "size {size} align {align} -> {cs}");
        assert_eq!(
            cs % align.max(MIN_ALIGN),
            0,
            "size {size} align {align} -> {cs}"
        );
        if align <= MIN_ALIGN {
            if size >= LINEAR_LIMIT {
                assert!(cs * 8 <= size * 9, "waste: size {size} -> {cs}");
            } else {
                assert!(cs < size.max(1) + MIN_ALIGN, "waste: size {size} -> {cs}");
            }
            // The smallest class that fits.
            if c.index() > 0 {
                let prev = Class::from_index(c.index() - 1).unwrap();
                assert!(prev.size() < size, "size {size}: {} also fits", prev.size());
            }
        }
        assert_eq!(class_of(size, align), Some(c), "deterministic");
    }

    #[test]
    fn every_size_round_trips_at_small_alignments() {
        for size in 0..=MAX_SMALL {
            for align in [1, 2, 8, 16] {
                check(size, align);
            }
        }
    }

    #[test]
    fn every_size_round_trips_at_big_alignments() {
        for shift in 5..=12 {
            let align = 1usize << shift;
            for size in (0..=MAX_SMALL).step_by(7).chain([MAX_SMALL - 1, MAX_SMALL]) {
                check(size, align);
            }
        }
    }

    #[test]
    fn the_layout_table_agrees_with_the_arithmetic() {
        for shift in 0..=13 {
            let align = 1usize << shift;
            for size in (0..=4 * TABLE_LIMIT).chain([MAX_SMALL, MAX_SMALL + 1]) {
                assert_eq!(
                    class_of_layout(size, align),
                    class_of(size, align),
                    "{size} at {align}"
                );
                // The entry points' straight line answers exactly the table's
                // requests, and as the arithmetic does.
                let in_table = size <= TABLE_LIMIT && align <= MIN_ALIGN;
                let expected = if in_table {
                    class_of(size, align)
                } else {
                    None
                };
                assert_eq!(table_class(size, align), expected, "{size} at {align}");
            }
        }
    }

    #[test]
    fn out_of_range_goes_large() {
        assert_eq!(class_of(MAX_SMALL + 1, 1), None);
        assert_eq!(class_of(16, 8192), None);
        assert_eq!(class_of(16, 3), None);
        assert_eq!(class_of(usize::MAX, 16), None);
        assert_eq!(class_of(0, 0), None);
    }

    #[test]
    fn classes_increase_and_spans_are_sane() {
        let mut prev = 0;
        for c in Class::all() {
            let size = c.size();
            assert!(size > prev && size % MIN_ALIGN == 0);
            prev = size;
            let bytes = c.span_pages() * PAGE_SIZE;
            let objects = c.objects_per_span();
            assert!((MIN_OBJECTS_PER_SPAN..=MAX_OBJECTS_PER_SPAN).contains(&objects));
            assert!(
                (bytes - objects * size) * WASTE_DIVISOR <= bytes,
                "class {size}"
            );
            assert!((MIN_BATCH..=MAX_BATCH).contains(&c.batch_size()));
        }
        assert_eq!(prev, MAX_SMALL);
        assert_eq!(Class::all().count(), NUM_CLASSES);
        assert_eq!(Class::from_index(NUM_CLASSES), None);
    }

    #[test]
    fn table_summary() {
        let first: Vec<usize> = Class::all().take(12).map(|c| c.size()).collect();
        assert_eq!(
            first,
            [16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192]
        );
        assert_eq!(NUM_CLASSES, 96);
    }
}
