//! Poisson sampling: each example joins a step's batch independently with probability q, as the
//! accountant assumes. Drawn by geometric skips (one draw per chosen example, not per example of
//! the dataset), from a stream named by (seed, step), so a resumed run draws the same batches.

use crate::rng::{stream, Stream};

/// The dataset indices (ascending) that step `global_step` trains on, written into `batch`.
pub fn poisson_batch(
    example_count: usize,
    sampling_rate: f64,
    seed: u64,
    global_step: u64,
    batch: &mut Vec<u32>,
) {
    batch.clear();
    if sampling_rate <= 0.0 {
        return;
    }
    if sampling_rate >= 1.0 {
        batch.extend(0..example_count as u32);
        return;
    }
    let mut rng = stream(seed, Stream::PoissonSample, global_step, 0);
    let log_keep = (-sampling_rate).ln_1p();
    let mut next = 0usize;
    loop {
        // Examples skipped before the next chosen one: Geometric(q), by inversion.
        let uniform = ((rng.next_u64_fast() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
        let skip = (uniform.ln() / log_keep).floor();
        if skip >= (example_count - next) as f64 {
            return;
        }
        next += skip as usize;
        batch.push(next as u32);
        next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_chosen_with_probability_q() {
        let (count, q, steps) = (1000, 0.05, 2000);
        let mut chosen = vec![0u32; count];
        let mut batch = Vec::new();
        let mut sizes = Vec::new();
        for step in 0..steps {
            poisson_batch(count, q, 3, step, &mut batch);
            assert!(
                batch.windows(2).all(|w| w[0] < w[1]),
                "ascending, no repeats"
            );
            sizes.push(batch.len() as f64);
            for &index in &batch {
                chosen[index as usize] += 1;
            }
        }
        // Each example: Binomial(2000, 0.05), mean 100, sd 9.7.
        let (low, high) = (chosen.iter().min(), chosen.iter().max());
        assert!(low >= Some(&55) && high <= Some(&145), "{low:?} {high:?}");
        // Batch size: Binomial(1000, 0.05), mean 50, variance 47.5.
        let mean = sizes.iter().sum::<f64>() / steps as f64;
        let variance = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / steps as f64;
        assert!((mean - 50.0).abs() < 0.8, "mean batch {mean}");
        assert!((variance - 47.5).abs() < 6.0, "batch variance {variance}");
        // The first and last examples are reachable.
        assert!(chosen[0] > 0 && chosen[count - 1] > 0);
    }

    #[test]
    fn batches_depend_on_seed_and_step_only() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        poisson_batch(60_000, 256.0 / 60_000.0, 9, 17, &mut a);
        poisson_batch(60_000, 256.0 / 60_000.0, 9, 17, &mut b);
        assert_eq!(a, b);
        poisson_batch(60_000, 256.0 / 60_000.0, 9, 18, &mut b);
        assert_ne!(a, b);
    }
}
