//! Summary statistics of repeated measurements.

use serde::Serialize;

/// Mean ± sample standard deviation, median, min and max of a set of measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for a single measurement.
    pub stddev: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many measurements.
    pub count: usize,
}

impl Stats {
    /// The statistics of `values` (all zero for none).
    pub fn of(values: &[f64]) -> Stats {
        let count = values.len();
        if count == 0 {
            return Stats {
                mean: 0.0,
                stddev: 0.0,
                median: 0.0,
                min: 0.0,
                max: 0.0,
                count,
            };
        }
        let mean = values.iter().sum::<f64>() / count as f64;
        let stddev = if count > 1 {
            let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (squares / (count - 1) as f64).sqrt()
        } else {
            0.0
        };
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = if count % 2 == 1 {
            sorted[count / 2]
        } else {
            (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
        };
        Stats {
            mean,
            stddev,
            median,
            min: sorted[0],
            max: sorted[count - 1],
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_known_values() {
        let stats = Stats::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(stats.mean, 2.5);
        assert_eq!(stats.median, 2.5);
        assert_eq!((stats.min, stats.max, stats.count), (1.0, 4.0, 4));
        // Sample variance of 1..4 is 5/3.
        assert!((stats.stddev - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let odd = Stats::of(&[9.0, 1.0, 5.0]);
        assert_eq!(odd.median, 5.0);
        assert_eq!(Stats::of(&[7.0]).stddev, 0.0);
        assert_eq!(Stats::of(&[]).count, 0);
    }
}
