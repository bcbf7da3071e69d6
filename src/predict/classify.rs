//! Class probabilities for a batch of 28×28 u8 images.

use crate::model_file::Normalization;
use crate::nn::loss::softmax;
use crate::nn::Mlp;

/// Rows per forward pass; bounds the workspace whatever the number of images.
const CHUNK_ROWS: usize = 1000;

/// Softmax probabilities of every image: `images` holds `n * inputs` pixels, one image after another;
/// the result is `n` rows of `classes` probabilities.
/// images: [n, 784] u8 -> [n, classes]
pub fn probabilities(
    mlp: &Mlp,
    params: &[f32],
    normalization: Normalization,
    images: &[u8],
) -> Vec<Vec<f32>> {
    let inputs = mlp.architecture.inputs;
    let classes = mlp.architecture.outputs;
    let count = images.len() / inputs;
    let mut workspace = mlp.workspace(CHUNK_ROWS.min(count.max(1)));
    let mut result = Vec::with_capacity(count);
    for chunk in images[..count * inputs].chunks(CHUNK_ROWS * inputs) {
        let rows = chunk.len() / inputs;
        for (input, &pixel) in workspace.inputs.iter_mut().zip(chunk) {
            *input = pixel as f32 * normalization.scale + normalization.offset;
        }
        mlp.forward(params, &mut workspace, rows, None);
        result.extend(
            workspace
                .logits(rows, classes)
                .chunks_exact(classes)
                .map(softmax),
        );
    }
    result
}

/// One class and its probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScore {
    pub class: usize,
    pub probability: f32,
}

/// The `k` most probable classes, most probable first (ties: the lower class index first).
pub fn top_classes(probabilities: &[f32], k: usize) -> Vec<ClassScore> {
    let mut scores: Vec<ClassScore> = probabilities
        .iter()
        .enumerate()
        .map(|(class, &probability)| ClassScore { class, probability })
        .collect();
    scores.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then(a.class.cmp(&b.class))
    });
    scores.truncate(k);
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Architecture;

    #[test]
    fn top_classes_sorts_by_probability_and_truncates() {
        let top = top_classes(&[0.1, 0.5, 0.05, 0.35], 3);
        let classes: Vec<usize> = top.iter().map(|s| s.class).collect();
        assert_eq!(classes, [1, 3, 0]);
        assert_eq!(top[0].probability, 0.5);
    }

    #[test]
    fn probabilities_match_row_by_row_inference_across_chunks() {
        let mlp = Mlp::new(Architecture::tutorial());
        let params = mlp.initial_parameters(3);
        // More images than one chunk, so the chunk boundary is crossed.
        let count = CHUNK_ROWS + 7;
        let images: Vec<u8> = (0..count * 784).map(|i| (i * 31 % 256) as u8).collect();
        let all = probabilities(&mlp, &params, Normalization::default(), &images);
        assert_eq!(all.len(), count);
        for index in [0, CHUNK_ROWS - 1, CHUNK_ROWS, count - 1] {
            let single = probabilities(
                &mlp,
                &params,
                Normalization::default(),
                &images[index * 784..(index + 1) * 784],
            );
            for (a, b) in all[index].iter().zip(&single[0]) {
                assert!((a - b).abs() < 1e-6, "image {index}: {a} vs {b}");
            }
            let sum: f32 = all[index].iter().sum();
            assert!((sum - 1.0).abs() < 1e-5);
        }
    }
}
