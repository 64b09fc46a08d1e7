//! Raw kernel ABI of restartable sequences (`rseq`) and `membarrier`.
//!
//! This crate owns exactly one thing: the layout and numbers of that ABI
//! (`struct rseq`, `struct rseq_cs`, their flags, the auxiliary-vector keys,
//! the abort signature, the system call numbers and the membarrier commands),
//! plus named byte offsets for use in `asm!`. It holds no code: registering an
//! area, running critical sections and calling membarrier live elsewhere.
//!
//! The types and constants re-exported at the crate root come from bindgen, run on
//! `abi/rseq.h` (our own description of the Linux 6.3+ ABI, independent of
//! the installed kernel headers). To regenerate after editing the header:
//!
//! ```text
//! ./crates/rseq-sys/regenerate.sh          # rewrite src/generated.rs
//! ./crates/rseq-sys/regenerate.sh --check  # CI: fail if it is stale
//! ```
//!
//! bindgen's layout tests (compile-time assertions on size, alignment and
//! every field offset) are part of the generated file; the tests below check
//! the documented numbers once more through the named constants.
//!
//! Linux only (a `compile_error!` elsewhere). The abort signature and the system
//! call numbers ([`RSEQ_SIG`], [`SYS_RSEQ`], [`SYS_MEMBARRIER`]) are defined for
//! x86-64 and AArch64; the layouts and constants, for every Linux target.
#![no_std]
#![warn(missing_docs)]

// The ABI is Linux's: elsewhere these numbers mean nothing.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "rseq-sys describes the Linux rseq and membarrier ABI: it builds only for Linux targets (target_os = \"linux\")"
);

#[rustfmt::skip]
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    missing_docs,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod generated;

pub use generated::*;

use core::mem::offset_of;

/// Signature the kernel expects in the 4 bytes before every abort handler.
#[cfg(target_arch = "x86_64")]
pub const RSEQ_SIG: u32 = RSEQ_SIG_X86_64;
/// Signature the kernel expects in the 4 bytes before every abort handler.
#[cfg(target_arch = "aarch64")]
pub const RSEQ_SIG: u32 = RSEQ_SIG_AARCH64;

/// System call number of `rseq` (same type as `libc::SYS_rseq`).
#[cfg(target_arch = "x86_64")]
pub const SYS_RSEQ: i64 = RSEQ_SYSCALL_X86_64 as i64;
/// System call number of `rseq` (same type as `libc::SYS_rseq`).
#[cfg(target_arch = "aarch64")]
pub const SYS_RSEQ: i64 = RSEQ_SYSCALL_AARCH64 as i64;

/// System call number of `membarrier` (same type as `libc::SYS_membarrier`).
#[cfg(target_arch = "x86_64")]
pub const SYS_MEMBARRIER: i64 = MEMBARRIER_SYSCALL_X86_64 as i64;
/// System call number of `membarrier` (same type as `libc::SYS_membarrier`).
#[cfg(target_arch = "aarch64")]
pub const SYS_MEMBARRIER: i64 = MEMBARRIER_SYSCALL_AARCH64 as i64;

// On other architectures RSEQ_SIG, SYS_RSEQ and SYS_MEMBARRIER are not
// defined: code that needs them does not build there, by design.

/// Byte offset of `rseq::cpu_id_start` (kernel-owned).
pub const RSEQ_CPU_ID_START_OFFSET: usize = offset_of!(rseq, cpu_id_start);
/// Byte offset of `rseq::cpu_id` (kernel-owned; check it in every section).
pub const RSEQ_CPU_ID_OFFSET: usize = offset_of!(rseq, cpu_id);
/// Byte offset of `rseq::rseq_cs` (the one field user space writes).
pub const RSEQ_CS_OFFSET: usize = offset_of!(rseq, rseq_cs);
/// Byte offset of `rseq::flags` (deprecated; keep 0).
pub const RSEQ_FLAGS_OFFSET: usize = offset_of!(rseq, flags);
/// Byte offset of `rseq::node_id` (kernel-owned).
pub const RSEQ_NODE_ID_OFFSET: usize = offset_of!(rseq, node_id);
/// Byte offset of `rseq::mm_cid` (kernel-owned).
pub const RSEQ_MM_CID_OFFSET: usize = offset_of!(rseq, mm_cid);

/// Minimum `AT_RSEQ_FEATURE_SIZE` for which the kernel fills `node_id` (24).
pub const RSEQ_FEATURE_SIZE_NODE_ID: usize = RSEQ_NODE_ID_OFFSET + 4;
/// Minimum `AT_RSEQ_FEATURE_SIZE` for which the kernel fills `mm_cid` (28).
pub const RSEQ_FEATURE_SIZE_MM_CID: usize = RSEQ_MM_CID_OFFSET + 4;

/// Byte offset of `rseq_cs::version`.
pub const RSEQ_CS_VERSION_OFFSET: usize = offset_of!(rseq_cs, version);
/// Byte offset of `rseq_cs::flags`.
pub const RSEQ_CS_FLAGS_OFFSET: usize = offset_of!(rseq_cs, flags);
/// Byte offset of `rseq_cs::start_ip`.
pub const RSEQ_CS_START_IP_OFFSET: usize = offset_of!(rseq_cs, start_ip);
/// Byte offset of `rseq_cs::post_commit_offset`.
pub const RSEQ_CS_POST_COMMIT_OFFSET_OFFSET: usize = offset_of!(rseq_cs, post_commit_offset);
/// Byte offset of `rseq_cs::abort_ip`.
pub const RSEQ_CS_ABORT_IP_OFFSET: usize = offset_of!(rseq_cs, abort_ip);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn rseq_layout() {
        assert_eq!(RSEQ_CPU_ID_START_OFFSET, 0);
        assert_eq!(RSEQ_CPU_ID_OFFSET, 4);
        assert_eq!(RSEQ_CS_OFFSET, 8);
        assert_eq!(RSEQ_FLAGS_OFFSET, 16);
        assert_eq!(RSEQ_NODE_ID_OFFSET, 20);
        assert_eq!(RSEQ_MM_CID_OFFSET, 24);
        assert_eq!(offset_of!(rseq, end), 28);
        assert_eq!(size_of::<rseq>(), 32);
        assert_eq!(align_of::<rseq>(), 32);
        assert_eq!(size_of::<rseq>(), ORIG_RSEQ_SIZE as usize);
    }

    #[test]
    fn feature_sizes() {
        assert_eq!(RSEQ_FEATURE_SIZE_NODE_ID, 24);
        assert_eq!(RSEQ_FEATURE_SIZE_MM_CID, 28);
        assert_eq!(RSEQ_FEATURE_SIZE_MM_CID, offset_of!(rseq, end));
        assert_eq!(AT_RSEQ_FEATURE_SIZE, 27);
        assert_eq!(AT_RSEQ_ALIGN, 28);
    }

    #[test]
    fn rseq_cs_layout() {
        assert_eq!(RSEQ_CS_VERSION_OFFSET, 0);
        assert_eq!(RSEQ_CS_FLAGS_OFFSET, 4);
        assert_eq!(RSEQ_CS_START_IP_OFFSET, 8);
        assert_eq!(RSEQ_CS_POST_COMMIT_OFFSET_OFFSET, 16);
        assert_eq!(RSEQ_CS_ABORT_IP_OFFSET, 24);
        assert_eq!(size_of::<rseq_cs>(), 32);
        assert_eq!(align_of::<rseq_cs>(), 32);
    }

    #[test]
    fn flag_values() {
        assert_eq!(RSEQ_CPU_ID_UNINITIALIZED, -1);
        assert_eq!(RSEQ_CPU_ID_REGISTRATION_FAILED, -2);
        assert_eq!(RSEQ_FLAG_UNREGISTER, 1);
        assert_eq!(RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT, 1);
        assert_eq!(RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL, 2);
        assert_eq!(RSEQ_CS_FLAG_NO_RESTART_ON_MIGRATE, 4);
    }

    #[test]
    fn membarrier_values() {
        assert_eq!(MEMBARRIER_CMD_QUERY, 0);
        assert_eq!(MEMBARRIER_CMD_GLOBAL, 1);
        assert_eq!(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 1 << 3);
        assert_eq!(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 1 << 4);
        assert_eq!(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 1 << 7);
        assert_eq!(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 1 << 8);
        assert_eq!(MEMBARRIER_CMD_GET_REGISTRATIONS, 1 << 9);
        assert_eq!(MEMBARRIER_CMD_FLAG_CPU, 1);
    }

    #[test]
    fn arch_numbers() {
        assert_eq!(RSEQ_SIG_X86_64, 0x5305_3053);
        assert_eq!(RSEQ_SIG_AARCH64, 0xd428_bc00);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(RSEQ_SIG, 0x5305_3053);
            assert_eq!(SYS_RSEQ, 334);
            assert_eq!(SYS_MEMBARRIER, 324);
        }
        #[cfg(target_arch = "aarch64")]
        {
            assert_eq!(RSEQ_SIG, 0xd428_bc00);
            assert_eq!(SYS_RSEQ, 293);
            assert_eq!(SYS_MEMBARRIER, 283);
        }
    }
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
