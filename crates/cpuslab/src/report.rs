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

/// A `fmt::Write` to stderr through a stack buffer (no allocation), flushed
/// when full and when dropped: reports, the start-up line, warnings.
pub struct Stderr {
    buffer: [u8; 512],
    len: usize,
}

impl Stderr {
    /// An empty buffer.
    pub const fn new() -> Stderr {
        Stderr {
            buffer: [0; 512],
            len: 0,
        }
    }

    fn flush(&mut self) {
        os::write_stderr(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl Default for Stderr {
    fn default() -> Stderr {
        Stderr::new()
    }
}

impl core::fmt::Debug for Stderr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Stderr")
    }
}

impl core::fmt::Write for Stderr {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
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

impl Drop for Stderr {
    fn drop(&mut self) {
        self.flush();
    }
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
