//! A small, self-contained stand-in for the `base2histogram` 0.2.3 crate.
//!
//! # Why this crate exists
//!
//! `openraft` (=0.10.0-alpha.37) depends on `base2histogram` 0.2.3 for its
//! runtime statistics. In 0.2.3 the bucket layouts live in a global
//! `LOG_SCALES: LazyLock<Vec<LogScale>>` that, on first use, builds the lookup
//! tables for *every* supported bucket width (1..=16). That costs about
//! 26.8 MB of resident memory in every process, although openraft only ever
//! creates histograms with the default width (3).
//!
//! This crate implements, from scratch, the part of the `base2histogram` API
//! that openraft uses ([`Histogram`], [`PercentileStats`], [`AsciiChart`]) with
//! one fixed, compact bucket layout. Nothing is global or lazily built: a
//! histogram is a boxed array of [`NUM_BUCKETS`] counters (about 4 KB) plus a
//! few words.
//!
//! It is wired in through `[patch.crates-io]` in the workspace `Cargo.toml`
//! (which is why the package version is exactly `0.2.3`). It can be dropped,
//! together with that patch entry, once upstream `base2histogram` builds only
//! the bucket widths that are actually used.
//!
//! # Bucket layout
//!
//! Values are bucketed on a base-2 logarithmic scale with [`SUB_BITS`] bits of
//! precision below the most significant bit:
//!
//! - values `0..SUB` (`SUB = 2^SUB_BITS = 8`) each get their own bucket (exact);
//! - every power-of-two range `[2^k, 2^(k+1))` with `k >= SUB_BITS` is split into
//!   `SUB` equally wide buckets.
//!
//! That covers all of `u64` with `SUB + (64 - SUB_BITS) * SUB = 496` buckets;
//! the last bucket ends at `u64::MAX` inclusive. A bucket's width is at most
//! `1/SUB` (12.5%) of its lower bound, so any estimate that lands in the right
//! bucket is within 12.5% of the true value.
//!
//! # Example
//!
//! ```
//! use base2histogram::Histogram;
//!
//! let mut hist = Histogram::<()>::new();
//! hist.record(5);
//! hist.record(8);
//! hist.record(13);
//! hist.record_n(21, 3);
//!
//! assert_eq!(hist.total(), 6);
//! assert_eq!(hist.percentile(0.50), 13);
//! let stats = hist.percentile_stats();
//! assert_eq!(stats.samples, 6);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::fmt::Write as _;

/// Number of precision bits below the most significant bit.
pub const SUB_BITS: u32 = 3;

/// Number of buckets per power-of-two range (and number of exact small values).
const SUB: usize = 1 << SUB_BITS;

/// Total number of buckets; covers the whole `u64` range.
pub const NUM_BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// Returns the index of the bucket that holds `value`.
#[inline]
pub fn bucket_index(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    // `value >= SUB`, so the most significant bit is at position >= SUB_BITS.
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = ((value >> shift) as usize) & (SUB - 1);
    SUB + shift as usize * SUB + sub
}

/// Returns the inclusive value range `(low, high)` covered by bucket `index`.
///
/// # Panics
///
/// Panics if `index >= NUM_BUCKETS`.
pub fn bucket_bounds(index: usize) -> (u64, u64) {
    assert!(
        index < NUM_BUCKETS,
        "bucket index {} out of range 0..{}",
        index,
        NUM_BUCKETS
    );
    if index < SUB {
        let v = index as u64;
        return (v, v);
    }
    let shift = ((index - SUB) / SUB) as u32;
    let sub = ((index - SUB) % SUB) as u64;
    let low = (SUB as u64 + sub) << shift;
    // Written as `low + (width - 1)` so the last bucket ends at u64::MAX
    // without overflowing.
    let high = low + ((1u64 << shift) - 1);
    (low, high)
}

/// Estimates the value of the `rank`-th (1-based) of `count` samples in bucket
/// `index`, assuming the samples are spread uniformly over the bucket.
///
/// The bucket is split into `count` equal parts and the midpoint of the
/// `rank`-th part is returned (rounded down); a single sample is therefore
/// reported at the bucket's midpoint. The result always lies inside the bucket,
/// and is exact for the single-value buckets `0..SUB`.
fn estimate_in_bucket(index: usize, rank: u64, count: u64) -> u64 {
    debug_assert!((1..=count).contains(&rank));
    let (low, high) = bucket_bounds(index);
    let width = (high - low) as u128 + 1;
    let offset = width * (2 * rank as u128 - 1) / (2 * count as u128);
    low + offset as u64
}

/// Percentile statistics for a histogram.
///
/// Field names and types are the same as in `base2histogram` 0.2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PercentileStats {
    /// Number of samples recorded.
    pub samples: u64,
    /// 0.1th percentile.
    pub p0_1: u64,
    /// 1st percentile.
    pub p1: u64,
    /// 5th percentile.
    pub p5: u64,
    /// 10th percentile.
    pub p10: u64,
    /// 50th percentile (median).
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
}

impl fmt::Display for PercentileStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[samples: {}, P0.1: {}, P1: {}, P5: {}, P10: {}, P50: {}, P90: {}, P99: {}, P99.9: {}]",
            self.samples, self.p0_1, self.p1, self.p5, self.p10, self.p50, self.p90, self.p99, self.p99_9,
        )
    }
}

/// A histogram of `u64` values with fixed base-2 logarithmic buckets.
///
/// Recording is `O(1)`; percentile queries walk the [`NUM_BUCKETS`] counters.
/// Memory use is fixed: one heap block of `NUM_BUCKETS * 8` bytes (3,968) plus
/// the struct itself.
///
/// `T` is optional metadata attached to the histogram (see
/// [`set_current_data`](Histogram::set_current_data)); it does not affect the
/// counts. Unlike upstream, there is no multi-slot sliding window.
///
/// Counters saturate at `u64::MAX` instead of overflowing.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram<T = ()> {
    buckets: Box<[u64; NUM_BUCKETS]>,
    total: u64,
    data: Option<T>,
}

impl<T> Default for Histogram<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Histogram<T> {
    /// Creates an empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: Box::new([0u64; NUM_BUCKETS]),
            total: 0,
            data: None,
        }
    }

    /// Records one occurrence of `value`.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `count` occurrences of `value`.
    #[inline]
    pub fn record_n(&mut self, value: u64, count: u64) {
        let slot = &mut self.buckets[bucket_index(value)];
        *slot = slot.saturating_add(count);
        self.total = self.total.saturating_add(count);
    }

    /// Returns the number of values recorded.
    #[inline]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Returns `true` if nothing has been recorded.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Returns the number of buckets, [`NUM_BUCKETS`].
    #[inline]
    pub fn num_buckets(&self) -> usize {
        NUM_BUCKETS
    }

    /// Returns the count in bucket `index`; see [`bucket_bounds`] for its range.
    ///
    /// # Panics
    ///
    /// Panics if `index >= NUM_BUCKETS`.
    #[inline]
    pub fn bucket_count(&self, index: usize) -> u64 {
        self.buckets[index]
    }

    /// Iterates over the non-empty buckets as `(low, high, count)`, where
    /// `low..=high` is the bucket's inclusive value range, in ascending order.
    pub fn non_empty_buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.buckets.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| {
            let (low, high) = bucket_bounds(i);
            (low, high, *c)
        })
    }

    /// Estimates the value at percentile `p` (`0.0..=1.0`; values outside are
    /// clamped, NaN is treated as 0).
    ///
    /// Finds the bucket that holds the sample of rank `ceil(p * total)`
    /// (at least 1) and returns an estimate inside that bucket, interpolating
    /// linearly by the rank's position among the bucket's samples. The result
    /// is exact for values below 8 and within 12.5% of the true sample
    /// otherwise.
    ///
    /// Returns `0` if the histogram is empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        // `as u64` saturates; the clamp keeps the rank inside 1..=total.
        let rank = ((self.total as f64) * p).ceil() as u64;
        self.value_at_rank(rank.clamp(1, self.total))
    }

    /// Estimates the values at several percentiles; see
    /// [`percentile`](Self::percentile).
    pub fn percentiles<'a>(&'a self, percentiles: &'a [f64]) -> impl Iterator<Item = u64> + 'a {
        percentiles.iter().map(move |&p| self.percentile(p))
    }

    /// Returns the sample count and P0.1, P1, P5, P10, P50, P90, P99, P99.9.
    ///
    /// All percentiles are `0` for an empty histogram.
    pub fn percentile_stats(&self) -> PercentileStats {
        PercentileStats {
            samples: self.total,
            p0_1: self.percentile(0.001),
            p1: self.percentile(0.01),
            p5: self.percentile(0.05),
            p10: self.percentile(0.10),
            p50: self.percentile(0.50),
            p90: self.percentile(0.90),
            p99: self.percentile(0.99),
            p99_9: self.percentile(0.999),
        }
    }

    /// `rank` is 1-based and `1 <= rank <= total`.
    fn value_at_rank(&self, rank: u64) -> u64 {
        // Invariant: `before < rank`, so `rank - before` never underflows and
        // `before + count` never overflows when the rank lies further on.
        let mut before = 0u64;
        let mut last_non_empty = 0usize;
        for (index, &count) in self.buckets.iter().enumerate() {
            if count == 0 {
                continue;
            }
            last_non_empty = index;
            let rank_in_bucket = rank - before;
            if rank_in_bucket <= count {
                return estimate_in_bucket(index, rank_in_bucket, count);
            }
            before += count;
        }
        // Only reachable if the counters saturated and `total` disagrees with
        // their sum: report the top of the highest non-empty bucket.
        bucket_bounds(last_non_empty).1
    }

    /// Resets all counts to zero. The metadata is kept.
    pub fn clear(&mut self) {
        self.buckets.fill(0);
        self.total = 0;
    }

    /// Adds `other`'s counts to this histogram. The metadata of `self` is kept.
    pub fn merge(&mut self, other: &Histogram<T>) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.total = self.total.saturating_add(other.total);
    }

    /// Sets the metadata, returning the previous value.
    pub fn set_current_data(&mut self, data: T) -> Option<T> {
        self.data.replace(data)
    }

    /// Returns the metadata, if set.
    pub fn current_data(&self) -> Option<&T> {
        self.data.as_ref()
    }

    /// Bytes used by this histogram: the struct plus its heap block.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>() + std::mem::size_of_val(&*self.buckets)
    }
}

impl<T: fmt::Debug> fmt::Debug for Histogram<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Prints only the non-empty buckets, as `low..=high: count`.
        struct NonEmpty<'a>(&'a [u64; NUM_BUCKETS]);

        impl fmt::Debug for NonEmpty<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let entries = self.0.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| {
                    let (low, high) = bucket_bounds(i);
                    (low..=high, *c)
                });
                f.debug_map().entries(entries).finish()
            }
        }

        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("buckets", &NonEmpty(&self.buckets))
            .field("data", &self.data)
            .finish()
    }
}

/// Characters used for the bars of successive series in an [`AsciiChart`].
const BAR_CHARS: [char; 8] = ['█', '▒', '░', '▓', '▞', '▚', '▖', '▘'];

fn bar_char(series_index: usize) -> char {
    BAR_CHARS[series_index % BAR_CHARS.len()]
}

fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// ASCII bar chart of one or more named histograms, stacked per bucket.
///
/// Build it with [`new`](AsciiChart::new) and [`add`](AsciiChart::add), then
/// format [`detailed`](AsciiChart::detailed) (also what `Display` prints).
/// Only buckets that are non-empty in at
/// least one series get a row; an empty chart renders as an empty string.
/// The output has no trailing newline.
#[derive(Debug, Clone)]
pub struct AsciiChart<T = ()> {
    series: Vec<(String, Histogram<T>)>,
    bar_width: usize,
}

impl<T> Default for AsciiChart<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> AsciiChart<T> {
    /// Creates an empty chart with a maximum bar width of 40 characters.
    pub fn new() -> Self {
        Self {
            series: Vec::new(),
            bar_width: 40,
        }
    }

    /// Creates a chart from `(name, histogram)` pairs.
    pub fn from_series<N: ToString>(series: impl IntoIterator<Item = (N, Histogram<T>)>) -> Self {
        Self {
            series: series
                .into_iter()
                .map(|(name, hist)| (name.to_string(), hist))
                .collect(),
            bar_width: 40,
        }
    }

    /// Adds a named series.
    pub fn add(mut self, name: &str, hist: Histogram<T>) -> Self {
        self.series.push((name.to_string(), hist));
        self
    }

    /// Sets the maximum bar width in characters (default 40).
    pub fn bar_width(mut self, width: usize) -> Self {
        self.bar_width = width;
        self
    }

    /// Returns a rendering with a header, one `[low, high] | bar count` line
    /// per bucket and a percentile summary per series.
    pub fn detailed(&self) -> DetailedDisplay<'_, T> {
        DetailedDisplay { chart: self }
    }

    /// Buckets that are non-empty in at least one series, ascending.
    fn rows(&self) -> Vec<usize> {
        (0..NUM_BUCKETS)
            .filter(|&i| self.series.iter().any(|(_, h)| h.bucket_count(i) > 0))
            .collect()
    }

    /// Largest per-bucket sum over all series.
    fn max_stacked(&self, rows: &[usize]) -> u64 {
        rows.iter()
            .map(|&i| {
                self.series
                    .iter()
                    .fold(0u64, |acc, (_, h)| acc.saturating_add(h.bucket_count(i)))
            })
            .max()
            .unwrap_or(0)
    }

    /// Writes the stacked bar for bucket `index`, scaled so that `max` fills
    /// `bar_width`; any non-zero count gets at least one character.
    fn write_bar(&self, f: &mut fmt::Formatter<'_>, index: usize, max: u64) -> fmt::Result {
        if max == 0 {
            return Ok(());
        }
        for (si, (_, hist)) in self.series.iter().enumerate() {
            let count = hist.bucket_count(index);
            if count == 0 {
                continue;
            }
            let len = ((count as f64 / max as f64) * self.bar_width as f64).round().max(1.0) as usize;
            let ch = bar_char(si);
            for _ in 0..len {
                f.write_char(ch)?;
            }
        }
        Ok(())
    }

    /// Writes the count(s) for bucket `index`: `n` for one series,
    /// `a + b + ...` for several.
    fn write_counts(&self, f: &mut fmt::Formatter<'_>, index: usize) -> fmt::Result {
        for (si, (_, hist)) in self.series.iter().enumerate() {
            if si > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{}", hist.bucket_count(index))?;
        }
        Ok(())
    }
}

impl<T> fmt::Display for AsciiChart<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.detailed(), f)
    }
}

/// Detailed rendering of an [`AsciiChart`]; see [`AsciiChart::detailed`].
pub struct DetailedDisplay<'a, T> {
    chart: &'a AsciiChart<T>,
}

impl<T> fmt::Display for DetailedDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chart = self.chart;
        let rows = chart.rows();
        if rows.is_empty() {
            return Ok(());
        }
        let max = chart.max_stacked(&rows);
        let single = chart.series.len() == 1;

        let low_w = rows
            .iter()
            .map(|&i| decimal_digits(bucket_bounds(i).0))
            .max()
            .unwrap_or(1);
        let high_w = rows
            .iter()
            .map(|&i| decimal_digits(bucket_bounds(i).1))
            .max()
            .unwrap_or(1);
        // "[" + low + ", " + high + "]"
        let range_w = low_w + high_w + 4;

        // Header.
        write!(f, "{:>range_w$} |", "range")?;
        if single {
            f.write_str(" count")?;
        } else {
            for (si, (name, _)) in chart.series.iter().enumerate() {
                write!(f, " {} {}", bar_char(si), name)?;
            }
        }
        f.write_char('\n')?;

        // One row per bucket.
        for &index in &rows {
            let (low, high) = bucket_bounds(index);
            write!(f, "[{low:>low_w$}, {high:>high_w$}] | ")?;
            chart.write_bar(f, index, max)?;
            f.write_str(if single { " " } else { "  " })?;
            chart.write_counts(f, index)?;
            f.write_char('\n')?;
        }

        // Percentile summary.
        let name_w = chart
            .series
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        for (si, (name, hist)) in chart.series.iter().enumerate() {
            if si > 0 {
                f.write_char('\n')?;
            }
            let s = hist.percentile_stats();
            if !single {
                write!(f, "{} {:>name_w$}  ", bar_char(si), name)?;
            }
            write!(
                f,
                "total: {}  P50: {}  P90: {}  P99: {}",
                s.samples, s.p50, s.p90, s.p99
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_contiguous_and_covers_u64() {
        assert_eq!(NUM_BUCKETS, 496);
        assert_eq!(bucket_bounds(0), (0, 0));
        assert_eq!(bucket_bounds(NUM_BUCKETS - 1).1, u64::MAX);
        for i in 0..NUM_BUCKETS - 1 {
            let (low, high) = bucket_bounds(i);
            let (next_low, _) = bucket_bounds(i + 1);
            assert!(low <= high, "bucket {i}");
            assert_eq!(high + 1, next_low, "bucket {i} not contiguous with {}", i + 1);
        }
    }

    #[test]
    fn bucket_index_matches_bounds() {
        let mut values: Vec<u64> = (0..5000).collect();
        for k in 0..64 {
            let p = 1u64 << k;
            values.extend([p - 1, p, p + 1, p | (p >> 1), p.wrapping_mul(3) / 2]);
        }
        values.extend([u64::MAX - 1, u64::MAX]);
        for v in values {
            let i = bucket_index(v);
            assert!(i < NUM_BUCKETS, "value {v}");
            let (low, high) = bucket_bounds(i);
            assert!(
                (low..=high).contains(&v),
                "value {v} not in bucket {i} = [{low}, {high}]"
            );
        }
    }

    #[test]
    fn bucket_width_is_within_one_eighth_of_lower_bound() {
        for i in SUB..NUM_BUCKETS {
            let (low, high) = bucket_bounds(i);
            assert!((high - low) < low / SUB as u64 + 1, "bucket {i} = [{low}, {high}]");
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::<()>::new();
        for v in 0..SUB as u64 {
            h.record(v);
        }
        assert_eq!(h.total(), SUB as u64);
        // 8 samples 0..=7: rank r holds value r - 1.
        assert_eq!(h.percentile(0.0), 0);
        assert_eq!(h.percentile(0.125), 0);
        assert_eq!(h.percentile(0.5), 3);
        assert_eq!(h.percentile(0.51), 4);
        assert_eq!(h.percentile(1.0), 7);

        let mut h = Histogram::<()>::new();
        h.record_n(5, 100);
        let s = h.percentile_stats();
        assert_eq!(s.samples, 100);
        for p in [s.p0_1, s.p1, s.p5, s.p10, s.p50, s.p90, s.p99, s.p99_9] {
            assert_eq!(p, 5);
        }
    }

    #[test]
    fn crate_doc_example_values() {
        let mut h = Histogram::<()>::new();
        h.record(5);
        h.record(8);
        h.record(13);
        h.record_n(21, 3);
        assert_eq!(h.total(), 6);
        assert_eq!(h.percentile(0.5), 13);
        // 21 lies in bucket [20, 21].
        let p99 = h.percentile(0.99);
        assert!((20..=21).contains(&p99), "{p99}");
    }

    #[test]
    fn uniform_percentiles_within_bucket_error() {
        let mut h = Histogram::<()>::new();
        for v in 1..=1000u64 {
            h.record(v);
        }
        assert_eq!(h.total(), 1000);
        for p in [0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            // The rank-th smallest of 1..=1000 is the rank itself.
            let expected = ((1000f64 * p).ceil() as u64).clamp(1, 1000);
            let got = h.percentile(p);
            assert!(
                got.abs_diff(expected) * (SUB as u64) <= expected,
                "p={p}: got {got}, expected {expected}"
            );
        }

        let s = h.percentile_stats();
        assert_eq!(s.samples, 1000);
        let ordered = [s.p0_1, s.p1, s.p5, s.p10, s.p50, s.p90, s.p99, s.p99_9];
        assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{s}");
        assert!(s.p50.abs_diff(500) * 8 <= 500, "{s}");
        assert!(s.p99.abs_diff(990) * 8 <= 990, "{s}");
    }

    #[test]
    fn out_of_range_percentiles_are_clamped() {
        let mut h = Histogram::<()>::new();
        h.record_n(3, 2);
        h.record(6);
        assert_eq!(h.percentile(-1.0), 3);
        assert_eq!(h.percentile(f64::NAN), 3);
        assert_eq!(h.percentile(2.0), 6);
    }

    #[test]
    fn record_n_equals_repeated_record() {
        let mut a = Histogram::<()>::new();
        let mut b = Histogram::<()>::new();
        for (v, n) in [(0u64, 3u64), (7, 1), (100, 17), (123_456, 5), (u64::MAX, 2)] {
            a.record_n(v, n);
            for _ in 0..n {
                b.record(v);
            }
        }
        a.record_n(42, 0);
        assert_eq!(a, b);
        assert_eq!(a.total(), 28);
        assert_eq!(a.percentile_stats(), b.percentile_stats());
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        let h: Histogram = Histogram::new();
        assert!(h.is_empty());
        assert_eq!(h.total(), 0);
        assert_eq!(h.percentile(0.5), 0);
        assert_eq!(h.percentile_stats(), PercentileStats::default());
        assert_eq!(h.non_empty_buckets().count(), 0);
        assert_eq!(Histogram::<()>::default(), h);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::<()>::new();
        let mut b = Histogram::<()>::new();
        let mut all = Histogram::<()>::new();
        for v in [1u64, 9, 300, 300, 70_000] {
            a.record(v);
            all.record(v);
        }
        for v in [2u64, 300, 5_000_000, u64::MAX] {
            b.record(v);
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.total(), 9);
    }

    #[test]
    fn clear_resets_counts() {
        let mut h = Histogram::<()>::new();
        h.record_n(1000, 10);
        h.clear();
        assert_eq!(h, Histogram::new());
    }

    #[test]
    fn huge_values_land_in_last_bucket() {
        assert_eq!(bucket_index(u64::MAX), NUM_BUCKETS - 1);
        let mut h = Histogram::<()>::new();
        h.record(u64::MAX);
        assert_eq!(h.bucket_count(NUM_BUCKETS - 1), 1);
        let (low, high) = bucket_bounds(NUM_BUCKETS - 1);
        let p = h.percentile(1.0);
        assert!((low..=high).contains(&p));
        let s = h.percentile_stats();
        assert!(s.p0_1 >= low && s.p99_9 <= high);
    }

    #[test]
    fn counters_saturate_instead_of_overflowing() {
        let mut h = Histogram::<()>::new();
        h.record_n(u64::MAX, u64::MAX);
        h.record(u64::MAX);
        h.record(1);
        assert_eq!(h.total(), u64::MAX);
        let mut other = h.clone();
        other.merge(&h);
        assert_eq!(other.total(), u64::MAX);
        // Must not panic; the answer is inside a non-empty bucket.
        let p = other.percentile(1.0);
        assert!(p == 1 || p >= bucket_bounds(NUM_BUCKETS - 1).0);
    }

    #[test]
    fn memory_is_small_and_fixed() {
        let h = Histogram::<()>::new();
        let bytes = std::mem::size_of::<Histogram>() + NUM_BUCKETS * std::mem::size_of::<u64>();
        assert_eq!(h.memory_size(), bytes);
        assert!(bytes < 8 * 1024, "{bytes} bytes");
    }

    #[test]
    fn metadata_is_kept() {
        let mut h = Histogram::<&'static str>::new();
        assert_eq!(h.current_data(), None);
        assert_eq!(h.set_current_data("a"), None);
        assert_eq!(h.set_current_data("b"), Some("a"));
        h.record(3);
        h.clear();
        assert_eq!(h.current_data(), Some(&"b"));
    }

    #[test]
    fn debug_lists_non_empty_buckets_only() {
        let mut h = Histogram::<()>::new();
        h.record_n(20, 2);
        let s = format!("{h:?}");
        assert!(s.contains("total: 2"), "{s}");
        assert!(s.contains("20..=21: 2"), "{s}");
    }

    #[test]
    fn percentile_stats_display() {
        let s = PercentileStats {
            samples: 3,
            p0_1: 1,
            p1: 1,
            p5: 1,
            p10: 1,
            p50: 2,
            p90: 3,
            p99: 3,
            p99_9: 3,
        };
        assert_eq!(
            s.to_string(),
            "[samples: 3, P0.1: 1, P1: 1, P5: 1, P10: 1, P50: 2, P90: 3, P99: 3, P99.9: 3]"
        );
    }

    #[test]
    fn ascii_chart_empty_renders_nothing() {
        let chart: AsciiChart = AsciiChart::new();
        assert_eq!(chart.to_string(), "");
        let chart = AsciiChart::new().add("x", Histogram::<()>::new());
        assert_eq!(chart.detailed().to_string(), "");
    }

    #[test]
    fn ascii_chart_single_series() {
        let mut h = Histogram::<()>::new();
        h.record_n(5, 10);
        h.record_n(100, 3);
        let chart = AsciiChart::new().add("latency", h).bar_width(20);
        let text = chart.detailed().to_string();
        let expected = [
            "    range | count",
            "[ 5,   5] | ████████████████████ 10",
            "[96, 103] | ██████ 3",
            "total: 13  P50: 5  P90: 100  P99: 102",
        ]
        .join("\n");
        assert_eq!(text, expected);
        assert_eq!(chart.to_string(), text);
    }

    #[test]
    fn ascii_chart_stacked_series() {
        // The shape openraft's log-stage chart uses: several stages, latencies in us.
        let values = [8u64, 20, 50, 120, 300, 700, 1500];
        let counts: [[u64; 7]; 5] = [
            [20, 12, 5, 2, 1, 1, 1],
            [8, 20, 12, 5, 2, 1, 1],
            [1, 1, 1, 2, 8, 20, 12],
            [1, 1, 2, 8, 20, 12, 5],
            [1, 2, 8, 20, 12, 5, 1],
        ];
        let names = [
            "1:proposed→received",
            "2:received→submitted",
            "3:submitted→persisted",
            "4:persisted→committed",
            "5:committed→applied",
        ];
        let mut chart: AsciiChart = AsciiChart::new();
        for (name, stage_counts) in names.iter().zip(counts.iter()) {
            let mut h = Histogram::new();
            for (&v, &n) in values.iter().zip(stage_counts.iter()) {
                h.record_n(v, n);
            }
            chart = chart.add(name, h);
        }
        let text = chart.detailed().to_string();
        for name in names {
            assert!(text.contains(name), "{text}");
        }
        assert!(text.contains('█'), "{text}");
        assert!(text.contains('▒'), "{text}");
        assert!(text.contains("20 + 8 + 1 + 1 + 1"), "{text}");
        // Header + 7 bucket rows + 5 summary lines.
        assert_eq!(text.lines().count(), 1 + 7 + 5, "{text}");
    }

    #[test]
    fn ascii_chart_from_series() {
        let mut a = Histogram::<()>::new();
        a.record_n(10, 5);
        let mut b = Histogram::<()>::new();
        b.record_n(100, 3);
        let text = AsciiChart::from_series([("alpha", a), ("beta", b)]).to_string();
        assert!(text.contains("alpha") && text.contains("beta"), "{text}");
    }
}
