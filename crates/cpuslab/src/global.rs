//! The front end: [`CpuSlab`] (`GlobalAlloc`) and the by-address entry points of
//! the C API. The whole fast path is on this screen: size class, one attempt at a
//! restartable pop or push on this CPU's stack; everything else (restarts, the
//! fallback, refills, overflows) is one cold tail call, so the fast path needs no
//! callee-saved registers.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use crate::cpu_cache;
use crate::heap::{self, Owner};
use crate::report;
use crate::size_class::{class_of, class_of_layout, Class, MIN_ALIGN};

/// The allocator: `#[global_allocator] static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;`
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSlab;

#[inline(always)]
fn alloc_small(class: Class) -> *mut u8 {
    let region = cpu_cache::fast_region();
    if let Some(object) = cpu_cache::stacks(region, class).try_pop() {
        return object;
    }
    cpu_cache::alloc_miss(class)
}

/// # Safety
/// `object` is a live object of `class` that nobody uses after this call.
#[inline(always)]
unsafe fn dealloc_small(class: Class, object: *mut u8) {
    let region = cpu_cache::fast_region();
    if cpu_cache::stacks(region, class).try_push(object) {
        return;
    }
    // SAFETY: forwarded contract.
    unsafe { cpu_cache::dealloc_miss(class, object) }
}

// SAFETY: every returned block is fresh (taken from a free list or mapped),
// aligned as the layout asks (classes are multiples of the alignment; large
// mappings are aligned), at least layout.size() bytes, and handed out once until
// freed; out of memory returns null; nothing here unwinds.
unsafe impl GlobalAlloc for CpuSlab {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of_layout(layout.size(), layout.align()) {
            Some(class) => alloc_small(class),
            None => heap::alloc_large_uninit(layout.size(), layout.align()),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of_layout(layout.size(), layout.align()) {
            // SAFETY: the caller frees a block it got for this layout, hence of
            // the class computed the same way on alloc.
            Some(class) => unsafe { dealloc_small(class, ptr) },
            // SAFETY: as above, a large block.
            None => unsafe { heap::dealloc_large(ptr) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of_layout(layout.size(), layout.align()) {
            Some(class) => {
                let region = cpu_cache::fast_region();
                let Some(object) = cpu_cache::stacks(region, class).try_pop() else {
                    // The miss path knows which memory is fresh (no memset).
                    return cpu_cache::alloc_zeroed_miss(class, layout.size());
                };
                // SAFETY: a free block of at least layout.size() bytes, now ours.
                unsafe { ptr::write_bytes(object, 0, layout.size()) };
                object
            }
            // A fresh mapping is zero already: no memset (a reused one is cleared).
            None => heap::alloc_large(layout.size(), layout.align()),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class_of_layout(layout.size(), layout.align());
        match (old, class_of_layout(new_size, layout.align())) {
            (Some(old), Some(new)) if old == new => return ptr,
            (None, None) => {
                // SAFETY: the caller owns the large block; on success it uses only
                // the returned pointer, on failure (null) the block is untouched.
                let moved = unsafe { heap::realloc_large(ptr, new_size) };
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
    match heap::small_class(ptr) {
        // SAFETY: the page map says `ptr` starts an object of this class.
        Some(class) => unsafe { dealloc_small(class, ptr) },
        // SAFETY: forwarded contract.
        None => unsafe { free_not_small(ptr) },
    }
}

/// [`free`] of anything but a small object: null, a large block, or a pointer
/// that is not ours (reported).
///
/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
unsafe fn free_not_small(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    match heap::lookup(ptr) {
        // SAFETY: `ptr` starts a live large block.
        Some(Owner::Large { .. }) => unsafe { heap::dealloc_large(ptr) },
        // Not seen for a live block (its span stays small while it lives), but
        // the page map is the authority: free it as the class it names.
        // SAFETY: the page map says `ptr` starts an object of this class.
        Some(Owner::Small(class)) => unsafe { dealloc_small(class, ptr) },
        None => report::invalid_pointer("free", ptr),
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
    let owner = match heap::lookup(ptr) {
        Some(owner) => owner,
        None => report::invalid_pointer("realloc", ptr),
    };
    let new_class = class_of(new_size, MIN_ALIGN);
    match owner {
        Owner::Small(class) if new_class == Some(class) => return ptr,
        Owner::Large { .. } if new_class.is_none() => {
            // SAFETY: `ptr` starts a live large block the caller owns.
            let moved = unsafe { heap::realloc_large(ptr, new_size) };
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
            ptr::copy_nonoverlapping(ptr, new_ptr, owner.usable_size().min(new_size));
            free(ptr);
        }
    }
    new_ptr
}

/// Bytes usable at `ptr` (at least what was asked for), or None if `ptr` is not
/// the start of one of our blocks. O(1).
pub fn usable_size(ptr: *const u8) -> Option<usize> {
    heap::lookup(ptr).map(Owner::usable_size)
}

/// Whether `ptr` is the start of a block of ours (live or cached). O(1), safe on
/// any pointer value.
pub fn owns(ptr: *const u8) -> bool {
    heap::lookup(ptr).is_some()
}

/// Returns free memory to the OS now: empties every CPU's cache and the depot
/// into the spans, and decommits every free page.
pub fn trim() {
    cpu_cache::drain_all();
    crate::depot::flush();
    heap::trim();
}
