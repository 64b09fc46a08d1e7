//! Architectures without critical sections: the mode is always `Fallback`, so the
//! router never calls these. If it ever did, "aborted" sends the caller to its slow
//! path, which is always safe.

use super::{CheckedIndex, IndexedRegion, Status};
#[cfg(feature = "list-and-word")]
use crate::list::{ListHead, ListNode};
use crate::stack::Stack;
#[cfg(feature = "list-and-word")]
use core::sync::atomic::AtomicUsize;

pub(crate) unsafe fn stack_pop(_: CheckedIndex, _: *mut Stack) -> (Status, *mut u8) {
    (Status::ABORTED, core::ptr::null_mut())
}
pub(crate) unsafe fn stack_push(_: CheckedIndex, _: *mut Stack, _: *mut u8) -> (Status, bool) {
    (Status::ABORTED, false)
}
pub(crate) unsafe fn stack_pop_batch(
    _: CheckedIndex,
    _: *mut Stack,
    _: *mut *mut u8,
    _: usize,
) -> (Status, usize) {
    (Status::ABORTED, 0)
}
pub(crate) unsafe fn stack_push_batch(
    _: CheckedIndex,
    _: *mut Stack,
    _: *const *mut u8,
    _: usize,
) -> (Status, usize) {
    (Status::ABORTED, 0)
}
#[cfg(feature = "list-and-word")]
pub(crate) unsafe fn list_pop(_: CheckedIndex, _: *mut ListHead) -> (Status, *mut ListNode) {
    (Status::ABORTED, core::ptr::null_mut())
}
#[cfg(feature = "list-and-word")]
pub(crate) unsafe fn list_push(_: CheckedIndex, _: *mut ListHead, _: *mut ListNode) -> Status {
    Status::ABORTED
}
#[cfg(feature = "list-and-word")]
pub(crate) unsafe fn word_compare_and_store(
    _: CheckedIndex,
    _: *mut AtomicUsize,
    _: usize,
    _: usize,
) -> (Status, usize) {
    (Status::ABORTED, 0)
}
#[cfg(feature = "list-and-word")]
pub(crate) unsafe fn word_add(_: CheckedIndex, _: *mut AtomicUsize, _: usize) -> (Status, usize) {
    (Status::ABORTED, 0)
}
pub(crate) unsafe fn stack_try_pop(_: IndexedRegion) -> *mut u8 {
    core::ptr::null_mut()
}
pub(crate) unsafe fn stack_try_pop_prefetch(_: IndexedRegion) -> *mut u8 {
    core::ptr::null_mut()
}
pub(crate) unsafe fn stack_try_push(_: IndexedRegion, _: *mut u8) -> bool {
    false
}
