//! libcpuslab.so: the C malloc API over cpuslab, for `LD_PRELOAD`.
//!
//! What this layer owns: the exported symbols (`malloc`, `free`, `calloc`,
//! `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`, `memalign`,
//! `valloc`, `pvalloc`, `malloc_usable_size`, `free_sized`, `free_aligned_sized`,
//! the `__libc_*` aliases, `malloc_trim`, `malloc_stats`, `malloc_info`,
//! `mallopt`, `mallinfo`, `mallinfo2`) and their glibc-compatible semantics
//! (errno, overflow, alignment rules). Everything else is cpuslab's, the
//! `CPUSLAB_*` options included (read when the library loads).
//!
//! What it may not do: allocate during its own initialisation, call `dlsym`, or
//! unwind across the C boundary (an `extern "C"` function that panics aborts). Its
//! own Rust code allocates through cpuslab directly (`#[global_allocator]`), so
//! nothing re-enters through the exported `malloc`. Linked with `-z now`.
//!
//! Bad input: `free` or `realloc` of a pointer that is not the start of a block of
//! ours prints one line naming the pointer and aborts (see docs/tuning.md for what
//! is detected cheaply).

mod api;
mod info;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;
