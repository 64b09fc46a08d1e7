//! The operations on regions of per-CPU data, three kinds of each:
//!
//! * `try_*`: **one attempt**, a single critical section, inline, for a fast
//!   path with a slow path of its own (only on stacks);
//! * plain (`pop`, `push`, ...): **with restarts**: an inline first attempt, then
//!   out of line the mode decision and registration, up to `MAX_RESTARTS`
//!   restarts, or, in fallback mode, the lock;
//! * `*_locked`: **locked**, always under the fallback's per-CPU lock, whatever
//!   the mode (benchmarks measure the fallback beside rseq with it).
//!
//! Each runs the section of the same name in `arch` or the body of the same name
//! in `fallback.rs` (`arch::stack_pop`, `fallback::stack_pop`).

#[cfg(feature = "list-and-word")]
mod list;
mod stack;
#[cfg(feature = "list-and-word")]
mod word;
