//! A sequential stack of layers (`--layers`, `--arch cnn`) over one flat parameter buffer.
//!
//! Activations are channels-last (`[rows, height, width, channels]`), so `flatten` moves no data.
//! ReLU and dropout work in place on the buffer of the layer before them; convolution, pooling
//! and dense layers own their output buffers. A chunk of rows is run in passes of at most
//! [`ROWS_PER_PASS`] rows, which bounds the memory a workspace needs (convolution buffers are large)
//! and keeps the passes' working sets near the cache; the pass split depends only on the chunk
//! size, so results do not depend on threads.

use crate::kernels::{relu_backward, relu_forward};
use crate::nn::conv2d::Conv2d;
use crate::nn::dense::{rows_view, rows_view_mut, Dense};
use crate::nn::dropout::{dropout_backward, dropout_forward};
use crate::nn::layer_spec::{plan_shapes, LayerSpec, Shape};
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::max_pool::MaxPool;
use crate::nn::{allocated_f32_bytes, f32_bytes, GradientSink};
use crate::optim::privacy::clipping::clip_factors;
use crate::rng::{stream, Rng, Stream};

/// Rows per forward/backward pass. For 8 MNIST images conv2's Winograd tiles and products take
/// 1.8 MB (8 · 36 tiles · 16 positions · (32 + 64) channels), near the L2 cache; passes of 16
/// rows made an epoch about 10% slower (Zen 4, 2 threads).
pub const ROWS_PER_PASS: usize = 8;

/// One layer with its shapes and parameter ranges resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    Conv(Conv2d),
    Relu,
    MaxPool(MaxPool),
    Flatten,
    Dropout { rate: f32 },
    Dense(Dense),
}

impl Layer {
    /// Whether the layer writes a new buffer (the others work in place or move nothing).
    fn owns_output(&self) -> bool {
        matches!(self, Layer::Conv(_) | Layer::MaxPool(_) | Layer::Dense(_))
    }
}

/// A planned stack: every layer's shapes and place in the flat parameter buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    pub specs: Vec<LayerSpec>,
    pub layers: Vec<Layer>,
    /// (input, output) shape of every layer.
    pub shapes: Vec<(Shape, Shape)>,
    pub inputs: usize,
    pub outputs: usize,
    pub parameter_count: usize,
    /// Where each layer reads its input (see [`Sequential::sources`]).
    sources: Vec<Source>,
    /// The buffer holding the logits after a pass.
    logits_source: Source,
}

/// Per-pass buffers for a [`Sequential`].
#[derive(Debug, Clone)]
pub struct StackWorkspace {
    pass_rows: usize,
    /// Output of each layer that owns one (empty for in-place layers): [pass_rows, out_len].
    outputs: Vec<Vec<f32>>,
    /// What each convolution's forward leaves for backward ([`Conv2d::col_len`]).
    cols: Vec<Vec<f32>>,
    /// Dropout masks, [pass_rows, len].
    masks: Vec<Vec<f32>>,
    /// The input of the first layer when it works in place (a copy, so inputs stay intact).
    input_copy: Vec<f32>,
    grad_output: Vec<f32>,
    grad_input: Vec<f32>,
    /// A convolution's backward scratch ([`Conv2d::scratch_len`]).
    grad_col: Vec<f32>,
    /// Logits of every row of the chunk: [capacity, outputs].
    pub logits: Vec<f32>,
    /// Private training: the pass's unscaled loss gradient at the logits, [pass_rows, outputs];
    /// each example's squared gradient norm, then its clip factor, [pass_rows]; and scratch for
    /// one example's convolution gradient ([`Conv2d::norm_scratch_len`]).
    logit_grads: Vec<f32>,
    example_scales: Vec<f32>,
    norm_scratch: Vec<f32>,
}

/// What a backward pass computes besides the gradients it carries down.
enum BackwardTarget<'a> {
    /// Parameter gradients, added into (or, with `accumulate` false, written to) the buffer.
    Gradients {
        grads: &'a mut [f32],
        accumulate: bool,
    },
    /// Each example's squared parameter-gradient norm, added to `workspace.example_scales`.
    ExampleNorms,
}

/// Buffer lengths (in f32 values) of a [`StackWorkspace`]; see [`Sequential::workspace_layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackWorkspaceLayout {
    /// Rows per forward/backward pass: min(capacity, [`ROWS_PER_PASS`]).
    pub pass_rows: usize,
    /// Output of each layer that owns one (0 for in-place layers): [pass_rows, out_len].
    pub outputs: Vec<usize>,
    /// What each convolution's forward leaves for backward (0 for other layers).
    pub cols: Vec<usize>,
    /// Dropout masks (0 for other layers): [pass_rows, len].
    pub masks: Vec<usize>,
    /// A copy of the input when the first layer works in place: [pass_rows, inputs].
    pub input_copy: usize,
    /// Each of the two gradient ping-pong buffers: [pass_rows, largest layer input or output].
    pub grad: usize,
    /// A convolution's backward scratch: the largest [`Conv2d::scratch_len`].
    pub grad_col: usize,
    /// Logits of every row of a chunk: [capacity, outputs].
    pub logits: usize,
    /// Private training: the pass's unscaled loss gradient at the logits: [pass_rows, outputs].
    pub logit_grads: usize,
    /// Private training: each example's squared gradient norm, then clip factor: [pass_rows].
    pub example_scales: usize,
    /// Private training: one example's convolution gradient (the largest convolution's).
    pub norm_scratch: usize,
}

impl StackWorkspaceLayout {
    /// Bytes the workspace occupies (saturating).
    pub fn bytes(&self) -> u64 {
        let fixed = [
            self.input_copy,
            self.grad,
            self.grad,
            self.grad_col,
            self.logits,
            self.logit_grads,
            self.example_scales,
            self.norm_scratch,
        ];
        let per_layer = [&self.outputs, &self.cols, &self.masks];
        f32_bytes(fixed.iter().chain(per_layer.into_iter().flatten()))
    }
}

impl StackWorkspace {
    /// Bytes the buffers really hold (their allocated capacities), to check the layout against.
    pub fn allocated_bytes(&self) -> u64 {
        let per_layer = [&self.outputs, &self.cols, &self.masks];
        allocated_f32_bytes(
            [
                &self.input_copy,
                &self.grad_output,
                &self.grad_input,
                &self.grad_col,
            ]
            .into_iter()
            .chain([&self.logits, &self.logit_grads])
            .chain([&self.example_scales, &self.norm_scratch])
            .chain(per_layer.into_iter().flatten()),
        )
    }
}

/// The first `len` values of `source`'s buffer among (network input, input copy, layer outputs);
/// the workspace's other buffers stay free to borrow mutably.
fn read_source<'a>(
    source: Source,
    (input, input_copy, outputs): (&'a [f32], &'a [f32], &'a [Vec<f32>]),
    len: usize,
) -> &'a [f32] {
    match source {
        Source::Input => &input[..len],
        Source::InputCopy => &input_copy[..len],
        Source::Layer(layer) => &outputs[layer][..len],
    }
}

/// Where a layer reads its input from: the network input or an earlier layer's buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Input,
    InputCopy,
    Layer(usize),
}

impl Sequential {
    /// Plans `specs` on `input`-shaped examples ending in `outputs` classes; the error names the
    /// layer that does not fit.
    pub fn new(specs: &[LayerSpec], input: Shape, outputs: usize) -> Result<Self, String> {
        let shapes = plan_shapes(specs, input, outputs)?;
        let mut offset = 0;
        let mut take = |len: usize| {
            let range = offset..offset + len;
            offset += len;
            range
        };
        let layers = specs
            .iter()
            .zip(&shapes)
            .map(
                |(spec, &(shape_in, shape_out))| match (*spec, shape_in.image()) {
                    (LayerSpec::Conv { filters, kernel }, Some((height, width, channels))) => {
                        let weights = take(kernel * kernel * channels * filters);
                        let bias = take(filters);
                        Layer::Conv(Conv2d {
                            in_height: height,
                            in_width: width,
                            in_channels: channels,
                            filters,
                            kernel,
                            weights,
                            bias,
                        })
                    }
                    (LayerSpec::MaxPool { size }, Some((height, width, channels))) => {
                        Layer::MaxPool(MaxPool {
                            in_height: height,
                            in_width: width,
                            channels,
                            size,
                        })
                    }
                    (LayerSpec::Dense { units }, _) => {
                        let inputs = shape_in.len();
                        let weights = take(inputs * units);
                        let bias = take(units);
                        Layer::Dense(Dense {
                            inputs,
                            outputs: units,
                            weights,
                            bias,
                        })
                    }
                    (LayerSpec::Relu, _) => Layer::Relu,
                    (LayerSpec::Dropout { rate }, _) => Layer::Dropout { rate },
                    // plan_shapes accepted it, so only flatten is left (conv and pool had images).
                    _ => {
                        debug_assert_eq!(shape_out, Shape::Flat(shape_in.len()));
                        Layer::Flatten
                    }
                },
            )
            .collect();
        let mut network = Sequential {
            specs: specs.to_vec(),
            layers,
            shapes,
            inputs: input.len(),
            outputs,
            parameter_count: offset,
            sources: Vec::new(),
            logits_source: Source::Input,
        };
        network.sources = network.sources();
        let last = network.layers.len() - 1;
        network.logits_source = if network.layers[last].owns_output() {
            Source::Layer(last)
        } else {
            network.sources[last]
        };
        Ok(network)
    }

    /// Fresh parameters: Glorot-uniform weights and zero biases; the n-th layer with parameters
    /// draws from init stream n (as the MLP does, so the MLP written as a stack starts the same).
    pub fn initial_parameters(&self, seed: u64) -> Vec<f32> {
        let mut params = vec![0.0; self.parameter_count];
        let mut index = 0u64;
        for layer in &self.layers {
            match layer {
                Layer::Conv(conv) => {
                    conv.initialize(&mut params, &mut stream(seed, Stream::Init, index, 0))
                }
                Layer::Dense(dense) => {
                    dense.initialize(&mut params, &mut stream(seed, Stream::Init, index, 0))
                }
                _ => continue,
            }
            index += 1;
        }
        params
    }

    /// The buffer lengths (in f32 values) of a workspace for chunks of up to `capacity` rows:
    /// what [`Sequential::workspace`] allocates, and what memory estimates count before
    /// allocating (saturating: an estimate must not wrap around).
    pub fn workspace_layout(&self, capacity: usize) -> StackWorkspaceLayout {
        let pass_rows = capacity.clamp(1, ROWS_PER_PASS);
        let rows_of = |len: usize| pass_rows.saturating_mul(len);
        let out_len = |index: usize| self.shapes[index].1.len();
        let per_layer = |len: &dyn Fn(usize, &Layer) -> Option<usize>| -> Vec<usize> {
            self.layers
                .iter()
                .enumerate()
                .map(|(index, layer)| len(index, layer).map_or(0, rows_of))
                .collect()
        };
        let outputs = per_layer(&|index, layer| layer.owns_output().then(|| out_len(index)));
        let cols: Vec<usize> = self
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::Conv(conv) => conv.col_len(pass_rows),
                _ => 0,
            })
            .collect();
        let conv_scratch = self
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::Conv(conv) => conv.scratch_len(pass_rows),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let masks = per_layer(&|index, layer| {
            matches!(layer, Layer::Dropout { .. }).then(|| out_len(index))
        });
        let max_len = self
            .shapes
            .iter()
            .map(|&(shape_in, shape_out)| shape_in.len().max(shape_out.len()))
            .max()
            .unwrap_or(0);
        let norm_scratch = self
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::Conv(conv) => conv.norm_scratch_len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        StackWorkspaceLayout {
            pass_rows,
            input_copy: if self.layers[0].owns_output() {
                0
            } else {
                rows_of(self.inputs)
            },
            grad: rows_of(max_len),
            grad_col: conv_scratch,
            logits: capacity.saturating_mul(self.outputs),
            outputs,
            cols,
            masks,
            logit_grads: rows_of(self.outputs),
            example_scales: pass_rows,
            norm_scratch,
        }
    }

    /// Buffers for chunks of up to `capacity` rows, as [`Sequential::workspace_layout`] lays
    /// them out.
    pub fn workspace(&self, capacity: usize) -> StackWorkspace {
        let layout = self.workspace_layout(capacity);
        let zeros = |len: usize| vec![0.0; len];
        let each = |lens: &[usize]| lens.iter().map(|&len| zeros(len)).collect();
        StackWorkspace {
            pass_rows: layout.pass_rows,
            outputs: each(&layout.outputs),
            cols: each(&layout.cols),
            masks: each(&layout.masks),
            input_copy: zeros(layout.input_copy),
            grad_output: zeros(layout.grad),
            grad_input: zeros(layout.grad),
            grad_col: zeros(layout.grad_col),
            logits: zeros(layout.logits),
            logit_grads: zeros(layout.logit_grads),
            example_scales: zeros(layout.example_scales),
            norm_scratch: zeros(layout.norm_scratch),
        }
    }

    /// Whether layer `index` is a ReLU right after a convolution, which then applies it in its
    /// product's last step (in place on the convolution's output either way).
    fn relu_done_by_conv(&self, index: usize) -> bool {
        index > 0
            && matches!(self.layers.get(index), Some(Layer::Relu))
            && matches!(self.layers[index - 1], Layer::Conv(_))
    }

    /// Whether layer `index` is a ReLU right before a max-pool, whose backward pass then does the
    /// ReLU's step too (the pool's input is the ReLU's output).
    fn relu_done_by_pool(&self, index: usize) -> bool {
        matches!(self.layers.get(index), Some(Layer::Relu))
            && matches!(self.layers.get(index + 1), Some(Layer::MaxPool(_)))
    }

    /// Where each layer reads its input, and where its output ends up.
    fn sources(&self) -> Vec<Source> {
        let mut current = Source::Input;
        let mut sources = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            if current == Source::Input && matches!(layer, Layer::Relu | Layer::Dropout { .. }) {
                current = Source::InputCopy;
            }
            sources.push(current);
            if layer.owns_output() {
                current = Source::Layer(index);
            }
        }
        sources
    }

    /// One pass forward over `input` (≤ pass_rows rows); the logits end in the last
    /// owning layer's buffer. Dropout is active when `dropout_rng` is given.
    fn forward_pass(
        &self,
        params: &[f32],
        input: &[f32],
        workspace: &mut StackWorkspace,
        mut dropout_rng: Option<&mut Rng>,
    ) {
        let rows = input.len() / self.inputs;
        let sources = &self.sources;
        if !workspace.input_copy.is_empty() {
            workspace.input_copy[..rows * self.inputs]
                .copy_from_slice(&input[..rows * self.inputs]);
        }
        for (index, layer) in self.layers.iter().enumerate() {
            let in_len = self.shapes[index].0.len();
            let out_len = self.shapes[index].1.len();
            if layer.owns_output() {
                let (before, after) = workspace.outputs.split_at_mut(index);
                let x: &[f32] = match sources[index] {
                    Source::Input => &input[..rows * in_len],
                    Source::InputCopy => &workspace.input_copy[..rows * in_len],
                    Source::Layer(source) => &before[source][..rows * in_len],
                };
                let y = &mut after[0][..rows * out_len];
                match layer {
                    // x: [rows, h, w, c] -> y: [rows, h-k+1, w-k+1, filters]
                    Layer::Conv(conv) => {
                        let relu = self.relu_done_by_conv(index + 1);
                        conv.forward_then(params, (x, rows), &mut workspace.cols[index], y, relu)
                    }
                    // x: [rows, h, w, c] -> y: [rows, h/p, w/p, c]
                    Layer::MaxPool(pool) => pool.forward(x, rows, y),
                    // x: [rows, in] -> y: [rows, out]
                    Layer::Dense(dense) => dense.forward(
                        params,
                        rows_view(x, rows, in_len),
                        rows_view_mut(y, rows, out_len),
                    ),
                    _ => unreachable!("only owning layers here"),
                }
                continue;
            }
            let values: &mut [f32] = match sources[index] {
                Source::Layer(source) => &mut workspace.outputs[source][..rows * out_len],
                _ => &mut workspace.input_copy[..rows * out_len],
            };
            match layer {
                Layer::Relu if self.relu_done_by_conv(index) => {}
                Layer::Relu => relu_forward(values),
                Layer::Dropout { rate } => {
                    if let (Some(rng), true) = (dropout_rng.as_deref_mut(), *rate > 0.0) {
                        dropout_forward(
                            values,
                            &mut workspace.masks[index][..rows * out_len],
                            *rate,
                            rng,
                        );
                    }
                }
                _ => {} // flatten: the NHWC buffer already is the flat vector
            }
        }
    }

    /// Backward over one pass from the logits' gradient in `workspace.grad_output`, computing
    /// what `target` asks for: the parameter gradients, or each example's squared gradient norm.
    #[allow(clippy::too_many_arguments)]
    fn backward_pass(
        &self,
        params: &[f32],
        input: &[f32],
        workspace: &mut StackWorkspace,
        rows: usize,
        mut target: BackwardTarget,
        dropout: bool,
        input_gradient: bool,
    ) {
        let sources = &self.sources;
        for (index, layer) in self.layers.iter().enumerate().rev() {
            let in_len = self.shapes[index].0.len();
            let out_len = self.shapes[index].1.len();
            // Whether anything below still needs a gradient (layers with parameters below, or
            // layers whose in-place step must still run).
            let need_grad_x = index > 0 || input_gradient;
            let ws = &mut *workspace;
            match layer {
                Layer::Conv(conv) => {
                    let x = read_source(
                        sources[index],
                        (input, &ws.input_copy, &ws.outputs),
                        rows * in_len,
                    );
                    let grad_y = &ws.grad_output[..rows * out_len];
                    let grad_x = need_grad_x.then(|| &mut ws.grad_input[..rows * in_len]);
                    match &mut target {
                        BackwardTarget::Gradients { grads, accumulate } => conv.backward(
                            params,
                            (x, &ws.cols[index]),
                            grad_y,
                            rows,
                            grads,
                            (grad_x, &mut ws.grad_col),
                            *accumulate,
                        ),
                        BackwardTarget::ExampleNorms => {
                            conv.add_example_gradient_norms_sq(
                                (x, &ws.cols[index]),
                                grad_y,
                                rows,
                                &mut ws.norm_scratch,
                                &mut ws.example_scales,
                            );
                            if let Some(grad_x) = grad_x {
                                conv.backward_input(
                                    params,
                                    &ws.cols[index],
                                    (grad_y, rows),
                                    (grad_x, &mut ws.grad_col),
                                );
                            }
                        }
                    }
                }
                Layer::MaxPool(pool) => {
                    let x = read_source(
                        sources[index],
                        (input, &ws.input_copy, &ws.outputs),
                        rows * in_len,
                    );
                    let pool_backward = if index > 0 && self.relu_done_by_pool(index - 1) {
                        MaxPool::backward_through_relu
                    } else {
                        MaxPool::backward
                    };
                    pool_backward(
                        pool,
                        x,
                        &ws.grad_output[..rows * out_len],
                        rows,
                        &mut ws.grad_input[..rows * in_len],
                    );
                }
                Layer::Dense(dense) => {
                    let x = read_source(
                        sources[index],
                        (input, &ws.input_copy, &ws.outputs),
                        rows * in_len,
                    );
                    let grad_y = rows_view(&ws.grad_output, rows, out_len);
                    let grad_x =
                        need_grad_x.then(|| rows_view_mut(&mut ws.grad_input, rows, in_len));
                    match &mut target {
                        BackwardTarget::Gradients { grads, accumulate } => dense.backward_into(
                            params,
                            rows_view(x, rows, in_len),
                            grad_y,
                            grads,
                            grad_x,
                            *accumulate,
                        ),
                        BackwardTarget::ExampleNorms => {
                            dense.add_example_gradient_norms_sq(
                                rows_view(x, rows, in_len),
                                grad_y,
                                &mut ws.example_scales[..rows],
                            );
                            if let Some(grad_x) = grad_x {
                                dense.backward_input(params, grad_y, grad_x);
                            }
                        }
                    }
                }
                Layer::Relu if self.relu_done_by_pool(index) => continue,
                Layer::Relu => {
                    let output = read_source(
                        sources[index],
                        (input, &ws.input_copy, &ws.outputs),
                        rows * out_len,
                    );
                    relu_backward(output, &mut ws.grad_output[..rows * out_len]);
                    continue;
                }
                Layer::Dropout { rate } => {
                    // A rate-0 layer drew no mask in forward (it is the identity).
                    if dropout && *rate > 0.0 {
                        dropout_backward(
                            &ws.masks[index][..rows * out_len],
                            &mut ws.grad_output[..rows * out_len],
                        );
                    }
                    continue;
                }
                Layer::Flatten => continue,
            }
            std::mem::swap(&mut workspace.grad_output, &mut workspace.grad_input);
        }
    }

    /// Copies a pass's logits to rows `start..start + count` of `workspace.logits`.
    fn copy_logits(&self, workspace: &mut StackWorkspace, start: usize, count: usize) {
        let len = count * self.outputs;
        let pass_logits = match self.logits_source {
            Source::Layer(index) => &workspace.outputs[index][..len],
            _ => &workspace.input_copy[..len],
        };
        workspace.logits[start * self.outputs..start * self.outputs + len]
            .copy_from_slice(pass_logits);
    }

    /// Inference on `rows` rows of `input` ([rows, inputs]); logits land in `workspace.logits`.
    pub fn forward(
        &self,
        params: &[f32],
        input: &[f32],
        workspace: &mut StackWorkspace,
        rows: usize,
        mut dropout_rng: Option<&mut Rng>,
    ) {
        let pass_rows = workspace.pass_rows;
        for start in (0..rows).step_by(pass_rows) {
            let count = pass_rows.min(rows - start);
            let pass_input = &input[start * self.inputs..(start + count) * self.inputs];
            self.forward_pass(params, pass_input, workspace, dropout_rng.as_deref_mut());
            self.copy_logits(workspace, start, count);
        }
    }

    /// The gradient of class `class`'s logit with respect to the input, in inference mode (no
    /// dropout), pass by pass; `scratch` takes the parameter gradients nobody reads.
    /// input: [rows, inputs] -> grad_inputs: [rows, inputs]
    #[allow(clippy::too_many_arguments)]
    pub fn input_gradient(
        &self,
        params: &[f32],
        input: &[f32],
        workspace: &mut StackWorkspace,
        rows: usize,
        class: usize,
        scratch: &mut [f32],
        grad_inputs: &mut [f32],
    ) {
        let pass_rows = workspace.pass_rows;
        for start in (0..rows).step_by(pass_rows) {
            let count = pass_rows.min(rows - start);
            let pass_input = &input[start * self.inputs..(start + count) * self.inputs];
            self.forward_pass(params, pass_input, workspace, None);
            // ∂logit[class]/∂logits is the one-hot row of `class`.
            let one_hot = &mut workspace.grad_output[..count * self.outputs];
            one_hot.fill(0.0);
            for row in one_hot.chunks_exact_mut(self.outputs) {
                row[class] = 1.0;
            }
            let target = BackwardTarget::Gradients {
                grads: scratch,
                accumulate: false,
            };
            self.backward_pass(params, pass_input, workspace, count, target, false, true);
            // After the first layer's step the input's gradient sits in grad_output.
            grad_inputs[start * self.inputs..(start + count) * self.inputs]
                .copy_from_slice(&workspace.grad_output[..count * self.inputs]);
        }
    }

    /// Forward with dropout, loss and backward on a chunk (input, labels, rows), pass by pass;
    /// the gradients go to `gradient`. Returns (loss sum, correct).
    pub fn train_chunk(
        &self,
        params: &[f32],
        (input, labels, rows): (&[f32], &[u8], usize),
        workspace: &mut StackWorkspace,
        dropout_rng: &mut Rng,
        gradient: GradientSink,
    ) -> (f64, usize) {
        let dropout = self.has_dropout();
        let pass_rows = workspace.pass_rows;
        let (mut loss_sum, mut correct) = (0.0, 0);
        for start in (0..rows).step_by(pass_rows) {
            let count = pass_rows.min(rows - start);
            let pass_input = &input[start * self.inputs..(start + count) * self.inputs];
            self.forward_pass(params, pass_input, workspace, Some(dropout_rng));
            self.copy_logits(workspace, start, count);
            let (pass_loss, pass_correct) = softmax_cross_entropy(
                &workspace.logits[start * self.outputs..(start + count) * self.outputs],
                &labels[start..start + count],
                self.outputs,
                gradient.scale,
                Some(&mut workspace.grad_output[..count * self.outputs]),
            );
            loss_sum += pass_loss;
            correct += pass_correct;
            let target = BackwardTarget::Gradients {
                grads: &mut *gradient.grads,
                accumulate: gradient.accumulate || start > 0,
            };
            self.backward_pass(params, pass_input, workspace, count, target, dropout, false);
        }
        (loss_sum, correct)
    }

    /// Whether any dropout layer is active in training.
    fn has_dropout(&self) -> bool {
        self.layers
            .iter()
            .any(|layer| matches!(layer, Layer::Dropout { rate } if *rate > 0.0))
    }

    /// [`Sequential::train_chunk`] for private training (DP-SGD): each example's gradient is
    /// clipped to norm `clip_norm` before the sum, i.e. `gradient` (+)= its scale ·
    /// Σ_i min(1, C/‖g_i‖)·g_i. Per pass: forward, a backward pass that carries the unscaled
    /// loss gradient down and adds up each example's squared gradient norm layer by layer
    /// (dense: ‖δ_i‖²·(‖x_i‖² + 1); convolution: the example's own weight gradient, see
    /// [`Conv2d::add_example_gradient_norms_sq`]), then the ordinary backward pass from the
    /// logits' gradient with example i's row multiplied by its clip factor (every layer's
    /// gradient is linear in it). Returns (loss sum, correct).
    pub fn train_chunk_clipped(
        &self,
        params: &[f32],
        chunk: (&[f32], &[u8], usize),
        workspace: &mut StackWorkspace,
        dropout_rng: &mut Rng,
        (clip_norm, gradient): (f32, GradientSink),
    ) -> (f64, usize) {
        let dropout = self.has_dropout();
        let outputs = self.outputs;
        let GradientSink {
            grads,
            scale,
            accumulate,
        } = gradient;
        let after_norms = |workspace: &mut StackWorkspace, pass_input: &[f32], start, count| {
            let scales = &mut workspace.example_scales[..count];
            clip_factors(scales, clip_norm, scale);
            let logit_rows = workspace.logit_grads[..count * outputs].chunks_exact(outputs);
            let scaled_rows = workspace.grad_output[..count * outputs].chunks_exact_mut(outputs);
            for ((scaled, unscaled), &factor) in scaled_rows.zip(logit_rows).zip(scales.iter()) {
                for (s, &u) in scaled.iter_mut().zip(unscaled) {
                    *s = factor * u;
                }
            }
            let target = BackwardTarget::Gradients {
                grads: &mut *grads,
                accumulate: accumulate || start > 0,
            };
            self.backward_pass(params, pass_input, workspace, count, target, dropout, false);
        };
        self.example_norm_passes(params, chunk, workspace, dropout_rng, after_norms)
    }

    /// Runs [`Sequential::example_gradient_norms_sq_pass`] on each pass of a chunk
    /// (input, labels, rows), then `after_norms(workspace, pass input, first row, rows)`.
    /// Returns (loss sum, correct).
    fn example_norm_passes(
        &self,
        params: &[f32],
        (input, labels, rows): (&[f32], &[u8], usize),
        workspace: &mut StackWorkspace,
        dropout_rng: &mut Rng,
        mut after_norms: impl FnMut(&mut StackWorkspace, &[f32], usize, usize),
    ) -> (f64, usize) {
        let pass_rows = workspace.pass_rows;
        let (mut loss_sum, mut correct) = (0.0, 0);
        for start in (0..rows).step_by(pass_rows) {
            let count = pass_rows.min(rows - start);
            let pass_input = &input[start * self.inputs..(start + count) * self.inputs];
            let (pass_loss, pass_correct) = self.example_gradient_norms_sq_pass(
                params,
                pass_input,
                &labels[start..start + count],
                workspace,
                start,
                count,
                dropout_rng,
            );
            loss_sum += pass_loss;
            correct += pass_correct;
            after_norms(workspace, pass_input, start, count);
        }
        (loss_sum, correct)
    }

    /// One pass of [`Sequential::train_chunk_clipped`] up to the clip factors: forward (logits to
    /// rows `start..start + count` of `workspace.logits`), the unscaled loss gradient kept in
    /// `workspace.logit_grads`, and each example's squared gradient norm in
    /// `workspace.example_scales`. Returns (loss sum, correct).
    #[allow(clippy::too_many_arguments)]
    fn example_gradient_norms_sq_pass(
        &self,
        params: &[f32],
        pass_input: &[f32],
        labels: &[u8],
        workspace: &mut StackWorkspace,
        start: usize,
        count: usize,
        dropout_rng: &mut Rng,
    ) -> (f64, usize) {
        let outputs = self.outputs;
        self.forward_pass(params, pass_input, workspace, Some(dropout_rng));
        self.copy_logits(workspace, start, count);
        let result = softmax_cross_entropy(
            &workspace.logits[start * outputs..(start + count) * outputs],
            labels,
            outputs,
            1.0,
            Some(&mut workspace.logit_grads[..count * outputs]),
        );
        workspace.grad_output[..count * outputs]
            .copy_from_slice(&workspace.logit_grads[..count * outputs]);
        workspace.example_scales[..count].fill(0.0);
        let dropout = self.has_dropout();
        let target = BackwardTarget::ExampleNorms;
        self.backward_pass(params, pass_input, workspace, count, target, dropout, false);
        result
    }

    /// Each example's squared gradient norm ‖g_i‖² (of its unscaled loss, dropout active) for
    /// a chunk (input, labels, rows), written to `norms_sq` ([rows]); what private training clips by.
    /// Returns (loss sum, correct).
    pub fn example_gradient_norms_sq(
        &self,
        params: &[f32],
        chunk: (&[f32], &[u8], usize),
        workspace: &mut StackWorkspace,
        dropout_rng: &mut Rng,
        norms_sq: &mut [f32],
    ) -> (f64, usize) {
        self.example_norm_passes(
            params,
            chunk,
            workspace,
            dropout_rng,
            |ws, _, start, count| {
                norms_sq[start..start + count].copy_from_slice(&ws.example_scales[..count]);
            },
        )
    }
}
