//! Differentially private SGD (Abadi et al. 2016): every example's gradient is clipped to norm C
//! (cheaply, from per-layer norms: [`clipping`]), Gaussian noise of standard deviation σ·C is
//! added to the sum ([`noise`]), each step trains on a Poisson sample of the data ([`sampling`]),
//! and the [`accountant`] turns (sampling rate, σ, steps, δ) into the (ε, δ) guarantee.

pub mod accountant;

pub use accountant::{noise_multiplier_for_epsilon, SampledGaussian, ACCOUNTANT};
