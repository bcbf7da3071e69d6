//! The privacy accountant: Rényi differential privacy (RDP) of the Poisson-sampled Gaussian
//! mechanism (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
//! Mechanism"), composed over the steps of a run and converted to (ε, δ) with the bound of
//! Balle et al. 2020 ("Hypothesis Testing Interpretations and Renyi Differential Privacy",
//! Proposition 12), the same computation, orders and conversion as Google's `dp-accounting`
//! `RdpAccountant` (checked against it: tests/data/dp_reference.tsv, scripts/dp-reference).

/// How the accountant is named in reports and model files.
pub const ACCOUNTANT: &str = "rdp";

/// The RDP orders α evaluated (dp-accounting's defaults): 1.1 … 10.9 in steps of 0.1, 11 … 63,
/// and 128, 256, 512, 1024. ε is the best bound over them.
pub fn default_orders() -> Vec<f64> {
    let fractional = (1..100).map(|x| 1.0 + f64::from(x) / 10.0);
    let integer = (11..64).map(f64::from);
    fractional
        .chain(integer)
        .chain([128.0, 256.0, 512.0, 1024.0])
        .collect()
}

/// ln(exp(a) + exp(b)) without overflow.
fn log_add(a: f64, b: f64) -> f64 {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    if low == f64::NEG_INFINITY {
        return high;
    }
    (low - high).exp().ln_1p() + high
}

/// ln C(n, k) for real n, k (through ln Γ).
fn log_binomial(n: f64, k: f64) -> f64 {
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

/// ln erfc(x), accurate where erfc(x) underflows (large x) through its asymptotic series.
fn log_erfc(x: f64) -> f64 {
    let value = libm::erfc(x);
    if value > 1e-300 {
        return value.ln();
    }
    let x2 = x * x;
    -std::f64::consts::PI.ln() / 2.0 - x.ln() - x2 - 0.5 / x2 + 0.625 / (x2 * x2)
        - 37.0 / 24.0 / (x2 * x2 * x2)
        + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
}

/// ln A_α for integer α: the binomial expansion of E[(p_mix / p_0)^α] (0 < q < 1).
fn log_a_integer(q: f64, sigma: f64, alpha: u32) -> f64 {
    let log1mq = (-q).ln_1p();
    (0..=alpha).fold(f64::NEG_INFINITY, |log_a, i| {
        let i = f64::from(i);
        let alpha = f64::from(alpha);
        let log_coef = log_binomial(alpha, i) + i * q.ln() + (alpha - i) * log1mq;
        log_add(log_a, log_coef + (i * i - i) / (2.0 * sigma * sigma))
    })
}

/// Most series terms summed for a fractional order before giving up on it.
const MAX_FRACTIONAL_TERMS: usize = 1000;

/// ln A_α for fractional α: the two half-line integrals split at z0 (Mironov et al. 2019, §3.3).
/// Returns +∞ if the series does not converge (that order is then useless, not wrong).
fn log_a_fractional(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let log1mq = (-q).ln_1p();
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let root2_sigma = std::f64::consts::SQRT_2 * sigma;
    for term in 0..MAX_FRACTIONAL_TERMS {
        let i = term as f64;
        let j = alpha - i;
        let log_coef = log_binomial(alpha, i);
        let log_t0 = log_coef + i * q.ln() + j * log1mq;
        let log_t1 = log_coef + j * q.ln() + i * log1mq;
        let log_e0 = 0.5f64.ln() + log_erfc((i - z0) / root2_sigma);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / root2_sigma);
        let log_s0 = log_t0 + (i * i - i) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        (last_s0, last_s1) = (log_s0, log_s1);
    }
    f64::INFINITY
}

/// RDP at order `alpha` of one step of the Gaussian mechanism with noise multiplier `sigma`
/// (noise std / sensitivity) applied to a Poisson sample of rate `q`.
pub fn rdp_sampled_gaussian(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if alpha.is_infinite() || sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 && alpha <= f64::from(u32::MAX) {
        log_a_integer(q, sigma, alpha as u32)
    } else {
        log_a_fractional(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// The smallest ε over `orders` such that RDP `rdp[k]` at order `orders[k]` implies (ε, δ)-DP
/// (Balle et al. 2020, Proposition 12). Returns (ε, the order that gave it).
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(0.0));
    for (&alpha, &r) in orders.iter().zip(rdp) {
        let epsilon = if r < 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
            // Negative RDP is numerical noise; tiny RDP bounds δ through the KL divergence.
            0.0
        } else if alpha > 1.01 {
            r + (-1.0 / alpha).ln_1p() - (delta * alpha).ln() / (alpha - 1.0)
        } else {
            f64::INFINITY
        };
        if epsilon < best.0 {
            best = (epsilon, alpha);
        }
    }
    (best.0.max(0.0), best.1)
}

/// What a private run spends: `steps` Poisson-sampled Gaussian steps of rate `sampling_rate` and
/// noise multiplier `noise_multiplier`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledGaussian {
    pub sampling_rate: f64,
    pub noise_multiplier: f64,
}

impl SampledGaussian {
    /// ε after `steps` steps at failure probability `delta`.
    pub fn epsilon(&self, steps: u64, delta: f64) -> f64 {
        if steps == 0 {
            return 0.0;
        }
        let orders = default_orders();
        let rdp: Vec<f64> = orders
            .iter()
            .map(|&alpha| {
                steps as f64
                    * rdp_sampled_gaussian(self.sampling_rate, self.noise_multiplier, alpha)
            })
            .collect();
        epsilon_from_rdp(&orders, &rdp, delta).0
    }
}

/// Why no noise multiplier meets a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnreachableEpsilon {
    /// ε at the largest noise multiplier tried.
    pub best_epsilon: f64,
}

/// Largest noise multiplier the search tries: beyond it the model learns nothing anyway.
pub const MAX_NOISE_MULTIPLIER: f64 = 1000.0;

/// The smallest noise multiplier (to 0.1 % relative) whose run of `steps` steps at
/// `sampling_rate` stays within `target_epsilon` at `delta`: a bisection, as ε falls as noise
/// grows. The result always meets the target (it is the upper end of the final bracket).
pub fn noise_multiplier_for_epsilon(
    target_epsilon: f64,
    sampling_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<f64, UnreachableEpsilon> {
    let epsilon_at = |sigma: f64| {
        SampledGaussian {
            sampling_rate,
            noise_multiplier: sigma,
        }
        .epsilon(steps, delta)
    };
    let mut high = 1.0;
    while epsilon_at(high) > target_epsilon {
        if high >= MAX_NOISE_MULTIPLIER {
            return Err(UnreachableEpsilon {
                best_epsilon: epsilon_at(high),
            });
        }
        high = (high * 2.0).min(MAX_NOISE_MULTIPLIER);
    }
    let mut low = 0.0;
    while high - low > 1e-3 * high {
        let middle = 0.5 * (low + high);
        if epsilon_at(middle) > target_epsilon {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_batch_gaussian_rdp_is_alpha_over_two_sigma_squared() {
        // q = 1 is the plain Gaussian mechanism: RDP α / (2σ²) (Mironov 2017, Proposition 7).
        assert_eq!(rdp_sampled_gaussian(1.0, 2.0, 3.0), 3.0 / 8.0);
        assert_eq!(rdp_sampled_gaussian(0.0, 2.0, 3.0), 0.0);
    }

    #[test]
    fn integer_order_two_matches_closed_form() {
        // A_2 = (1-q)² + 2q(1-q) + q² e^{1/σ²} = 1 + q² (e^{1/σ²} - 1); RDP = ln A_2.
        let (q, sigma): (f64, f64) = (0.01, 1.3);
        let expected = (q * q * ((1.0 / (sigma * sigma)).exp() - 1.0)).ln_1p();
        let got = rdp_sampled_gaussian(q, sigma, 2.0);
        assert!(
            (got - expected).abs() < 1e-12 * expected.abs().max(1e-300),
            "{got} {expected}"
        );
    }

    #[test]
    fn fractional_orders_lie_between_their_integer_neighbours() {
        // RDP is non-decreasing in α: the fractional series must interpolate the integer sums.
        let (q, sigma) = (0.02, 1.1);
        let at = |alpha| rdp_sampled_gaussian(q, sigma, alpha);
        for whole in 2..10 {
            let alpha = f64::from(whole);
            let middle = at(alpha + 0.5);
            assert!(
                at(alpha) <= middle && middle <= at(alpha + 1.0),
                "α {alpha}"
            );
        }
    }

    #[test]
    fn noise_search_returns_the_smallest_sigma_meeting_the_target() {
        let (q, steps, delta) = (256.0 / 60_000.0, 7050, 1e-5);
        let sigma = noise_multiplier_for_epsilon(2.0, q, steps, delta).expect("reachable");
        let epsilon = |s| {
            SampledGaussian {
                sampling_rate: q,
                noise_multiplier: s,
            }
            .epsilon(steps, delta)
        };
        assert!(epsilon(sigma) <= 2.0);
        assert!(
            epsilon(sigma * 0.995) > 2.0,
            "σ {sigma} is not the smallest"
        );
    }

    #[test]
    fn unreachable_targets_are_reported() {
        // With q = 1 and δ tiny, ε = 1e-9 needs more noise than the search allows.
        assert!(noise_multiplier_for_epsilon(1e-9, 1.0, 1000, 1e-10).is_err());
    }
}
