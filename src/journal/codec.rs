//! The journal's on-disk encoding of records.
//!
//! Records are small length-prefixed binary values led by a format version
//! byte. A binary form keeps header values and bodies byte-exact (they need
//! not be UTF-8) and costs little on the ack path.

use super::JournalError;

/// Builds an encoded record.
#[derive(Default)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn with_version(version: u8) -> Encoder {
        let mut buf = Vec::with_capacity(256);
        buf.push(version);
        Encoder { buf }
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }

    pub(crate) fn u16(&mut self, value: u16) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Writes a length (u32) and the bytes.
    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        let len = u32::try_from(value.len()).expect("journal fields are capped far below 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(value);
        self
    }

    pub(crate) fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    /// Writes a presence byte, then the value when there is one.
    pub(crate) fn opt_str(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads an encoded record, failing with [`JournalError::Corrupt`] when the
/// bytes run out or do not fit.
pub(crate) struct Decoder<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Decoder<'a> {
    /// Checks the version byte and starts reading after it.
    pub(crate) fn new(
        bytes: &'a [u8],
        version: u8,
        what: &'static str,
    ) -> Result<Decoder<'a>, JournalError> {
        match bytes.split_first() {
            Some((&v, rest)) if v == version => Ok(Decoder { rest, what }),
            Some((&v, _)) => Err(JournalError::Corrupt(format!(
                "{what}: unknown version {v}"
            ))),
            None => Err(JournalError::Corrupt(format!("{what}: empty record"))),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JournalError> {
        if self.rest.len() < n {
            return Err(JournalError::Corrupt(format!(
                "{}: record is truncated",
                self.what
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], JournalError> {
        let slice = self.take(N)?;
        Ok(slice.try_into().expect("take returned exactly N bytes"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, JournalError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, JournalError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, JournalError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], JournalError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn string(&mut self) -> Result<String, JournalError> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| JournalError::Corrupt(format!("{}: text is not UTF-8", self.what)))
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<String>, JournalError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }
}
