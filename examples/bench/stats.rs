//! Summaries and number formatting for the report: latency percentiles, rates, ratios, memory.

use std::fmt;
use std::time::Duration;

/// Latency percentiles of a set of samples (nearest rank).
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub samples: usize,
}

impl Percentiles {
    /// `None` for no samples.
    pub fn of_ns(samples: &mut [u64]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            Duration::from_nanos(samples[i])
        };
        Some(Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
            samples: samples.len(),
        })
    }

    pub fn of(samples: &[Duration]) -> Option<Percentiles> {
        let mut ns: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
        Percentiles::of_ns(&mut ns)
    }
}

/// `p50 … p99 …` (max left to the callers that want it).
impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p50 {} p99 {}", Micros(self.p50), Micros(self.p99))
    }
}

/// A duration in the unit that reads best: `37.2 us`, `4.10 ms`.
pub struct Micros(pub Duration);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_secs_f64() * 1e6;
        if us < 1_000.0 {
            write!(f, "{us:.1} us")
        } else {
            write!(f, "{:.2} ms", us / 1_000.0)
        }
    }
}

/// A rate with thousands separators: `1,234,567/s`.
pub struct Rate(pub f64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = format!("{:.0}", self.0.max(0.0));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        write!(f, "{out}/s")
    }
}

/// `a / b` to two places, or `-` when `b` is zero.
pub struct Ratio(pub f64, pub f64);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 > 0.0 {
            write!(f, "{:.2}", self.0 / self.1)
        } else {
            write!(f, "-")
        }
    }
}

/// A size given in KiB, shown in MiB.
pub struct Mib(pub u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} MiB", self.0 as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut ns: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of_ns(&mut ns).unwrap();
        assert_eq!(p.p50, Duration::from_nanos(50));
        assert_eq!(p.p99, Duration::from_nanos(99));
        assert_eq!(p.max, Duration::from_nanos(100));
    }

    #[test]
    fn formats() {
        assert_eq!(Rate(1_234_567.4).to_string(), "1,234,567/s");
        assert_eq!(Rate(999.0).to_string(), "999/s");
        assert_eq!(Ratio(1.0, 4.0).to_string(), "0.25");
        assert_eq!(Micros(Duration::from_micros(4_100)).to_string(), "4.10 ms");
    }
}
