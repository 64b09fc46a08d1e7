/*
 * cpuslab's own description of the Linux rseq and membarrier ABI (Linux 6.3+,
 * i.e. with node_id and mm_cid). Written for this project, not copied from
 * the kernel, so that regenerating the Rust bindings does not depend on the
 * kernel headers installed on the build machine.
 *
 * Input of crates/rseq-sys/codegen; run crates/rseq-sys/regenerate.sh after
 * editing. Comments on types, fields and enum values become rustdoc.
 */
#ifndef CPUSLAB_RSEQ_ABI_H
#define CPUSLAB_RSEQ_ABI_H

#include <stdint.h>

/** Sentinel values of `rseq::cpu_id` that are not CPU numbers. */
enum rseq_cpu_id_state {
	/** The area has not been registered with the kernel (yet). */
	RSEQ_CPU_ID_UNINITIALIZED = -1,
	/** Registration was attempted and the kernel refused it. */
	RSEQ_CPU_ID_REGISTRATION_FAILED = -2,
};

/** Flags argument of the rseq system call. */
enum rseq_flags {
	/** Unregister the calling thread's area instead of registering it. */
	RSEQ_FLAG_UNREGISTER = (1 << 0),
};

/** Bit numbers of the `rseq_cs_flags` values (deprecated by the kernel). */
enum rseq_cs_flags_bit {
	/** Bit of `RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT`. */
	RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT_BIT = 0,
	/** Bit of `RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL`. */
	RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL_BIT = 1,
	/** Bit of `RSEQ_CS_FLAG_NO_RESTART_ON_MIGRATE`. */
	RSEQ_CS_FLAG_NO_RESTART_ON_MIGRATE_BIT = 2,
};

/** Values for `rseq::flags` / `rseq_cs::flags` (deprecated; keep them 0). */
enum rseq_cs_flags {
	/** Do not abort the section when the thread is preempted. */
	RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT = (1U << RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT_BIT),
	/** Do not abort the section when a signal is delivered. */
	RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL = (1U << RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL_BIT),
	/** Do not abort the section when the thread migrates to another CPU. */
	RSEQ_CS_FLAG_NO_RESTART_ON_MIGRATE = (1U << RSEQ_CS_FLAG_NO_RESTART_ON_MIGRATE_BIT),
};

/**
 * Descriptor of one restartable critical section. Read by the kernel,
 * never written; user space points `rseq::rseq_cs` at it.
 */
struct rseq_cs {
	/** Descriptor format version; must be 0. */
	uint32_t version;
	/** `rseq_cs_flags` bits; keep 0. */
	uint32_t flags;
	/** Address of the first instruction of the section. */
	uint64_t start_ip;
	/** Length of the section in bytes: it ends at start_ip + this. */
	uint64_t post_commit_offset;
	/** Where the kernel resumes on abort; the signature precedes it. */
	uint64_t abort_ip;
} __attribute__((aligned(32)));

/**
 * The per-thread area shared with the kernel. The kernel owns cpu_id_start,
 * cpu_id, node_id and mm_cid; user space writes only rseq_cs.
 */
struct rseq {
	/** CPU number as last written by the kernel; never a negative state. */
	uint32_t cpu_id_start;
	/** CPU number, or a negative `rseq_cpu_id_state` value as u32. */
	uint32_t cpu_id;
	/** Address of the active `struct rseq_cs`, or 0 outside any section. */
	uint64_t rseq_cs;
	/** `rseq_cs_flags` bits (deprecated); keep 0. */
	uint32_t flags;
	/** NUMA node of the current CPU (feature size >= 24). */
	uint32_t node_id;
	/** Concurrency id, dense per memory map (feature size >= 28). */
	uint32_t mm_cid;
	/** Marks the end of the fields known here (offset 28, the feature size). */
	char end[];
} __attribute__((aligned(32)));

/** Size of the area as first released; the minimum registration length. */
#define ORIG_RSEQ_SIZE 32

/** Auxiliary vector key: the feature size of `struct rseq` the kernel supports. */
#define AT_RSEQ_FEATURE_SIZE 27
/** Auxiliary vector key: the alignment the kernel requires for the area. */
#define AT_RSEQ_ALIGN 28

/* Signature placed in the 4 bytes before every abort handler. */
#define RSEQ_SIG_X86_64 0x53053053
/* aarch64 (little-endian instruction encoding of `brk #0x45e0`). */
#define RSEQ_SIG_AARCH64 0xd428bc00

/* System call numbers. */
#define RSEQ_SYSCALL_X86_64 334
#define RSEQ_SYSCALL_AARCH64 293
#define MEMBARRIER_SYSCALL_X86_64 324
#define MEMBARRIER_SYSCALL_AARCH64 283

/** Commands of the membarrier system call (one bit each, except QUERY). */
enum membarrier_cmd {
	/** Returns the bit set of supported commands. */
	MEMBARRIER_CMD_QUERY = 0,
	/** Barrier on all threads of all processes (slow; uses RCU). */
	MEMBARRIER_CMD_GLOBAL = (1 << 0),
	/** Barrier on all threads of registered processes, by IPI. */
	MEMBARRIER_CMD_GLOBAL_EXPEDITED = (1 << 1),
	/** Registers the process as a target of GLOBAL_EXPEDITED. */
	MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = (1 << 2),
	/** Barrier on the running threads of this process, by IPI. */
	MEMBARRIER_CMD_PRIVATE_EXPEDITED = (1 << 3),
	/** Registration required before PRIVATE_EXPEDITED. */
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = (1 << 4),
	/** Like PRIVATE_EXPEDITED, and also serializes the instruction stream. */
	MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = (1 << 5),
	/** Registration required before PRIVATE_EXPEDITED_SYNC_CORE. */
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = (1 << 6),
	/**
	 * Aborts the rseq critical sections running in this process's threads
	 * (on one CPU with MEMBARRIER_CMD_FLAG_CPU, else on all CPUs).
	 */
	MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ = (1 << 7),
	/** Registration required before PRIVATE_EXPEDITED_RSEQ. */
	MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ = (1 << 8),
	/** Returns the bit set of commands this process has registered for. */
	MEMBARRIER_CMD_GET_REGISTRATIONS = (1 << 9),
};

/** Flags argument of the membarrier system call. */
enum membarrier_cmd_flag {
	/** The third argument names the one CPU to target. */
	MEMBARRIER_CMD_FLAG_CPU = (1 << 0),
};

#endif /* CPUSLAB_RSEQ_ABI_H */
