//! `malloc_trim`, `malloc_stats`, `mallinfo`, `mallinfo2`: cpuslab's statistics in
//! glibc's shapes, printed or filled without allocating.

use core::ffi::c_int;
use core::fmt::{self, Write};

/// `malloc_trim(3)`: returns free memory to the OS now; 1 (memory was released).
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    cpuslab::trim();
    1
}

/// `malloc_stats(3)`: cpuslab's report on stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    print_stats();
}

/// Writes cpuslab's report to stderr through a stack buffer.
pub(crate) fn print_stats() {
    let mut out = Stderr {
        buffer: [0; 512],
        len: 0,
    };
    let _ = write!(out, "{}", cpuslab::stats());
    out.flush();
}

/// A `fmt::Write` to stderr with a fixed buffer: no allocation.
struct Stderr {
    buffer: [u8; 512],
    len: usize,
}

impl Stderr {
    fn flush(&mut self) {
        cpuslab::os::write_stderr(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl Write for Stderr {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.len == self.buffer.len() {
                self.flush();
            }
            self.buffer[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// glibc's figures, from cpuslab's: arena = mapped by the page heap (in bytes),
/// hblks/hblkhd = large blocks, uordblks = allocated, fordblks = free bytes held,
/// fsmblks = free bytes in caches (CPUs + depot).
fn figures() -> [usize; 10] {
    let stats = cpuslab::stats();
    let cached = stats.cpu_cache_bytes.saturating_add(stats.depot_bytes);
    [
        stats.mapped.saturating_sub(stats.large_bytes), // arena
        0,                                              // ordblks
        0,                                              // smblks
        stats.large_count,                              // hblks
        stats.large_bytes,                              // hblkhd
        0,                                              // usmblks
        cached,                                         // fsmblks
        stats.allocated,                                // uordblks
        cached.saturating_add(stats.span_free_bytes),   // fordblks
        0,                                              // keepcost
    ]
}

/// `mallinfo2(3)`.
#[no_mangle]
pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
    let [arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost] =
        figures();
    libc::mallinfo2 {
        arena,
        ordblks,
        smblks,
        hblks,
        hblkhd,
        usmblks,
        fsmblks,
        uordblks,
        fordblks,
        keepcost,
    }
}

/// `mallinfo(3)` (deprecated; the figures saturate at `int`).
#[no_mangle]
pub extern "C" fn mallinfo() -> libc::mallinfo {
    let int = |value: usize| c_int::try_from(value).unwrap_or(c_int::MAX);
    let [arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost] =
        figures().map(int);
    libc::mallinfo {
        arena,
        ordblks,
        smblks,
        hblks,
        hblkhd,
        usmblks,
        fsmblks,
        uordblks,
        fordblks,
        keepcost,
    }
}
