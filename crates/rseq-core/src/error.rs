//! Why an operation did not happen.

/// Why a per-CPU operation did not happen; every case leaves the data unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpError {
    /// Pop: this CPU's stack or list had nothing (or its stack is stopped).
    Empty,
    /// Push: this CPU's stack had no room (or it is stopped).
    Full,
    /// Push: the item is this CPU's top item already (pushed twice in a row; for an
    /// allocator, a double free). Stacks hold distinct items.
    Duplicate,
    /// Compare-and-store: this CPU's word held this value instead.
    Mismatch(usize),
    /// The section aborted [`crate::MAX_RESTARTS`] times in a row (preemption,
    /// signal or migration storms): take the slow path.
    Restarted,
    /// This thread cannot run per-CPU operations now (its rseq registration failed,
    /// its CPU index lies beyond the region, or, in fallback mode, it runs in a
    /// signal handler that interrupted its own operation on this CPU): take the
    /// slow path.
    Unavailable,
}

/// Why remote access to another CPU's data was refused; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FenceError {
    /// There is no membarrier RSEQ command and no other way to fence this index
    /// (concurrency ids cannot be fenced by migrating to a CPU).
    Unsupported,
    /// The index lies beyond the region.
    NoSuchSlot,
    /// The calling thread holds that slot's lock already: it runs in a signal
    /// handler that interrupted its own operation on the slot.
    Reentered,
}
