//! The two one-gradient methods.
//!
//! - **Saliency** (Simonyan et al. 2013): |∂score/∂pixel|. How sensitive the score is to each
//!   pixel at this very image; never negative, and blind to whether the pixel is lit.
//! - **Input × gradient** (Shrikumar et al. 2016): pixel ⊙ ∂score/∂pixel. The first-order share
//!   of each pixel in the score; zero on black pixels, signed.

use crate::explain::{single_row, Differentiable};

/// `∂logit[target]/∂pixel` for one image. `pixels: [len] -> [len]`
pub fn gradient(model: &dyn Differentiable, pixels: &[f32], target: usize) -> Vec<f32> {
    model
        .input_gradient(single_row(pixels), target)
        .into_raw_vec_and_offset()
        .0
}

/// `|∂logit[target]/∂pixel|`. `pixels: [len] -> [len]`
pub fn saliency(model: &dyn Differentiable, pixels: &[f32], target: usize) -> Vec<f32> {
    gradient(model, pixels, target)
        .into_iter()
        .map(f32::abs)
        .collect()
}

/// `pixel · ∂logit[target]/∂pixel`. `pixels: [len] -> [len]`
pub fn input_x_gradient(model: &dyn Differentiable, pixels: &[f32], target: usize) -> Vec<f32> {
    gradient(model, pixels, target)
        .into_iter()
        .zip(pixels)
        // + 0.0 turns the −0 of an unlit pixel's negative gradient into a plain 0.
        .map(|(g, &p)| g * p + 0.0)
        .collect()
}
