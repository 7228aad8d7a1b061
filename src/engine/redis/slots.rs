//! Redis Cluster's hash slots, as the engine needs them: which slot a key
//! lives in, and a short hash tag for each slot, so that a key of the
//! engine's own (a sentinel, a partition of the in-flight replies) can be
//! placed in the slot of a conversation or spread evenly over the slots.

use std::sync::OnceLock;

/// Slots of a Redis Cluster.
pub const CLUSTER_SLOTS: usize = 16_384;

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`: the hash of its hash tag (the text between its first
/// `{` and the next `}`, when not empty), else of the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % CLUSTER_SLOTS as u16
}

/// A hash tag that hashes to `slot`: `{<tag>}` in a key puts it there.
/// The shortest decimal numbers that do, found once (a few milliseconds:
/// about 160,000 checksums of short strings).
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); CLUSTER_SLOTS];
        let mut missing = CLUSTER_SLOTS;
        let mut candidate = 0u64;
        while missing > 0 {
            let tag = candidate.to_string();
            let slot = usize::from(crc16(tag.as_bytes()) % CLUSTER_SLOTS as u16);
            if tags[slot].is_empty() {
                tags[slot] = tag;
                missing -= 1;
            }
            candidate += 1;
        }
        tags
    });
    &tags[usize::from(slot) % CLUSTER_SLOTS]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..CLUSTER_SLOTS as u16 {
            let key = format!("cs:sentinel:{{{}}}", slot_tag(slot));
            assert_eq!(key_slot(key.as_bytes()), slot);
        }
    }
}
