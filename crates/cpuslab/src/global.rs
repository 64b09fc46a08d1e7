//! The front end: [`CpuSlab`] (`GlobalAlloc`) and the by-address entry points of
//! the C API. The whole fast path is on this screen: size class, one attempt at a
//! restartable pop or push on this CPU's stack; everything else (restarts, the
//! fallback, refills, overflows) is one cold tail call, and so is a layout
//! beyond the class table, so the fast path needs no callee-saved registers
//! and no stack frame.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use crate::class_range;
use crate::cpu_cache;
use crate::first_use;
use crate::large;
use crate::owner::{self, Found, LargeAt, Owner};
use crate::report;
use crate::size_class::{class_of, class_of_layout, table_class, Class, MIN_ALIGN};

/// The allocator: `#[global_allocator] static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;`
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSlab;

#[inline(always)]
fn alloc_small(class: Class) -> *mut u8 {
    match pop(class) {
        Some(object) => object,
        None => cpu_cache::alloc_miss(class),
    }
}

/// One inline pop from this CPU's stack of `class`; None on anything but
/// success (the miss path retries).
#[inline(always)]
fn pop(class: Class) -> Option<*mut u8> {
    let object = cpu_cache::stacks(cpu_cache::fast_region(), class).try_pop_and_prefetch()?;
    #[cfg(feature = "op-counters")]
    cpu_cache::note_operation(class, true);
    Some(object)
}

/// For C `malloc`: a block of `size` bytes (aligned to [`MIN_ALIGN`]) of a
/// small class from this CPU's cache, the inline pop alone; None for a size
/// above the classes and when the pop misses, for which the caller takes, as
/// tail calls so that its fast path saves no register, [`alloc_small_missed`]
/// for a small size (it sets errno itself) and the full path
/// ([`GlobalAlloc::alloc`]: large blocks; errno) for a larger one.
#[inline(always)]
pub fn alloc_small_by_size(size: usize) -> Option<*mut u8> {
    pop(class_of_layout(size, MIN_ALIGN)?)
}

/// After [`alloc_small_by_size`] returned None: the per-CPU tier's slow path
/// for a small size (a restart, the thread's cache without rseq, a refill);
/// null for a size above [`MAX_SMALL`](crate::MAX_SMALL), and, with errno
/// ENOMEM, when out of memory (so that C `malloc` returns it as is, as a tail
/// call).
pub fn alloc_small_missed(size: usize) -> *mut u8 {
    match class_of_layout(size, MIN_ALIGN) {
        Some(class) => cpu_cache::alloc_miss(class),
        None => ptr::null_mut(),
    }
}

/// # Safety
/// `object` is a live object of `class` that nobody uses after this call.
#[inline(always)]
unsafe fn dealloc_small(class: Class, object: *mut u8) {
    let region = cpu_cache::fast_region();
    if cpu_cache::stacks(region, class).try_push(object) {
        #[cfg(feature = "op-counters")]
        cpu_cache::note_operation(class, false);
        return;
    }
    // SAFETY: forwarded contract.
    unsafe { cpu_cache::dealloc_miss(class, object) }
}

/// A large block (above the classes, or aligned beyond them): the large tier,
/// after the first-use steps (a large request can be a process's first).
#[cold]
#[inline(never)]
fn alloc_large(layout: Layout, zeroed: bool) -> *mut u8 {
    first_use::ensure();
    if zeroed {
        large::alloc_large(layout.size(), layout.align())
    } else {
        large::alloc_large_uninit(layout.size(), layout.align())
    }
}

/// [`GlobalAlloc::alloc`] for a layout beyond the class table (above 32 KiB,
/// or aligned beyond [`MIN_ALIGN`]): out of line, so that the table's case is
/// a straight line with no stack frame.
#[inline(never)]
fn alloc_by_layout(layout: Layout) -> *mut u8 {
    match class_of_layout(layout.size(), layout.align()) {
        Some(class) => alloc_small(class),
        None => alloc_large(layout, false),
    }
}

/// [`GlobalAlloc::dealloc`] for a layout beyond the class table, as
/// [`alloc_by_layout`].
///
/// # Safety
/// `ptr` is a live block allocated for `layout` that nobody uses after this.
#[inline(never)]
unsafe fn dealloc_by_layout(ptr: *mut u8, layout: Layout) {
    match class_of_layout(layout.size(), layout.align()) {
        // SAFETY: the caller frees a block it got for this layout, hence of
        // the class computed the same way on alloc.
        Some(class) => unsafe { dealloc_small(class, ptr) },
        // SAFETY: the layout has no class, here nor on alloc, so alloc took
        // the large tier: a live large block, given up by the caller.
        None => unsafe {
            large::free_large(ptr);
        },
    }
}

// SAFETY: every returned block is fresh (taken from a free list or mapped),
// aligned as the layout asks (classes are multiples of the alignment; large
// mappings are aligned), at least layout.size() bytes, and handed out once until
// freed; out of memory returns null; nothing here unwinds.
unsafe impl GlobalAlloc for CpuSlab {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match table_class(layout.size(), layout.align()) {
            Some(class) => alloc_small(class),
            None => alloc_by_layout(layout),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match table_class(layout.size(), layout.align()) {
            // SAFETY: the caller frees a block it got for this layout, hence of
            // the class computed the same way on alloc (`table_class` and
            // `class_of_layout` agree).
            Some(class) => unsafe { dealloc_small(class, ptr) },
            // SAFETY: forwarded contract.
            None => unsafe { dealloc_by_layout(ptr, layout) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of_layout(layout.size(), layout.align()) {
            Some(class) => {
                let Some(object) = pop(class) else {
                    // The miss path knows which memory is fresh (no memset).
                    return cpu_cache::alloc_zeroed_miss(class, layout.size());
                };
                // SAFETY: a free block of at least layout.size() bytes, now ours.
                unsafe { ptr::write_bytes(object, 0, layout.size()) };
                object
            }
            // A fresh mapping is zero already: no memset (a reused one is cleared).
            None => alloc_large(layout, true),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class_of_layout(layout.size(), layout.align());
        match (old, class_of_layout(new_size, layout.align())) {
            (Some(old), Some(new)) if old == new => return ptr,
            (None, None) => {
                // SAFETY: the caller owns the large block; on success it uses only
                // the returned pointer, on failure (null) the block is untouched.
                let moved = unsafe { large::realloc_large(ptr, new_size) };
                if !moved.is_null() {
                    return moved;
                }
            }
            _ => {}
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: a valid layout (non-zero size is the caller's contract).
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

/// Frees a block by address alone (C `free`); null is a no-op. A pointer that is
/// not the start of one of our blocks is reported on stderr and the process
/// aborts, rather than corrupting the heap.
///
/// # Safety
/// `ptr` is null or a live block from this allocator that nobody uses after this.
#[inline]
pub unsafe fn free(ptr: *mut u8) {
    // In a class range, one load says the class and checks the pointer
    // (class_range.rs says why that matters); elsewhere the page map does.
    if let Some(class) = class_range::object_class(ptr as usize) {
        // SAFETY: `ptr` starts an object of `class`, which the caller gives up.
        return unsafe { dealloc_small(class, ptr) };
    }
    // SAFETY: forwarded contract.
    unsafe { free_elsewhere(ptr) }
}

/// [`free`] of a pointer outside the class ranges (or null, or not ours),
/// found through the page map: out of line, so that `free`'s own path keeps
/// no stack frame.
///
/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
unsafe fn free_elsewhere(ptr: *mut u8) {
    match owner::find(ptr) {
        // SAFETY: the page map says `ptr` starts an object of this class.
        Some(Found::Small(class)) => unsafe { dealloc_small(class, ptr) },
        // SAFETY: `ptr` starts this live large block, given up by the caller.
        Some(Found::Large(large)) => unsafe { free_large_found(ptr, large) },
        None => free_nothing(ptr),
    }
}

/// [`free`] of a large block, found already: no second lookup.
///
/// # Safety
/// `ptr` starts the live large block `large`, which nobody uses after this.
#[cold]
#[inline(never)]
unsafe fn free_large_found(ptr: *mut u8, large: LargeAt) {
    // SAFETY: forwarded contract.
    unsafe { large::free_found(ptr, large) };
}

/// [`free`] of a pointer that starts no block of ours: null is a no-op, anything
/// else is reported.
#[cold]
#[inline(never)]
fn free_nothing(ptr: *mut u8) {
    if !ptr.is_null() {
        report::invalid_pointer("free", ptr);
    }
}

/// Resizes a block by address alone (C `realloc` for a non-null `ptr` and a
/// non-zero size): stays in place when the size class does not change (or a large
/// block can be resized where it is), else moves to a block aligned to 16 bytes.
/// Null when out of memory, leaving the block untouched. A pointer that is not the
/// start of one of our blocks is reported and the process aborts.
///
/// # Safety
/// `ptr` is a live block from this allocator; on success the caller uses only the
/// returned pointer.
pub unsafe fn realloc(ptr: *mut u8, new_size: usize) -> *mut u8 {
    let found = match owner::find(ptr) {
        Some(found) => found,
        None => report::invalid_pointer("realloc", ptr),
    };
    let new_class = class_of(new_size, MIN_ALIGN);
    match found {
        Found::Small(class) if new_class == Some(class) => return ptr,
        Found::Large(large) if new_class.is_none() => {
            // SAFETY: `ptr` starts this live large block, which the caller owns.
            let moved = unsafe { large::realloc_found(ptr, large, new_size) };
            if !moved.is_null() {
                return moved;
            }
        }
        _ => {}
    }
    let Ok(layout) = Layout::from_size_align(new_size, MIN_ALIGN) else {
        return ptr::null_mut();
    };
    // SAFETY: a valid layout of non-zero size.
    let new_ptr = unsafe { CpuSlab.alloc(layout) };
    if !new_ptr.is_null() {
        // SAFETY: both blocks are live and distinct; the old one has at least
        // `usable_size` bytes, the new one `new_size`.
        unsafe {
            let old_size = found.owner().usable_size();
            ptr::copy_nonoverlapping(ptr, new_ptr, old_size.min(new_size));
            match found {
                Found::Small(class) => dealloc_small(class, ptr),
                Found::Large(large) => {
                    large::free_found(ptr, large);
                }
            }
        }
    }
    new_ptr
}

/// Bytes usable at `ptr` (at least what was asked for), or None if `ptr` is not
/// the start of one of our blocks. O(1).
pub fn usable_size(ptr: *const u8) -> Option<usize> {
    owner::lookup(ptr).map(Owner::usable_size)
}

/// Whether `ptr` is the start of a block of ours (live or cached). O(1), safe on
/// any pointer value.
pub fn owns(ptr: *const u8) -> bool {
    owner::find(ptr).is_some()
}

/// Returns free memory to the OS now: empties every CPU's cache and the depot
/// into the spans, and decommits every free page.
pub fn trim() {
    first_use::ensure();
    crate::thread_cache::empty_mine();
    cpu_cache::drain_all();
    crate::depot::flush();
    crate::page_heap::trim();
    crate::large_cache::release();
}
