//! A per-CPU intrusive list (LIFO): push and pop of nodes the caller owns.
//!
//! Seed 000's observation: with rseq both ends are easy. Push links the private
//! node to the head and commits it; pop reads the head's `next` and commits that.
//! No ABA problem: only the thread running on that CPU changes the head, and
//! preemption aborts it.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::arch;
use crate::route;
use crate::{OpError, PerCpu};

/// A link, placed by the caller at the start of its node type.
#[repr(C)]
#[derive(Debug)]
pub struct ListNode {
    next: *mut ListNode,
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
    head: AtomicPtr<ListNode>,
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

    fn pop_locked(&self) -> Result<NonNull<ListNode>, OpError> {
        let head = NonNull::new(self.head.load(Ordering::Relaxed)).ok_or(OpError::Empty)?;
        // SAFETY: nodes on the list are valid (push's contract).
        let next = unsafe { head.as_ref().next };
        self.head.store(next, Ordering::Relaxed);
        Ok(head)
    }

    fn push_locked(&self, node: NonNull<ListNode>) -> Result<(), OpError> {
        // SAFETY: the caller owns the node (push's contract).
        unsafe { (*node.as_ptr()).next = self.head.load(Ordering::Relaxed) };
        self.head.store(node.as_ptr(), Ordering::Relaxed);
        Ok(())
    }
}

impl Default for ListHead {
    fn default() -> Self {
        ListHead::new()
    }
}

impl PerCpu<ListHead> {
    /// Pops the first node of the calling thread's CPU's list.
    #[inline(always)]
    pub fn pop(&self) -> Result<NonNull<ListNode>, OpError> {
        route::run(
            self,
            // SAFETY: `run` passes the registered area, its index and that slot.
            |site, head| unsafe { arch::list_pop(site, head) },
            |head| head.pop_locked().map(NonNull::as_ptr),
            |_| OpError::Empty,
        )
        .and_then(|node| NonNull::new(node).ok_or(OpError::Empty))
    }

    /// Pushes `node` onto the calling thread's CPU's list.
    ///
    /// # Safety
    /// `node` is valid, on no list, and stays valid until popped or taken; its
    /// memory is not touched by anyone else meanwhile.
    #[inline(always)]
    pub unsafe fn push(&self, node: NonNull<ListNode>) -> Result<(), OpError> {
        route::run(
            self,
            // SAFETY: as in `pop`; the caller owns the node.
            |site, head| (unsafe { arch::list_push(site, head, node.as_ptr()) }, ()),
            |head| head.push_locked(node),
            |_| OpError::Full,
        )
    }
}
