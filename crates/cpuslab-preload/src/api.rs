//! The exported allocation functions, with glibc's semantics.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_int, c_void};
use core::ptr;

use cpuslab::os::{errno, page_size, set_errno, EINVAL, ENOMEM};
use cpuslab::{CpuSlab, MAX_SMALL, MIN_ALIGN};

/// Sets errno to ENOMEM and returns null: the failure tail of the allocating
/// calls, out of line so that their fast paths make no call.
#[cold]
#[inline(never)]
fn out_of_memory() -> *mut c_void {
    set_errno(ENOMEM);
    ptr::null_mut()
}

/// A block of `size` bytes (at least 1: `malloc(0)` is a unique pointer) aligned to
/// `align` (a power of two); null with errno ENOMEM when impossible or out of memory.
/// Inlined, so that `malloc`'s constant alignment folds its checks away.
#[inline(always)]
fn allocate(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    let Ok(layout) = Layout::from_size_align(size.max(1), align) else {
        return out_of_memory();
    };
    // SAFETY: a valid layout of non-zero size.
    let block = unsafe {
        if zeroed {
            CpuSlab.alloc_zeroed(layout)
        } else {
            CpuSlab.alloc(layout)
        }
    };
    if block.is_null() {
        return out_of_memory();
    }
    block.cast()
}

/// `malloc(3)`: a small block from this CPU's cache; anything else (a miss,
/// which finds the class again; a large size) is a tail call, so that the
/// fast path saves no register (keeping the class for the miss path made it
/// save two).
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    match cpuslab::alloc_small_by_size(size) {
        Some(block) => block.cast(),
        None => malloc_slow(size),
    }
}

/// `malloc` after the inline pop: the per-CPU tier's slow path for small
/// sizes (a tail call: it sets errno itself), else the full path (large
/// blocks, out of memory: errno).
#[cold]
#[inline(never)]
fn malloc_slow(size: usize) -> *mut c_void {
    if size <= MAX_SMALL {
        return cpuslab::alloc_small_missed(size).cast();
    }
    allocate(size, MIN_ALIGN, false)
}

/// `free(3)`: null is a no-op; a pointer that is not ours is reported (abort).
///
/// # Safety
/// `ptr` is null or a live block from this allocator, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { cpuslab::free(ptr.cast()) }
}

/// `calloc(3)`: overflow of `count * size` returns null with ENOMEM.
#[no_mangle]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        Some(total) => allocate(total, MIN_ALIGN, true),
        None => {
            set_errno(ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `realloc(3)` as glibc does it: a null `ptr` allocates; size 0 frees and returns
/// null; failure returns null with ENOMEM and leaves the block untouched.
///
/// # Safety
/// `ptr` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free(ptr) };
        return ptr::null_mut();
    }
    if Layout::from_size_align(size, MIN_ALIGN).is_err() {
        set_errno(ENOMEM);
        return ptr::null_mut();
    }
    // SAFETY: forwarded contract; the size is valid and non-zero.
    let moved = unsafe { cpuslab::realloc(ptr.cast(), size) };
    if moved.is_null() {
        set_errno(ENOMEM);
    }
    moved.cast()
}

/// `reallocarray(3)`: overflow of `count * size` returns null with ENOMEM.
///
/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `posix_memalign(3)`: EINVAL (out-pointer untouched) unless `align` is a power of
/// two multiple of `sizeof(void *)`; ENOMEM when out of memory.
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align < core::mem::size_of::<*mut c_void>() {
        return EINVAL;
    }
    // posix_memalign reports through its result and leaves errno alone.
    let saved = errno();
    let block = allocate(size, align.max(MIN_ALIGN), false);
    set_errno(saved);
    if block.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller's out-pointer.
    unsafe { *out = block };
    0
}

/// `aligned_alloc(3)`: null with EINVAL unless `align` is a power of two.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(EINVAL);
        return ptr::null_mut();
    }
    allocate(size, align.max(MIN_ALIGN), false)
}

/// `memalign(3)`: like glibc, an alignment that is not a power of two is rounded
/// up to one; one too large to round is EINVAL.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.max(MIN_ALIGN).checked_next_power_of_two() {
        Some(align) if align <= isize::MAX as usize => allocate(size, align, false),
        _ => {
            set_errno(EINVAL);
            ptr::null_mut()
        }
    }
}

/// `valloc(3)`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    allocate(size, page_size(), false)
}

/// `pvalloc(3)`: page-aligned, the size rounded up to whole pages.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.checked_next_multiple_of(page) {
        Some(rounded) => allocate(rounded.max(page), page, false),
        None => {
            set_errno(ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `malloc_usable_size(3)`: 0 for null (and for pointers that are not ours).
#[no_mangle]
pub extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    cpuslab::usable_size(ptr.cast()).unwrap_or(0)
}

/// C23 `free_sized`: the size is a hint we do not need (free finds the block).
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}

/// C23 `free_aligned_sized`.
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}

/// glibc's internal names, which some programs and libraries call directly.
#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}

/// See [`__libc_malloc`].
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}

/// See [`__libc_malloc`].
#[no_mangle]
pub extern "C" fn __libc_calloc(count: usize, size: usize) -> *mut c_void {
    calloc(count, size)
}

/// See [`__libc_malloc`].
///
/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { realloc(ptr, size) }
}

/// See [`__libc_malloc`].
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}
