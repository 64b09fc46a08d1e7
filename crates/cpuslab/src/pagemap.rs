//! The page map: address -> owning `Span`, in O(1), for any address.
//!
//! A two-level radix tree over the 47-bit user address space, indexed by page
//! number (addr >> 12, 35 bits): a static root of 2^20 leaf pointers (8 MiB of
//! zero-fill .bss, of which only the pages covering used address space are ever
//! touched), then leaves of 2^15 entries (one span pointer per page, 128 MiB of
//! address space each, 288 KiB mapped), mmap'ed (zeroed) on demand. A C `free`
//! outside the class ranges walks it, so it has two levels rather than three:
//! one dependent load less. Leaves are small because the class ranges
//! (`class_range`) spread over the address space: when each lay 16 GiB from
//! the next, 1 GiB leaves cost a program using every class 216 MiB. (The
//! first 2 MiB slots of every class now lie in two leaves.)
//! Leaves are installed with a compare-and-swap and never freed, so `get` is
//! lock-free, works on any address (null, garbage, kernel addresses) and never
//! faults: unmapped parts of the tree simply read as null.
//!
//! Entries are written by the owners of the memory (the page heap for spans
//! and free runs, the large path for big objects). An entry may be stale (it
//! names a span record that has since moved on); readers therefore check that
//! the address really lies inside the span they get back.
//!
//! The pages of a small-object span also carry its size class, a byte per page
//! in each leaf beside the span pointers (TCMalloc keeps a class per page for
//! the same reason): C `free` learns the class there, so the per-CPU push does
//! not wait for the span record, whose checks run alongside it
//! (`owner::find`); 64 pages share a cache line of classes, 8 one of pointers.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::size_class::Class;
use crate::span::Span;

/// Bits of user virtual address on x86-64 with 4-level paging.
const ADDRESS_BITS: u32 = 47;
/// Bits of page number.
const PAGE_NUMBER_BITS: u32 = ADDRESS_BITS - PAGE_SHIFT;
/// Index bits of a leaf (the root gets the rest).
const LEAF_BITS: u32 = 15;
const ROOT_BITS: u32 = PAGE_NUMBER_BITS - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const ROOT_LEN: usize = 1 << ROOT_BITS;

const _: () = assert!(crate::size_class::NUM_CLASSES < 255);

/// A leaf (covers 128 MiB of address space): one span pointer per page, and one
/// class byte per page in an array of its own (class index + 1 for the pages
/// of a small-object span, else 0). C `free` reads the class there, where a
/// cache line covers 64 pages.
struct Leaf {
    spans: [AtomicPtr<Span>; LEAF_LEN],
    classes: [AtomicU8; LEAF_LEN],
}

static ROOT: [AtomicPtr<Leaf>; ROOT_LEN] = [const { AtomicPtr::new(ptr::null_mut()) }; ROOT_LEN];
/// Bytes mapped for leaves (statistics).
static NODE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Splits an address into (root, leaf) indices; `None` outside the 47-bit user
/// address space.
#[inline]
fn split(addr: usize) -> Option<(usize, usize)> {
    if addr >> ADDRESS_BITS != 0 {
        return None;
    }
    let page = addr >> PAGE_SHIFT;
    Some((page >> LEAF_BITS, page & (LEAF_LEN - 1)))
}

/// The page map's entry for one page: found with one walk, then read and
/// cleared without walking again.
#[derive(Clone, Copy, Debug)]
pub struct Entry(&'static AtomicPtr<Span>, &'static AtomicU8);

impl Entry {
    /// The span registered for the page, if any; it may be stale (see the module
    /// comment).
    #[inline(always)]
    pub fn span(self) -> Option<&'static Span> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: only span records are stored (`set_range` takes
        // `&'static Span`); records are never unmapped and every field of `Span`
        // is an atomic or an owner-only Cell, so a shared reference is sound.
        unsafe { p.as_ref() }
    }

    /// The span registered for the page and the class byte beside it (a
    /// small-object span's; `None` for anything else). Both may be stale: check
    /// the class against the span's record.
    #[inline(always)]
    pub fn tagged(self) -> (Option<&'static Span>, Option<Class>) {
        let tag = self.1.load(Ordering::Acquire) as usize;
        (self.span(), tag.checked_sub(1).and_then(Class::from_index))
    }

    /// Clears the entry if it still names `span` (so a racing owner that
    /// re-registered the page is left alone). Returns whether this call cleared
    /// it: of two threads clearing one entry, exactly one wins.
    pub fn clear_if(self, span: &'static Span) -> bool {
        let span = ptr::from_ref(span).cast_mut();
        let cleared = self
            .0
            .compare_exchange(span, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if cleared {
            self.1.store(0, Ordering::Release);
        }
        cleared
    }
}

/// The entry for the page holding `addr`, if its leaf exists. Safe on any
/// address.
#[inline]
pub fn entry(addr: usize) -> Option<Entry> {
    let (_, l) = split(addr)?;
    let leaf = leaf(addr, false)?;
    Some(Entry(leaf.spans.get(l)?, leaf.classes.get(l)?))
}

/// The span registered for the page holding `addr`, if any. Safe on any
/// address; the result may be stale (see the module comment).
#[inline]
pub fn get(addr: usize) -> Option<&'static Span> {
    entry(addr)?.span()
}

/// Starts loading the entry of the page holding `addr`, for a [`get`] soon
/// (a hint; nothing where there is no leaf).
#[inline]
pub fn prefetch(addr: usize) {
    if let Some(entry) = entry(addr) {
        os::prefetch(entry.0.as_ptr().cast());
    }
}

/// Makes sure tree nodes exist for every page of `[addr, addr + len)`, so that
/// later `set_range` calls on it cannot fail. `false` when out of memory or
/// the range is outside the user address space.
pub fn ensure(addr: usize, len: usize) -> bool {
    let Some(last) = addr.checked_add(len.max(1) - 1) else {
        return false;
    };
    let mut a = addr & !(PAGE_SIZE - 1);
    loop {
        if leaf(a, true).is_none() {
            return false;
        }
        // Next leaf (each covers LEAF_LEN pages).
        let leaf_span = LEAF_LEN << PAGE_SHIFT;
        let next = (a & !(leaf_span - 1)).checked_add(leaf_span);
        match next {
            Some(n) if n <= last => a = n,
            _ => return true,
        }
    }
}

/// Registers `span` for `pages` pages starting at the page-aligned `addr`.
/// Pages whose nodes were not `ensure`d first are skipped and make it return
/// `false`.
pub fn set_range(addr: usize, pages: usize, span: &'static Span) -> bool {
    store_range(addr, pages, ptr::from_ref(span).cast_mut())
}

/// Gives the pages of the small-object span `span` (registered already, by the
/// page heap) the class byte of `class`.
pub fn set_small(span: &'static Span, class: Class) -> bool {
    let tag = (class.index() + 1) as u8;
    for_each_run(span.start(), span.pages(), |leaf, index, n| {
        for byte in leaf.classes.iter().skip(index).take(n) {
            byte.store(tag, Ordering::Release);
        }
    })
}

/// Registers `span` (with no class) for `pages` pages from `addr`.
fn store_range(addr: usize, pages: usize, span: *mut Span) -> bool {
    for_each_run(addr, pages, |leaf, index, n| {
        for entry in leaf.spans.iter().skip(index).take(n) {
            entry.store(span, Ordering::Release);
        }
        for byte in leaf.classes.iter().skip(index).take(n) {
            byte.store(0, Ordering::Release);
        }
    })
}

/// Calls `f(leaf, first index, count)` for the run of entries of each leaf that
/// `pages` pages from `addr` cover; false if a leaf was missing (its pages are
/// skipped).
fn for_each_run(addr: usize, pages: usize, mut f: impl FnMut(&Leaf, usize, usize)) -> bool {
    let first = addr >> PAGE_SHIFT;
    let Some(end) = first.checked_add(pages) else {
        return false;
    };
    let mut ok = true;
    let mut page = first;
    // One leaf at a time: up to LEAF_LEN entries per tree walk.
    while page < end {
        let index = page & (LEAF_LEN - 1);
        let n = (LEAF_LEN - index).min(end - page);
        match leaf(page << PAGE_SHIFT, false) {
            Some(leaf) => f(leaf, index, n),
            None => ok = false,
        }
        page += n;
    }
    ok
}

/// Registers `span` for the single page holding `addr` (nodes must exist).
pub fn set(addr: usize, span: &'static Span) -> bool {
    set_range(addr & !(PAGE_SIZE - 1), 1, span)
}

/// Clears the entry for the page holding `addr` if it still names `span`
/// (so a racing owner that re-registered the page is left alone). Returns
/// whether this call cleared it.
pub fn clear_if(addr: usize, span: &'static Span) -> bool {
    entry(addr).is_some_and(|entry| entry.clear_if(span))
}

/// Bytes mapped for page-map leaves (address space; only touched pages are
/// resident).
pub fn node_bytes() -> usize {
    NODE_BYTES.load(Ordering::Relaxed)
}

/// The leaf covering `addr`, creating it if missing and `create` is set.
#[inline]
fn leaf(addr: usize, create: bool) -> Option<&'static Leaf> {
    let (r, _) = split(addr)?;
    let leaf = node(ROOT.get(r)?, create)?;
    // SAFETY: leaves are mapped zeroed (a valid array of null atomics) and never
    // unmapped, so a shared 'static reference is sound.
    unsafe { leaf.as_ref() }
}

/// Loads a child node pointer, installing a fresh zeroed node if it is null
/// and `create` is set.
fn node<T>(slot: &AtomicPtr<T>, create: bool) -> Option<*mut T> {
    let p = slot.load(Ordering::Acquire);
    if !p.is_null() {
        return Some(p);
    }
    if !create {
        return None;
    }
    let bytes = core::mem::size_of::<T>();
    let fresh = os::map(bytes)?.as_ptr().cast::<T>();
    match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            NODE_BYTES.fetch_add(bytes, Ordering::Relaxed);
            Some(fresh)
        }
        Err(winner) => {
            // SAFETY: `fresh` was never published; nobody else can see it.
            unsafe { os::unmap(fresh.cast(), bytes) };
            Some(winner)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_addresses_read_null() {
        for a in [
            0usize,
            1,
            4095,
            0xdead_beef,
            1 << 46,
            (1 << 47) - 1,
            1 << 47,
            usize::MAX,
        ] {
            assert!(get(a).is_none(), "{a:#x}");
        }
        let local = 5u8;
        assert!(get(&local as *const u8 as usize).is_none());
    }

    #[test]
    fn set_get_clear() {
        // An address range nobody else uses: a fresh private mapping.
        let len = 64 * PAGE_SIZE;
        let base = os::map(len).unwrap().as_ptr() as usize;
        let span = crate::span::alloc_record().unwrap();
        let other = crate::span::alloc_record().unwrap();
        let is = |a: usize, s: &Span| get(a).is_some_and(|g| ptr::eq(g, s));
        assert!(ensure(base, len));
        assert!(set_range(base + PAGE_SIZE, 3, span));
        assert!(get(base).is_none());
        assert!(is(base + PAGE_SIZE, span));
        assert!(is(base + 4 * PAGE_SIZE - 1, span));
        assert!(get(base + 4 * PAGE_SIZE).is_none());
        assert!(!clear_if(base + PAGE_SIZE, other));
        assert!(clear_if(base + PAGE_SIZE, span));
        assert!(get(base + PAGE_SIZE).is_none());
        let class = Class::from_index(3).unwrap();
        span.set_range(base + PAGE_SIZE, 3);
        assert!(set_small(span, class));
        let (tagged, tag) = entry(base + 3 * PAGE_SIZE).unwrap().tagged();
        assert!(tagged.is_some_and(|t| ptr::eq(t, span)) && tag == Some(class));
        assert!(is(base + 2 * PAGE_SIZE, span));
        assert!(entry(base).unwrap().tagged().1.is_none());
        assert!(clear_if(base + 2 * PAGE_SIZE, span));
        assert!(get(base + 2 * PAGE_SIZE).is_none());
        assert!(store_range(base, 64, ptr::null_mut()));
        assert!(get(base + 2 * PAGE_SIZE).is_none());
        assert!(!ensure(1 << 47, 1));
        assert!(node_bytes() > 0);
        crate::span::free_record(span);
        crate::span::free_record(other);
        // SAFETY: the mapping was made above and only used as an address.
        unsafe { os::unmap(base as *mut u8, len) };
    }
}
