//! `malloc_trim`, `malloc_stats`, `malloc_info`, `mallopt`, `mallinfo`,
//! `mallinfo2`: cpuslab's statistics and options in glibc's shapes, printed or
//! filled without allocating.

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
    cpuslab::print_stats();
}

/// `malloc_info(3)`: cpuslab's statistics as XML on `stream` (`options` must be
/// 0, else -1 with errno EINVAL). One `<heap>` per per-CPU shelf in use, then the
/// totals; written through a stack buffer.
///
/// # Safety
/// `stream` is a valid, open `FILE*`.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
    if options != 0 || stream.is_null() {
        cpuslab::os::set_errno(cpuslab::os::EINVAL);
        return -1;
    }
    // No allocation by us (stdio may allocate the stream's own buffer, through
    // our `malloc`, which is not reentered: no lock is held here).
    let mut out = cpuslab::os::BufferedWriter::new(|bytes: &[u8]| {
        // SAFETY: `stream` is the caller's open FILE*; the bytes are initialised.
        unsafe { cpuslab::os::write_stream(stream.cast(), bytes) }
    });
    let written = write_info(&mut out, &cpuslab::stats()).is_ok() && out.flush();
    if written {
        0
    } else {
        -1
    }
}

/// The XML of `malloc_info`: glibc's element names where they fit.
fn write_info(out: &mut impl Write, stats: &cpuslab::Stats) -> fmt::Result {
    writeln!(out, "<malloc version=\"cpuslab-1\">")?;
    for shelf in 0..stats.shelves {
        let Some(counters) = cpuslab::shelf_counters(shelf) else {
            break;
        };
        if counters
            .iter()
            .all(|c| c.alloc_misses == 0 && c.free_overflows == 0)
        {
            continue;
        }
        writeln!(out, "<heap nr=\"{shelf}\">\n<sizes>")?;
        for (class, c) in stats.classes.iter().zip(&counters) {
            if c.alloc_misses != 0 || c.free_overflows != 0 {
                writeln!(
                    out,
                    "<size from=\"{0}\" to=\"{0}\" misses=\"{1}\" overflows=\"{2}\" \
                     from_depot=\"{3}\" to_depot=\"{4}\"/>",
                    class.size, c.alloc_misses, c.free_overflows, c.from_depot, c.to_depot
                )?;
            }
        }
        writeln!(out, "</sizes>\n</heap>")?;
    }
    writeln!(out, "<sizes>")?;
    for class in stats.classes.iter().filter(|c| c.spans > 0) {
        let free = class
            .cpu_cached
            .saturating_add(class.depot_cached)
            .saturating_add(class.span_free);
        writeln!(
            out,
            "<size from=\"{0}\" to=\"{0}\" total=\"{1}\" count=\"{2}\" in_use=\"{3}\" \
             cpu=\"{4}\" depot=\"{5}\" spans=\"{6}\"/>",
            class.size,
            free.saturating_mul(class.size),
            free,
            class.in_use,
            class.cpu_cached,
            class.depot_cached,
            class.spans
        )?;
    }
    writeln!(out, "</sizes>")?;
    let cached = stats.cpu_cache_bytes.saturating_add(stats.depot_bytes);
    writeln!(
        out,
        "<total type=\"fast\" count=\"0\" size=\"{cached}\"/>\n\
         <total type=\"rest\" count=\"0\" size=\"{}\"/>\n\
         <total type=\"mmap\" count=\"{}\" size=\"{}\"/>\n\
         <system type=\"current\" size=\"{}\"/>\n\
         <system type=\"max\" size=\"{}\"/>\n\
         <aspace type=\"total\" size=\"{}\"/>\n\
         <aspace type=\"returned\" size=\"{}\"/>\n</malloc>",
        stats.span_free_bytes,
        stats.large_count,
        stats.large_bytes,
        stats.resident,
        stats.resident,
        stats.mapped,
        stats.returned_bytes
    )
}

/// glibc's `mallopt` parameters (malloc.h).
const M_MXFAST: c_int = 1;
const M_TRIM_THRESHOLD: c_int = -1;
const M_TOP_PAD: c_int = -2;
const M_MMAP_THRESHOLD: c_int = -3;
const M_MMAP_MAX: c_int = -4;
const M_ARENA_TEST: c_int = -7;
const M_ARENA_MAX: c_int = -8;
/// cpuslab's own parameters (docs/tuning.md): the decay interval in ms (-1:
/// never), bytes per class per CPU, the background thread (1: start).
pub const M_CPUSLAB_DECAY_MS: c_int = -1001;
pub const M_CPUSLAB_CPU_CACHE_BYTES: c_int = -1002;
pub const M_CPUSLAB_BACKGROUND: c_int = -1003;

/// `mallopt(3)`: 1 when the parameter is taken, 0 (errno EINVAL) when not.
///
/// * `M_TRIM_THRESHOLD`: negative keeps freed memory until `malloc_trim` (the
///   decay never runs), 0 returns it at the next decay step (decay 0 ms); a
///   positive threshold is accepted and changes nothing (cpuslab returns
///   memory by age, not by the size of the top chunk).
/// * glibc's arena and heap-shape parameters (`M_MXFAST`, `M_TOP_PAD`,
///   `M_MMAP_THRESHOLD`, `M_MMAP_MAX`, `M_ARENA_TEST`, `M_ARENA_MAX`) are
///   accepted and ignored: there are no arenas, no top chunk, and blocks
///   above 256 KiB are always mapped.
/// * `M_CHECK_ACTION`, `M_PERTURB`: debugging features cpuslab does not
///   have: 0, errno EINVAL.
/// * `M_CPUSLAB_*`: cpuslab's options, as `CPUSLAB_*` sets them.
/// * anything else: 0, errno EINVAL.
#[no_mangle]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    let mut config = cpuslab::config();
    match param {
        M_TRIM_THRESHOLD if value < 0 => config.decay_ms = u64::MAX,
        M_TRIM_THRESHOLD if value == 0 => config.decay_ms = 0,
        M_TRIM_THRESHOLD | M_MXFAST | M_TOP_PAD | M_MMAP_THRESHOLD | M_MMAP_MAX | M_ARENA_TEST
        | M_ARENA_MAX => return 1,
        M_CPUSLAB_DECAY_MS => config.decay_ms = u64::try_from(value).unwrap_or(u64::MAX),
        M_CPUSLAB_CPU_CACHE_BYTES => match usize::try_from(value) {
            Ok(bytes) => config.cpu_cache_bytes = bytes,
            Err(_) => return refused(),
        },
        M_CPUSLAB_BACKGROUND if value == 1 => config.background = true,
        // M_CHECK_ACTION (-5), M_PERTURB (-6), and unknown parameters.
        _ => return refused(),
    }
    match config.apply() {
        Ok(()) => 1,
        Err(_) => refused(),
    }
}

fn refused() -> c_int {
    cpuslab::os::set_errno(cpuslab::os::EINVAL);
    0
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
