//! The MLP as a [`Differentiable`] network: its trained parameters plus inference-mode forward
//! and input-gradient passes (no dropout).

use ndarray::{Array2, ArrayView2};

use crate::explain::Differentiable;
use crate::nn::Mlp;

/// An MLP together with its trained parameters.
pub struct TrainedMlp<'a> {
    mlp: Mlp,
    params: &'a [f32],
}

impl<'a> TrainedMlp<'a> {
    pub fn new(mlp: Mlp, params: &'a [f32]) -> Self {
        TrainedMlp { mlp, params }
    }

    /// A workspace holding `x` as its inputs. x: [rows, inputs]
    fn workspace_with(&self, x: ArrayView2<f32>) -> crate::nn::Workspace {
        let mut workspace = self.mlp.workspace(x.nrows());
        for (slot, &value) in workspace.inputs.iter_mut().zip(x.iter()) {
            *slot = value;
        }
        workspace
    }
}

impl Differentiable for TrainedMlp<'_> {
    fn input_len(&self) -> usize {
        self.mlp.architecture.inputs
    }

    fn classes(&self) -> usize {
        self.mlp.architecture.outputs
    }

    // x: [rows, 784] -> logits: [rows, 10]
    fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let rows = x.nrows();
        let classes = self.classes();
        let mut workspace = self.workspace_with(x);
        self.mlp.forward(self.params, &mut workspace, rows, None);
        Array2::from_shape_vec((rows, classes), workspace.logits(rows, classes).to_vec())
            .expect("the workspace holds rows × classes logits")
    }

    // x: [rows, 784] -> ∂logit[class]/∂x: [rows, 784]
    fn input_gradient(&self, x: ArrayView2<f32>, class: usize) -> Array2<f32> {
        let rows = x.nrows();
        let mut workspace = self.workspace_with(x);
        let mut gradient = Array2::zeros((rows, self.input_len()));
        let out = gradient
            .as_slice_mut()
            .expect("a fresh array is contiguous");
        self.mlp
            .input_gradient(self.params, &mut workspace, rows, class, out);
        gradient
    }
}
