//! The operations on a region of intrusive lists (feature `list-and-word`):
//! pop and push, with restarts.
//!
//! Seed 000's observation: with rseq both ends are easy. Push links the private
//! node to the head and commits it; pop reads the head's `next` and commits that.
//! No ABA problem: only the thread running on that CPU changes the head, and
//! preemption aborts it.

use core::ptr::NonNull;

use crate::list::{ListHead, ListNode};
use crate::{arch, fallback, route};
use crate::{OpError, PerCpu};

impl PerCpu<ListHead> {
    /// Pops the first node of the calling thread's CPU's list.
    #[inline(always)]
    pub fn pop(&self) -> Result<NonNull<ListNode>, OpError> {
        route::run(
            self,
            // SAFETY: `run` passes the registered area, its index and that slot.
            |checked, head| unsafe { arch::list_pop(checked, head) },
            fallback::list_pop,
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
            |checked, head| (unsafe { arch::list_push(checked, head, node.as_ptr()) }, ()),
            |head| fallback::list_push(head, node),
            |_| OpError::Full,
        )
    }
}
