//! A bounds-checked little-endian reader over a byte slice. Every read checks the length first,
//! and every count is checked against what is left before anything is allocated.

use byteorder::{ByteOrder, LittleEndian};

use crate::error::ParseError;
use crate::types::ValueType;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    pub(crate) fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], ParseError> {
        let available = self.remaining();
        if n > available {
            return Err(ParseError::Truncated {
                offset: self.pos(),
                what,
                needed: n,
                available,
            });
        }
        // `n <= available <= usize::MAX`, so the cast is lossless.
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        Ok(LittleEndian::read_u32(self.take(4, what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ParseError> {
        Ok(LittleEndian::read_u64(self.take(8, what)?))
    }

    /// Reads a count and checks that `count` elements of at least `min_size` bytes each fit in
    /// what is left. Returns the count as `usize`, safe to allocate for.
    pub(crate) fn count(&mut self, min_size: u64, what: &'static str) -> Result<usize, ParseError> {
        let offset = self.pos();
        let count = self.u64(what)?;
        let available = self.remaining();
        let needed = count.saturating_mul(min_size);
        if needed > available {
            return Err(ParseError::CountTooLarge {
                offset,
                what,
                count,
                needed,
                available,
            });
        }
        // `count <= available` (min_size >= 1), which fits in usize.
        Ok(count as usize)
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, ParseError> {
        let len = self.count(1, what)?;
        let offset = self.pos();
        let bytes = self.take(len as u64, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| ParseError::InvalidUtf8 { offset, what })
    }

    pub(crate) fn value_type(&mut self) -> Result<ValueType, ParseError> {
        let offset = self.pos();
        let code = self.u32("value type")?;
        ValueType::from_code(code).ok_or(ParseError::BadValueType { offset, code })
    }

    pub(crate) fn bool(&mut self) -> Result<bool, ParseError> {
        let offset = self.pos();
        match self.u8("bool")? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(ParseError::BadBool { offset, value }),
        }
    }

    /// Reads `count` fixed-size little-endian elements with `read_into`.
    pub(crate) fn fixed_vec<T: Copy + Default>(
        &mut self,
        count: usize,
        what: &'static str,
        read_into: fn(&[u8], &mut [T]),
    ) -> Result<Vec<T>, ParseError> {
        let size = std::mem::size_of::<T>() as u64;
        // The caller checked `count * min_size <= remaining` with min_size == size.
        let bytes = self.take(count as u64 * size, what)?;
        let mut out = vec![T::default(); count];
        read_into(bytes, &mut out);
        Ok(out)
    }
}
