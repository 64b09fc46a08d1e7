//! A `fmt::Write` into a caller's byte buffer that keeps counting past its end,
//! so a caller learns how long a buffer would have been enough (`Stats::to_json`).

use core::fmt;

pub(crate) struct Writer<'a> {
    buffer: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buffer: &'a mut [u8]) -> Writer<'a> {
        Writer { buffer, len: 0 }
    }

    /// `Ok(len)` if everything fit, else `Err(bytes needed)`.
    pub(crate) fn finish(self) -> Result<usize, usize> {
        if self.len <= self.buffer.len() {
            Ok(self.len)
        } else {
            Err(self.len)
        }
    }
}

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len.saturating_add(text.len());
        if let Some(room) = self.buffer.get_mut(self.len..end) {
            room.copy_from_slice(text.as_bytes());
        }
        self.len = end;
        Ok(())
    }
}
