//! A per-CPU bounded pointer stack's header: `top`, `capacity` and `slots` (the
//! slot array the caller provides). The operations on a region of stacks are in
//! `ops/stack.rs`; the critical sections in `arch`, the locked bodies in
//! `fallback.rs`.
//!
//! The sections read `capacity`, then `top`, then `slots`, and commit by storing
//! `top` alone, so a remote thread can stop the stack by storing a zero
//! `capacity` without racing a local commit, and resume it by storing `capacity`
//! last (why this order, and no other, is correct: the arch module's "Load order"
//! and docs/rseq.md, "Remote access"). Zeroed memory is an inert stack: empty and
//! full at once, until `PerCpu::<Stack>::install` or `with_stopped` gives it slots.

use core::mem::offset_of;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// The header of one CPU's stack.
#[repr(C)]
#[derive(Debug)]
pub struct Stack {
    /// Number of items; the next push goes to `slots[top]`.
    pub(crate) top: AtomicU32,
    /// Most items the stack may hold (at most the slot array's length); 0 while
    /// stopped or inert.
    pub(crate) capacity: AtomicU32,
    /// The slot array, `capacity` pointers.
    pub(crate) slots: AtomicPtr<*mut u8>,
}

/// Offset of `top`.
pub(crate) const TOP_OFFSET: usize = offset_of!(Stack, top);
/// Offset of `capacity`.
pub(crate) const CAPACITY_OFFSET: usize = offset_of!(Stack, capacity);
/// Offset of the slot array pointer.
pub(crate) const SLOTS_OFFSET: usize = offset_of!(Stack, slots);

const _: () = assert!(TOP_OFFSET == 0 && CAPACITY_OFFSET == 4 && SLOTS_OFFSET == 8);
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the sections read top as the low half"
);

impl Stack {
    /// An inert stack: no slots, refuses every pop and push.
    pub const fn new() -> Self {
        Stack {
            top: AtomicU32::new(0),
            capacity: AtomicU32::new(0),
            slots: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The number of items now (a racy hint unless the stack is stopped).
    pub fn len(&self) -> u32 {
        self.top.load(Ordering::Relaxed)
    }

    /// Whether the stack holds no items now (a hint).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of slots now (0 while stopped or inert).
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Relaxed)
    }
}

impl Default for Stack {
    fn default() -> Self {
        Stack::new()
    }
}

/// A stopped stack's contents, handed to `with_stopped`'s closure to read and
/// change: the items are `slots[..top]`, the bottom first.
#[derive(Debug)]
pub struct StackParts {
    /// The slot array (null for an inert stack).
    pub slots: *mut *mut u8,
    /// The number of items.
    pub top: u32,
    /// The number of slots; must stay >= `top`.
    pub capacity: u32,
}
