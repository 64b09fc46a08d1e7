//! The allocator's one boundary to the OS: every libc call of cpuslab (and of
//! cpuslab-preload's helpers) is here, apart from the entry points themselves.
//!
//! * memory: mmap / munmap / madvise / mremap (every byte of memory the
//!   allocator uses, object memory and metadata alike, comes from here);
//! * futex wait and wake (`sync::Lock`);
//! * a coarse monotonic clock (the page heap's decay);
//! * stderr and abort (`report`), getenv (`config`), atfork (`fork`), atexit;
//! * a detached thread and sleep (`background`);
//! * errno, the page size, and the calling thread's word (its thread pointer).
//!
//! Errors come back as `None` / `false`, never as a panic. Nothing here
//! allocates.
//! The page size is taken to be 4096 bytes (x86-64 Linux base pages); all
//! lengths passed to these functions are multiples of it.

use core::ffi::{c_int, CStr};
use core::ptr::{self, NonNull};
use core::sync::atomic::AtomicU32;

pub use libc::{EINVAL, ENOMEM};

/// The base page size this crate assumes (x86-64 Linux).
pub const PAGE_SIZE: usize = 4096;
/// log2(PAGE_SIZE).
pub const PAGE_SHIFT: u32 = 12;

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
#[inline]
pub const fn round_up(n: usize, align: usize) -> Option<usize> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Maps `len` bytes of fresh, zeroed, read-write anonymous memory.
/// Pages are committed lazily by the kernel on first touch. No
/// `MAP_NORESERVE`: the kernel's overcommit policy judges each request as it
/// judges glibc's, so an impossible size (1 TiB on a 24 GiB machine) fails
/// with ENOMEM instead of succeeding and faulting later.
pub fn map(len: usize) -> Option<NonNull<u8>> {
    if len == 0 {
        return None;
    }
    // SAFETY: an anonymous private mapping at a kernel-chosen address cannot
    // alias any existing Rust object.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

/// Maps `len` bytes (a page multiple) at an address that is a multiple of
/// `align` (a power of two): over-maps by `align - PAGE_SIZE`, then unmaps the
/// unaligned head and the tail, so the result is exactly one mapping of `len`.
pub fn map_aligned(len: usize, align: usize) -> Option<NonNull<u8>> {
    if align <= PAGE_SIZE {
        return map(len);
    }
    let total = len.checked_add(align - PAGE_SIZE)?;
    let raw = map(total)?.as_ptr() as usize;
    let aligned = round_up(raw, align)?;
    let head = aligned - raw;
    let tail = total - head - len;
    if head > 0 {
        // SAFETY: [raw, aligned) is the head of the mapping made above.
        unsafe { unmap(raw as *mut u8, head) };
    }
    if tail > 0 {
        // SAFETY: [aligned + len, raw + total) is the tail of the same mapping.
        unsafe { unmap((aligned + len) as *mut u8, tail) };
    }
    NonNull::new(aligned as *mut u8)
}

/// Unmaps `[ptr, ptr + len)`.
///
/// # Safety
///
/// The range was mapped by this module and nothing uses it any more.
pub unsafe fn unmap(ptr: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe { libc::munmap(ptr.cast(), len) == 0 }
}

/// Gives the physical pages behind `[ptr, ptr + len)` back to the OS. The
/// range stays mapped; it reads back as zeroes and is recommitted on touch.
///
/// # Safety
///
/// The range lies in a private anonymous mapping made by this module and its
/// contents are no longer needed.
pub unsafe fn decommit(ptr: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and its contents dead.
    unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) == 0 }
}

/// Moves the mapping `[old, old + old_len)` to `new_addr`, resizing it to
/// `new_len` (the tail beyond `old_len` reads as zeroes); whatever was mapped
/// at `[new_addr, new_addr + new_len)` is replaced. No data is copied: the
/// kernel moves the page-table entries.
///
/// # Safety
///
/// Both ranges are mappings made by this module that the caller owns; the old
/// range is not used after a successful move.
pub unsafe fn remap_into(old: *mut u8, old_len: usize, new_len: usize, new_addr: *mut u8) -> bool {
    // SAFETY: the caller owns both ranges; MREMAP_FIXED only replaces the
    // caller's own mapping at `new_addr`.
    let p = unsafe {
        libc::mremap(
            old.cast(),
            old_len,
            new_len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            new_addr.cast::<libc::c_void>(),
        )
    };
    p != libc::MAP_FAILED
}

/// A non-zero word unique to the calling thread while it lives: its thread
/// pointer (the `fs` base on x86-64, one load), or `pthread_self()` elsewhere.
#[inline(always)]
pub fn thread_word() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: on x86-64 Linux, fs:0 holds the thread control block's own
        // address (the TLS ABI's self pointer); reading it has no side effects.
        unsafe {
            core::arch::asm!(
                "mov {tp}, qword ptr fs:[0]",
                tp = out(reg) tp,
                options(nostack, pure, readonly, preserves_flags),
            )
        };
        tp
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: pthread_self has no preconditions.
    unsafe {
        libc::pthread_self() as usize
    }
}

/// The value of an environment variable, if set. Reads the environment without
/// allocating.
pub fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads the environment without allocating; the result is null
    // or a NUL-terminated string owned by the environment, which we only read.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: a non-null getenv result is NUL-terminated.
    Some(unsafe { CStr::from_ptr(value) }.to_bytes())
}

/// Writes all of `bytes` to stderr (as far as the kernel takes them).
pub fn write_stderr(bytes: &[u8]) {
    let mut written = 0;
    while written < bytes.len() {
        // SAFETY: writing initialised bytes of the caller's slice to fd 2.
        let n = unsafe {
            libc::write(
                libc::STDERR_FILENO,
                bytes[written..].as_ptr().cast(),
                bytes.len() - written,
            )
        };
        if n <= 0 {
            break;
        }
        written += n as usize;
    }
}

/// Ends the process with SIGABRT (never unwinds).
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions and does not return.
    unsafe { libc::abort() }
}

/// Registers fork handlers (`pthread_atfork`); false if glibc refused.
pub fn atfork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) -> bool {
    // SAFETY: the handlers are plain functions that never unwind.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0 }
}

/// Registers `f` to run at exit; false if the C library refused.
pub fn atexit(f: extern "C" fn()) -> bool {
    // SAFETY: registering a plain function; atexit's own storage is static for
    // the first 32 handlers.
    unsafe { libc::atexit(f) == 0 }
}

/// Sets this thread's errno.
pub fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// This thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sleeps while `*word == expected` (returns at once if it differs, on a
/// wake-up, or spuriously: callers re-check in a loop).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the 32-bit word at a valid, aligned address
    // that outlives the call; the timeout pointer may be null (no timeout).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes at most one thread sleeping on `word`.
pub(crate) fn futex_wake_one(word: &AtomicU32) {
    const WAKE_ONE: i32 = 1;
    // SAFETY: FUTEX_WAKE only uses the address as a key; it is valid and aligned.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            WAKE_ONE,
        );
    }
}

/// Milliseconds on CLOCK_MONOTONIC_COARSE (cheap: read from the vDSO).
pub(crate) fn now_ms() -> u64 {
    const MS_PER_SEC: u64 = 1000;
    const NS_PER_MS: u64 = 1_000_000;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(MS_PER_SEC)
        .wrapping_add(ts.tv_nsec as u64 / NS_PER_MS)
}

/// Starts `f` on a new detached thread (its stack from the C library's own
/// mmap); false if the C library refused.
pub fn spawn_detached(f: extern "C" fn()) -> bool {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the function pointer `spawn_detached` passed.
        let f: extern "C" fn() = unsafe { core::mem::transmute(arg) };
        f();
        ptr::null_mut()
    }
    // SAFETY: plain-data attributes initialised by pthread_attr_init; the thread
    // gets a function pointer as its argument, which lives forever.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut thread: libc::pthread_t = 0;
        let started =
            libc::pthread_create(&mut thread, &attr, trampoline, f as *mut libc::c_void) == 0;
        libc::pthread_attr_destroy(&mut attr);
        started
    }
}

/// Sleeps `ms` milliseconds (restarting after signals).
pub fn sleep_ms(ms: u64) {
    let mut request = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    let mut left = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both timespecs are valid; nanosleep writes only `left`.
    while unsafe { libc::nanosleep(&request, &mut left) } != 0 && errno() == libc::EINTR {
        request = left;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_works_and_detects_overflow() {
        assert_eq!(round_up(0, 16), Some(0));
        assert_eq!(round_up(1, 16), Some(16));
        assert_eq!(round_up(4096, 4096), Some(4096));
        assert_eq!(round_up(usize::MAX, 2), None);
    }

    #[test]
    fn map_aligned_is_aligned_and_writable() {
        for shift in [12u32, 16, 21, 26] {
            let align = 1usize << shift;
            let len = 3 * PAGE_SIZE;
            let p = map_aligned(len, align).unwrap().as_ptr();
            assert_eq!(p as usize % align, 0);
            // SAFETY: fresh mapping of `len` bytes.
            unsafe {
                assert_eq!(*p, 0);
                p.write_bytes(0xab, len);
                assert!(unmap(p, len));
            }
        }
    }

    #[test]
    fn decommit_zeroes_and_remap_moves() {
        let len = 4 * PAGE_SIZE;
        let p = map(len).unwrap().as_ptr();
        // SAFETY: fresh mappings owned by this test.
        unsafe {
            p.write_bytes(0x5a, len);
            assert!(decommit(p, len));
            assert!((0..len).all(|i| *p.add(i) == 0));
            p.write_bytes(0x77, len);
            let q = map(2 * len).unwrap().as_ptr();
            assert!(remap_into(p, len, 2 * len, q));
            assert!((0..len).all(|i| *q.add(i) == 0x77));
            assert!((len..2 * len).all(|i| *q.add(i) == 0));
            assert!(unmap(q, 2 * len));
        }
        assert!(map(0).is_none());
    }
}
