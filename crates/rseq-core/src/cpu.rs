//! CPU indices: the current CPU, the concurrency id, the number of possible CPUs.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::area;
use crate::mode::{mode, Mode};

/// The CPU the calling thread runs on (a hint: it may change right after).
///
/// Read from the rseq area in a fraction of a nanosecond; `sched_getcpu()` where the
/// thread has no area.
#[inline]
pub fn current_cpu() -> u32 {
    match crate::mode::this_thread() {
        Some(area) => area.cpu_id(),
        None => sched_getcpu(),
    }
}

/// `sched_getcpu()`, with 0 on the (theoretical) failure.
#[inline]
pub(crate) fn sched_getcpu() -> u32 {
    // SAFETY: sched_getcpu has no preconditions (vDSO getcpu, or rseq's cpu_id).
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(0)
}

/// The calling thread's concurrency id (`mm_cid`): dense in `0..min(threads, CPUs)`,
/// never shared by two threads running at the same time. None where the kernel does
/// not fill it or this thread has no rseq area.
#[inline]
pub fn mm_cid() -> Option<u32> {
    if !mm_cid_available() {
        return None;
    }
    crate::mode::this_thread().map(area::Area::mm_cid)
}

/// Whether the kernel fills `mm_cid` in this process's rseq areas: it does when its
/// feature size covers the field (Linux 6.3+) and the registered area holds it (glibc
/// and we register at least 32 bytes).
pub fn mm_cid_available() -> bool {
    mode() != Mode::Fallback && area::kernel_feature_size() >= rseq_sys::RSEQ_FEATURE_SIZE_MM_CID
}

static POSSIBLE_CPUS: AtomicU32 = AtomicU32::new(0);

/// The number of possible CPU ids (highest possible id + 1): every `cpu_id` and
/// `mm_cid` the kernel can report is below it. Read once from
/// `/sys/devices/system/cpu/possible` without allocating; falls back to the
/// affinity mask, then to 1024.
pub fn possible_cpus() -> u32 {
    match POSSIBLE_CPUS.load(Ordering::Relaxed) {
        0 => {
            let count = read_possible_cpus().max(1);
            POSSIBLE_CPUS.store(count, Ordering::Relaxed);
            count
        }
        count => count,
    }
}

/// Used when neither sysfs nor the affinity mask tells: the kernel's usual NR_CPUS cap.
const FALLBACK_CPU_COUNT: u32 = 1024;

#[cold]
fn read_possible_cpus() -> u32 {
    let mut buf = [0u8; 256];
    let path = c"/sys/devices/system/cpu/possible";
    // SAFETY: open/read/close on a stack buffer of the length we pass.
    let len = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            -1
        } else {
            let len = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            len
        }
    };
    if let Ok(len) = usize::try_from(len) {
        if let Some(highest) = parse_cpu_list(&buf[..len.min(buf.len())]) {
            return highest.saturating_add(1);
        }
    }
    affinity_cpu_count().unwrap_or(FALLBACK_CPU_COUNT)
}

/// The highest id in a kernel CPU list such as `0-3,8-11\n`, or None if malformed.
pub(crate) fn parse_cpu_list(text: &[u8]) -> Option<u32> {
    let mut highest = None;
    let mut number: Option<u32> = None;
    for &byte in text {
        match byte {
            b'0'..=b'9' => {
                let digit = u32::from(byte - b'0');
                number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(digit)?);
            }
            b',' | b'-' | b'\n' | b' ' => {
                if let Some(n) = number.take() {
                    highest = highest.max(Some(n));
                }
            }
            _ => return None,
        }
    }
    if let Some(n) = number {
        highest = highest.max(Some(n));
    }
    highest
}

fn affinity_cpu_count() -> Option<u32> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    let set = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    let bits = core::mem::size_of::<libc::cpu_set_t>() * 8;
    // SAFETY: CPU_ISSET only reads the set; the index is below its bit count.
    let highest = (0..bits)
        .rev()
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })?;
    u32::try_from(highest + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists_parse_to_their_highest_id() {
        assert_eq!(parse_cpu_list(b"0-1\n"), Some(1));
        assert_eq!(parse_cpu_list(b"0\n"), Some(0));
        assert_eq!(parse_cpu_list(b"0,2-5,7\n"), Some(7));
        assert_eq!(parse_cpu_list(b"0-3,8-11"), Some(11));
        assert_eq!(parse_cpu_list(b""), None);
        assert_eq!(parse_cpu_list(b"x"), None);
        assert_eq!(parse_cpu_list(b"99999999999"), None);
    }
}
