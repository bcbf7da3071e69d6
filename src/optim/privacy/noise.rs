//! Standard normal noise, fast: a 1024-layer ziggurat (Marsaglia & Tsang 2000) on xoshiro256++,
//! two samples per 64-bit draw. The draws come from [`XOSHIRO_LANES`] generators run side by side
//! (vectorized, [`xoshiro_lanes`]), seeded from the caller's generator. Each 32-bit half picks a layer (10 bits)
//! and a signed 22-bit uniform; about 99.57 % of samples take the fast path (a table look-up, a
//! multiply and a compare), which runs vectorized over groups of [`GROUP`] samples
//! ([`ziggurat_fast_path`]). The rare wedge and tail cases are exact (rejection, in f64, drawing
//! from the caller's generator in sample order), so the samples are Gaussian, as the accountant
//! assumes, and a given generator state always yields the same samples.

use std::sync::OnceLock;

use crate::kernels::{xoshiro_lanes, ziggurat_fast_path, XOSHIRO_LANES, ZIGGURAT_LAYERS};
use crate::rng::Rng;

const LAYERS: usize = ZIGGURAT_LAYERS;
/// Where the tail starts and the area of each layer, for 1024 layers (solved so that the layers'
/// recurrence closes at 0; see the table test).
const TAIL_START: f64 = 4.038_849_846_109_504;
const LAYER_AREA: f64 = 0.001_226_324_646_353_089_3;
/// Samples per vectorized group.
pub const GROUP: usize = 256;

/// `x[i]`: right edge of layer i (x[0] is the base layer's virtual width, x[LAYERS] = 0);
/// `f[i]` = exp(-x[i]²/2). `widths` is `x[..LAYERS]` in f32 (what scales the uniform); `inner[i]` is
/// `x[i + 1]` rounded down to f32, so the fast path never accepts a point outside the curve.
struct Tables {
    /// Read by the tests (the table check); the samplers use `widths` and `inner`.
    #[cfg_attr(not(test), allow(dead_code))]
    x: [f64; LAYERS + 1],
    f: [f64; LAYERS + 1],
    widths: [f32; LAYERS],
    inner: [f32; LAYERS],
}

fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

/// `value` as f32, rounded toward zero (value ≥ 0).
fn f32_at_most(value: f64) -> f32 {
    let rounded = value as f32;
    if f64::from(rounded) > value {
        f32::from_bits(rounded.to_bits() - 1)
    } else {
        rounded
    }
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
        let widths = std::array::from_fn(|i| x[i] as f32);
        let inner = std::array::from_fn(|i| f32_at_most(x[i + 1]));
        Tables {
            x,
            f,
            widths,
            inner,
        }
    })
}

/// A uniform f64 in (0, 1].
fn open_unit(rng: &mut Rng) -> f64 {
    ((rng.next_u64_fast() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The candidate of one 32-bit word, as [`ziggurat_fast_path`] computes it.
fn candidate(word: u32, tables: &Tables) -> f32 {
    let bits = LAYERS.trailing_zeros();
    let u = ((word as i32) >> bits) as f32 * (1.0 / (1u32 << (31 - bits)) as f32);
    u * tables.widths[word as usize & (LAYERS - 1)]
}

/// The slow path for a word the fast path rejected (`value` is its candidate): the tail or the
/// wedge test, and on rejection fresh words from `rng` until one is accepted.
#[cold]
fn slow_path(mut word: u32, mut value: f32, tables: &Tables, rng: &mut Rng) -> f32 {
    loop {
        let layer = word as usize & (LAYERS - 1);
        if value.abs() < tables.inner[layer] {
            return value;
        }
        if layer == 0 {
            // The tail beyond TAIL_START (Marsaglia 1964).
            loop {
                let tail = -open_unit(rng).ln() / TAIL_START;
                let height = -open_unit(rng).ln();
                if 2.0 * height >= tail * tail {
                    return ((TAIL_START + tail) as f32).copysign(value);
                }
            }
        }
        // The wedge between the layer's rectangle and the curve.
        let height = tables.f[layer + 1] + (tables.f[layer] - tables.f[layer + 1]) * open_unit(rng);
        if height < density(f64::from(value)) {
            return value;
        }
        word = rng.next_u64_fast() as u32;
        value = candidate(word, tables);
    }
}

/// Writes `std_dev` × N(0, 1) to every element of `out`. The samples depend only on `rng`'s
/// state and `out.len()`: the lane generators are seeded by the first [`XOSHIRO_LANES`] draws of
/// `rng`; each group of up to [`GROUP`] samples takes GROUP / 2 lane draws, whose low halves make
/// its first GROUP / 2 samples and high halves the rest; then the slow paths of its rejected
/// samples draw from `rng` in sample order.
pub fn fill_gaussian(out: &mut [f32], std_dev: f64, rng: &mut Rng) {
    let tables = tables();
    let scale = std_dev as f32;
    let mut lanes = [[0u64; XOSHIRO_LANES]; 4];
    for lane in 0..XOSHIRO_LANES {
        let state = Rng::from_u64(rng.next_u64_fast()).state();
        for (word, value) in lanes.iter_mut().zip(state) {
            word[lane] = value;
        }
    }
    const HALF: usize = GROUP / 2;
    let mut draws = [0u64; HALF];
    let mut accepted = [0u8; GROUP];
    for chunk in out.chunks_mut(GROUP) {
        xoshiro_lanes(&mut lanes, &mut draws);
        let split = chunk.len().min(HALF);
        let (low, high) = chunk.split_at_mut(split);
        let (low_ok, high_ok) = accepted.split_at_mut(HALF);
        let (widths, inner) = (&tables.widths, &tables.inner);
        ziggurat_fast_path(&draws, false, widths, inner, scale, low, low_ok);
        ziggurat_fast_path(&draws, true, widths, inner, scale, high, high_ok);
        let count = chunk.len();
        // The last group's unused flags read as accepted.
        accepted[count..].fill(1);
        // Rejections are rare (about 0.43 %): skip accepted samples eight at a time.
        for (block, flags) in accepted.chunks_exact(8).enumerate() {
            let flags: [u8; 8] = flags.try_into().expect("eight flags");
            if u64::from_ne_bytes(flags) == u64::from_ne_bytes([1; 8]) {
                continue;
            }
            for (offset, &ok) in flags.iter().enumerate() {
                let index = block * 8 + offset;
                if ok == 0 {
                    let word = if index < HALF {
                        draws[index] as u32
                    } else {
                        (draws[index - HALF] >> 32) as u32
                    };
                    let value = slow_path(word, candidate(word, tables), tables, rng);
                    chunk[index] = scale * value;
                }
            }
        }
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
        let mut samples = vec![0.0f32; n];
        // A length that is not a multiple of the group: the last group uses a prefix.
        fill_gaussian(&mut samples[..n - 1], 1.0, &mut rng);
        fill_gaussian(&mut samples[n - 1..], 1.0, &mut rng);
        let (mut sum, mut sum_sq, mut sum_4) = (0.0, 0.0, 0.0);
        let (mut beyond_1, mut beyond_2, mut beyond_3) = (0, 0, 0);
        // Beyond the ziggurat's tail start (3.654), where only the tail path draws.
        let beyond_tail = samples.iter().filter(|z| z.abs() > 3.7).count();
        for &z in &samples {
            let z = f64::from(z);
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
        // P(|Z| > 3.7) = 2.156e-4: 216 expected, standard error 14.7.
        assert!(
            (150..=290).contains(&beyond_tail),
            "{beyond_tail} beyond 3.7"
        );
    }

    #[test]
    fn filled_noise_has_the_requested_standard_deviation() {
        let mut rng = Rng::from_u64(11);
        let mut out = vec![1.0f32; 200_000];
        fill_gaussian(&mut out, 0.25, &mut rng);
        let n = out.len() as f64;
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let variance = out
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.0025, "mean {mean}");
        assert!(
            (variance.sqrt() - 0.25).abs() < 0.0025,
            "std {}",
            variance.sqrt()
        );
    }

    #[test]
    fn samples_are_the_same_on_every_backend_and_depend_on_the_seed() {
        let draw = |seed: u64| {
            let mut out = vec![0.0f32; 5000];
            fill_gaussian(&mut out, 2.0, &mut Rng::from_u64(seed));
            out
        };
        let reference = draw(3);
        for backend in crate::kernels::Backend::supported() {
            assert_eq!(
                crate::kernels::with_backend(backend, || draw(3)),
                reference,
                "{backend:?}"
            );
        }
        assert_ne!(draw(4), reference);
    }
}
