//! Integrated gradients (Sundararajan, Taly & Yan 2017): the attribution of pixel i is
//!
//!   (x_i − b_i) · ∫₀¹ ∂F/∂x_i (b + α (x − b)) dα
//!
//! for the target's logit F and a baseline image b (black by default). Its defining property,
//! *completeness*, is that the attributions add up to F(x) − F(b); a numerical quadrature of the
//! integral meets it only approximately, so the relative gap is reported with every map.
//!
//! A ReLU network's logit is piecewise linear along the path, so the integrand is a step function:
//! any rule with n nodes misses each kink by O(1/n). Which rule does best depends on where the
//! kinks fall; `eval --explain-check` measures it (README, "Explaining a prediction").

use ndarray::Array2;

use crate::explain::{Differentiable, Settings, MAX_BATCH};

/// How the path integral is approximated from `steps` gradient evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quadrature {
    /// Gauss–Legendre nodes and weights on [0, 1] (Captum's default): exact for polynomials of
    /// degree 2·steps − 1; its nodes crowd towards both ends of the path, where a ReLU network's
    /// kinks gather (near the black baseline most hidden units switch on). The default: on the
    /// 5-epoch MLP it halves the midpoint rule's completeness error (README).
    #[default]
    GaussLegendre,
    /// The midpoint rule: α = (k + ½)/steps, equal weights.
    RiemannMiddle,
    /// The trapezoid rule: α = k/(steps − 1), half weight at both ends.
    Trapezoid,
}

impl Quadrature {
    pub const ALL: [Quadrature; 3] = [
        Quadrature::GaussLegendre,
        Quadrature::RiemannMiddle,
        Quadrature::Trapezoid,
    ];
    /// Every rule's name, in the order of [`Quadrature::ALL`].
    pub const NAMES: [&'static str; 3] = [
        Quadrature::ALL[0].name(),
        Quadrature::ALL[1].name(),
        Quadrature::ALL[2].name(),
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Quadrature::GaussLegendre => "gauss-legendre",
            Quadrature::RiemannMiddle => "riemann-middle",
            Quadrature::Trapezoid => "trapezoid",
        }
    }

    pub fn from_name(name: &str) -> Option<Quadrature> {
        Quadrature::ALL.into_iter().find(|q| q.name() == name)
    }

    /// The points α ∈ [0, 1] along the path and their weights (which sum to 1).
    pub fn nodes(self, steps: usize) -> (Vec<f64>, Vec<f64>) {
        let n = steps.max(1);
        match self {
            Quadrature::RiemannMiddle => (
                (0..n).map(|k| (k as f64 + 0.5) / n as f64).collect(),
                vec![1.0 / n as f64; n],
            ),
            Quadrature::Trapezoid if n >= 2 => {
                let h = 1.0 / (n - 1) as f64;
                let weights = (0..n)
                    .map(|k| if k == 0 || k == n - 1 { h / 2.0 } else { h })
                    .collect();
                ((0..n).map(|k| k as f64 * h).collect(), weights)
            }
            // One trapezoid node degenerates to the midpoint.
            Quadrature::Trapezoid => (vec![0.5], vec![1.0]),
            Quadrature::GaussLegendre => gauss_legendre(n),
        }
    }
}

impl std::fmt::Display for Quadrature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Gauss–Legendre nodes and weights mapped from [−1, 1] to [0, 1]: Newton's method on the
/// Legendre polynomial P_n from the usual cosine first guesses (Numerical Recipes' `gauleg`).
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    for i in 0..n.div_ceil(2) {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            // P_n(z) by the three-term recurrence; P'_n from P_n and P_{n−1}.
            let (mut p_n, mut p_previous) = (1.0, 0.0);
            for j in 1..=n {
                let j = j as f64;
                let p_before = p_previous;
                p_previous = p_n;
                p_n = ((2.0 * j - 1.0) * z * p_previous - (j - 1.0) * p_before) / j;
            }
            derivative = n as f64 * (z * p_n - p_previous) / (z * z - 1.0);
            let step = p_n / derivative;
            z -= step;
            if step.abs() < 1e-15 {
                break;
            }
        }
        let weight = 2.0 / ((1.0 - z * z) * derivative * derivative);
        nodes[i] = (1.0 - z) / 2.0;
        nodes[n - 1 - i] = (1.0 + z) / 2.0;
        weights[i] = weight / 2.0;
        weights[n - 1 - i] = weight / 2.0;
    }
    (nodes, weights)
}

/// How well integrated gradients add up: Σ attributions against F(x) − F(baseline).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completeness {
    pub attribution_sum: f64,
    /// The target's logit on the image, F(x).
    pub score_input: f64,
    /// The target's logit on the baseline image, F(b).
    pub score_baseline: f64,
}

impl Completeness {
    /// |Σ attributions − (F(x) − F(b))| / |F(x) − F(b)|; none when the image scores the same as
    /// the baseline (there is nothing to attribute).
    pub fn relative_error(&self) -> Option<f64> {
        let difference = self.score_input - self.score_baseline;
        (difference.abs() > 1e-6)
            .then(|| (self.attribution_sum - difference).abs() / difference.abs())
    }
}

/// Integrated gradients of `target`'s logit for one image. pixels: [len] -> [len]
pub fn integrated_gradients(
    model: &dyn Differentiable,
    pixels: &[f32],
    target: usize,
    settings: &Settings,
) -> (Vec<f32>, Completeness) {
    let len = pixels.len();
    let baseline = settings.baseline;
    let (alphas, weights) = settings.quadrature.nodes(settings.ig_steps);
    // Σ_k w_k ∂F/∂x at b + α_k (x − b), accumulated in f64.
    let mut average_gradient = vec![0.0f64; len];
    for (alpha_chunk, weight_chunk) in alphas.chunks(MAX_BATCH).zip(weights.chunks(MAX_BATCH)) {
        let path = Array2::from_shape_fn((alpha_chunk.len(), len), |(row, i)| {
            baseline + alpha_chunk[row] as f32 * (pixels[i] - baseline)
        });
        let gradients = model.input_gradient(path.view(), target);
        for (row, &weight) in gradients.rows().into_iter().zip(weight_chunk) {
            for (sum, &g) in average_gradient.iter_mut().zip(row) {
                *sum += weight * g as f64;
            }
        }
    }
    let values: Vec<f32> = average_gradient
        .iter()
        .zip(pixels)
        // + 0.0 turns the −0 of an unlit pixel's negative gradient into a plain 0.
        .map(|(&g, &p)| (g * (p - baseline) as f64) as f32 + 0.0)
        .collect();
    let ends = Array2::from_shape_fn(
        (2, len),
        |(row, i)| {
            if row == 0 {
                pixels[i]
            } else {
                baseline
            }
        },
    );
    let logits = model.logits(ends.view());
    let completeness = Completeness {
        attribution_sum: values.iter().map(|&v| v as f64).sum(),
        score_input: logits[[0, target]] as f64,
        score_baseline: logits[[1, target]] as f64,
    };
    (values, completeness)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_integrates_a_cubic_path_exactly_or_nearly() {
        // ∫₀¹ α³ dα = 1/4: Gauss–Legendre with 2 nodes is exact for degree 3.
        let integrate = |q: Quadrature, n: usize| {
            let (nodes, weights) = q.nodes(n);
            let weight_sum: f64 = weights.iter().sum();
            assert!((weight_sum - 1.0).abs() < 1e-12, "{q:?}: {weight_sum}");
            assert!(nodes.iter().all(|a| (0.0..=1.0).contains(a)));
            nodes
                .iter()
                .zip(&weights)
                .map(|(a, w)| w * a.powi(3))
                .sum::<f64>()
        };
        assert!((integrate(Quadrature::GaussLegendre, 2) - 0.25).abs() < 1e-12);
        assert!((integrate(Quadrature::GaussLegendre, 50) - 0.25).abs() < 1e-12);
        // Midpoint error for α³ is h²/8 · [f']₀¹ = 3h²/24 → h = 1/50: 5e-5.
        assert!((integrate(Quadrature::RiemannMiddle, 50) - 0.25).abs() < 6e-5);
        // Trapezoid error −h²/12 · [f']₀¹ = h²/4 with h = 1/49.
        assert!((integrate(Quadrature::Trapezoid, 50) - 0.25).abs() < 1.1e-4);
    }

    #[test]
    fn names_round_trip() {
        for q in Quadrature::ALL {
            assert_eq!(Quadrature::from_name(q.name()), Some(q));
        }
    }
}
