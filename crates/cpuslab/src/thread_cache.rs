//! The fallback's front: without rseq every per-CPU operation takes a lock
//! (rseq-core's fallback), so each thread keeps a small cache of its own in
//! front of it, as glibc's tcache and TCMalloc's per-thread mode do. It serves
//! classes up to [`MAX_SIZE`] bytes, a few objects each ([`limit`]), and moves
//! half of a class at a time to and from this CPU's stack. In the rseq modes
//! it is never used.
//!
//! The cache is a block of metadata found through rseq-core's per-thread word
//! (one load in a shared object); the word reads [`NONE`] before the thread's
//! first use, [`OFF`] while the block is being set up and after the thread
//! exited (its operations then take the lock), else the block's address. A
//! pthread key's destructor, which runs at thread exit and neither allocates
//! nor needs a Rust TLS destructor, empties the block and keeps it for the next
//! thread. A signal handler that interrupts the thread inside its cache finds
//! the block busy and takes the lock as well.
//!
//! What it can hold: [`BOUND_BYTES`] per thread (docs/tuning.md). Other
//! threads' caches are never touched from outside (`trim` empties the calling
//! thread's); statistics read their counts.

use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{
    compiler_fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering,
};

use rseq_core::Mode;

use crate::cpu_cache;
use crate::meta;
use crate::report;
use crate::size_class::{class_of, Class, MIN_ALIGN};
use crate::sync::Lock;

/// Classes up to this size have a place in the cache (glibc's tcache goes
/// about as far).
pub(crate) const MAX_SIZE: usize = 1024;

/// Classes with a place: every class up to `MAX_SIZE`.
const CLASSES: usize = match class_of(MAX_SIZE, MIN_ALIGN) {
    Some(class) => class.index() + 1,
    None => 0,
};

/// The most objects of one class a cache holds.
const SLOTS: usize = 16;

/// Bytes of objects per class a cache aims at: `limit` is this over the size,
/// within 2..=SLOTS.
const CLASS_BYTES: usize = 4096;

/// How many objects of `class` a thread caches (a table: no division on the
/// path).
#[inline(always)]
fn limit(class: Class) -> usize {
    LIMITS[class.index()] as usize
}

static LIMITS: [u8; CLASSES] = {
    let mut limits = [0; CLASSES];
    let mut i = 0;
    while i < CLASSES {
        if let Some(class) = Class::from_index(i) {
            let n = CLASS_BYTES / class.size();
            limits[i] = if n < 2 {
                2
            } else if n > SLOTS {
                SLOTS as u8
            } else {
                n as u8
            };
        }
        i += 1;
    }
    limits
};

/// The most bytes of free objects one thread's cache holds.
const BOUND_BYTES: usize = {
    let mut sum = 0;
    let mut i = 0;
    while i < CLASSES {
        if let Some(class) = Class::from_index(i) {
            sum += LIMITS[i] as usize * class.size();
        }
        i += 1;
    }
    sum
};

const _: () = assert!(CLASSES > 0 && BOUND_BYTES <= CLASSES * CLASS_BYTES);

/// The word before the thread's first use.
const NONE: usize = 0;
/// The word while the block is set up, and after the thread exited.
const OFF: usize = 1;

/// One thread's cache.
#[repr(C)]
struct Block {
    /// Set while the owner works on the block (a signal handler then stays
    /// out). Atomic (relaxed) because a handler reads it.
    busy: AtomicBool,
    /// Objects per class; atomic only so that statistics can read it from
    /// other threads (the owner alone writes it).
    counts: [AtomicU8; CLASSES],
    /// Each class's objects, the newest last.
    slots: [[Cell<*mut u8>; SLOTS]; CLASSES],
    /// Every block ever made, for statistics (never unlinked).
    next_made: AtomicPtr<Block>,
    /// Blocks of exited threads, for the next thread (under `SPARE_LOCK`).
    next_spare: Cell<*mut Block>,
}

// SAFETY: a block is used by one thread at a time (its owner, or the thread
// that takes it from the spares under the lock); others read only the atomic
// counts and the never-changing `next_made`.
unsafe impl Sync for Block {}

/// Every block ever made (a list through `next_made`).
static MADE: AtomicPtr<Block> = AtomicPtr::new(ptr::null_mut());

/// Blocks of exited threads (a list through `next_spare`).
struct Spares {
    lock: Lock,
    head: Cell<*mut Block>,
}

// SAFETY: `head` is only accessed with `lock` held.
unsafe impl Sync for Spares {}

static SPARES: Spares = Spares {
    lock: Lock::new(),
    head: Cell::new(ptr::null_mut()),
};

/// The pthread key whose destructor empties a block at thread exit.
static KEY: AtomicU32 = AtomicU32::new(KEY_UNMADE);
const KEY_UNMADE: u32 = u32::MAX;
const KEY_FAILED: u32 = u32::MAX - 1;

/// Whether a thread in this process uses the cache: only without rseq.
#[inline(always)]
fn wanted() -> bool {
    rseq_core::mode_if_decided() == Some(Mode::Fallback)
}

/// The calling thread's block; None when it has none (rseq modes, a class
/// without a place, not set up yet, setting up, exited, out of memory).
#[inline(always)]
fn block(class: Class) -> Option<&'static Block> {
    if class.index() >= CLASSES || !wanted() {
        return None;
    }
    let block = match word().load(Ordering::Relaxed) {
        NONE | OFF => return None,
        // SAFETY: the word holds this thread's block, which lives forever.
        word => unsafe { &*(word as *const Block) },
    };
    (!block.busy.load(Ordering::Relaxed)).then_some(block)
}

/// Sets up the calling thread's block if it wants one and has none yet: from
/// the per-CPU tier's slow paths, so that the fast ones (`pop`, `push`) make
/// no call that returns to them. The operation that calls it took the slow
/// path; the thread's next ones find the block.
pub(crate) fn set_up_for_next_time() {
    if wanted() && word().load(Ordering::Relaxed) == NONE {
        let _ = set_up();
    }
}

/// The calling thread's word (rseq-core's), as an atomic: the thread's signal
/// handlers use it too.
#[inline(always)]
fn word() -> &'static AtomicUsize {
    // SAFETY: the word is aligned to 8, valid while the calling thread lives
    // (the reference is used only within calls on this thread, never kept),
    // and every access to it goes through this atomic view.
    unsafe { AtomicUsize::from_ptr(rseq_core::thread_word()) }
}

/// One object of `class` from the calling thread's cache (refilled from this
/// CPU's stack when empty), or None: no cache here, take the per-CPU path.
#[inline]
pub(crate) fn pop(class: Class) -> Option<*mut u8> {
    let block = block(class)?;
    enter(block);
    let c = class.index();
    let n = block.counts[c].load(Ordering::Relaxed) as usize;
    if n == 0 {
        // A call that returns here would make every pop save registers.
        return pop_refilled(block, class);
    }
    // SAFETY: `block` gave a class below CLASSES; counts stay <= SLOTS.
    unsafe { take(block, c, n) }
}

/// Slot `i` of class index `c`, unchecked: the fast paths index with a count,
/// which never exceeds the class's `limit` (at most `SLOTS`), so a bounds
/// check would only add a branch and a panic path (and the frame it needs).
///
/// # Safety
/// `c < CLASSES` and `i < SLOTS`.
#[inline(always)]
unsafe fn slot(block: &Block, c: usize, i: usize) -> &Cell<*mut u8> {
    debug_assert!(c < CLASSES && i < SLOTS);
    // SAFETY: within both arrays (caller).
    unsafe { block.slots.get_unchecked(c).get_unchecked(i) }
}

/// Takes the newest of the `n` objects of class index `c` and leaves the block.
///
/// # Safety
/// `c < CLASSES` and `n` is the class's count (at most `SLOTS`).
#[inline(always)]
unsafe fn take(block: &Block, c: usize, n: usize) -> Option<*mut u8> {
    let object = n.checked_sub(1).map(|top| {
        block.counts[c].store(top as u8, Ordering::Relaxed);
        // SAFETY: top < n <= SLOTS (caller).
        unsafe { slot(block, c, top) }.get()
    });
    leave(block);
    object
}

/// Puts `object` above the `n` objects of class index `c` and leaves the block.
///
/// # Safety
/// `c < CLASSES` and `n` is the class's count, below its limit.
#[inline(always)]
unsafe fn put(block: &Block, c: usize, n: usize, object: *mut u8) -> bool {
    // SAFETY: n < limit <= SLOTS (caller).
    unsafe { slot(block, c, n) }.set(object);
    block.counts[c].store((n + 1) as u8, Ordering::Relaxed);
    leave(block);
    true
}

/// `pop` of an empty class: refills it, then takes one (None when nothing
/// came); the block is entered, and left here.
#[cold]
#[inline(never)]
fn pop_refilled(block: &Block, class: Class) -> Option<*mut u8> {
    let n = refill(block, class);
    // SAFETY: as in `pop`; `refill` holds at most half the limit.
    unsafe { take(block, class.index(), n) }
}

/// Keeps the free `object` of `class` in the calling thread's cache (half of
/// a full class moves to this CPU's stack first); false: no cache here.
///
/// # Safety
/// `object` is a free object of `class` that nobody uses any more.
#[inline]
pub(crate) unsafe fn push(class: Class, object: *mut u8) -> bool {
    let Some(block) = block(class) else {
        return false;
    };
    enter(block);
    let c = class.index();
    let n = block.counts[c].load(Ordering::Relaxed) as usize;
    // SAFETY: `block` gave a class below CLASSES; n - 1 < n <= SLOTS.
    // `>=`, not `==`: a count that ever passed its limit goes to the checked
    // slow path rather than to an unchecked slot.
    if n >= limit(class) || (n > 0 && unsafe { slot(block, c, n - 1) }.get() == object) {
        // SAFETY: forwarded contract. (Out of line: a call that returned here
        // would make every push save registers.)
        return unsafe { push_slow(block, class, object, n) };
    }
    // SAFETY: as above, and n < limit (a count never passes its limit).
    unsafe { put(block, c, n, object) }
}

/// `push` of an immediate double free (reported) or into a full class
/// (half of it flushed first); the block is entered, and left here.
///
/// # Safety
/// As for `push`.
#[cold]
#[inline(never)]
unsafe fn push_slow(block: &Block, class: Class, object: *mut u8, n: usize) -> bool {
    let c = class.index();
    // SAFETY: as in `push`.
    if n > 0 && unsafe { slot(block, c, n - 1) }.get() == object {
        report::double_free("free", object);
    }
    // SAFETY: as in `push`; the flush leaves fewer than the limit.
    unsafe { put(block, c, flush(block, class, n, n / 2), object) }
}

/// Marks the block busy: a signal handler that runs from here to `leave`
/// finds it so and stays out.
#[inline(always)]
fn enter(block: &Block) {
    block.busy.store(true, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

#[inline(always)]
fn leave(block: &Block) {
    compiler_fence(Ordering::SeqCst);
    block.busy.store(false, Ordering::Relaxed);
}

/// Fills the empty class with half its limit (`cpu_cache::take_batch`: this
/// CPU's stack, else the depot); returns how many it holds now.
#[cold]
#[inline(never)]
fn refill(block: &Block, class: Class) -> usize {
    let mut batch = [ptr::null_mut(); SLOTS];
    let n = cpu_cache::take_batch(class, &mut batch[..(limit(class) / 2).max(1)]);
    for (slot, &object) in block.slots[class.index()].iter().zip(&batch[..n]) {
        slot.set(object);
    }
    n
}

/// Moves the `count` oldest of the class's `n` objects out
/// (`cpu_cache::give_batch`: this CPU's stack, else the depot) and keeps the
/// rest; returns how many it holds now.
#[cold]
#[inline(never)]
fn flush(block: &Block, class: Class, n: usize, count: usize) -> usize {
    let slots = &block.slots[class.index()];
    let mut batch = [ptr::null_mut(); SLOTS];
    for (object, slot) in batch.iter_mut().zip(&slots[..count]) {
        *object = slot.get();
    }
    // SAFETY: free objects of `class` from this thread's cache, no longer in it
    // once the count below drops.
    unsafe { cpu_cache::give_batch(class, &batch[..count]) };
    for i in count..n {
        slots[i - count].set(slots[i].get());
    }
    block.counts[class.index()].store((n - count) as u8, Ordering::Relaxed);
    n - count
}

/// Sets up the calling thread's block: a spare one, or a fresh one from the
/// metadata arena, registered with the key for thread exit. None (and the
/// word `OFF`) when that fails.
#[cold]
#[inline(never)]
fn set_up() -> Option<&'static Block> {
    // `OFF` first, in one instruction: an allocation reentered from here
    // (pthread_setspecific may allocate) or from a signal handler takes the
    // lock instead. A handler that ran before it set up the block itself.
    match word().compare_exchange(NONE, OFF, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {}
        Err(OFF) => return None,
        // SAFETY: a handler set up this thread's block; blocks live forever.
        Err(block) => return Some(unsafe { &*(block as *const Block) }),
    }
    // No per-CPU caching configured: none per thread either.
    if crate::config::cpu_cache_bytes() == 0 {
        return None;
    }
    let key = key()?;
    let block = take_spare().or_else(make)?;
    // SAFETY: a valid key; the value is only read back by the destructor.
    if unsafe { libc::pthread_setspecific(key, block.as_ptr().cast()) } != 0 {
        give_back(block);
        return None;
    }
    word().store(block.as_ptr() as usize, Ordering::Relaxed);
    // SAFETY: blocks live forever.
    Some(unsafe { block.as_ref() })
}

/// The key, made on first use (None if the process has no key left).
fn key() -> Option<libc::pthread_key_t> {
    match KEY.load(Ordering::Acquire) {
        KEY_FAILED => return None,
        KEY_UNMADE => {}
        key => return Some(key),
    }
    let _guard = SPARES.lock.guard();
    match KEY.load(Ordering::Acquire) {
        KEY_UNMADE => {}
        KEY_FAILED => return None,
        key => return Some(key),
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: a valid out-pointer and an `extern "C"` destructor that never
    // unwinds. glibc's pthread_key_create does not allocate.
    let made = unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0;
    let key = if made && key < KEY_FAILED {
        key
    } else {
        KEY_FAILED
    };
    KEY.store(key, Ordering::Release);
    (key != KEY_FAILED).then_some(key)
}

/// A fresh block from the metadata arena, linked into `MADE`.
fn make() -> Option<NonNull<Block>> {
    let block = meta::alloc(size_of::<Block>(), align_of::<Block>())?.cast::<Block>();
    // SAFETY: fresh zeroed metadata, a valid `Block` (zero counts, null
    // pointers, not busy), ours until published below.
    let made = unsafe { block.as_ref() };
    let mut head = MADE.load(Ordering::Relaxed);
    loop {
        made.next_made.store(head, Ordering::Relaxed);
        match MADE.compare_exchange_weak(head, block.as_ptr(), Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return Some(block),
            Err(now) => head = now,
        }
    }
}

fn take_spare() -> Option<NonNull<Block>> {
    let _guard = SPARES.lock.guard();
    let block = NonNull::new(SPARES.head.get())?;
    // SAFETY: a spare block, ours now that it is unlinked under the lock.
    SPARES.head.set(unsafe { block.as_ref() }.next_spare.get());
    Some(block)
}

fn give_back(block: NonNull<Block>) {
    let _guard = SPARES.lock.guard();
    // SAFETY: an empty block nobody uses any more.
    unsafe { block.as_ref() }.next_spare.set(SPARES.head.get());
    SPARES.head.set(block.as_ptr());
}

/// The key's destructor, at thread exit: later operations of this thread take
/// the lock; its objects go to the per-CPU stacks; the block is kept.
/// A block left busy (the thread exited from inside it: `pthread_exit` or a
/// `longjmp` out of a signal handler that interrupted it) is left alone: its
/// counts may not match its slots, and a leak beats handing out an object twice.
extern "C" fn thread_exit(value: *mut libc::c_void) {
    // The exiting thread's word is still valid while its key destructors run.
    word().store(OFF, Ordering::Relaxed);
    let Some(block) = NonNull::new(value.cast::<Block>()) else {
        return;
    };
    // SAFETY: the value set in `set_up`: this thread's block.
    let block_ref = unsafe { block.as_ref() };
    if block_ref.busy.load(Ordering::Relaxed) {
        return;
    }
    empty(block_ref);
    give_back(block);
}

/// Moves every object of `block` out (to this CPU's stacks and the depot).
fn empty(block: &Block) {
    enter(block);
    for class in Class::all().take(CLASSES) {
        let n = block.counts[class.index()].load(Ordering::Relaxed) as usize;
        if n > 0 {
            flush(block, class, n, n);
        }
    }
    leave(block);
}

/// Empties the calling thread's cache (for `trim`).
pub(crate) fn empty_mine() {
    if !wanted() {
        return;
    }
    let word = word().load(Ordering::Relaxed);
    if word != NONE && word != OFF {
        // SAFETY: the word holds this thread's block.
        let block = unsafe { &*(word as *const Block) };
        if !block.busy.load(Ordering::Relaxed) {
            empty(block);
        }
    }
}

/// Free objects of `class` in every thread's cache (a racy sum).
pub fn cached_objects(class: Class) -> usize {
    let c = class.index();
    if c >= CLASSES {
        return 0;
    }
    made()
        .map(|block| block.counts[c].load(Ordering::Relaxed) as usize)
        .sum()
}

/// Blocks made so far (for tests: exited threads' blocks are reused).
pub fn blocks_made() -> usize {
    made().count()
}

/// Every block ever made, newest first.
fn made() -> impl Iterator<Item = &'static Block> {
    let mut next = MADE.load(Ordering::Acquire);
    core::iter::from_fn(move || {
        // SAFETY: blocks in `MADE` live forever and their links never change.
        let block = unsafe { next.as_ref() }?;
        next = block.next_made.load(Ordering::Relaxed);
        Some(block)
    })
}

/// Runs `f` with the calling thread's block marked busy, as a signal handler
/// that interrupted the thread inside its cache finds it (for tests: what `f`
/// allocates and frees must bypass the block). False when the thread has no
/// block.
pub fn while_busy(f: impl FnOnce()) -> bool {
    let word = word().load(Ordering::Relaxed);
    if word == NONE || word == OFF {
        return false;
    }
    // SAFETY: the word holds this thread's block.
    let block = unsafe { &*(word as *const Block) };
    enter(block);
    f();
    leave(block);
    true
}

/// Takes the spares' lock (for `fork`).
pub(crate) fn lock() {
    SPARES.lock.lock();
}

/// Releases the spares' lock (for `fork`).
///
/// # Safety
/// The calling thread (in the child: the parent's forking thread) took it.
pub(crate) unsafe fn unlock() {
    // SAFETY: forwarded contract.
    unsafe { SPARES.lock.unlock() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_bound() {
        let last = Class::from_index(CLASSES - 1).unwrap();
        assert_eq!(last.size(), MAX_SIZE);
        for class in Class::all().take(CLASSES) {
            assert!((2..=SLOTS).contains(&limit(class)));
            assert!(limit(class) / 2 <= crate::depot::MAX_BATCH);
        }
        println!("a thread caches at most {BOUND_BYTES} bytes in {CLASSES} classes");
    }
}
