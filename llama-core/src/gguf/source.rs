//! A bounded, position-tracking byte input for the GGUF reader.
//!
//! [`Input`] wraps any [`Read`] (a byte slice or a buffered file) together with the
//! total input size, so every read can be checked against the bytes remaining
//! *before* anything is allocated. Errors carry the field and the byte offset.

use std::io::{self, Read};

use super::error::{Field, GgufError};
use super::MAX_METADATA_ITEMS;

/// A reader that knows its position and the total input length.
pub(super) struct Input<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Input<R> {
    /// Wraps `inner`, whose total size is `len` bytes.
    pub(super) fn new(inner: R, len: u64) -> Input<R> {
        Input { inner, pos: 0, len }
    }

    /// Current byte offset from the start of the input.
    pub(super) fn position(&self) -> u64 {
        self.pos
    }

    /// Total input size in bytes.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes left after the current position.
    pub(super) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Fails with [`GgufError::Truncated`] unless `needed` bytes remain.
    fn ensure(&self, needed: u64, field: &dyn Fn() -> Field) -> Result<(), GgufError> {
        if needed > self.remaining() {
            return Err(GgufError::Truncated {
                field: field(),
                offset: self.pos,
                needed,
                available: self.remaining(),
            });
        }
        Ok(())
    }

    /// Fails with [`GgufError::LimitExceeded`] if a metadata string length or array
    /// count is over [`MAX_METADATA_ITEMS`], then as [`Input::check_count`] does.
    pub(super) fn check_metadata_count(
        &self,
        count: u64,
        min_item_size: u64,
        offset: u64,
        field: &dyn Fn() -> Field,
    ) -> Result<(), GgufError> {
        if count > MAX_METADATA_ITEMS {
            return Err(GgufError::LimitExceeded {
                field: field(),
                offset,
                count,
                limit: MAX_METADATA_ITEMS,
            });
        }
        self.check_count(count, min_item_size, offset, field)
    }

    /// Fails with [`GgufError::CountTooLarge`] unless `count` items of at least
    /// `min_item_size` bytes each could fit in the bytes remaining. `offset` is where
    /// the count itself was read.
    pub(super) fn check_count(
        &self,
        count: u64,
        min_item_size: u64,
        offset: u64,
        field: &dyn Fn() -> Field,
    ) -> Result<(), GgufError> {
        let fits = count
            .checked_mul(min_item_size)
            .is_some_and(|bytes| bytes <= self.remaining());
        if fits {
            Ok(())
        } else {
            Err(GgufError::CountTooLarge {
                field: field(),
                offset,
                count,
                min_item_size,
                available: self.remaining(),
            })
        }
    }

    fn io_error(&self, err: io::Error, needed: u64, field: &dyn Fn() -> Field) -> GgufError {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            // The file shrank while we were reading it.
            GgufError::Truncated {
                field: field(),
                offset: self.pos,
                needed,
                available: 0,
            }
        } else {
            GgufError::Io {
                field: field(),
                offset: self.pos,
                source: err,
            }
        }
    }

    /// Reads exactly `N` bytes.
    pub(super) fn array<const N: usize>(
        &mut self,
        field: &dyn Fn() -> Field,
    ) -> Result<[u8; N], GgufError> {
        let needed = N as u64;
        self.ensure(needed, field)?;
        let mut buf = [0u8; N];
        match self.inner.read_exact(&mut buf) {
            Ok(()) => {
                self.pos = self.pos.saturating_add(needed);
                Ok(buf)
            }
            Err(e) => Err(self.io_error(e, needed, field)),
        }
    }

    /// Reads exactly `n` bytes into a new vector, after checking they exist.
    pub(super) fn bytes(
        &mut self,
        n: u64,
        field: &dyn Fn() -> Field,
    ) -> Result<Vec<u8>, GgufError> {
        self.ensure(n, field)?;
        let capacity = usize::try_from(n).map_err(|_| GgufError::Overflow {
            field: field(),
            offset: self.pos,
        })?;
        let mut buf = Vec::with_capacity(capacity);
        let read = (&mut self.inner).take(n).read_to_end(&mut buf);
        match read {
            Ok(got) if got as u64 == n => {
                self.pos = self.pos.saturating_add(n);
                Ok(buf)
            }
            Ok(_) => Err(self.io_error(io::ErrorKind::UnexpectedEof.into(), n, field)),
            Err(e) => Err(self.io_error(e, n, field)),
        }
    }

    /// Reads a little-endian `u32`.
    pub(super) fn u32(&mut self, field: &dyn Fn() -> Field) -> Result<u32, GgufError> {
        self.array::<4>(field).map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub(super) fn u64(&mut self, field: &dyn Fn() -> Field) -> Result<u64, GgufError> {
        self.array::<8>(field).map(u64::from_le_bytes)
    }

    /// Reads a `u64`-length-prefixed byte string, checking the length first.
    pub(super) fn string_bytes(
        &mut self,
        field: &dyn Fn() -> Field,
    ) -> Result<(u64, Vec<u8>), GgufError> {
        let len_offset = self.pos;
        let len = self.u64(field)?;
        self.check_metadata_count(len, 1, len_offset, field)?;
        let start = self.pos;
        Ok((start, self.bytes(len, field)?))
    }

    /// Reads a length-prefixed string that must be valid UTF-8 (keys, tensor names).
    /// Returns the offset of the string's length prefix and the string.
    pub(super) fn strict_string(
        &mut self,
        field: &dyn Fn() -> Field,
    ) -> Result<(u64, String), GgufError> {
        let len_offset = self.pos;
        let (start, bytes) = self.string_bytes(field)?;
        String::from_utf8(bytes)
            .map(|s| (len_offset, s))
            .map_err(|_| GgufError::InvalidUtf8 {
                field: field(),
                offset: start,
            })
    }

    /// Reads a length-prefixed string value, replacing invalid UTF-8 with U+FFFD.
    pub(super) fn lossy_string(&mut self, field: &dyn Fn() -> Field) -> Result<String, GgufError> {
        let (_, bytes) = self.string_bytes(field)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}
