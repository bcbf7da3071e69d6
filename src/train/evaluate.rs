//! Inference over a whole dataset, in batches (never one giant matrix).

use crate::data::{gather_normalized, Dataset};
use crate::nn::loss::arg_max;
use crate::nn::Mlp;
use crate::train::metrics::Evaluation;

/// Rows per batch [`evaluate`] uses (and allocates buffers for) with `batch_size` asked for on
/// `examples` examples: a batch never exceeds the dataset.
pub fn evaluation_rows(batch_size: usize, examples: usize) -> usize {
    batch_size.clamp(1, examples.max(1))
}

/// Evaluates `params` on every example of `dataset`, `batch_size` rows at a time.
pub fn evaluate(mlp: &Mlp, params: &[f32], dataset: &Dataset, batch_size: usize) -> Evaluation {
    let batch_size = evaluation_rows(batch_size, dataset.len());
    let classes = mlp.architecture.outputs;
    let mut workspace = mlp.workspace(batch_size);
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut predictions = Vec::with_capacity(dataset.len());
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let indices: Vec<u32> = (0..dataset.len() as u32).collect();
    for chunk in indices.chunks(batch_size) {
        let rows = chunk.len();
        gather_normalized(
            dataset,
            chunk,
            &mut workspace.inputs[..rows * mlp.architecture.inputs],
            &mut workspace.labels[..rows],
        );
        let (chunk_loss, chunk_correct) = mlp.eval_chunk(params, &mut workspace, rows);
        loss_sum += chunk_loss;
        correct += chunk_correct;
        for (logits, &label) in workspace
            .logits(rows, classes)
            .chunks_exact(classes)
            .zip(&workspace.labels[..rows])
        {
            let predicted = arg_max(logits);
            confusion[label as usize][predicted] += 1;
            predictions.push(predicted as u8);
        }
    }
    let count = dataset.len();
    Evaluation {
        loss: if count > 0 {
            loss_sum / count as f64
        } else {
            0.0
        },
        accuracy: if count > 0 {
            correct as f64 / count as f64
        } else {
            0.0
        },
        correct,
        count,
        confusion,
        predictions,
    }
}
