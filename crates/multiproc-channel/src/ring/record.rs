//! A record's header: what kind of record it is, its length, and where its
//! bytes belong in their message.

/// Bytes of a record header.
pub(super) const HDR: u64 = 32;

/// A record that holds a whole message.
pub(super) const WHOLE: u32 = 1;
/// A record that holds a piece of a message larger than the ring.
pub(super) const CHUNK: u32 = 2;

/// A record header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rec {
    pub(super) kind: u32,
    pub(super) len: u32,
    pub(super) msg: u64,
    pub(super) total: u64,
    pub(super) offset: u64,
}

impl Rec {
    pub(super) fn to_bytes(self) -> [u8; HDR as usize] {
        let mut b = [0u8; HDR as usize];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.msg.to_le_bytes());
        b[16..24].copy_from_slice(&self.total.to_le_bytes());
        b[24..32].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    pub(super) fn from_bytes(b: &[u8; HDR as usize]) -> Rec {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Rec {
            kind: u32_at(0),
            len: u32_at(4),
            msg: u64_at(8),
            total: u64_at(16),
            offset: u64_at(24),
        }
    }
}
