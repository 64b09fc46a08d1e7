//! Memory figures: the process's RSS (current and peak, from /proc/self/status)
//! and, where the allocator tells, its own view (allocated, resident, cached).
//!
//! The allocators' own figures, by name:
//! * cpuslab: `cpuslab::stats()`: `allocated`, `resident`, cached = free objects
//!   on CPUs + in the depot;
//! * jemalloc: `stats.allocated`, `stats.resident` (after advancing the epoch),
//!   cached = `stats.arenas.<all>.tcache_bytes` (free objects in thread caches);
//! * mimalloc: `mi_process_info`'s committed bytes (as resident), nothing else;
//! * glibc: `mallinfo2`: allocated = `uordblks + hblkhd`, resident = `arena + hblkhd`
//!   (obtained from the OS), cached = `fordblks` (free bytes in the arenas); it
//!   includes the harness's own allocations, which also use glibc (small);
//! * snmalloc and anything else: none.

/// The figures at one moment. Bytes; `None` where the allocator does not tell.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub rss_kib: u64,
    pub allocated: Option<u64>,
    pub resident: Option<u64>,
    pub cached: Option<u64>,
}

impl Sample {
    /// Reads RSS and `allocator`'s own figures now.
    pub fn now(allocator: &str) -> Self {
        let own = own_figures(allocator);
        Sample {
            rss_kib: proc_status_kib("VmRSS").unwrap_or(0),
            allocated: own.and_then(|o| o.0),
            resident: own.and_then(|o| o.1),
            cached: own.and_then(|o| o.2),
        }
    }
}

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (allocated, resident, cached) as the allocator called `name` reports them.
type Own = (Option<u64>, Option<u64>, Option<u64>);

fn own_figures(name: &str) -> Option<Own> {
    match name {
        "cpuslab" => {
            let stats = cpuslab::stats();
            Some((
                Some(stats.allocated as u64),
                Some(stats.resident as u64),
                Some((stats.cpu_cache_bytes + stats.depot_bytes) as u64),
            ))
        }
        "jemalloc" => {
            use tikv_jemalloc_ctl::{epoch, raw, stats};
            epoch::advance().ok()?;
            // MALLCTL_ARENAS_ALL (4096): the sum over all arenas.
            // SAFETY: the name is NUL-terminated and the value is a size_t.
            let tcache = unsafe { raw::read::<usize>(b"stats.arenas.4096.tcache_bytes\0") };
            Some((
                stats::allocated::read().ok().map(|v| v as u64),
                stats::resident::read().ok().map(|v| v as u64),
                tcache.ok().map(|v| v as u64),
            ))
        }
        "mimalloc" => {
            let mut commit = 0usize;
            let null = std::ptr::null_mut();
            // SAFETY: every out-parameter may be null; `commit` is a valid usize.
            unsafe {
                libmimalloc_sys::mi_process_info(
                    null,
                    null,
                    null,
                    null,
                    null,
                    &mut commit,
                    null,
                    null,
                )
            };
            Some((None, Some(commit as u64), None))
        }
        "glibc" => {
            // SAFETY: mallinfo2 only reads glibc's arenas, under their locks.
            let info = unsafe { libc::mallinfo2() };
            Some((
                Some((info.uordblks + info.hblkhd) as u64),
                Some((info.arena + info.hblkhd) as u64),
                Some(info.fordblks as u64),
            ))
        }
        _ => None,
    }
}
