//! Minimal, allocation-free walking of DNS wire format (RFC 1035 §4.1).
//!
//! The hot path (query parsing, cache hits) needs only a few facts from a message: where a
//! name ends, the lower-cased bytes of a name, where each record's TTL sits. `domain` parses
//! everything else; these helpers exist because they run per packet and must neither allocate
//! nor panic on hostile input.

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name in wire form (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// How many compression pointers we follow before calling a name a loop.
const MAX_POINTERS: usize = 32;

/// A wire-format problem: the message is malformed at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed DNS message at byte {offset}: {reason}")]
pub struct WireError {
    /// Byte offset where parsing stopped.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

fn err(offset: usize, reason: &'static str) -> WireError {
    WireError { offset, reason }
}

/// Reads a big-endian u16 at `pos`.
#[inline]
pub fn u16_at(msg: &[u8], pos: usize) -> Result<u16, WireError> {
    match msg.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(err(pos, "short read")),
    }
}

/// Reads a big-endian u32 at `pos`.
#[inline]
pub fn u32_at(msg: &[u8], pos: usize) -> Result<u32, WireError> {
    match msg.get(pos..pos + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(err(pos, "short read")),
    }
}

/// Skips an uncompressed-or-compressed name starting at `pos`; returns the offset after it.
pub fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, WireError> {
    let mut total = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(err(pos, "name runs past the end"))? as usize;
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    return Ok(pos + 1);
                }
                total += len + 1;
                if total + 1 > MAX_NAME_LEN {
                    return Err(err(pos, "name longer than 255 bytes"));
                }
                pos += 1 + len;
                if pos > msg.len() {
                    return Err(err(pos, "label runs past the end"));
                }
            }
            0xC0 => {
                if pos + 2 > msg.len() {
                    return Err(err(pos, "pointer runs past the end"));
                }
                return Ok(pos + 2);
            }
            _ => return Err(err(pos, "unknown label type")),
        }
    }
}

/// Reads the name at `pos`, following compression pointers, and writes it lower-cased in
/// uncompressed wire form into `out`. Returns `(offset after the name in msg, length in out)`.
pub fn read_name_lower(
    msg: &[u8],
    pos: usize,
    out: &mut [u8; MAX_NAME_LEN],
) -> Result<(usize, usize), WireError> {
    let mut cursor = pos;
    let mut end_after: Option<usize> = None;
    let mut written = 0usize;
    let mut pointers = 0usize;
    loop {
        let len = *msg
            .get(cursor)
            .ok_or(err(cursor, "name runs past the end"))? as usize;
        match len & 0xC0 {
            0x00 => {
                if written + 1 + len > MAX_NAME_LEN {
                    return Err(err(cursor, "name longer than 255 bytes"));
                }
                out[written] = len as u8;
                written += 1;
                if len == 0 {
                    let end = end_after.unwrap_or(cursor + 1);
                    return Ok((end, written));
                }
                let label = msg
                    .get(cursor + 1..cursor + 1 + len)
                    .ok_or(err(cursor, "label runs past the end"))?;
                for (dst, &b) in out[written..written + len].iter_mut().zip(label) {
                    *dst = b.to_ascii_lowercase();
                }
                written += len;
                cursor += 1 + len;
            }
            0xC0 => {
                let target = (u16_at(msg, cursor)? & 0x3FFF) as usize;
                if end_after.is_none() {
                    end_after = Some(cursor + 2);
                }
                pointers += 1;
                if pointers > MAX_POINTERS || target >= msg.len() {
                    return Err(err(cursor, "bad compression pointer"));
                }
                cursor = target;
            }
            _ => return Err(err(cursor, "unknown label type")),
        }
    }
}

/// Where one resource record sits in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    /// Offset of the owner name.
    pub owner: usize,
    /// Record type.
    pub rtype: u16,
    /// Record class (or UDP payload size for OPT).
    pub class: u16,
    /// Offset of the 32-bit TTL field.
    pub ttl_at: usize,
    /// Offset of the RDATA.
    pub rdata: usize,
    /// Length of the RDATA.
    pub rdlen: usize,
}

impl RecordPos {
    /// Offset just past this record.
    pub fn end(&self) -> usize {
        self.rdata + self.rdlen
    }
}

/// Reads the record starting at `pos`.
pub fn record_at(msg: &[u8], pos: usize) -> Result<RecordPos, WireError> {
    let after_owner = skip_name(msg, pos)?;
    let rtype = u16_at(msg, after_owner)?;
    let class = u16_at(msg, after_owner + 2)?;
    let ttl_at = after_owner + 4;
    let rdlen = u16_at(msg, after_owner + 8)? as usize;
    let rdata = after_owner + 10;
    if rdata + rdlen > msg.len() {
        return Err(err(rdata, "RDATA runs past the end"));
    }
    Ok(RecordPos {
        owner: pos,
        rtype,
        class,
        ttl_at,
        rdata,
        rdlen,
    })
}

/// Section counts from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// QDCOUNT.
    pub question: u16,
    /// ANCOUNT.
    pub answer: u16,
    /// NSCOUNT.
    pub authority: u16,
    /// ARCOUNT.
    pub additional: u16,
}

/// Reads the four section counts.
pub fn counts(msg: &[u8]) -> Result<Counts, WireError> {
    if msg.len() < HEADER_LEN {
        return Err(err(msg.len(), "shorter than a DNS header"));
    }
    Ok(Counts {
        question: u16_at(msg, 4)?,
        answer: u16_at(msg, 6)?,
        authority: u16_at(msg, 8)?,
        additional: u16_at(msg, 10)?,
    })
}

/// Offset just past the question section.
pub fn skip_questions(msg: &[u8], qdcount: u16) -> Result<usize, WireError> {
    let mut pos = HEADER_LEN;
    for _ in 0..qdcount {
        pos = skip_name(msg, pos)? + 4;
        if pos > msg.len() {
            return Err(err(pos, "question runs past the end"));
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_compressed_name_lowercased() {
        // header + "\x03WwW\x07Example\x03com\x00" at 12, pointer to it at the end
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(b"\x03WwW\x07Example\x03com\x00");
        let ptr_at = msg.len();
        msg.extend_from_slice(&[0xC0, 12]);
        let mut out = [0u8; MAX_NAME_LEN];
        let (end, len) = read_name_lower(&msg, ptr_at, &mut out).unwrap();
        assert_eq!(end, ptr_at + 2);
        assert_eq!(&out[..len], b"\x03www\x07example\x03com\x00");
    }

    #[test]
    fn pointer_loop_is_an_error() {
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[0xC0, 12]);
        let mut out = [0u8; MAX_NAME_LEN];
        assert!(read_name_lower(&msg, 12, &mut out).is_err());
    }

    #[test]
    fn overlong_name_is_an_error() {
        let mut msg = vec![0u8; 12];
        for _ in 0..5 {
            msg.push(63);
            msg.extend_from_slice(&[b'a'; 63]);
        }
        msg.push(0);
        let mut out = [0u8; MAX_NAME_LEN];
        assert!(read_name_lower(&msg, 12, &mut out).is_err());
        assert!(skip_name(&msg, 12).is_err());
    }

    #[test]
    fn truncated_record_is_an_error() {
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(b"\x00\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00");
        assert!(record_at(&msg, 12).is_err());
    }
}
