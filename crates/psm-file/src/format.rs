//! The on-disk framing: a versioned file header and checksummed, resynchronisable record frames.
//!
//! Every file (journal segment or snapshot) starts with a 16-byte header:
//! `b"PSMSTORE"`, the format version (`u16` LE), the file kind (`u8`), flags (`u8`; bit 0 = the
//! payloads are LZ4-compressed) and a CRC-32 of those 12 bytes (`u32` LE).
//! Records follow, each framed as `MARK` (`u32` LE), the payload length (`u32` LE), a CRC-32 of
//! the length bytes and the payload (`u32` LE), then the payload. The mark lets a reader find the
//! next frame after a damaged one, so one bad record never hides the records after it.

use std::fmt;

/// The first eight bytes of every file.
pub(crate) const MAGIC: [u8; 8] = *b"PSMSTORE";
/// The format this build writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes in a file header.
pub(crate) const HEADER_LEN: usize = 16;
/// Header flag: payloads are LZ4 block-compressed with their size prepended.
pub(crate) const FLAG_COMPRESSED: u8 = 1;
/// Marks the start of a frame ("PSMR" read as little-endian bytes `R M S P`).
const MARK: u32 = 0x5053_4D52;
/// Bytes in a frame header: mark, length, checksum.
pub(crate) const FRAME_HEADER: usize = 12;
/// The largest payload accepted. A session is at most about 1.1 MiB (4,096 permissions of 255
/// bytes plus 64 KiB of metadata), so anything larger is damage.
pub(crate) const MAX_PAYLOAD: usize = 16 << 20;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// An append-only journal segment.
    Journal = 1,
    /// A snapshot of the whole store, written once.
    Snapshot = 2,
}

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: FileKind,
    pub(crate) flags: u8,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Shorter than a header, or not a psm file at all, or a damaged header.
    NotAStore,
    /// Written by a newer (or unknown) format version.
    Version(u16),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAStore => f.write_str("not a psm file or a damaged header"),
            Self::Version(v) => write!(
                f,
                "format version {v} is not supported (this build reads version {FORMAT_VERSION})"
            ),
        }
    }
}

/// The header of a new file.
pub(crate) fn encode_header(kind: FileKind, flags: u8) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10] = kind as u8;
    h[11] = flags;
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Reads the header at the start of `bytes`.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Header, HeaderError> {
    let h = bytes.get(..HEADER_LEN).ok_or(HeaderError::NotAStore)?;
    if h[..8] != MAGIC || crc32fast::hash(&h[..12]) != u32_at(h, 12) {
        return Err(HeaderError::NotAStore);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let kind = match h[10] {
        1 => FileKind::Journal,
        2 => FileKind::Snapshot,
        _ => return Err(HeaderError::NotAStore),
    };
    Ok(Header { kind, flags: h[11] })
}

/// Appends one frame to `out`; `write` appends the payload. Returns `false`, appending nothing,
/// when the payload is larger than [`MAX_PAYLOAD`] (a reader would refuse it as damage).
pub(crate) fn push_frame(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> bool {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    write(out);
    let len = out.len() - start - FRAME_HEADER;
    let Some(len32) = u32::try_from(len).ok().filter(|_| len <= MAX_PAYLOAD) else {
        out.truncate(start);
        return false;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len32.to_le_bytes());
    hasher.update(&out[start + FRAME_HEADER..]);
    let crc = hasher.finalize();
    out[start..start + 4].copy_from_slice(&MARK.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&len32.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    true
}

/// A stretch of a file that held no valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Offset of the first damaged byte, from the start of the file.
    pub(crate) offset: u64,
    /// Bytes skipped.
    pub(crate) len: u64,
    /// Whether the damage runs to the end of the file (a torn tail).
    pub(crate) tail: bool,
}

/// Iterates over the valid frames of a file body, skipping damage.
#[derive(Debug)]
pub(crate) struct Frames<'a> {
    buf: &'a [u8],
    /// The file offset of `buf[0]`.
    base: u64,
    pos: usize,
    damage: Vec<Damage>,
    /// The end of the last valid frame (where appending may continue).
    valid_end: usize,
}

impl<'a> Frames<'a> {
    /// Frames of `body`, which starts at file offset `base`.
    pub(crate) fn new(body: &'a [u8], base: u64) -> Self {
        Self {
            buf: body,
            base,
            pos: 0,
            damage: Vec::new(),
            valid_end: 0,
        }
    }

    /// The damage met so far.
    pub(crate) fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// The file offset just past the last valid frame read so far.
    pub(crate) fn valid_end(&self) -> u64 {
        self.base + self.valid_end as u64
    }

    /// The payload of the frame at `at`, if a whole valid frame starts there.
    fn frame_at(&self, at: usize) -> Option<&'a [u8]> {
        let head = self.buf.get(at..at + FRAME_HEADER)?;
        if u32_at(head, 0) != MARK {
            return None;
        }
        let len = u32_at(head, 4) as usize;
        if len > MAX_PAYLOAD {
            return None;
        }
        let payload = self.buf.get(at + FRAME_HEADER..at + FRAME_HEADER + len)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head[4..8]);
        hasher.update(payload);
        (hasher.finalize() == u32_at(head, 8)).then_some(payload)
    }

    /// The offset (within the body) of the first whole, valid frame at or after `from`: where a
    /// body can be split so that each part starts on a frame.
    pub(crate) fn frame_boundary(body: &'a [u8], from: usize) -> Option<usize> {
        Frames::new(body, 0).resync(from)
    }

    /// The next frame at or after `from` that is whole and valid.
    fn resync(&self, from: usize) -> Option<usize> {
        let mark = MARK.to_le_bytes();
        let mut at = from;
        while let Some(rest) = self.buf.get(at..) {
            let found = rest.windows(4).position(|w| w == mark)?;
            at += found;
            if self.frame_at(at).is_some() {
                return Some(at);
            }
            at += 1;
        }
        None
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.buf.len() {
            return None;
        }
        if let Some(p) = self.frame_at(self.pos) {
            self.pos += FRAME_HEADER + p.len();
            self.valid_end = self.pos;
            return Some(p);
        }
        let bad = self.pos;
        match self.resync(bad + 1) {
            Some(next) => {
                self.damage.push(Damage {
                    offset: self.base + bad as u64,
                    len: (next - bad) as u64,
                    tail: false,
                });
                let p = self.frame_at(next)?;
                self.pos = next + FRAME_HEADER + p.len();
                self.valid_end = self.pos;
                Some(p)
            }
            None => {
                self.damage.push(Damage {
                    offset: self.base + bad as u64,
                    len: (self.buf.len() - bad) as u64,
                    tail: true,
                });
                self.pos = self.buf.len();
                None
            }
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            assert!(push_frame(&mut out, |o| o.extend_from_slice(p)));
        }
        out
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let h = encode_header(FileKind::Snapshot, FLAG_COMPRESSED);
        assert_eq!(
            decode_header(&h),
            Ok(Header {
                kind: FileKind::Snapshot,
                flags: FLAG_COMPRESSED
            })
        );
        assert_eq!(decode_header(&h[..15]), Err(HeaderError::NotAStore));
        let mut flipped = h;
        flipped[10] ^= 1;
        assert_eq!(decode_header(&flipped), Err(HeaderError::NotAStore));
        let mut newer = h;
        newer[8..10].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32fast::hash(&newer[..12]);
        newer[12..].copy_from_slice(&crc.to_le_bytes());
        let e = decode_header(&newer).unwrap_err();
        assert_eq!(e, HeaderError::Version(2));
        assert!(e.to_string().contains("version 2"));
    }

    #[test]
    fn an_oversized_payload_is_refused_and_leaves_nothing() {
        let mut out = vec![1, 2, 3];
        assert!(!push_frame(&mut out, |o| o.resize(o.len() + MAX_PAYLOAD + 1, 7)));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn reads_back_every_frame() {
        let b = body(&[b"one", b"", b"three"]);
        let mut f = Frames::new(&b, 16);
        let got: Vec<&[u8]> = f.by_ref().collect();
        assert_eq!(got, [&b"one"[..], b"", b"three"]);
        assert!(f.damage().is_empty());
        assert_eq!(f.valid_end(), 16 + b.len() as u64);
    }

    #[test]
    fn a_torn_tail_is_reported_and_the_records_before_survive() {
        let b = body(&[b"one", b"two", b"three"]);
        for cut in 1..FRAME_HEADER + 5 {
            let torn = &b[..b.len() - cut];
            let mut f = Frames::new(torn, 0);
            let got: Vec<&[u8]> = f.by_ref().collect();
            assert_eq!(got, [&b"one"[..], b"two"], "cut {cut}");
            assert_eq!(f.damage().len(), 1);
            assert!(f.damage()[0].tail);
            let two_end = (2 * FRAME_HEADER + 6) as u64;
            assert_eq!(f.valid_end(), two_end);
            assert_eq!(f.damage()[0].offset, two_end);
        }
    }

    #[test]
    fn a_flipped_bit_skips_one_record_only() {
        let b = body(&[b"one", b"two", b"three"]);
        for bit in 0..(FRAME_HEADER + 3) * 8 {
            let mut d = b.clone();
            let at = FRAME_HEADER + 3 + bit / 8; // inside the second frame
            d[at] ^= 1 << (bit % 8);
            let mut f = Frames::new(&d, 0);
            let got: Vec<&[u8]> = f.by_ref().collect();
            assert_eq!(got, [&b"one"[..], b"three"], "bit {bit}");
            assert_eq!(f.damage().len(), 1);
            assert!(!f.damage()[0].tail);
            assert_eq!(f.valid_end(), b.len() as u64);
        }
    }

    #[test]
    fn zeros_and_garbage_are_damage_not_records() {
        let mut b = body(&[b"one"]);
        b.extend_from_slice(&[0u8; 100]);
        let mut f = Frames::new(&b, 0);
        assert_eq!(f.by_ref().count(), 1);
        assert!(f.damage()[0].tail);
        let junk: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut g = Frames::new(&junk, 0);
        assert_eq!(g.by_ref().count(), 0);
        assert_eq!(g.valid_end(), 0);
    }
}
