//! The on-disk framing of one body record, shared by the segment files and
//! the spool files that become segments at commit: `magic "SPB1" | owner
//! message id u64 | length u32 | crc32(id ‖ body) u32`, all big-endian,
//! followed by the body.

use crate::MessageId;

const MAGIC: &[u8; 4] = b"SPB1";
pub(crate) const HEADER: usize = 20;

/// The header of a record owned by `id` holding `len` body octets whose
/// `crc32(id ‖ body)` is `crc`.
pub(crate) fn record_header(id: MessageId, len: u32, crc: u32) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(MAGIC);
    header[4..12].copy_from_slice(&id.key());
    header[12..16].copy_from_slice(&len.to_be_bytes());
    header[16..].copy_from_slice(&crc.to_be_bytes());
    header
}

/// The owner id bytes, the body length and the checksum of a record header,
/// or `None` when the magic is wrong.
pub(crate) fn parse_header(header: &[u8; HEADER]) -> Option<([u8; 8], u32, u32)> {
    if &header[..4] != MAGIC {
        return None;
    }
    let mut owner = [0u8; 8];
    owner.copy_from_slice(&header[4..12]);
    let len = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let crc = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
    Some((owner, len, crc))
}
