//! The critical sections for x86-64.
//!
//! Every section has the same frame, emitted by [`critical_section!`]:
//!
//! ```text
//!         lea  status, [rip + 4f]         ; arm: rseq_cs = &descriptor
//!         mov  fs:[area + RSEQ_CS], status ; area: offset from the thread pointer
//! 2:      mov  status, MOVED              ; start_ip
//!         cmp  fs:[area + index_field], index ; still on the CPU we indexed?
//!         jne  9f                         ; exit point
//!         ...body: loads, checks (exit with status REFUSED), private stores...
//!         [delay]                         ; fault-injection builds only
//!         mov  [slot], new                ; the one commit store, last
//! 3:      xor  status, status             ; post_commit_ip: DONE
//! 9:                                      ; exit label
//!
//! __rseq_failure:  ud1 0x53053053(%rip),%edi  ; the signature, decodable
//! 5:      lock inc [ABORTS]               ; abort_ip, outside [2, 3): count it
//!         mov  status, ABORTED
//!         jmp  9b
//! __rseq_cs:               4: {version 0, flags 0, 2b, 3b-2b, 5b}
//! __rseq_cs_ptr_array:     4b
//! __rseq_exit_point_array: {2b, 9b}
//! ```
//!
//! The kernel clears `rseq_cs` when it aborts; the abort path returns to Rust, and a
//! retry re-enters the frame from the top, storing it again (rseq law 3). Nothing
//! inside calls, touches the stack, or makes a syscall. Kernel-owned fields are
//! only read. The pointer and exit-point tables are marked retained ("R") so that
//! `--gc-sections` keeps them, and through their relocations every descriptor and
//! section they name: the tables never point into discarded code.

#[cfg(feature = "list-and-word")]
use core::sync::atomic::AtomicUsize;

use super::{CheckedIndex, IndexedRegion, Status, STATUS_ABORTED, STATUS_MOVED, STATUS_REFUSED};
#[cfg(feature = "list-and-word")]
use crate::list::{ListHead, ListNode};
use crate::stack::{Stack, CAPACITY_OFFSET, SLOTS_OFFSET};

/// Arms the section: stores the descriptor's address into the area's `rseq_cs`
/// (through the status register, which the section sets right after: one register
/// fewer keeps the callers' fast paths free of callee-saved spills).
macro_rules! arm {
    () => {
        concat!(
            "lea {status}, [rip + 4f]\n",
            "mov qword ptr fs:[{area} + {cs_offset}], {status}\n",
        )
    };
}

/// First thing in a section: leave with MOVED unless the live index still matches.
macro_rules! check_index {
    () => {
        concat!(
            "mov {status:e}, {moved}\n",
            "cmp dword ptr fs:[{area} + {index_offset}], {index:e}\n",
            "jne 9f\n",
        )
    };
}

/// Test builds: spin `delay` pauses just before the commit.
#[cfg(feature = "fault-injection")]
macro_rules! delay {
    () => {
        concat!(
            "test {delay:e}, {delay:e}\n",
            "jz 8f\n",
            "7:\n",
            "pause\n",
            "sub {delay:e}, 1\n",
            "jnz 7b\n",
            "8:\n",
        )
    };
}

/// Between the loads of two words a remote operation writes (the stack header's
/// `capacity` and `top`): test builds spin `header_delay` pauses there and count
/// that they did, so that a remote stop, drain and resume lands between the two
/// loads (see "Load order" below). The one-word sections (list, word) mark the
/// same point after their load, with a delay of 0: no remote writes their word.
#[cfg(feature = "fault-injection")]
macro_rules! between_loads {
    () => {
        concat!(
            "test {header_delay:e}, {header_delay:e}\n",
            "jz 28f\n",
            "lock inc qword ptr [rip + {header_delays}]\n",
            "27:\n",
            "pause\n",
            "sub {header_delay:e}, 1\n",
            "jnz 27b\n",
            "28:\n",
        )
    };
}

#[cfg(not(feature = "fault-injection"))]
macro_rules! between_loads {
    () => {
        ""
    };
}

/// The abort handler (after the signature) and the three tables. `on_abort` runs
/// after the abort is counted and must leave through an exit; `exit` names the
/// section's exit point for the exit-point table.
macro_rules! tables {
    (on_abort: $on_abort:expr, exit: $exit:expr) => {
        concat!(
            ".pushsection __rseq_failure, \"ax\"\n",
            ".byte 0x0f, 0xb9, 0x3d\n",
            ".long {sig}\n",
            "5:\n",
            "lock inc qword ptr [rip + {aborts}]\n",
            $on_abort,
            ".popsection\n",
            ".pushsection __rseq_cs, \"aw\"\n",
            ".balign 32\n",
            "4:\n",
            ".long 0, 0\n",
            ".quad 2b, 3b - 2b, 5b\n",
            ".popsection\n",
            ".pushsection __rseq_cs_ptr_array, \"awR\"\n",
            ".quad 4b\n",
            ".popsection\n",
            ".pushsection __rseq_exit_point_array, \"awR\"\n",
            ".quad 2b, ",
            $exit,
            "\n",
            ".popsection\n",
        )
    };
}

/// The abort path of the status-register frame: report ABORTED and leave through
/// `restart_to`.
macro_rules! abort_with_status {
    ($restart_to:literal) => {
        concat!("mov {status:e}, {aborted}\n", "jmp ", $restart_to, "\n")
    };
}

/// One critical section: the frame above around `body` and `commit`.
///
/// `restart_to` is where the abort handler goes: "9b" (return ABORTED to Rust, the
/// only correct choice) or, in the broken test variant, "2b" (back into the section
/// without re-arming `rseq_cs`).
macro_rules! critical_section {
    (
        checked: $checked:expr,
        status: $status:ident,
        restart_to: $restart_to:literal,
        header_delay: $header_delay:expr,
        body: $body:expr,
        commit: $commit:expr,
        $($operands:tt)*
    ) => {
        #[cfg(not(feature = "fault-injection"))]
        core::arch::asm!(
            arm!(), "2:", check_index!(), $body, $commit, "3:",
            "xor {status:e}, {status:e}", "9:",
            tables!(on_abort: abort_with_status!($restart_to), exit: "9b"),
            $($operands)*
            area = in(reg) $checked.area,
            index_offset = in(reg) $checked.index_offset,
            index = in(reg) $checked.index,
            status = out(reg) $status,
            cs_offset = const rseq_sys::RSEQ_CS_OFFSET,
            moved = const STATUS_MOVED,
            aborted = const STATUS_ABORTED,
            aborts = sym crate::counters::ABORTS,
            sig = const rseq_sys::RSEQ_SIG,
            options(nostack),
        );
        #[cfg(feature = "fault-injection")]
        core::arch::asm!(
            arm!(), "2:", check_index!(), $body, delay!(), $commit, "3:",
            "xor {status:e}, {status:e}", "9:",
            tables!(on_abort: abort_with_status!($restart_to), exit: "9b"),
            $($operands)*
            area = in(reg) $checked.area,
            index_offset = in(reg) $checked.index_offset,
            index = in(reg) $checked.index,
            status = out(reg) $status,
            cs_offset = const rseq_sys::RSEQ_CS_OFFSET,
            moved = const STATUS_MOVED,
            aborted = const STATUS_ABORTED,
            aborts = sym crate::counters::ABORTS,
            sig = const rseq_sys::RSEQ_SIG,
            delay = inout(reg) crate::fault::delay_spins() => _,
            header_delay = inout(reg) $header_delay => _,
            header_delays = sym crate::fault::HEADER_DELAYS,
            options(nostack),
        );
    };
}

// The stack header: `top` and `capacity` (u32 each), then `slots` (see stack.rs).
// A pop is valid when top - 1 < capacity (unsigned), a push when top < capacity: a
// zero capacity (a stopped or inert stack) refuses both. `top` and `capacity` are
// read with two 32-bit loads: one 64-bit load right after the previous operation's
// 32-bit commit to `top` would miss store-to-load forwarding and stall (that cost
// 7 ns per operation).
//
// Load order. A remote thread stops a stack by storing capacity = 0 and fencing,
// and resumes it by storing `slots`, then `top`, then `capacity` (stack.rs,
// `with_stopped`). A section that starts after the fence may still be running when
// the resume lands: the fence only covers sections that started before it, and a
// vCPU descheduled by the host between two loads aborts nothing. So every section
// loads `capacity` first, then `top`, then `slots` and the slot array. x86-64 keeps
// loads in order with loads, and stores with stores (TSO); hence if the `capacity`
// load sees the resumed value, every later load sees the resume's `top` and
// `slots` (or newer: a later change needs another stop and fence, which aborts
// this section); and if it sees 0, the section refuses. The opposite order can
// pair a pre-drain `top` with a resumed `capacity` and hand out an object the
// drainer took (`top_first` below keeps that bug alive for the stress test).

/// Loads the stack header at `[$at]` into the 32-bit registers `$capacity` and
/// `$top`, in the order named: `capacity_first` is the only correct one;
/// `top_first` is the broken twin the stress test must catch.
macro_rules! load_header {
    (capacity_first, $at:expr, $capacity:expr, $top:expr) => {
        concat!(
            "mov ",
            $capacity,
            ", dword ptr [",
            $at,
            " + {capacity}]\n",
            between_loads!(),
            "mov ",
            $top,
            ", dword ptr [",
            $at,
            "]\n",
        )
    };
    (top_first, $at:expr, $capacity:expr, $top:expr) => {
        concat!(
            "mov ",
            $top,
            ", dword ptr [",
            $at,
            "]\n",
            between_loads!(),
            "mov ",
            $capacity,
            ", dword ptr [",
            $at,
            " + {capacity}]\n",
        )
    };
}

macro_rules! stack_pop_fn {
    ($name:ident, restart_to: $restart_to:literal, order: $order:ident) => {
        /// Pops the top item of this CPU's stack.
        ///
        /// # Safety
        /// `checked` is the calling thread's registered area and the index it read;
        /// `stack` is the slot of that index, valid, with `slots` valid for
        /// `capacity` items.
        #[inline(always)]
        pub(crate) unsafe fn $name(checked: CheckedIndex, stack: *mut Stack) -> (Status, *mut u8) {
            let status: usize;
            let item: *mut u8;
            // SAFETY: the caller guarantees the area and the slot; the section reads
            // the header (capacity first), then one slot below `top`, and commits
            // `top - 1`. The capacity passes through the item register.
            unsafe {
                critical_section!(
                    checked: checked,
                    status: status,
                    restart_to: $restart_to,
                    header_delay: crate::fault::header_delay_spins(),
                    body: concat!(
                        "mov {status:e}, {refused}\n",
                        load_header!($order, "{stack}", "{item:e}", "{top:e}"),
                        "sub {top:e}, 1\n",
                        "cmp {top:e}, {item:e}\n",
                        "jae 9f\n",
                        "mov {item}, qword ptr [{stack} + {slots_offset}]\n",
                        "mov {item}, qword ptr [{item} + {top} * 8]\n",
                    ),
                    commit: "mov dword ptr [{stack}], {top:e}\n",
                    stack = in(reg) stack,
                    top = out(reg) _,
                    item = out(reg) item,
                    refused = const STATUS_REFUSED,
                    capacity = const CAPACITY_OFFSET,
                    slots_offset = const SLOTS_OFFSET,
                );
            }
            (Status::from_register(status as u32), item)
        }
    };
}

/// What a refused push leaves in its `top` register when the item was the top
/// item already (a repeated push: for an allocator, a double free).
pub(crate) const PUSH_DUPLICATE: u32 = u32::MAX;

macro_rules! stack_push_fn {
    ($name:ident, restart_to: $restart_to:literal, order: $order:ident) => {
        /// Pushes `item` onto this CPU's stack; refuses it if it is the top item
        /// already (then the second value is true).
        ///
        /// # Safety
        /// As for `stack_pop`.
        #[inline(always)]
        pub(crate) unsafe fn $name(checked: CheckedIndex, stack: *mut Stack, item: *mut u8) -> (Status, bool) {
            let status: usize;
            let top: usize;
            // SAFETY: the caller guarantees the area and the slot; the section reads
            // the header (capacity first, through the slots register), the top item
            // (when there is one), stores the new item into the free slot at `top`
            // (invisible until the commit) and commits `top + 1`.
            unsafe {
                critical_section!(
                    checked: checked,
                    status: status,
                    restart_to: $restart_to,
                    header_delay: crate::fault::header_delay_spins(),
                    body: concat!(
                        "mov {status:e}, {refused}\n",
                        load_header!($order, "{stack}", "{slots:e}", "{top:e}"),
                        "cmp {top:e}, {slots:e}\n",
                        "jae 9f\n",
                        "mov {slots}, qword ptr [{stack} + {slots_offset}]\n",
                        "test {top:e}, {top:e}\n",
                        "jz 6f\n",
                        "cmp {item}, qword ptr [{slots} + {top} * 8 - 8]\n",
                        "jne 6f\n",
                        "mov {top:e}, {duplicate}\n",
                        "jmp 9f\n",
                        "6:\n",
                        "mov qword ptr [{slots} + {top} * 8], {item}\n",
                        "add {top:e}, 1\n",
                    ),
                    commit: "mov dword ptr [{stack}], {top:e}\n",
                    stack = in(reg) stack,
                    item = in(reg) item,
                    slots = out(reg) _,
                    top = out(reg) top,
                    refused = const STATUS_REFUSED,
                    duplicate = const PUSH_DUPLICATE,
                    capacity = const CAPACITY_OFFSET,
                    slots_offset = const SLOTS_OFFSET,
                );
            }
            let status = Status::from_register(status as u32);
            (status, status == Status::REFUSED && top as u32 == PUSH_DUPLICATE)
        }
    };
}

/// The indexed frame, for the allocator's fast path: the section reads the index
/// itself, after arming, and finds its slot from it, so no index is read before the
/// section and none is compared inside it (a thread moved after the read is a
/// thread the kernel aborts). Its exits carry no status register: the pop leaves a
/// null item, the push jumps to the caller's label.
///
/// ```text
///         lea  scratch, [rip + 4f]             ; arm
///         mov  fs:[area + RSEQ_CS], scratch
/// 2:      <entry>
///         mov  slot, fs:[area + index_field]   ; the index, inside the section
///         cmp  slot, len                        ; beyond the region (or -1/-2)?
///         jae  <leave>
///         imul slot, stride                     ; the slot is [slot + base]
///         ...body, commit...
/// 3:      <end>
/// ```
///
/// `{stride}` is dead after the `imul`: bodies may use it as a scratch register
/// (one register fewer keeps the callers free of callee-saved spills).
macro_rules! indexed_section {
    (
        place: $place:expr,
        arm_with: $arm:literal,
        entry: $entry:expr,
        leave: $leave:literal,
        body: $body:expr,
        commit: $commit:expr,
        end: $end:expr,
        on_abort: $on_abort:expr,
        exit: $exit:literal,
        $($operands:tt)*
    ) => {
        #[cfg(not(feature = "fault-injection"))]
        core::arch::asm!(
            concat!("lea ", $arm, ", [rip + 4f]\n"),
            concat!("mov qword ptr fs:[{area} + {cs_offset}], ", $arm, "\n"),
            "2:", $entry, indexed_slot!($leave), $body, $commit, "3:", $end,
            tables!(on_abort: $on_abort, exit: $exit),
            $($operands)*
            area = in(reg) $place.area,
            index_offset = in(reg) $place.index_offset,
            len = in(reg) $place.len,
            stride = inout(reg) $place.stride => _,
            base = in(reg) $place.base,
            slot = out(reg) _,
            cs_offset = const rseq_sys::RSEQ_CS_OFFSET,
            aborts = sym crate::counters::ABORTS,
            sig = const rseq_sys::RSEQ_SIG,
            options(nostack),
        );
        #[cfg(feature = "fault-injection")]
        core::arch::asm!(
            concat!("lea ", $arm, ", [rip + 4f]\n"),
            concat!("mov qword ptr fs:[{area} + {cs_offset}], ", $arm, "\n"),
            "2:", $entry, indexed_slot!($leave), $body, delay!(), $commit, "3:", $end,
            tables!(on_abort: $on_abort, exit: $exit),
            $($operands)*
            area = in(reg) $place.area,
            index_offset = in(reg) $place.index_offset,
            len = in(reg) $place.len,
            stride = inout(reg) $place.stride => _,
            base = in(reg) $place.base,
            slot = out(reg) _,
            cs_offset = const rseq_sys::RSEQ_CS_OFFSET,
            aborts = sym crate::counters::ABORTS,
            sig = const rseq_sys::RSEQ_SIG,
            delay = inout(reg) crate::fault::delay_spins() => _,
            header_delay = inout(reg) crate::fault::header_delay_spins() => _,
            header_delays = sym crate::fault::HEADER_DELAYS,
            options(nostack),
        );
    };
}

/// The indexed frame's first step: read the index, leave if it lies beyond the
/// region (an unregistered `cpu_id` of -1 or -2 does too), find the slot's offset.
macro_rules! indexed_slot {
    ($leave:literal) => {
        concat!(
            "mov {slot:e}, dword ptr fs:[{area} + {index_offset}]\n",
            "cmp {slot:e}, {len:e}\n",
            "jae ",
            $leave,
            "\n",
            "imul {slot}, {stride}\n",
        )
    };
}

/// In a pop's body, with `{item}` holding the slot array and `{top}` the index
/// of the item taken: `next` prefetches the item below it, if there is one
/// (through the capacity's register, free after the bound check); `none` adds
/// nothing.
macro_rules! prefetch_below {
    (none, $cap:literal) => {
        ""
    };
    (next, $cap:literal) => {
        concat!(
            "test {top:e}, {top:e}\n",
            "jz 6f\n",
            "mov {",
            $cap,
            "}, qword ptr [{item} + {top} * 8 - 8]\n",
            "prefetcht0 byte ptr [{",
            $cap,
            "}]\n",
            "6:\n",
        )
    };
}

macro_rules! stack_try_pop_fn {
    (
        $name:ident,
        restart_to: $restart_to:literal,
        order: $order:ident,
        capacity_in: $cap:literal,
        prefetch: $prefetch:ident,
        $($scratch:tt)*
    ) => {
        /// One attempt at popping the top item of the stack of the CPU the section
        /// runs on; null on anything but success (empty, stopped, beyond the
        /// region, aborted). With `prefetch: next`, the item left on top, if any,
        /// is prefetched (`prefetcht0`): an allocator's next pop of this stack
        /// hands it out, and a program that writes a fresh block finds its line
        /// on the way (docs/rseq.md, "Critical sections").
        ///
        /// # Safety
        /// `place` is the calling thread's registered area and a region whose
        /// slots below `len` are valid stacks with valid slot arrays.
        #[inline(always)]
        pub(crate) unsafe fn $name(place: IndexedRegion) -> *mut u8 {
            let item: *mut u8;
            // SAFETY: the caller guarantees the area and the region; the section
            // finds its slot from the index it reads, reads the header (capacity
            // first), then the slot below `top` and, with `prefetch: next` and
            // when there is one, the slot below that (within the array: its
            // index is at least 0), whose value it only prefetches (a hint,
            // which never faults, whatever the value), and commits `top - 1`. Every exit but the commit leaves
            // `item` null.
            unsafe {
                indexed_section!(
                    place: place,
                    arm_with: "{item}",
                    entry: "xor {item:e}, {item:e}\n",
                    leave: "9f",
                    body: concat!(
                        load_header!($order, "{slot} + {base}", concat!("{", $cap, ":e}"), "{top:e}"),
                        "sub {top:e}, 1\n",
                        "cmp {top:e}, {", $cap, ":e}\n",
                        "jae 9f\n",
                        "mov {item}, qword ptr [{slot} + {base} + {slots_offset}]\n",
                        prefetch_below!($prefetch, $cap),
                        "mov {item}, qword ptr [{item} + {top} * 8]\n",
                    ),
                    commit: "mov dword ptr [{slot} + {base}], {top:e}\n",
                    end: "9:\n",
                    on_abort: concat!("xor {item:e}, {item:e}\n", "jmp ", $restart_to, "\n"),
                    exit: "9b",
                    item = out(reg) item,
                    top = out(reg) _,
                    capacity = const CAPACITY_OFFSET,
                    slots_offset = const SLOTS_OFFSET,
                    $($scratch)*
                );
            }
            item
        }
    };
}

macro_rules! stack_try_push_fn {
    (
        $name:ident,
        restart_to: $restart_to:literal,
        order: $order:ident,
        slots_in: $slots:literal,
        $($scratch:tt)*
    ) => {
        /// One attempt at pushing `item` onto the stack of the CPU the section runs
        /// on; false on anything but success (full, stopped, the top item already,
        /// beyond the region, aborted).
        ///
        /// # Safety
        /// As for `stack_try_pop`.
        #[inline(always)]
        pub(crate) unsafe fn $name(place: IndexedRegion, item: *mut u8) -> bool {
            // SAFETY: the caller guarantees the area and the region; the section
            // finds its slot from the index it reads, reads the header (capacity
            // first, through the slots register), stores the item into the free
            // slot at `top` (invisible until the commit) and commits `top + 1`.
            unsafe {
                indexed_section!(
                    place: place,
                    arm_with: "{top}",
                    entry: "",
                    leave: "{miss}",
                    body: concat!(
                        load_header!($order, "{slot} + {base}", concat!("{", $slots, ":e}"), "{top:e}"),
                        "cmp {top:e}, {", $slots, ":e}\n",
                        "jae {miss}\n",
                        "mov {", $slots, "}, qword ptr [{slot} + {base} + {slots_offset}]\n",
                        "test {top:e}, {top:e}\n",
                        "jz 6f\n",
                        "cmp {item}, qword ptr [{", $slots, "} + {top} * 8 - 8]\n",
                        "je {miss}\n",
                        "6:\n",
                        "mov qword ptr [{", $slots, "} + {top} * 8], {item}\n",
                        "add {top:e}, 1\n",
                    ),
                    commit: "mov dword ptr [{slot} + {base}], {top:e}\n",
                    end: "",
                    on_abort: concat!("jmp ", $restart_to, "\n"),
                    exit: "{miss}",
                    item = in(reg) item,
                    top = out(reg) _,
                    capacity = const CAPACITY_OFFSET,
                    slots_offset = const SLOTS_OFFSET,
                    $($scratch)*
                    miss = label {
                        return false;
                    },
                );
            }
            true
        }
    };
}

// The shipped sections. After the `imul`, {stride} is dead: the pop keeps the
// capacity there, the push the capacity and then the slot array.
stack_try_pop_fn!(stack_try_pop, restart_to: "9b", order: capacity_first, capacity_in: "stride", prefetch: none,);
stack_try_pop_fn!(
    stack_try_pop_prefetch,
    restart_to: "9b",
    order: capacity_first,
    capacity_in: "stride",
    prefetch: next,
);
stack_try_push_fn!(stack_try_push, restart_to: "{miss}", order: capacity_first, slots_in: "stride",);
stack_pop_fn!(stack_pop, restart_to: "9b", order: capacity_first);
stack_push_fn!(stack_push, restart_to: "9b", order: capacity_first);

// The broken twins (test builds only). A broken restart re-runs the section from
// the index read, which needs {stride} intact: they keep the capacity and the slot
// array in registers of their own.
#[cfg(feature = "fault-injection")]
stack_try_pop_fn!(
    stack_try_pop_broken_restart,
    restart_to: "2b",
    order: capacity_first,
    capacity_in: "spare",
    prefetch: none,
    spare = out(reg) _,
);
#[cfg(feature = "fault-injection")]
stack_try_push_fn!(
    stack_try_push_broken_restart,
    restart_to: "2b",
    order: capacity_first,
    slots_in: "spare",
    spare = out(reg) _,
);
#[cfg(feature = "fault-injection")]
stack_pop_fn!(stack_pop_broken_restart, restart_to: "2b", order: capacity_first);
#[cfg(feature = "fault-injection")]
stack_push_fn!(stack_push_broken_restart, restart_to: "2b", order: capacity_first);
#[cfg(feature = "fault-injection")]
stack_try_pop_fn!(stack_try_pop_top_first, restart_to: "9b", order: top_first, capacity_in: "stride", prefetch: none,);
#[cfg(feature = "fault-injection")]
stack_try_push_fn!(stack_try_push_top_first, restart_to: "{miss}", order: top_first, slots_in: "stride",);
#[cfg(feature = "fault-injection")]
stack_pop_fn!(stack_pop_top_first, restart_to: "9b", order: top_first);
#[cfg(feature = "fault-injection")]
stack_push_fn!(stack_push_top_first, restart_to: "9b", order: top_first);

/// Pops up to `want` (>= 1) items into `out[..n]`, the deepest first; returns n.
///
/// # Safety
/// As for `stack_pop`; `out` is valid for `want` writes and private to the caller.
#[inline(always)]
pub(crate) unsafe fn stack_pop_batch(
    checked: CheckedIndex,
    stack: *mut Stack,
    out: *mut *mut u8,
    want: usize,
) -> (Status, usize) {
    let status: usize;
    let out_end: *mut *mut u8;
    // SAFETY: the caller guarantees the area, the slot and the buffer; the section
    // reads the header (capacity first), copies n = min(want, top) items from slots[top - n .. top] into the private
    // buffer and commits `top - n`. An abort leaves the buffer partly written, which
    // the caller ignores.
    unsafe {
        critical_section!(
            checked: checked,
            status: status,
            restart_to: "9b",
            header_delay: crate::fault::header_delay_spins(),
            body: concat!(
                "mov {status:e}, {refused}\n",
                load_header!(capacity_first, "{stack}", "{word:e}", "{top:e}"),
                "lea {scratch:e}, [{top} - 1]\n",
                "cmp {scratch:e}, {word:e}\n",
                "jae 9f\n",
                "cmp {top}, {count}\n",
                "cmovb {count}, {top}\n",
                "sub {top}, {count}\n",
                "mov {word}, qword ptr [{stack} + {slots}]\n",
                "lea {word}, [{word} + {top} * 8]\n",
                "6:\n",
                "mov {scratch}, qword ptr [{word}]\n",
                "mov qword ptr [{out}], {scratch}\n",
                "add {word}, 8\n",
                "add {out}, 8\n",
                "sub {count}, 1\n",
                "jnz 6b\n",
            ),
            commit: "mov dword ptr [{stack}], {top:e}\n",
            stack = in(reg) stack,
            out = inout(reg) out => out_end,
            count = inout(reg) want => _,
            word = out(reg) _,
            top = out(reg) _,
            scratch = out(reg) _,
            refused = const STATUS_REFUSED,
            capacity = const CAPACITY_OFFSET,
            slots = const SLOTS_OFFSET,
        );
    }
    let taken = (out_end as usize).wrapping_sub(out as usize) / core::mem::size_of::<usize>();
    (Status::from_register(status as u32), taken)
}

/// Pushes up to `count` (>= 1) items from `items`, as many as fit; returns n.
///
/// # Safety
/// As for `stack_pop`; `items` is valid for `count` reads.
#[inline(always)]
pub(crate) unsafe fn stack_push_batch(
    checked: CheckedIndex,
    stack: *mut Stack,
    items: *const *mut u8,
    count: usize,
) -> (Status, usize) {
    let status: usize;
    let items_end: *const *mut u8;
    // SAFETY: the caller guarantees the area, the slot and the items; the section
    // reads the header (capacity first), copies n = min(count, capacity - top) items into the free slots from `top` up
    // (invisible until the commit) and commits `top + n`.
    unsafe {
        critical_section!(
            checked: checked,
            status: status,
            restart_to: "9b",
            header_delay: crate::fault::header_delay_spins(),
            body: concat!(
                "mov {status:e}, {refused}\n",
                load_header!(capacity_first, "{stack}", "{word:e}", "{top:e}"),
                "cmp {top:e}, {word:e}\n",
                "jae 9f\n",
                "sub {word}, {top}\n",
                "cmp {word}, {count}\n",
                "cmovb {count}, {word}\n",
                "mov {word}, qword ptr [{stack} + {slots}]\n",
                "lea {word}, [{word} + {top} * 8]\n",
                "add {top}, {count}\n",
                "6:\n",
                "mov {scratch}, qword ptr [{items}]\n",
                "mov qword ptr [{word}], {scratch}\n",
                "add {word}, 8\n",
                "add {items}, 8\n",
                "sub {count}, 1\n",
                "jnz 6b\n",
            ),
            commit: "mov dword ptr [{stack}], {top:e}\n",
            stack = in(reg) stack,
            items = inout(reg) items => items_end,
            count = inout(reg) count => _,
            word = out(reg) _,
            top = out(reg) _,
            scratch = out(reg) _,
            refused = const STATUS_REFUSED,
            capacity = const CAPACITY_OFFSET,
            slots = const SLOTS_OFFSET,
        );
    }
    let pushed = (items_end as usize).wrapping_sub(items as usize) / core::mem::size_of::<usize>();
    (Status::from_register(status as u32), pushed)
}

/// Pops the first node of this CPU's list.
///
/// # Safety
/// `checked` as for `stack_pop`; `head` is the slot of that index; every node on the
/// list is valid.
#[cfg(feature = "list-and-word")]
#[inline(always)]
pub(crate) unsafe fn list_pop(
    checked: CheckedIndex,
    head: *mut ListHead,
) -> (Status, *mut ListNode) {
    let status: usize;
    let node: *mut ListNode;
    // SAFETY: the caller guarantees the area, the slot and the nodes; the section
    // reads the first node's `next` and commits it as the new head.
    unsafe {
        critical_section!(
            checked: checked,
            status: status,
            restart_to: "9b",
            header_delay: 0u32, // one word: nothing to pair
            body: concat!(
                "mov {status:e}, {refused}\n",
                "mov {node}, qword ptr [{head}]\n",
                between_loads!(),
                "test {node}, {node}\n",
                "jz 9f\n",
                "mov {next}, qword ptr [{node}]\n",
            ),
            commit: "mov qword ptr [{head}], {next}\n",
            head = in(reg) head,
            node = out(reg) node,
            next = out(reg) _,
            refused = const STATUS_REFUSED,
        );
    }
    (Status::from_register(status as u32), node)
}

/// Pushes `node` onto this CPU's list.
///
/// # Safety
/// `checked` as for `stack_pop`; `head` is the slot of that index; `node` is valid and
/// owned by the caller (on no list).
#[cfg(feature = "list-and-word")]
#[inline(always)]
pub(crate) unsafe fn list_push(
    checked: CheckedIndex,
    head: *mut ListHead,
    node: *mut ListNode,
) -> Status {
    let status: usize;
    // SAFETY: the caller guarantees the area, the slot and the node; the section
    // links the private node to the current head and commits it as the new head.
    unsafe {
        critical_section!(
            checked: checked,
            status: status,
            restart_to: "9b",
            header_delay: 0u32, // one word: nothing to pair
            body: concat!(
                "mov {next}, qword ptr [{head}]\n",
                between_loads!(),
                "mov qword ptr [{node}], {next}\n",
            ),
            commit: "mov qword ptr [{head}], {node}\n",
            head = in(reg) head,
            node = in(reg) node,
            next = out(reg) _,
        );
    }
    Status::from_register(status as u32)
}

/// Stores `new` into this CPU's word if it holds `expected`; returns what it held.
///
/// # Safety
/// `checked` as for `stack_pop`; `word` is the slot of that index.
#[cfg(feature = "list-and-word")]
#[inline(always)]
pub(crate) unsafe fn word_compare_and_store(
    checked: CheckedIndex,
    word: *mut AtomicUsize,
    expected: usize,
    new: usize,
) -> (Status, usize) {
    let status: usize;
    let current: usize;
    // SAFETY: the caller guarantees the area and the slot; the section compares and
    // commits `new`.
    unsafe {
        critical_section!(
            checked: checked,
            status: status,
            restart_to: "9b",
            header_delay: 0u32, // one word: nothing to pair
            body: concat!(
                "mov {status:e}, {refused}\n",
                "mov {current}, qword ptr [{word}]\n",
                between_loads!(),
                "cmp {current}, {expected}\n",
                "jne 9f\n",
            ),
            commit: "mov qword ptr [{word}], {new}\n",
            word = in(reg) word,
            expected = in(reg) expected,
            new = in(reg) new,
            current = out(reg) current,
            refused = const STATUS_REFUSED,
        );
    }
    (Status::from_register(status as u32), current)
}

/// Adds `delta` (wrapping) to this CPU's word; returns the value before.
///
/// # Safety
/// `checked` as for `stack_pop`; `word` is the slot of that index.
#[cfg(feature = "list-and-word")]
#[inline(always)]
pub(crate) unsafe fn word_add(
    checked: CheckedIndex,
    word: *mut AtomicUsize,
    delta: usize,
) -> (Status, usize) {
    let status: usize;
    let before: usize;
    // SAFETY: the caller guarantees the area and the slot; the section reads the
    // word and commits the sum.
    unsafe {
        critical_section!(
            checked: checked,
            status: status,
            restart_to: "9b",
            header_delay: 0u32, // one word: nothing to pair
            body: concat!(
                "mov {before}, qword ptr [{word}]\n",
                between_loads!(),
                "lea {sum}, [{before} + {delta}]\n",
            ),
            commit: "mov qword ptr [{word}], {sum}\n",
            word = in(reg) word,
            delta = in(reg) delta,
            before = out(reg) before,
            sum = out(reg) _,
        );
    }
    (Status::from_register(status as u32), before)
}
