//! What glibc exports that we read, found through weak symbols resolved by the
//! linker: its rseq registration, and whether the process has one thread.
//!
//! glibc >= 2.35 registers an area for every thread and exports where it is:
//! `__rseq_offset` (area = thread pointer + offset), `__rseq_size` (0 when glibc did
//! not register) and `__rseq_flags`. glibc >= 2.32 exports `__libc_single_threaded`.
//! The references are weak, so a binary still loads and runs on a libc without
//! them: a missing weak symbol's GOT slot reads 0. We never call `dlsym` (it
//! allocates).

/// What glibc tells about its registration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GlibcRseq {
    /// Offset of the area from the thread pointer.
    pub offset: isize,
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".weak __rseq_offset",
    ".weak __rseq_size",
    ".weak __rseq_flags",
    ".weak __libc_single_threaded"
);

/// Address of a weakly referenced symbol, or null when no loaded object defines it.
#[cfg(target_arch = "x86_64")]
macro_rules! weak_address {
    ($symbol:literal) => {{
        let address: *const u8;
        // SAFETY: a GOT-relative load of a symbol's address touches no memory of ours
        // and has no side effects; the dynamic linker filled the slot (0 if undefined).
        unsafe {
            core::arch::asm!(
                concat!("mov {a}, qword ptr [rip + ", $symbol, "@GOTPCREL]"),
                a = out(reg) address,
                options(nostack, pure, readonly, preserves_flags),
            )
        };
        address
    }};
}

/// glibc's registration, or None if glibc lacks the symbols or did not register.
#[cfg(target_arch = "x86_64")]
pub(crate) fn registration() -> Option<GlibcRseq> {
    let offset = weak_address!("__rseq_offset") as *const isize;
    let size = weak_address!("__rseq_size") as *const u32;
    if offset.is_null() || size.is_null() {
        return None;
    }
    // SAFETY: both symbols are defined (non-null addresses), are constants glibc sets
    // before any user code runs, and have the C types ptrdiff_t and unsigned int.
    let (offset, size) = unsafe { (offset.read(), size.read()) };
    // `__rseq_size` is 0 when glibc did not register (20 on glibc 2.35-2.39).
    (size > 0).then_some(GlibcRseq { offset })
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn registration() -> Option<GlibcRseq> {
    None
}

/// Whether the process has only the calling thread, as glibc knows it
/// (`__libc_single_threaded`): true until the first `pthread_create`, and false
/// from then on, even after the threads end and in a fork's child (glibc 2.36).
/// False where glibc does not say (an older glibc, another architecture): the
/// answer may err only towards "more threads".
#[cfg(target_arch = "x86_64")]
pub fn single_threaded() -> bool {
    let flag = weak_address!("__libc_single_threaded") as *const core::sync::atomic::AtomicU8;
    // SAFETY: a defined `__libc_single_threaded` is a `char` that lives as long as
    // the process; glibc writes it only from a thread that runs (pthread_create),
    // and AtomicU8 has the layout of u8.
    !flag.is_null() && unsafe { &*flag }.load(core::sync::atomic::Ordering::Relaxed) != 0
}

#[cfg(not(target_arch = "x86_64"))]
pub fn single_threaded() -> bool {
    false
}

/// The thread pointer (the `fs` base on x86-64), from which glibc's area is found.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn thread_pointer() -> *mut u8 {
    let tp: *mut u8;
    // SAFETY: on x86-64 Linux, fs:0 holds the thread control block's own address
    // (the TLS ABI's self pointer); reading it has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {tp}, qword ptr fs:[0]",
            tp = out(reg) tp,
            options(nostack, pure, readonly, preserves_flags),
        )
    };
    tp
}
