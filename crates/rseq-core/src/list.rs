//! A per-CPU intrusive list (LIFO) of nodes the caller owns: the head and the
//! link. The operations on a region of heads are in `ops/list.rs`.
//!
//! Seed 000's observation: with rseq both ends are easy. Push links the private
//! node to the head and commits it; pop reads the head's `next` and commits that.
//! No ABA problem: only the thread running on that CPU changes the head, and
//! preemption aborts it.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A link, placed by the caller at the start of its node type.
#[repr(C)]
#[derive(Debug)]
pub struct ListNode {
    pub(crate) next: *mut ListNode,
}

// SAFETY: a node moves between threads by design (pushed by one, popped by another);
// its link is only written by the list operations, by the thread that owns the node.
unsafe impl Send for ListNode {}
// SAFETY: as above; shared references only read the link.
unsafe impl Sync for ListNode {}

impl ListNode {
    /// An unlinked node.
    pub const fn new() -> Self {
        ListNode {
            next: core::ptr::null_mut(),
        }
    }

    /// The next node (meaningful for a detached chain from [`ListHead::take_all`]).
    pub fn next(&self) -> Option<NonNull<ListNode>> {
        NonNull::new(self.next)
    }
}

impl Default for ListNode {
    fn default() -> Self {
        ListNode::new()
    }
}

/// The head of one CPU's list.
#[repr(C)]
#[derive(Debug)]
pub struct ListHead {
    pub(crate) head: AtomicPtr<ListNode>,
}

const _: () = assert!(core::mem::offset_of!(ListHead, head) == 0);
const _: () = assert!(core::mem::offset_of!(ListNode, next) == 0);

impl ListHead {
    /// An empty list.
    pub const fn new() -> Self {
        ListHead {
            head: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Detaches the whole chain (follow it with [`ListNode::next`]).
    ///
    /// # Safety
    /// No operation may run on this slot concurrently (for example: every thread
    /// that used the region has been joined).
    pub unsafe fn take_all(&self) -> Option<NonNull<ListNode>> {
        NonNull::new(self.head.swap(core::ptr::null_mut(), Ordering::AcqRel))
    }
}

impl Default for ListHead {
    fn default() -> Self {
        ListHead::new()
    }
}
