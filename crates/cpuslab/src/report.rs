//! Reporting bad input without allocating: one line on stderr naming the pointer,
//! then abort. Never silent heap corruption, never an unwind.

use crate::os;

/// Reports that `what` got a pointer the allocator does not own, and aborts.
#[cold]
#[inline(never)]
pub(crate) fn invalid_pointer(what: &str, ptr: *const u8) -> ! {
    abort_with(
        what,
        "invalid pointer",
        ptr,
        "not the start of a block allocated by cpuslab",
    )
}

/// Reports that `what` got a block that is free already, and aborts.
#[cold]
#[inline(never)]
pub(crate) fn double_free(what: &str, ptr: *const u8) -> ! {
    abort_with(what, "double free of", ptr, "the block is free already")
}

/// Reports that the allocator was entered from a signal handler that
/// interrupted it in the same thread, while it held a lock, and aborts: the
/// alternative is a deadlock.
#[cold]
#[inline(never)]
pub(crate) fn reentered() -> ! {
    let line: &[u8] = b"cpuslab: the allocator was entered from a signal handler that \
interrupted it in the same thread (malloc is not async-signal-safe); aborting instead of \
deadlocking\n";
    os::write_stderr(line);
    os::abort()
}

/// Writes `cpuslab: what(): problem 0x... (why)` to stderr and aborts.
fn abort_with(what: &str, problem: &str, ptr: *const u8, why: &str) -> ! {
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &byte in bytes {
            if len < line.len() {
                line[len] = byte;
                len += 1;
            }
        }
    };
    put(b"cpuslab: ");
    put(what.as_bytes());
    put(b"(): ");
    put(problem.as_bytes());
    put(b" 0x");
    put(&hex(ptr as usize));
    put(b" (");
    put(why.as_bytes());
    put(b")\n");
    os::write_stderr(&line[..len]);
    os::abort()
}

/// `value` in lower-case hex, 16 digits.
fn hex(value: usize) -> [u8; 16] {
    let mut digits = [b'0'; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        let nibble = (value >> ((15 - i) * 4)) & 0xf;
        *digit = b"0123456789abcdef"[nibble];
    }
    digits
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_sixteen_digits() {
        assert_eq!(&super::hex(0xdead_beef), b"00000000deadbeef");
    }
}
