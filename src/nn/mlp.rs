//! The network as a list of layers over one flat parameter buffer:
//! `Dense → ReLU → Dropout` per hidden layer, then a final `Dense` producing logits; or, for an
//! architecture with a layer list, the [`Sequential`] stack it describes (the MLP keeps its own
//! path, so its results stay bit-identical to before stacks existed).

use ndarray::ArrayView2;

use crate::kernels::{relu_backward, relu_forward, SparseRows};
use crate::nn::architecture::Architecture;
use crate::nn::dense::{rows_view, rows_view_mut, Dense};
use crate::nn::dropout::{dropout_backward, dropout_forward};
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::sequential::{Sequential, StackWorkspace, StackWorkspaceLayout};
use crate::nn::{allocated_f32_bytes, f32_bytes, GradientSink};
use crate::optim::privacy::clipping::{clip_factors, scale_rows};
use crate::rng::{stream, Rng, Stream};

/// The network (a multilayer perceptron, or a layer stack); holds no parameters itself, only
/// where they are.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub architecture: Architecture,
    /// The MLP's dense layers (empty for a stack).
    pub layers: Vec<Dense>,
    /// The layer stack, when the architecture has a layer list.
    pub stack: Option<Sequential>,
}

/// Reusable buffers for one chunk of up to `capacity` rows: inputs, every layer's output, dropout
/// masks and gradients. Allocated once, so the training loop does not allocate.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub capacity: usize,
    /// [capacity, inputs], normalized pixels.
    pub inputs: Vec<f32>,
    /// [capacity]
    pub labels: Vec<u8>,
    /// Output of dense layer i (after ReLU and dropout for hidden layers): [capacity, widths[i+1]].
    activations: Vec<Vec<f32>>,
    /// Dropout mask of hidden layer i: [capacity, hidden[i]].
    masks: Vec<Vec<f32>>,
    /// Gradient ping-pong buffers: [capacity, max width after the input].
    grad_output: Vec<f32>,
    grad_input: Vec<f32>,
    /// A stack's buffers (None for the MLP).
    stack: Option<StackWorkspace>,
    /// Private training: the loss gradient at each dense layer's output, δ: [capacity, widths[i+1]],
    /// kept for the whole backward pass because clipping needs all of them before any weight
    /// gradient; and each example's squared gradient norm, then its clip factor: [capacity].
    deltas: Vec<Vec<f32>>,
    example_scales: Vec<f32>,
    /// The chunk's nonzero pixels, for the first layer's products (MLP chunks of at most
    /// [`SPARSE_INPUT_ROWS`] rows; see `kernels::sparse`).
    nonzeros: Option<SparseRows>,
}

/// Chunks up to this many rows index their nonzero pixels, so the first layer reads only those;
/// larger chunks use the dense products. It covers every shard of a batch the column-split step
/// takes (up to 256 rows: shards of at most 96), so both steps run the same kernels.
pub const SPARSE_INPUT_ROWS: usize = 128;

/// Buffer lengths (in elements) of a [`Workspace`]; see [`Mlp::workspace_layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceLayout {
    /// f32 inputs: [capacity, inputs].
    pub inputs: usize,
    /// u8 labels: [capacity].
    pub labels: usize,
    /// f32 output of each dense layer: [capacity, widths[i+1]].
    pub activations: Vec<usize>,
    /// f32 dropout mask of each hidden layer: [capacity, hidden[i]].
    pub masks: Vec<usize>,
    /// Each of the two f32 gradient ping-pong buffers: [capacity, max width after the input].
    pub grad: usize,
    /// f32 loss gradient at each dense layer's output (private training): [capacity, widths[i+1]].
    pub deltas: Vec<usize>,
    /// f32 per-example gradient norm or clip factor: [capacity].
    pub example_scales: usize,
    /// A layer stack's buffers (activations, convolution buffers, masks, gradients); the MLP's
    /// fields above other than `inputs` and `labels` are then empty.
    pub stack: Option<StackWorkspaceLayout>,
    /// Bytes of the index of the chunk's nonzero pixels (0 where it is not used).
    pub nonzero_index: u64,
}

impl WorkspaceLayout {
    /// Bytes the workspace occupies (saturating: an estimate must not wrap around).
    pub fn bytes(&self) -> u64 {
        let fixed = [self.inputs, self.grad, self.grad, self.example_scales];
        let per_layer = [&self.activations, &self.masks, &self.deltas];
        f32_bytes(fixed.iter().chain(per_layer.into_iter().flatten()))
            .saturating_add(self.labels as u64)
            .saturating_add(self.stack.as_ref().map_or(0, StackWorkspaceLayout::bytes))
            .saturating_add(self.nonzero_index)
    }
}

impl Workspace {
    /// Bytes the buffers really hold (their allocated capacities), to check
    /// [`WorkspaceLayout::bytes`] against.
    pub fn allocated_bytes(&self) -> u64 {
        let fixed = [
            &self.inputs,
            &self.grad_output,
            &self.grad_input,
            &self.example_scales,
        ];
        let per_layer = [&self.activations, &self.masks, &self.deltas];
        let stack = self.stack.as_ref();
        allocated_f32_bytes(fixed.into_iter().chain(per_layer.into_iter().flatten()))
            + self.labels.capacity() as u64
            + stack.map_or(0, StackWorkspace::allocated_bytes)
            + self
                .nonzeros
                .as_ref()
                .map_or(0, SparseRows::allocated_bytes)
    }

    /// After [`Mlp::example_gradient_norms_sq`]: each example's squared gradient norm, [rows].
    pub fn example_norms_sq(&self, rows: usize) -> &[f32] {
        &self.example_scales[..rows]
    }

    /// The logits of the last forward pass: [rows, outputs].
    pub fn logits(&self, rows: usize, outputs: usize) -> &[f32] {
        if let Some(stack) = &self.stack {
            return &stack.logits[..rows * outputs];
        }
        &self.activations[self.activations.len() - 1][..rows * outputs]
    }
}

impl Mlp {
    /// The network of a validated architecture (see [`Mlp::try_new`] for one that may not fit).
    pub fn new(architecture: Architecture) -> Self {
        match Mlp::try_new(architecture) {
            Ok(mlp) => mlp,
            Err(message) => panic!("architecture used without validation: {message}"),
        }
    }

    /// The network, or why its layer list does not fit the input (naming the layer).
    pub fn try_new(architecture: Architecture) -> Result<Self, String> {
        if let Some(stack) = architecture.sequential() {
            return Ok(Mlp {
                architecture,
                layers: Vec::new(),
                stack: Some(stack?),
            });
        }
        let layers = architecture.dense_layouts();
        Ok(Mlp {
            architecture,
            layers,
            stack: None,
        })
    }

    pub fn parameter_count(&self) -> usize {
        self.architecture.parameter_count()
    }

    /// Fresh parameters: Glorot-uniform weights, zero biases, from `seed`.
    pub fn initial_parameters(&self, seed: u64) -> Vec<f32> {
        if let Some(stack) = &self.stack {
            return stack.initial_parameters(seed);
        }
        let mut params = vec![0.0; self.parameter_count()];
        for (index, layer) in self.layers.iter().enumerate() {
            let mut rng = stream(seed, Stream::Init, index as u64, 0);
            layer.initialize(&mut params, &mut rng);
        }
        params
    }

    /// The buffer lengths of a workspace for `capacity` rows: what [`Mlp::workspace`] allocates,
    /// and what memory estimates count before allocating.
    pub fn workspace_layout(&self, capacity: usize) -> WorkspaceLayout {
        let rows_of = |width: usize| capacity.saturating_mul(width);
        if let Some(stack) = &self.stack {
            return WorkspaceLayout {
                inputs: rows_of(self.architecture.inputs),
                labels: capacity,
                activations: Vec::new(),
                masks: Vec::new(),
                grad: 0,
                deltas: Vec::new(),
                example_scales: capacity,
                stack: Some(stack.workspace_layout(capacity)),
                nonzero_index: 0,
            };
        }
        let widths = self.architecture.widths();
        let max_width = widths[1..].iter().copied().max().unwrap_or(0);
        WorkspaceLayout {
            inputs: rows_of(self.architecture.inputs),
            labels: capacity,
            activations: widths[1..].iter().map(|&w| rows_of(w)).collect(),
            masks: self
                .architecture
                .hidden
                .iter()
                .map(|&w| rows_of(w))
                .collect(),
            grad: rows_of(max_width),
            deltas: widths[1..].iter().map(|&w| rows_of(w)).collect(),
            example_scales: capacity,
            stack: None,
            nonzero_index: if capacity <= SPARSE_INPUT_ROWS {
                SparseRows::bytes_for(capacity, self.architecture.inputs)
            } else {
                0
            },
        }
    }

    pub fn workspace(&self, capacity: usize) -> Workspace {
        let zeros = |len: usize| vec![0.0; len];
        let layout = self.workspace_layout(capacity);
        Workspace {
            capacity,
            inputs: zeros(layout.inputs),
            labels: vec![0; layout.labels],
            activations: layout.activations.iter().map(|&len| zeros(len)).collect(),
            masks: layout.masks.iter().map(|&len| zeros(len)).collect(),
            grad_output: zeros(layout.grad),
            grad_input: zeros(layout.grad),
            deltas: layout.deltas.iter().map(|&len| zeros(len)).collect(),
            example_scales: zeros(layout.example_scales),
            stack: self.stack.as_ref().map(|stack| stack.workspace(capacity)),
            nonzeros: (layout.nonzero_index > 0)
                .then(|| SparseRows::new(capacity, self.architecture.inputs)),
        }
    }

    /// Runs the first `rows` rows of `workspace.inputs` through the network. With `dropout_rng`,
    /// dropout is active (training); without it the network is deterministic (inference).
    /// inputs: [rows, 784] -> logits: [rows, 10]
    pub fn forward(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        dropout_rng: Option<&mut Rng>,
    ) {
        self.forward_from(params, workspace, rows, dropout_rng, false);
    }

    /// [`Mlp::forward`]; with `sparse_inputs`, the first layer reads the nonzeros
    /// [`Mlp::index_inputs`] indexed for these rows.
    fn forward_from(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        mut dropout_rng: Option<&mut Rng>,
        sparse_inputs: bool,
    ) {
        if let (Some(stack), Some(buffers)) = (&self.stack, &mut workspace.stack) {
            stack.forward(params, &workspace.inputs, buffers, rows, dropout_rng);
            return;
        }
        let rate = self.architecture.dropout;
        let last = self.layers.len() - 1;
        for (index, layer) in self.layers.iter().enumerate() {
            let (before, after) = workspace.activations.split_at_mut(index);
            let input: &[f32] = if index == 0 {
                &workspace.inputs[..rows * layer.inputs]
            } else {
                &before[index - 1][..rows * layer.inputs]
            };
            let output = &mut after[0][..rows * layer.outputs];
            let output_view = rows_view_mut(output, rows, layer.outputs);
            match (&workspace.nonzeros, index == 0 && sparse_inputs) {
                (Some(nonzeros), true) => layer.forward_sparse(params, nonzeros, output_view),
                _ => layer.forward(params, rows_view(input, rows, layer.inputs), output_view),
            }
            if index < last {
                relu_forward(output);
                if let (Some(rng), true) = (dropout_rng.as_deref_mut(), rate > 0.0) {
                    let mask = &mut workspace.masks[index][..rows * layer.outputs];
                    dropout_forward(output, mask, rate, rng);
                }
            }
        }
    }

    /// Backpropagates from the logits' gradient (already in the workspace, see
    /// [`Mlp::train_chunk`]) and adds every parameter's gradient into `grads` (or overwrites
    /// them when `accumulate` is false). Public for benchmarks; training calls it through
    /// `train_chunk`. MLP only: a stack runs backward pass by pass inside `train_chunk`.
    pub fn backward(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        grads: &mut [f32],
        dropout: bool,
        accumulate: bool,
    ) {
        let pass = (dropout, accumulate, false);
        self.backward_from(params, workspace, rows, grads, pass);
    }

    /// [`Mlp::backward`]; `(dropout, accumulate, sparse_inputs)`, where `sparse_inputs` has the
    /// first layer read the nonzeros [`Mlp::index_inputs`] indexed for these rows.
    fn backward_from(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        grads: &mut [f32],
        (dropout, accumulate, sparse_inputs): (bool, bool, bool),
    ) {
        assert!(
            self.stack.is_none(),
            "Mlp::backward is for the MLP; a layer stack trains through train_chunk"
        );
        for (index, layer) in self.layers.iter().enumerate().rev() {
            let grad_y = rows_view(&workspace.grad_output, rows, layer.outputs);
            if index == 0 {
                match (&workspace.nonzeros, sparse_inputs) {
                    (Some(nonzeros), true) => {
                        layer.backward_sparse(nonzeros, grad_y, grads, accumulate)
                    }
                    _ => {
                        let x = rows_view(&workspace.inputs, rows, layer.inputs);
                        layer.backward_into(params, x, grad_y, grads, None, accumulate);
                    }
                }
                break;
            }
            let below = index - 1;
            let x_slice = &workspace.activations[below][..rows * layer.inputs];
            let grad_x = &mut workspace.grad_input[..rows * layer.inputs];
            layer.backward_into(
                params,
                rows_view(x_slice, rows, layer.inputs),
                grad_y,
                grads,
                Some(rows_view_mut(grad_x, rows, layer.inputs)),
                accumulate,
            );
            // Back through the hidden layer's dropout and ReLU.
            if dropout {
                dropout_backward(&workspace.masks[below][..rows * layer.inputs], grad_x);
            }
            relu_backward(x_slice, grad_x);
            std::mem::swap(&mut workspace.grad_output, &mut workspace.grad_input);
        }
    }

    /// The gradient of class `class`'s logit with respect to the inputs, in inference mode (no
    /// dropout), for the first `rows` rows of `workspace.inputs`. No parameter gradients are
    /// computed. inputs: [rows, 784] -> ∂logit[class]/∂inputs: [rows, 784] in `grad_inputs`
    pub fn input_gradient(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        class: usize,
        grad_inputs: &mut [f32],
    ) {
        if let (Some(stack), Some(buffers)) = (&self.stack, &mut workspace.stack) {
            let mut scratch = vec![0.0; stack.parameter_count];
            stack.input_gradient(
                params,
                &workspace.inputs,
                buffers,
                rows,
                class,
                &mut scratch,
                grad_inputs,
            );
            return;
        }
        self.forward(params, workspace, rows, None);
        let outputs = self.architecture.outputs;
        // ∂logit[class]/∂logits is the one-hot row of `class`.
        let one_hot = &mut workspace.grad_output[..rows * outputs];
        one_hot.fill(0.0);
        for row in one_hot.chunks_exact_mut(outputs) {
            row[class] = 1.0;
        }
        for (index, layer) in self.layers.iter().enumerate().rev() {
            let grad_y = rows_view(&workspace.grad_output, rows, layer.outputs);
            if index == 0 {
                let grad_x = &mut grad_inputs[..rows * layer.inputs];
                layer.backward_input(params, grad_y, rows_view_mut(grad_x, rows, layer.inputs));
                break;
            }
            let grad_x = &mut workspace.grad_input[..rows * layer.inputs];
            layer.backward_input(params, grad_y, rows_view_mut(grad_x, rows, layer.inputs));
            relu_backward(
                &workspace.activations[index - 1][..rows * layer.inputs],
                grad_x,
            );
            std::mem::swap(&mut workspace.grad_output, &mut workspace.grad_input);
        }
    }

    /// Forward with dropout, loss and backward on the first `rows` rows of the workspace; the
    /// gradients go to `gradient`. Returns (loss sum, correct).
    pub fn train_chunk(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        dropout_rng: &mut Rng,
        gradient: GradientSink,
    ) -> (f64, usize) {
        if let (Some(stack), Some(buffers)) = (&self.stack, &mut workspace.stack) {
            let (inputs, labels) = (&workspace.inputs, &workspace.labels);
            let chunk = (&inputs[..], &labels[..], rows);
            return stack.train_chunk(params, chunk, buffers, dropout_rng, gradient);
        }
        let sparse_inputs = Self::index_inputs(workspace, rows);
        self.forward_from(params, workspace, rows, Some(dropout_rng), sparse_inputs);
        let outputs = self.architecture.outputs;
        let last = self.layers.len() - 1;
        let (loss_sum, correct) = softmax_cross_entropy(
            &workspace.activations[last][..rows * outputs],
            &workspace.labels[..rows],
            outputs,
            gradient.scale,
            Some(&mut workspace.grad_output[..rows * outputs]),
        );
        let dropout = self.architecture.dropout > 0.0;
        let pass = (dropout, gradient.accumulate, sparse_inputs);
        self.backward_from(params, workspace, rows, gradient.grads, pass);
        (loss_sum, correct)
    }

    /// Indexes the nonzero pixels of the first `rows` rows of the inputs, where the workspace
    /// has an index; returns whether it did.
    fn index_inputs(workspace: &mut Workspace, rows: usize) -> bool {
        match &mut workspace.nonzeros {
            Some(nonzeros) => {
                nonzeros.index(&workspace.inputs, rows);
                true
            }
            None => false,
        }
    }

    /// [`Mlp::train_chunk`] for private training (DP-SGD with ghost clipping): each example's
    /// gradient is clipped to norm `clip_norm` before the sum, i.e. `grads` (+)= `scale` ·
    /// Σ_i min(1, C/‖g_i‖)·g_i. Per-example norms come from the layers' δ and inputs
    /// ([`Mlp::example_gradient_norms_sq`]), so no per-example gradient is formed, and the
    /// clipped sum is the usual GEMM xᵀ·(diag(c)·δ). A layer stack clips the same way
    /// ([`Sequential::train_chunk_clipped`]; its convolutions form each example's small weight
    /// gradient for the norm).
    pub fn train_chunk_clipped(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        clip_norm: f32,
        dropout_rng: &mut Rng,
        gradient: GradientSink,
    ) -> (f64, usize) {
        if let (Some(stack), Some(buffers)) = (&self.stack, &mut workspace.stack) {
            let chunk = (&workspace.inputs[..], &workspace.labels[..], rows);
            let clip = (clip_norm, gradient);
            return stack.train_chunk_clipped(params, chunk, buffers, dropout_rng, clip);
        }
        let (loss_sum, correct) =
            self.example_gradient_norms_sq(params, workspace, rows, dropout_rng);
        // Taken out of the workspace while the layers' buffers are borrowed; put back below.
        let mut example_scales = std::mem::take(&mut workspace.example_scales);
        let scales = &mut example_scales[..rows];
        clip_factors(scales, clip_norm, gradient.scale);
        for (index, layer) in self.layers.iter().enumerate() {
            let delta = &mut workspace.deltas[index][..rows * layer.outputs];
            scale_rows(delta, layer.outputs, scales);
            let x = self.layer_input(workspace, index, rows);
            let delta = rows_view(&workspace.deltas[index], rows, layer.outputs);
            layer.backward_into(params, x, delta, gradient.grads, None, gradient.accumulate);
        }
        workspace.example_scales = example_scales;
        (loss_sum, correct)
    }

    /// Forward with dropout, loss, and the backward pass without parameter gradients: leaves
    /// every layer's δ in the workspace and each example's squared gradient norm ‖g_i‖² (of its
    /// unscaled loss) in [`Workspace::example_norms_sq`]. Returns (loss sum, correct).
    pub fn example_gradient_norms_sq(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
        dropout_rng: &mut Rng,
    ) -> (f64, usize) {
        if let (Some(stack), Some(buffers)) = (&self.stack, &mut workspace.stack) {
            let chunk = (&workspace.inputs[..], &workspace.labels[..], rows);
            let norms_sq = &mut workspace.example_scales[..rows];
            return stack.example_gradient_norms_sq(params, chunk, buffers, dropout_rng, norms_sq);
        }
        self.forward(params, workspace, rows, Some(dropout_rng));
        let outputs = self.architecture.outputs;
        let last = self.layers.len() - 1;
        let dropout = self.architecture.dropout > 0.0;
        // δ of the logits: the unscaled per-example loss gradient.
        let (loss_sum, correct) = softmax_cross_entropy(
            &workspace.activations[last][..rows * outputs],
            &workspace.labels[..rows],
            outputs,
            1.0,
            Some(&mut workspace.deltas[last][..rows * outputs]),
        );
        // δ of every hidden layer, top down.
        for index in (1..=last).rev() {
            let layer = &self.layers[index];
            let (below, above) = workspace.deltas.split_at_mut(index);
            let grad_x = &mut below[index - 1][..rows * layer.inputs];
            layer.backward_input(
                params,
                rows_view(&above[0], rows, layer.outputs),
                rows_view_mut(grad_x, rows, layer.inputs),
            );
            if dropout {
                dropout_backward(&workspace.masks[index - 1][..rows * layer.inputs], grad_x);
            }
            relu_backward(
                &workspace.activations[index - 1][..rows * layer.inputs],
                grad_x,
            );
        }
        let mut norms_sq = std::mem::take(&mut workspace.example_scales);
        norms_sq[..rows].fill(0.0);
        for (index, layer) in self.layers.iter().enumerate() {
            let x = self.layer_input(workspace, index, rows);
            let delta = rows_view(&workspace.deltas[index], rows, layer.outputs);
            layer.add_example_gradient_norms_sq(x, delta, &mut norms_sq[..rows]);
        }
        workspace.example_scales = norms_sq;
        (loss_sum, correct)
    }

    /// The input of dense layer `index` in the last forward pass: [rows, layer inputs].
    fn layer_input<'w>(
        &self,
        workspace: &'w Workspace,
        index: usize,
        rows: usize,
    ) -> ArrayView2<'w, f32> {
        let inputs = self.layers[index].inputs;
        let buffer = if index == 0 {
            &workspace.inputs
        } else {
            &workspace.activations[index - 1]
        };
        rows_view(buffer, rows, inputs)
    }

    /// Inference on the first `rows` rows: (loss sum, correct). Logits stay in the workspace.
    pub fn eval_chunk(
        &self,
        params: &[f32],
        workspace: &mut Workspace,
        rows: usize,
    ) -> (f64, usize) {
        self.forward(params, workspace, rows, None);
        let outputs = self.architecture.outputs;
        softmax_cross_entropy(
            workspace.logits(rows, outputs),
            &workspace.labels[..rows],
            outputs,
            0.0,
            None,
        )
    }
}
