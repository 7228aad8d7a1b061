//! The order check of one subscriber: every seq of its conversation exactly
//! once and in order, each fault named (lost, repeated, out of order).

use std::collections::BTreeSet;

use serde::Serialize;

/// What a subscriber saw of its conversation's seqs.
#[derive(Debug, Clone, Default)]
pub struct SeqCheck {
    /// The highest seq received.
    last: u64,
    /// Seqs skipped by a jump and not (yet) received late.
    missing: BTreeSet<u64>,
    pub faults: SeqFaults,
}

/// Faults over every event of a run; all zero in a sound one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeqFaults {
    /// Seqs never received (below the last one received).
    pub lost: u64,
    /// Seqs received more than once.
    pub repeated: u64,
    /// Seqs received after a higher one.
    pub out_of_order: u64,
}

impl SeqCheck {
    /// Starts after `seq`, the head the subscription began at.
    pub fn after(seq: u64) -> SeqCheck {
        SeqCheck {
            last: seq,
            ..SeqCheck::default()
        }
    }

    pub fn observe(&mut self, seq: u64) {
        if seq == self.last + 1 {
            self.last = seq;
        } else if seq > self.last {
            self.missing.extend(self.last + 1..seq);
            self.last = seq;
        } else if self.missing.remove(&seq) {
            self.faults.out_of_order += 1;
        } else {
            self.faults.repeated += 1;
        }
    }

    /// The faults, counting as lost what is still missing.
    pub fn finish(&self) -> SeqFaults {
        SeqFaults {
            lost: self.faults.lost + self.missing.len() as u64,
            ..self.faults
        }
    }
}

impl SeqFaults {
    pub fn add(&mut self, other: &SeqFaults) {
        self.lost += other.lost;
        self.repeated += other.repeated;
        self.out_of_order += other.out_of_order;
    }

    pub fn is_clean(&self) -> bool {
        *self == SeqFaults::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(seqs: &[u64]) -> SeqFaults {
        let mut check = SeqCheck::after(2);
        for &seq in seqs {
            check.observe(seq);
        }
        check.finish()
    }

    #[test]
    fn names_each_fault() {
        assert!(check(&[3, 4, 5, 6]).is_clean());
        assert_eq!(check(&[3, 5, 6]).lost, 1);
        assert_eq!(check(&[3, 4, 4, 5]).repeated, 1);
        // Before the subscription's head: already delivered.
        assert_eq!(check(&[2, 3]).repeated, 1);
        let late = check(&[3, 5, 4, 6]);
        assert_eq!((late.lost, late.out_of_order, late.repeated), (0, 1, 0));
    }
}
