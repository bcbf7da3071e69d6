//! The checks that show attributions mean something.
//!
//! - **Completeness** (integrated gradients): Σ attributions should equal F(x) − F(baseline);
//!   the relative gap is summarized by its median and worst case over the images.
//! - **Deletion** (Petsiuk et al. 2018; Samek et al. 2017's "pixel flipping"): set pixels to the
//!   baseline in order of decreasing attribution, 2 % of the image at a time, and follow the
//!   target's softmax probability. The area under that curve (fraction deleted on the x axis, 0
//!   to 1) is small when the method put the evidence first. The same curve with a seeded random
//!   order is the yardstick: a method "beats random" on an image when its area is smaller.

use std::time::Instant;

use ndarray::Array2;
use serde::Serialize;

use crate::explain::{attribute, logits_batched, single_row, Differentiable, Method, Settings};
use crate::nn::loss::{arg_max, softmax};
use crate::report::table::aligned_table;
use crate::rng::Rng;

/// How many test images `eval --explain-check` checks unless told.
pub const DEFAULT_CHECK_IMAGES: usize = 200;
/// Deletion proceeds in 50 steps of 2 % of the pixels each.
pub const DELETION_STEPS: usize = 50;
/// Seed of the random deletion order (mixed with the image's position in the check).
pub const RANDOM_ORDER_SEED: u64 = 0x5EED_DE1E;

/// Pixel positions by decreasing attribution (ties: the lower position first).
pub fn deletion_order(values: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order
}

/// A uniformly random order of `len` positions (Fisher–Yates), fixed by `image`.
pub fn random_order(len: usize, image: u64) -> Vec<usize> {
    let mut rng = Rng::from_u64(RANDOM_ORDER_SEED ^ image.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = (rng.next_u64_fast() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The target's probability after deleting the first `round(k · len / 50)` pixels of `order`,
/// for k = 0..=50 (51 points, the first on the intact image).
pub fn deletion_curve(
    model: &dyn Differentiable,
    pixels: &[f32],
    order: &[usize],
    target: usize,
    baseline: f32,
) -> Vec<f32> {
    let len = pixels.len();
    let mut images = Array2::zeros((DELETION_STEPS + 1, len));
    let mut current = pixels.to_vec();
    let mut deleted = 0;
    for (step, mut row) in images.rows_mut().into_iter().enumerate() {
        let upto = (step * len + DELETION_STEPS / 2) / DELETION_STEPS;
        for &position in &order[deleted..upto] {
            current[position] = baseline;
        }
        deleted = upto;
        row.assign(&ndarray::ArrayView1::from(&current));
    }
    logits_batched(model, images.view())
        .rows()
        .into_iter()
        .map(|logits| softmax(&logits.to_vec())[target])
        .collect()
}

/// Area under a curve sampled at evenly spaced points of [0, 1] (trapezoid rule).
pub fn area_under(curve: &[f32]) -> f64 {
    if curve.len() < 2 {
        return curve.first().map_or(0.0, |&v| v as f64);
    }
    let h = 1.0 / (curve.len() - 1) as f64;
    curve
        .windows(2)
        .map(|pair| (pair[0] as f64 + pair[1] as f64) * h / 2.0)
        .sum()
}

/// One method's figures over the checked images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodCheck {
    pub method: &'static str,
    /// Integrated gradients only: median and worst relative completeness error.
    pub completeness_median: Option<f64>,
    pub completeness_worst: Option<f64>,
    /// Mean area under the deletion curve (target probability vs fraction deleted).
    pub deletion_auc: f64,
    /// Mean area under the random-order deletion curve, on the same images.
    pub random_auc: f64,
    /// Share of images where the method's area is below the random order's.
    pub beats_random: f64,
    /// Wall time to compute one attribution map (mean over the images).
    pub milliseconds_per_image: f64,
}

/// The whole check: every method on the same images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub images: usize,
    /// What is explained and what the deletion curve follows.
    pub score: &'static str,
    pub deletion_tracks: &'static str,
    pub deletion_step: f64,
    pub ig_steps: usize,
    pub ig_quadrature: &'static str,
    pub occlusion_patch: usize,
    pub baseline: f32,
    pub random_seed: u64,
    pub methods: Vec<MethodCheck>,
}

/// Runs every method in `methods` on each image (pixels in [0, 1], row-major, `width` wide),
/// explaining the class the model predicts for it.
pub fn run_checks(
    model: &dyn Differentiable,
    images: &[Vec<f32>],
    width: usize,
    settings: &Settings,
    methods: &[Method],
) -> CheckReport {
    let mut completeness = Vec::new();
    let mut areas = vec![Vec::with_capacity(images.len()); methods.len()];
    let mut seconds = vec![0.0f64; methods.len()];
    let mut random_areas = Vec::with_capacity(images.len());
    for (index, pixels) in images.iter().enumerate() {
        let target = arg_max(&model.logits(single_row(pixels)).row(0).to_vec());
        let random = random_order(pixels.len(), index as u64);
        random_areas.push(area_under(&deletion_curve(
            model,
            pixels,
            &random,
            target,
            settings.baseline,
        )));
        for (slot, &method) in methods.iter().enumerate() {
            let started = Instant::now();
            let attribution = attribute(model, pixels, width, target, method, settings);
            seconds[slot] += started.elapsed().as_secs_f64();
            if let Some(error) = attribution.completeness.and_then(|c| c.relative_error()) {
                completeness.push(error);
            }
            let order = deletion_order(&attribution.values);
            areas[slot].push(area_under(&deletion_curve(
                model,
                pixels,
                &order,
                target,
                settings.baseline,
            )));
        }
    }
    completeness.sort_by(f64::total_cmp);
    let count = images.len().max(1) as f64;
    let random_auc = random_areas.iter().sum::<f64>() / count;
    let methods = methods
        .iter()
        .zip(&areas)
        .zip(&seconds)
        .map(|((&method, method_areas), &time)| {
            let with_completeness = method == Method::IntegratedGradients;
            let beaten = method_areas
                .iter()
                .zip(&random_areas)
                .filter(|(area, random)| area < random)
                .count();
            MethodCheck {
                method: method.name(),
                completeness_median: with_completeness.then(|| median(&completeness)).flatten(),
                completeness_worst: with_completeness
                    .then(|| completeness.last().copied())
                    .flatten(),
                deletion_auc: method_areas.iter().sum::<f64>() / count,
                random_auc,
                beats_random: beaten as f64 / count,
                milliseconds_per_image: time * 1000.0 / count,
            }
        })
        .collect();
    CheckReport {
        images: images.len(),
        score: "logit of the predicted class",
        deletion_tracks: "softmax probability of the predicted class",
        deletion_step: 1.0 / DELETION_STEPS as f64,
        ig_steps: settings.ig_steps,
        ig_quadrature: settings.quadrature.name(),
        occlusion_patch: settings.occlusion_patch,
        baseline: settings.baseline,
        random_seed: RANDOM_ORDER_SEED,
        methods,
    }
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

impl CheckReport {
    /// The table people read.
    pub fn format_table(&self) -> String {
        let percent =
            |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{:.3}%", v * 100.0));
        let header = [
            "method",
            "completeness median",
            "worst",
            "deletion AUC",
            "random AUC",
            "beats random",
            "ms/image",
        ];
        let rows: Vec<[String; 7]> = self
            .methods
            .iter()
            .map(|m| {
                [
                    m.method.to_string(),
                    percent(m.completeness_median),
                    percent(m.completeness_worst),
                    format!("{:.4}", m.deletion_auc),
                    format!("{:.4}", m.random_auc),
                    format!("{:.1}%", m.beats_random * 100.0),
                    format!("{:.2}", m.milliseconds_per_image),
                ]
            })
            .collect();
        let mut out = format!(
            "Attribution check on {} test images (score: {}; deletion follows its probability, {}% of the pixels per step; IG: {} steps, {}; occlusion patch {}×{}; baseline {})\n",
            self.images,
            self.score,
            self.deletion_step * 100.0,
            self.ig_steps,
            self.ig_quadrature,
            self.occlusion_patch,
            self.occlusion_patch,
            self.baseline
        );
        out.push_str(&aligned_table(&header, &rows, 1));
        out
    }
}
