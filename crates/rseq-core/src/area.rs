//! An rseq area ([`Area`]: where a thread's area lies, and its kernel-owned
//! fields), and our own per-thread area, registered lazily where glibc did not
//! register one. Which area a thread uses is the mode's business (`mode.rs`).
//!
//! Our own area is a TLS block with a constant image and no destructor (nothing
//! is registered at thread exit, nothing allocates; `storage` says how it is
//! reached). Its
//! `cpu_id` starts as `RSEQ_CPU_ID_UNINITIALIZED`, which is how a thread knows it has
//! not registered yet. We write that field only in the constant initializer: the
//! kernel owns it, and a failed registration is remembered in a word of our own
//! beside the area, never in `cpu_id` (Linux 7.0 kills a process that changes a
//! read-only field of a registered area, and with EBUSY the area may be registered).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

#[cfg(not(target_arch = "x86_64"))]
use rseq_sys::RSEQ_CPU_ID_UNINITIALIZED;
use rseq_sys::RSEQ_MM_CID_OFFSET;
use rseq_sys::{rseq, RSEQ_CPU_ID_OFFSET};

/// A registered rseq area of the calling thread, named by its offset from the
/// thread pointer: the sections and the index reads address it `fs`-relative, which
/// saves loading the thread pointer first (glibc's offset is the same in every
/// thread, and so is our own area's in a shared-object build; elsewhere ours is
/// computed per access).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Area {
    tp_offset: isize,
}

impl Area {
    /// The area at `tp_offset` from the thread pointer.
    #[inline(always)]
    pub(crate) const fn at(tp_offset: isize) -> Area {
        Area { tp_offset }
    }

    /// The area's offset from the thread pointer, for the critical sections.
    #[inline(always)]
    pub(crate) fn tp_offset(self) -> isize {
        self.tp_offset
    }

    /// Reads a kernel-owned u32 field (`cpu_id`, `mm_cid`) at `offset`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) fn read_u32(self, offset: usize) -> u32 {
        let value: u32;
        // SAFETY: `fs:[tp_offset + offset]` lies inside this thread's registered area
        // (at least 32 bytes; every offset we use is below that), which lives as long
        // as the thread. The kernel writes these fields only on this thread's return
        // to user space, so one aligned 32-bit load reads a consistent value. Not
        // `pure`: the kernel may change the value between two reads.
        unsafe {
            core::arch::asm!(
                "mov {value:e}, dword ptr fs:[{area} + {offset}]",
                value = out(reg) value,
                area = in(reg) self.tp_offset,
                offset = in(reg) offset,
                options(nostack, readonly, preserves_flags),
            )
        };
        value
    }

    /// Elsewhere there are no areas (fallback mode): "not registered".
    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) fn read_u32(self, _offset: usize) -> u32 {
        RSEQ_CPU_ID_UNINITIALIZED as u32
    }

    /// Whether the kernel registered this area for this thread (`cpu_id` >= 0;
    /// -1 is "not registered"; -2 is what glibc leaves in its own area when its
    /// registration failed; we write neither).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) fn is_registered(self) -> bool {
        let cpu_id: i32;
        // SAFETY: as in `read_u32`, with the offset of `cpu_id` as a constant (one
        // instruction fewer on the fast path).
        unsafe {
            core::arch::asm!(
                "mov {value:e}, dword ptr fs:[{area} + {offset}]",
                value = out(reg) cpu_id,
                area = in(reg) self.tp_offset,
                offset = const RSEQ_CPU_ID_OFFSET,
                options(nostack, readonly, preserves_flags),
            )
        };
        cpu_id >= 0
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) fn is_registered(self) -> bool {
        false
    }

    /// The CPU the thread runs on now (may change right after).
    #[inline(always)]
    pub(crate) fn cpu_id(self) -> u32 {
        self.read_u32(RSEQ_CPU_ID_OFFSET)
    }

    /// The concurrency id (meaningful only where the kernel fills it).
    #[inline(always)]
    pub(crate) fn mm_cid(self) -> u32 {
        self.read_u32(RSEQ_MM_CID_OFFSET)
    }
}

// --- our own area ---------------------------------------------------------------

/// Bytes reserved for our own area: room for kernels that grow the ABI.
const OWN_AREA_BYTES: usize = 256;
/// Alignment of our own area (the kernel asks for AT_RSEQ_ALIGN, 32 today).
const OWN_AREA_ALIGN: usize = 64;

/// Where each thread's own area lives. In a shared object (the `shared-object`
/// feature) it is a TLS symbol defined and accessed in assembly with the
/// initial-exec model: one load of its offset from the thread pointer, the same
/// in every thread, so the fast path reaches it as it reaches glibc's area. (A
/// Rust `thread_local!` in a shared object uses the general-dynamic model: a
/// call to `__tls_get_addr` per access.) The price is a place in the static TLS
/// block: a library loaded with `dlopen` gets it from glibc's surplus, reserved
/// for such libraries (jemalloc, tcmalloc and mimalloc do the same), or fails to
/// load. Elsewhere it is a `thread_local!`, which an executable reaches with
/// the local-exec model (one instruction).
#[cfg(all(feature = "shared-object", target_arch = "x86_64"))]
mod storage {
    use core::ptr::NonNull;

    use super::{OWN_AREA_ALIGN, OWN_AREA_BYTES};

    /// The TLS symbol: global, so that every codegen unit can name it, but
    /// hidden (never exported from the shared object), and named after the
    /// crate's version (two versions of rseq-core in one link keep two areas).
    macro_rules! own_area_symbol {
        () => {
            concat!("rseq_core_own_area_", env!("CARGO_PKG_VERSION"))
        };
    }

    // The image of every thread's block: `cpu_id_start` 0, `cpu_id` -1
    // (RSEQ_CPU_ID_UNINITIALIZED), zeroes, then the `failed` byte (0) and,
    // 8 bytes after it, the layer above's word (0).
    core::arch::global_asm!(
        concat!(".pushsection .tdata.", own_area_symbol!(), ",\"awT\",@progbits"),
        concat!(".globl ", own_area_symbol!()),
        concat!(".hidden ", own_area_symbol!()),
        concat!(".type ", own_area_symbol!(), ", @object"),
        concat!(".size ", own_area_symbol!(), ", {size}"),
        ".balign {align}",
        concat!(own_area_symbol!(), ":"),
        ".long 0",
        ".long -1",
        ".zero {rest}",
        ".byte 0",
        ".zero 7",
        ".quad 0",
        ".zero {tail}",
        ".popsection",
        align = const OWN_AREA_ALIGN,
        rest = const OWN_AREA_BYTES - 8,
        tail = const OWN_AREA_ALIGN - 16,
        size = const OWN_AREA_BYTES + OWN_AREA_ALIGN,
    );

    /// The area's offset from the thread pointer: the same in every thread.
    #[inline(always)]
    pub(super) fn fixed_offset() -> Option<isize> {
        Some(offset())
    }

    #[inline(always)]
    fn offset() -> isize {
        let offset: isize;
        // SAFETY: loads the GOT entry the dynamic linker filled with the symbol's
        // offset in the static TLS block; no side effects.
        unsafe {
            core::arch::asm!(
                concat!("mov {offset}, qword ptr [rip + ", own_area_symbol!(), "@GOTTPOFF]"),
                offset = out(reg) offset,
                options(nostack, pure, readonly, preserves_flags),
            )
        };
        offset
    }

    pub(super) fn address() -> NonNull<u8> {
        let address = crate::glibc::thread_pointer().wrapping_offset(offset());
        // SAFETY: an address inside this thread's static TLS block is not null.
        unsafe { NonNull::new_unchecked(address) }
    }

    /// The calling thread's `failed` byte, after the area.
    fn failed_byte() -> *mut bool {
        address().as_ptr().wrapping_add(OWN_AREA_BYTES).cast()
    }

    pub(super) fn failed() -> bool {
        // SAFETY: this thread's own byte in its TLS block, only ever 0 or 1.
        unsafe { failed_byte().read() }
    }

    pub(super) fn set_failed() {
        // SAFETY: as in `failed`; nobody else writes this thread's byte.
        unsafe { failed_byte().write(true) }
    }

    /// The calling thread's word for the layer above, 8 bytes after `failed`.
    #[inline(always)]
    pub(super) fn word() -> *mut usize {
        address().as_ptr().wrapping_add(OWN_AREA_BYTES + 8).cast()
    }
}

#[cfg(not(all(feature = "shared-object", target_arch = "x86_64")))]
mod storage {
    use core::cell::{Cell, UnsafeCell};
    use core::ptr::NonNull;

    use rseq_sys::{RSEQ_CPU_ID_OFFSET, RSEQ_CPU_ID_UNINITIALIZED};

    use super::{OWN_AREA_ALIGN, OWN_AREA_BYTES};

    #[repr(C, align(64))]
    struct OwnArea {
        /// What the kernel sees: registered with at most `OWN_AREA_BYTES`.
        area: UnsafeCell<[u32; OWN_AREA_BYTES / 4]>,
        /// Ours alone, beyond any registered length: this thread's registration
        /// failed, so that it is not retried on every operation.
        failed: Cell<bool>,
        /// The layer above's word ([`super::thread_word`]).
        word: Cell<usize>,
    }

    const _: () = assert!(core::mem::align_of::<OwnArea>() == OWN_AREA_ALIGN);
    const _: () = assert!(core::mem::offset_of!(OwnArea, area) == 0);

    impl OwnArea {
        const fn new() -> Self {
            let mut words = [0u32; OWN_AREA_BYTES / 4];
            words[RSEQ_CPU_ID_OFFSET / 4] = RSEQ_CPU_ID_UNINITIALIZED as u32;
            OwnArea {
                area: UnsafeCell::new(words),
                failed: Cell::new(false),
                word: Cell::new(0),
            }
        }
    }

    std::thread_local! {
        static OWN_AREA: OwnArea = const { OwnArea::new() };
    }

    /// A thread-local's offset differs between threads in general.
    #[inline(always)]
    pub(super) fn fixed_offset() -> Option<isize> {
        None
    }

    pub(super) fn address() -> NonNull<u8> {
        let area = OWN_AREA.with(|own| own.area.get().cast::<u8>());
        // SAFETY: a thread-local's address is never null.
        unsafe { NonNull::new_unchecked(area) }
    }

    pub(super) fn failed() -> bool {
        OWN_AREA.with(|own| own.failed.get())
    }

    pub(super) fn set_failed() {
        OWN_AREA.with(|own| own.failed.set(true));
    }

    #[inline(always)]
    pub(super) fn word() -> *mut usize {
        OWN_AREA.with(|own| own.word.as_ptr())
    }
}

const _: () = assert!(OWN_AREA_BYTES >= core::mem::size_of::<rseq>());
// The assembly image puts -1 at byte 4.
const _: () = assert!(RSEQ_CPU_ID_OFFSET == 4);

/// A word of thread-local storage for the layer above, kept beside our own area
/// (beyond any registered length, so the kernel never sees it) and reached the
/// same way: in a shared-object build one load of a fixed offset (initial-exec
/// TLS), elsewhere a `thread_local!` without destructor. It reads 0 in every new
/// thread; a forked child keeps the forking thread's value. Only the calling
/// thread (and its signal handlers) may use the pointer; it is valid until the
/// thread exits. cpuslab keeps its per-thread cache of the fallback mode here.
#[inline(always)]
pub fn thread_word() -> *mut usize {
    storage::word()
}

/// Own areas' offset from the thread pointer when it is the same in every
/// thread (the initial-exec area of a shared-object build), for the fast path.
#[inline(always)]
pub(crate) fn own_area_fixed_offset() -> Option<isize> {
    storage::fixed_offset()
}

/// The address of this thread's own area.
#[inline(always)]
fn own_area_address() -> NonNull<rseq> {
    storage::address().cast()
}

/// This thread's own area, registered or not.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn own_area_unregistered() -> Area {
    if let Some(tp_offset) = own_area_fixed_offset() {
        return Area { tp_offset };
    }
    let address = own_area_address().as_ptr() as isize;
    Area {
        tp_offset: address.wrapping_sub(crate::glibc::thread_pointer() as isize),
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn own_area_unregistered() -> Area {
    Area { tp_offset: 0 }
}

/// This thread's own area, registering it on first use; None if that failed.
#[inline(always)]
pub(crate) fn own_area() -> Option<Area> {
    let area = own_area_unregistered();
    if !area.is_registered() && !register_this_thread() {
        return None;
    }
    Some(area)
}

/// The raw `cpu_id` of this thread's own area (for tests: it must never read
/// anything we wrote but the initial -1).
pub(crate) fn own_area_cpu_id() -> i32 {
    let area = own_area_address();
    // SAFETY: our own TLS area; the kernel writes the field only on our return
    // to user space, and a volatile read sees whole values.
    unsafe { core::ptr::addr_of!((*area.as_ptr()).cpu_id).read_volatile() as i32 }
}

/// Registers this thread's own area, once: a thread whose registration failed
/// does not try again. Every asynchronous signal is blocked meanwhile: a handler
/// that ran an operation between our check and the syscall would register the
/// area first, and ours would then fail with EBUSY on an area that is registered.
#[cold]
#[inline(never)]
fn register_this_thread() -> bool {
    if storage::failed() {
        return false;
    }
    let _blocked = SignalsBlocked::now();
    let registered = own_area_cpu_id() >= 0 || {
        #[cfg(feature = "fault-injection")]
        raise_injected_signal();
        let area = own_area_address();
        let len = own_registration_len();
        // SAFETY: the area is this thread's TLS block, aligned and at least `len`
        // bytes, alive until the thread exits (when the kernel drops the
        // registration).
        let result = unsafe {
            libc::syscall(
                rseq_sys::SYS_RSEQ,
                area.as_ptr(),
                len as u32,
                0,
                rseq_sys::RSEQ_SIG,
            )
        };
        // EBUSY with our area registered: someone registered it for us (it
        // cannot be a handler of ours, with signals blocked, but the area is
        // good all the same).
        result == 0 || own_area_cpu_id() >= 0
    };
    if !registered {
        storage::set_failed();
    }
    registered
}

/// Test builds: a signal to raise once, in the next registration, between its
/// check and its syscall (set through `fault::raise_during_next_registration`).
#[cfg(feature = "fault-injection")]
pub(crate) static RAISE_DURING_REGISTRATION: core::sync::atomic::AtomicI32 =
    core::sync::atomic::AtomicI32::new(0);

#[cfg(feature = "fault-injection")]
fn raise_injected_signal() {
    let signal = RAISE_DURING_REGISTRATION.swap(0, Ordering::Relaxed);
    if signal != 0 {
        // SAFETY: raise only sends a signal to the calling thread.
        unsafe { libc::raise(signal) };
    }
}

/// Every asynchronous signal blocked for this thread until dropped (the mask
/// before is restored). `pthread_sigmask` neither allocates nor fails with valid
/// arguments.
struct SignalsBlocked(libc::sigset_t);

/// Signals the kernel raises synchronously, for the instruction the thread runs:
/// blocking one makes the kernel kill the process when it must deliver it. SIGSYS
/// matters most here: a seccomp filter that traps `rseq` with SECCOMP_RET_TRAP
/// delivers it for our syscall, and its handler is how the sandbox says no (and we
/// then run without rseq).
const SYNCHRONOUS_SIGNALS: [libc::c_int; 6] = [
    libc::SIGSYS,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];

impl SignalsBlocked {
    fn now() -> SignalsBlocked {
        // SAFETY: sigset_t is plain data that sigfillset initialises; the mask
        // calls only read and write the sets we pass, for this thread.
        unsafe {
            let mut asynchronous: libc::sigset_t = core::mem::zeroed();
            let mut before: libc::sigset_t = core::mem::zeroed();
            libc::sigfillset(&mut asynchronous);
            for signal in SYNCHRONOUS_SIGNALS {
                libc::sigdelset(&mut asynchronous, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &asynchronous, &mut before);
            SignalsBlocked(before)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `now`, for this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, core::ptr::null_mut()) };
    }
}

/// The length to register: the original 32 bytes, or the kernel's feature size
/// rounded to its alignment when it is larger and fits our area.
fn own_registration_len() -> usize {
    const ORIG: usize = rseq_sys::ORIG_RSEQ_SIZE as usize;
    let feature = kernel_feature_size();
    // SAFETY: getauxval only reads the auxiliary vector.
    let align = match unsafe { libc::getauxval(rseq_sys::AT_RSEQ_ALIGN.into()) } as usize {
        0 => ORIG,
        align => align,
    };
    if feature <= ORIG || !align.is_power_of_two() || align > OWN_AREA_ALIGN {
        return ORIG;
    }
    let len = (feature + align - 1) & !(align - 1);
    if len <= OWN_AREA_BYTES {
        len
    } else {
        ORIG
    }
}

/// The kernel's rseq feature size (AT_RSEQ_FEATURE_SIZE; 20 when it does not say),
/// read from the auxiliary vector once.
pub(crate) fn kernel_feature_size() -> usize {
    /// `offsetof(struct rseq, flags) + 4`: the fields every rseq kernel fills.
    const ORIGINAL_FEATURE_SIZE: usize = 20;
    static FEATURE_SIZE: AtomicUsize = AtomicUsize::new(0);
    match FEATURE_SIZE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: getauxval only reads the auxiliary vector.
            let size = match unsafe { libc::getauxval(rseq_sys::AT_RSEQ_FEATURE_SIZE.into()) } {
                0 => ORIGINAL_FEATURE_SIZE,
                size => size as usize,
            };
            FEATURE_SIZE.store(size, Ordering::Relaxed);
            size
        }
        size => size,
    }
}
