//! A latency histogram: fixed memory, about 1.6% precision, mergeable.
//!
//! Values are microseconds. Below 128 µs every value has its own bucket;
//! above, each power of two is split into 64 buckets (log-linear, as
//! HdrHistogram does), so a run of millions of samples costs a few kilobytes
//! per client and no allocation per sample.

use serde::Serialize;

/// Values below this have a bucket each.
const LINEAR: u64 = 128;
/// Buckets per power of two above `LINEAR` (a power of two itself).
const SUB_BUCKETS: u64 = 64;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// The largest exponent kept: 2^40 µs is about 12 days; larger values are
/// counted in the last bucket.
const MAX_EXP: u32 = 40;
const FIRST_EXP: u32 = LINEAR.trailing_zeros();
const BUCKETS: usize = (LINEAR + (MAX_EXP - FIRST_EXP + 1) as u64 * SUB_BUCKETS) as usize;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exp = (63 - value.leading_zeros()).min(MAX_EXP);
    let top = if exp == 63 - value.leading_zeros() {
        (value >> (exp - SUB_BITS)) - SUB_BUCKETS
    } else {
        SUB_BUCKETS - 1
    };
    (LINEAR + (exp - FIRST_EXP) as u64 * SUB_BUCKETS + top) as usize
}

/// The middle of a bucket's range.
fn value_of(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR {
        return bucket;
    }
    let exp = FIRST_EXP as u64 + (bucket - LINEAR) / SUB_BUCKETS;
    let top = SUB_BUCKETS + (bucket - LINEAR) % SUB_BUCKETS;
    let width = 1u64 << (exp - SUB_BITS as u64);
    top * width + width / 2
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        self.counts[bucket_of(micros)] += 1;
        self.count += 1;
        self.sum += u128::from(micros);
        self.min = self.min.min(micros);
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1), in microseconds, within the
    /// bucket's precision and never outside the recorded range.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return value_of(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// The summary a report shows, in milliseconds.
    pub fn summary(&self) -> Percentiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.count == 0 {
            return Percentiles::default();
        }
        Percentiles {
            count: self.count,
            min: ms(self.min),
            mean: self.sum as f64 / self.count as f64 / 1000.0,
            p50: ms(self.quantile(0.50)),
            p95: ms(self.quantile(0.95)),
            p99: ms(self.quantile(0.99)),
            max: ms(self.max),
        }
    }
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order_within_precision() {
        let mut last = 0;
        for value in (0..5_000_000u64).step_by(97) {
            let bucket = bucket_of(value);
            assert!(bucket >= last, "buckets grow with values");
            last = bucket;
            let back = value_of(bucket) as f64;
            assert!(
                (back - value as f64).abs() <= (value as f64 / 64.0).max(0.5),
                "{value} → bucket {bucket} → {back}"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        let near = |got: u64, want: f64| (got as f64 - want).abs() <= want / 50.0;
        assert!(near(h.quantile(0.5), 5_000.0), "{}", h.quantile(0.5));
        assert!(near(h.quantile(0.99), 9_900.0), "{}", h.quantile(0.99));
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.quantile(0.0), 1);
        let mut other = Histogram::default();
        other.record(20_000);
        h.merge(&other);
        assert_eq!(h.count(), 10_001);
        assert_eq!(h.summary().max, 20.0);
    }
}
