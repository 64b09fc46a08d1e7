//! The allocator's one boundary to the OS: every libc call of cpuslab (and of
//! cpuslab-preload's helpers) is here, apart from the entry points themselves.
//!
//! * memory: mmap / munmap / madvise / mremap (every byte of memory the
//!   allocator uses, object memory and metadata alike, comes from here);
//! * futex wait and wake (`sync::Lock`);
//! * a coarse monotonic clock (the page heap's decay);
//! * stderr and abort (`report`), the environment (`config`), atfork (`fork`), atexit;
//! * a detached thread and sleep (`background`);
//! * errno, the page size, and the calling thread's word (its thread pointer).
//!
//! Errors come back as `None` / `false`, never as a panic. Nothing here
//! allocates.
//!
//! Two page sizes: [`PAGE_SIZE`] is the allocator's page, the unit of spans and
//! of the page map, fixed at 4 KiB; [`page_size`] is the OS's, read at run time
//! (4 KiB on x86-64, 16 or 64 KiB on some aarch64 kernels). Mappings come from
//! the OS whole; what goes back in part (a decommit, an unmapped tail) is cut
//! to whole OS pages here or by the caller.

use core::ffi::{c_int, CStr};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

pub use libc::{EINVAL, ENOMEM};

/// The allocator's page: the unit of spans and of the page map.
pub const PAGE_SIZE: usize = 4096;
/// log2(PAGE_SIZE).
pub const PAGE_SHIFT: u32 = 12;

/// The OS page size, once read (0: not yet).
static OS_PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The OS page size (from the auxiliary vector, read once; a power of two, at
/// least [`PAGE_SIZE`]).
#[inline]
pub fn page_size() -> usize {
    match OS_PAGE_SIZE.load(Ordering::Relaxed) {
        0 => read_page_size(),
        size => size,
    }
}

#[cold]
fn read_page_size() -> usize {
    // SAFETY: getauxval has no preconditions and does not allocate.
    let size = unsafe { libc::getauxval(libc::AT_PAGESZ) } as usize;
    let size = if size.is_power_of_two() {
        size.max(PAGE_SIZE)
    } else {
        PAGE_SIZE
    };
    OS_PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// Whether `addr` is a multiple of the OS page size.
#[inline]
pub fn os_page_aligned(addr: usize) -> bool {
    addr & (page_size() - 1) == 0
}

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
    map_anonymous(ptr::null_mut(), len, 0)
}

/// One anonymous read-write private mapping of `len` bytes at `addr` (a hint,
/// or exact with `MAP_FIXED_NOREPLACE` in `flags`); `None` if the kernel
/// refused.
fn map_anonymous(addr: *mut libc::c_void, len: usize, flags: libc::c_int) -> Option<NonNull<u8>> {
    if len == 0 {
        return None;
    }
    // SAFETY: an anonymous private mapping never replaces an existing one
    // (no MAP_FIXED here), so it cannot alias any Rust object.
    let p = unsafe {
        libc::mmap(
            addr,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
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

/// Maps `len` bytes as [`map`] does, but exactly at `addr` (OS-page aligned),
/// and only if nothing is mapped there (`MAP_FIXED_NOREPLACE`); false if the
/// kernel refused or placed it elsewhere (a kernel older than 4.17 takes the
/// address as a hint: that mapping is undone).
pub fn map_at(addr: usize, len: usize) -> bool {
    let Some(p) = map_anonymous(addr as *mut libc::c_void, len, libc::MAP_FIXED_NOREPLACE) else {
        return false;
    };
    if p.as_ptr() as usize != addr {
        // SAFETY: the mapping just made, somewhere nobody knows of.
        unsafe { unmap(p.as_ptr(), len) };
        return false;
    }
    true
}

/// Maps `len` bytes (an OS page multiple) at an address that is a multiple of
/// `align` (a power of two): over-maps by `align - page_size()`, then unmaps the
/// unaligned head and the tail, so the result is exactly one mapping of `len`.
pub fn map_aligned(len: usize, align: usize) -> Option<NonNull<u8>> {
    let page = page_size();
    if align <= page {
        return map(len);
    }
    let total = len.checked_add(align - page)?;
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

/// Unmaps `[ptr, ptr + len)`: `ptr` is OS-page aligned, and `len` either ends
/// the mapping or is an OS page multiple (the kernel rounds it up).
///
/// # Safety
///
/// The range was mapped by this module and nothing uses it any more.
pub unsafe fn unmap(ptr: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe { libc::munmap(ptr.cast(), len) == 0 }
}

/// Gives the physical pages behind `[ptr, ptr + len)` back to the OS: the
/// whole OS pages inside it (with OS pages larger than [`PAGE_SIZE`], the
/// partial ones at the ends stay committed: they may hold a neighbour's
/// data). What is returned stays mapped, reads back as zeroes and is
/// recommitted on touch.
///
/// # Safety
///
/// The range lies in a private anonymous mapping made by this module and its
/// contents are no longer needed.
pub unsafe fn decommit(ptr: *mut u8, len: usize) -> bool {
    let page = page_size();
    let start = ptr as usize;
    let (Some(first), Some(end)) = (round_up(start, page), start.checked_add(len)) else {
        return false;
    };
    let last = end & !(page - 1);
    if last <= first {
        return true;
    }
    // SAFETY: the caller guarantees the range is ours and its contents dead;
    // [first, last) lies inside it.
    unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            libc::MADV_DONTNEED,
        ) == 0
    }
}

/// Asks the kernel to back `[ptr, ptr + len)` with transparent huge pages
/// where it can (`MADV_HUGEPAGE`); false if it declined (no THP support).
///
/// # Safety
/// The range lies in a mapping made by this module.
pub unsafe fn advise_huge_pages(ptr: *mut u8, len: usize) -> bool {
    // SAFETY: a hint on the caller's own mapping; contents are unaffected.
    unsafe { libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE) == 0 }
}

/// Asks the kernel never to back `[ptr, ptr + len)` with transparent huge
/// pages (`MADV_NOHUGEPAGE`): a mapping of metadata or of many small slots,
/// 2 MiB aligned, would otherwise take a whole huge page at its first touch
/// where THP is `always`. False if the kernel declined.
///
/// # Safety
/// The range lies in a mapping made by this module.
pub unsafe fn advise_no_huge_pages(ptr: *mut u8, len: usize) -> bool {
    // SAFETY: a hint on the caller's own mapping; contents are unaffected.
    unsafe { libc::madvise(ptr.cast(), len, libc::MADV_NOHUGEPAGE) == 0 }
}

/// Resizes the mapping `[old, old + old_len)` to `new_len` bytes, moving it if
/// the kernel must (the pages move, nothing is copied; growth reads as zero).
/// `None` if the kernel refused: the old mapping is untouched.
///
/// # Safety
///
/// The range is a mapping made by this module that the caller owns; on success
/// the caller uses only the returned address.
pub unsafe fn remap(old: *mut u8, old_len: usize, new_len: usize) -> Option<*mut u8> {
    // SAFETY: the caller owns the range; MREMAP_MAYMOVE picks a free place.
    let p = unsafe { libc::mremap(old.cast(), old_len, new_len, libc::MREMAP_MAYMOVE) };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p.cast())
    }
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

/// Asks the CPU to bring the cache line holding `p` in, for a read soon: a
/// hint, which never faults whatever `p` is (nothing on other architectures).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` reads nothing the program sees and never faults, on
    // any address.
    unsafe {
        core::arch::asm!(
            "prefetcht0 byte ptr [{p}]",
            p = in(reg) p,
            options(nostack, readonly, preserves_flags),
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

extern "C" {
    /// The C library's environment (POSIX): a null-terminated array of
    /// `NAME=value` strings.
    static environ: *const *const core::ffi::c_char;
}

/// Calls `f(name, value)` for every `NAME=value` in the environment, without
/// allocating. (Another thread changing the environment meanwhile is the same
/// race as with `getenv`.)
pub fn for_each_env(mut f: impl FnMut(&[u8], &[u8])) {
    // SAFETY: reading the pointer value of a C global; it is null or points
    // to the array described above.
    let mut entry = unsafe { environ };
    if entry.is_null() {
        return;
    }
    loop {
        // SAFETY: `entry` points into the null-terminated array.
        let item = unsafe { *entry };
        if item.is_null() {
            return;
        }
        // SAFETY: each item is a NUL-terminated string owned by the environment.
        let text = unsafe { CStr::from_ptr(item) }.to_bytes();
        let (name, value) = match text.iter().position(|&b| b == b'=') {
            Some(at) => (&text[..at], &text[at + 1..]),
            None => (text, &b""[..]),
        };
        f(name, value);
        // SAFETY: the item was not the terminator, so the next entry exists.
        entry = unsafe { entry.add(1) };
    }
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

/// A `fmt::Write` through a 512-byte stack buffer (no allocation) into
/// `out`, which takes the bytes and says whether it could: the buffer goes out
/// when full, on [`flush`](Self::flush) and when dropped. stderr's reports and
/// lines ([`BufferedWriter::stderr`]) and `malloc_info`'s XML use it.
pub struct BufferedWriter<F: FnMut(&[u8]) -> bool> {
    out: F,
    buffer: [u8; 512],
    len: usize,
}

impl<F: FnMut(&[u8]) -> bool> BufferedWriter<F> {
    /// An empty buffer in front of `out`.
    pub const fn new(out: F) -> Self {
        BufferedWriter {
            out,
            buffer: [0; 512],
            len: 0,
        }
    }

    /// Hands the buffered bytes to the output; false if it refused them.
    pub fn flush(&mut self) -> bool {
        let taken = (self.out)(&self.buffer[..self.len]);
        self.len = 0;
        taken
    }
}

impl BufferedWriter<fn(&[u8]) -> bool> {
    /// A writer to stderr.
    pub fn stderr() -> Self {
        fn to_stderr(bytes: &[u8]) -> bool {
            write_stderr(bytes);
            true
        }
        BufferedWriter::new(to_stderr)
    }
}

impl<F: FnMut(&[u8]) -> bool> core::fmt::Debug for BufferedWriter<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BufferedWriter({} bytes buffered)", self.len)
    }
}

impl<F: FnMut(&[u8]) -> bool> core::fmt::Write for BufferedWriter<F> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for &byte in text.as_bytes() {
            if self.len == self.buffer.len() && !self.flush() {
                return Err(core::fmt::Error);
            }
            self.buffer[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

impl<F: FnMut(&[u8]) -> bool> Drop for BufferedWriter<F> {
    fn drop(&mut self) {
        if self.len != 0 {
            self.flush();
        }
    }
}

/// Writes all of `bytes` to a C stream (`FILE*`); false if it refused.
///
/// # Safety
/// `stream` is a valid, open `FILE*`.
pub unsafe fn write_stream(stream: *mut core::ffi::c_void, bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    // SAFETY: the caller passes an open stream; the bytes are initialised.
    unsafe { libc::fwrite(bytes.as_ptr().cast(), 1, bytes.len(), stream.cast()) == bytes.len() }
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

    #[test]
    fn the_os_page_size_is_read_at_run_time() {
        // SAFETY: sysconf has no preconditions.
        let expected = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        assert_eq!(page_size(), expected.max(PAGE_SIZE));
        assert!(os_page_aligned(0) && !os_page_aligned(PAGE_SIZE / 2));
    }

    #[test]
    fn decommit_returns_only_whole_os_pages_inside_the_range() {
        let page = page_size();
        let len = 4 * page;
        let p = map(len).unwrap().as_ptr();
        // SAFETY: a fresh mapping owned by this test; the decommitted range
        // lies inside it.
        unsafe {
            p.write_bytes(0x5a, len);
            // From inside the first page to inside the third: only the second
            // page is whole, so only it reads back as zero.
            assert!(decommit(p.add(100), 2 * page));
            assert!((0..page).all(|i| *p.add(i) == 0x5a));
            assert!((page..2 * page).all(|i| *p.add(i) == 0));
            assert!((2 * page..len).all(|i| *p.add(i) == 0x5a));
            // No whole page inside: nothing to do, and no error.
            assert!(decommit(p.add(1), page - 2));
            assert_eq!(*p.add(1), 0x5a);
            assert!(unmap(p, len));
        }
    }
}
