//! The demo model's only source of variety: a hash of the conversation and a
//! pseudo-random sequence seeded by it, both stable across builds and
//! platforms (unlike the standard library's hasher), so that every node and
//! every worker writes the same reply to the same conversation.

use crate::protocol::Role;
use crate::providers::ChatTurn;

/// FNV-1a over the conversation's text: roles and contents in order, each
/// ended by a NUL so that moving text between messages changes the hash.
pub fn fnv1a(history: &[ChatTurn]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for turn in history {
        feed(match turn.role {
            Role::User => b"user\0",
            Role::Assistant => b"assistant\0",
        });
        feed(turn.content.as_bytes());
        feed(b"\0");
    }
    hash
}

/// A tiny, stable pseudo-random sequence.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `count` distinct indices of `0..n` (fewer when `n` is smaller), in a
    /// random order.
    pub fn sample(&mut self, n: usize, count: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..count.min(n) {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(count.min(n));
        all
    }
}
