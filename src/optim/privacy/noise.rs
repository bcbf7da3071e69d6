//! Standard normal noise, fast: a 256-layer ziggurat (Marsaglia & Tsang 2000) on the project's
//! xoshiro256++ generator. About 98.8 % of draws take the fast path (one 64-bit draw, a table
//! look-up, a multiply and a compare), so noise for the ~100k parameters costs little per step.
//! The rare wedge and tail cases are exact (rejection), so the samples are Gaussian, as the
//! accountant assumes.

use std::sync::OnceLock;

use crate::rng::Rng;

const LAYERS: usize = 256;
/// Where the tail starts and the area of each layer, for 256 layers.
const TAIL_START: f64 = 3.654_152_885_361_009;
const LAYER_AREA: f64 = 0.004_928_673_233_99;

/// `x[i]`: right edge of layer i (x[0] is the base layer's virtual width, x[256] = 0);
/// `f[i]` = exp(-x[i]²/2).
struct Tables {
    x: [f64; LAYERS + 1],
    f: [f64; LAYERS + 1],
}

fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut x = [0.0; LAYERS + 1];
        x[0] = LAYER_AREA / density(TAIL_START);
        x[1] = TAIL_START;
        for i in 2..LAYERS {
            x[i] = (-2.0 * (LAYER_AREA / x[i - 1] + density(x[i - 1])).ln()).sqrt();
        }
        x[LAYERS] = 0.0;
        let f = x.map(density);
        Tables { x, f }
    })
}

/// A uniform f64 in (0, 1].
fn open_unit(rng: &mut Rng) -> f64 {
    ((rng.next_u64_fast() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// One standard normal sample.
#[inline]
pub fn standard_normal(rng: &mut Rng) -> f64 {
    let tables = tables();
    loop {
        let bits = rng.next_u64_fast();
        let layer = (bits & 0xff) as usize;
        // Symmetric uniform in [-1, 1) from the 53 high bits (disjoint from the layer's bits).
        let u = (bits >> 11) as f64 * (2.0 / (1u64 << 53) as f64) - 1.0;
        let x = u * tables.x[layer];
        if x.abs() < tables.x[layer + 1] {
            return x;
        }
        if layer == 0 {
            // The tail beyond TAIL_START (Marsaglia 1964).
            loop {
                let tail = -open_unit(rng).ln() / TAIL_START;
                let height = -open_unit(rng).ln();
                if 2.0 * height >= tail * tail {
                    return (TAIL_START + tail).copysign(u);
                }
            }
        }
        // The wedge between the layer's rectangle and the curve.
        let height = tables.f[layer + 1] + (tables.f[layer] - tables.f[layer + 1]) * open_unit(rng);
        if height < density(x) {
            return x;
        }
    }
}

/// Adds `std_dev` × N(0, 1) to every element of `out`.
pub fn add_gaussian(out: &mut [f32], std_dev: f64, rng: &mut Rng) {
    for value in out {
        *value += (std_dev * standard_normal(rng)) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_have_equal_area_and_end_at_zero() {
        // The recurrence must close: the last computed edge is near 0 and every layer holds
        // LAYER_AREA (rectangle x[i] · (f[i+1] - f[i])).
        let t = tables();
        assert!(
            t.x[LAYERS - 1] > 0.0 && t.x[LAYERS - 1] < 0.3,
            "{}",
            t.x[LAYERS - 1]
        );
        for i in 1..LAYERS - 1 {
            let area = t.x[i] * (t.f[i + 1] - t.f[i]);
            assert!((area - LAYER_AREA).abs() < 1e-9, "layer {i}: {area}");
        }
    }

    #[test]
    fn samples_have_normal_moments_and_tails() {
        let mut rng = Rng::from_u64(7);
        let n = 1_000_000;
        let (mut sum, mut sum_sq, mut sum_4) = (0.0, 0.0, 0.0);
        let (mut beyond_1, mut beyond_2, mut beyond_3) = (0, 0, 0);
        for _ in 0..n {
            let z = standard_normal(&mut rng);
            sum += z;
            sum_sq += z * z;
            sum_4 += z * z * z * z;
            beyond_1 += usize::from(z.abs() > 1.0);
            beyond_2 += usize::from(z.abs() > 2.0);
            beyond_3 += usize::from(z.abs() > 3.0);
        }
        let n_f = n as f64;
        let mean = sum / n_f;
        let variance = sum_sq / n_f - mean * mean;
        // Standard errors: mean 1e-3, variance √2·1e-3, 4th moment √96·1e-3; bounds at ~5 SE.
        assert!(mean.abs() < 5e-3, "mean {mean}");
        assert!((variance - 1.0).abs() < 7e-3, "variance {variance}");
        assert!((sum_4 / n_f - 3.0).abs() < 0.05, "kurtosis {}", sum_4 / n_f);
        // P(|Z| > k) for k = 1, 2, 3: 0.31731, 0.04550, 0.0026998.
        let fraction = |count: usize| count as f64 / n_f;
        assert!((fraction(beyond_1) - 0.31731).abs() < 0.0025);
        assert!((fraction(beyond_2) - 0.04550).abs() < 0.0011);
        assert!((fraction(beyond_3) - 0.0026998).abs() < 0.00026);
    }

    #[test]
    fn added_noise_has_the_requested_standard_deviation() {
        let mut rng = Rng::from_u64(11);
        let mut out = vec![1.0f32; 200_000];
        add_gaussian(&mut out, 0.25, &mut rng);
        let n = out.len() as f64;
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let variance = out
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!((mean - 1.0).abs() < 0.0025, "mean {mean}");
        assert!(
            (variance.sqrt() - 0.25).abs() < 0.0025,
            "std {}",
            variance.sqrt()
        );
    }
}
