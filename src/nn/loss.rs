//! Sparse categorical cross-entropy on logits, fused with softmax.

/// Per row: loss = logsumexp(z) - z[label] (stable: the max is subtracted first).
/// Returns (sum of losses, number of rows whose arg-max equals the label). When `grad` is given it
/// receives `(softmax(z) - onehot(label)) * grad_scale`, the gradient of `grad_scale * Σ loss`.
/// logits: [batch, classes], labels: [batch] -> grad: [batch, classes]
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    grad_scale: f32,
    mut grad: Option<&mut [f32]>,
) -> (f64, usize) {
    let mut loss_sum = 0.0f64;
    let mut correct = 0;
    for (row_index, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let label = label as usize;
        let predicted = arg_max(row);
        let max = row[predicted];
        if predicted == label {
            correct += 1;
        }
        let sum_exp: f32 = row.iter().map(|&z| (z - max).exp()).sum();
        let log_sum_exp = max + sum_exp.ln();
        loss_sum += (log_sum_exp - row[label]) as f64;
        if let Some(grad) = grad.as_deref_mut() {
            let grad_row = &mut grad[row_index * classes..(row_index + 1) * classes];
            for (class, (g, &z)) in grad_row.iter_mut().zip(row).enumerate() {
                let probability = (z - log_sum_exp).exp();
                let target = if class == label { 1.0 } else { 0.0 };
                *g = (probability - target) * grad_scale;
            }
        }
    }
    (loss_sum, correct)
}

/// Softmax probabilities of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Index of the largest value (the first on ties): the predicted class.
pub fn arg_max(values: &[f32]) -> usize {
    let mut best = 0;
    for (index, &value) in values.iter().enumerate() {
        if value > values[best] {
            best = index;
        }
    }
    best
}
