//! Element-wise loops over flat buffers, each compiled three times (AVX-512, AVX2, baseline) from
//! one plain-Rust body, and dispatched on the current [`Backend`](super::Backend).
//!
//! The bodies are written so the compiler vectorizes them: no branches (selects instead), no
//! early exits, slices of equal length. They use separate multiply and add (never fused), so every
//! backend, and every way of splitting a buffer between threads, gives bit-identical results.

use super::backend;
#[cfg(target_arch = "x86_64")]
use super::Backend;

/// Defines `pub fn $name(args)` whose body is compiled once per backend.
macro_rules! multiversion {
    ($(#[$attr:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }

            match backend() {
                // SAFETY: `backend()` only returns a backend the CPU supports (checked by
                // `Backend::is_supported` before it is set), so the instructions exist.
                #[cfg(target_arch = "x86_64")]
                Backend::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                Backend::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
    ($(#[$attr:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$attr])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            fn avx512($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }

            match backend() {
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Backend::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                Backend::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

pub(super) use multiversion;

/// Runs `block::<W>(args.., first)` over `channels`: blocks of `W = $block_len` channels, then
/// single channels (fixed-size arrays per block, so the block's loops vectorize).
macro_rules! for_each_block {
    ($block_len:expr, $channels:expr, $block:ident($($arg:expr),*)) => {{
        let mut first = 0;
        while first + $block_len <= $channels {
            $block::<$block_len>($($arg,)* first);
            first += $block_len;
        }
        while first < $channels {
            $block::<1>($($arg,)* first);
            first += 1;
        }
    }};
}

pub(super) use for_each_block;

multiversion! {
    /// values *= factor (in place).
    pub fn scale_in_place(values: &mut [f32], factor: f32) {
        for value in values.iter_mut() {
            *value *= factor;
        }
    }
}

/// Lanes of [`sum_of_squares`]: independent partial sums, added in a fixed order at the end, so
/// the result is the same on every backend (it does not depend on the vector width).
const SQUARE_LANES: usize = 16;

multiversion! {
    /// Σ v² over `values`: 16 partial sums (element j goes to lane j mod 16), then the lanes in
    /// order, then the remainder.
    pub fn sum_of_squares(values: &[f32]) -> f32 {
        let mut lanes = [0.0f32; SQUARE_LANES];
        let chunks = values.chunks_exact(SQUARE_LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += v * v;
            }
        }
        let mut sum = 0.0;
        for lane in lanes {
            sum += lane;
        }
        for &v in tail {
            sum += v * v;
        }
        sum
    }
}

/// Independent xoshiro256++ generators stepped side by side by [`xoshiro_lanes`].
pub const XOSHIRO_LANES: usize = 8;

multiversion! {
    /// Fills `out` from [`XOSHIRO_LANES`] xoshiro256++ generators run side by side (vectorized):
    /// `out[XOSHIRO_LANES · i + j]` is generator j's i-th output. `state[k][j]` is word k of
    /// generator j's state; `out.len()` must be a multiple of the lane count.
    pub fn xoshiro_lanes(state: &mut [[u64; XOSHIRO_LANES]; 4], out: &mut [u64]) {
        let [mut s0, mut s1, mut s2, mut s3] = *state;
        for chunk in out.chunks_exact_mut(XOSHIRO_LANES) {
            for j in 0..XOSHIRO_LANES {
                chunk[j] = s0[j].wrapping_add(s3[j]).rotate_left(23).wrapping_add(s0[j]);
                let t = s1[j] << 17;
                s2[j] ^= s0[j];
                s3[j] ^= s1[j];
                s1[j] ^= s2[j];
                s0[j] ^= s3[j];
                s2[j] ^= t;
                s3[j] = s3[j].rotate_left(45);
            }
        }
        *state = [s0, s1, s2, s3];
    }
}

/// Layers of the ziggurat [`ziggurat_fast_path`] samples from (a power of two).
pub const ZIGGURAT_LAYERS: usize = 1024;
const LAYER_BITS: u32 = ZIGGURAT_LAYERS.trailing_zeros();

multiversion! {
    /// The fast path of a 1024-layer ziggurat on one 32-bit half of each draw (`high`: bits
    /// 32..64, else 0..32): its low 10 bits pick layer `l`, its high 22 bits (signed) a uniform
    /// `u` in [-1, 1); `z = u · widths[l]` is accepted (`accepted = 1`, `out = scale · z`) when
    /// `|z| < inner[l]`. Rejected samples go to the exact slow path (`optim::privacy::noise`).
    pub fn ziggurat_fast_path(draws: &[u64], high: bool, widths: &[f32; ZIGGURAT_LAYERS], inner: &[f32; ZIGGURAT_LAYERS], scale: f32, out: &mut [f32], accepted: &mut [u8]) {
        let shift = if high { 32 } else { 0 };
        let draws = &draws[..out.len()];
        let accepted = &mut accepted[..out.len()];
        for ((&draw, o), ok) in draws.iter().zip(out.iter_mut()).zip(accepted.iter_mut()) {
            let word = (draw >> shift) as u32;
            let layer = (word as usize) & (ZIGGURAT_LAYERS - 1);
            let u = ((word as i32) >> LAYER_BITS) as f32 * (1.0 / (1u32 << (31 - LAYER_BITS)) as f32);
            let value = u * widths[layer];
            *o = scale * value;
            *ok = u8::from(value.abs() < inner[layer]);
        }
    }
}

multiversion! {
    /// y = max(x, 0), in place.
    pub fn relu_forward(values: &mut [f32]) {
        for value in values.iter_mut() {
            *value = if *value > 0.0 { *value } else { 0.0 };
        }
    }
}

multiversion! {
    /// grad = grad where the forward output was positive, else 0 (in place).
    pub fn relu_backward(output: &[f32], grad: &mut [f32]) {
        let grad = &mut grad[..output.len()];
        for (g, &y) in grad.iter_mut().zip(output) {
            *g = if y > 0.0 { *g } else { 0.0 };
        }
    }
}

multiversion! {
    /// Inverted dropout: fills `mask` with `keep_scale` (kept) or 0 (dropped), one 32-bit draw per
    /// unit from `draws` compared with `threshold` (= rate · 2³²), and multiplies `values` by it.
    pub fn dropout_forward(values: &mut [f32], mask: &mut [f32], draws: &[u32], threshold: u32, keep_scale: f32) {
        let mask = &mut mask[..values.len()];
        let draws = &draws[..values.len()];
        for ((value, m), &draw) in values.iter_mut().zip(mask.iter_mut()).zip(draws) {
            *m = if draw >= threshold { keep_scale } else { 0.0 };
            *value *= *m;
        }
    }
}

multiversion! {
    /// grad *= mask (in place).
    pub fn dropout_backward(mask: &[f32], grad: &mut [f32]) {
        let grad = &mut grad[..mask.len()];
        for (g, &m) in grad.iter_mut().zip(mask) {
            *g *= m;
        }
    }
}

multiversion! {
    /// out[i] = pixels[i] * scale (u8 pixels to f32).
    pub fn normalize_pixels(pixels: &[u8], out: &mut [f32], scale: f32) {
        let out = &mut out[..pixels.len()];
        for (value, &pixel) in out.iter_mut().zip(pixels) {
            *value = pixel as f32 * scale;
        }
    }
}

multiversion! {
    /// total += addend.
    pub fn add_assign(total: &mut [f32], addend: &[f32]) {
        let total = &mut total[..addend.len()];
        for (t, &a) in total.iter_mut().zip(addend) {
            *t += a;
        }
    }
}

multiversion! {
    /// out = a + b.
    pub fn add_into(out: &mut [f32], a: &[f32], b: &[f32]) {
        let out = &mut out[..a.len()];
        let b = &b[..a.len()];
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    }
}

multiversion! {
    /// sums[j] (+)= Σ_rows matrix[row, j] for a row-major matrix with `sums.len()` columns,
    /// rows added in order. `accumulate` false overwrites `sums`.
    pub fn sum_rows_into(matrix: &[f32], sums: &mut [f32], accumulate: bool) {
        let columns = sums.len();
        if !accumulate {
            sums.fill(0.0);
        }
        if columns == 0 {
            return;
        }
        for row in matrix.chunks_exact(columns) {
            for (s, &v) in sums.iter_mut().zip(row) {
                *s += v;
            }
        }
    }
}

/// The per-step scalars of an Adam update.
#[derive(Debug, Clone, Copy)]
pub struct AdamCoefficients {
    /// Learning rate with both bias corrections folded in.
    pub alpha: f32,
    /// learning rate · weight decay (0 when off).
    pub decay: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub epsilon: f32,
}

/// One Adam step (see `optim::adam` for the formula).
#[inline(always)]
fn adam_body(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], c: AdamCoefficients) {
    let len = params.len();
    let (grads, m, v) = (&grads[..len], &mut m[..len], &mut v[..len]);
    for i in 0..len {
        let g = grads[i];
        let mut p = params[i];
        p -= c.decay * p;
        let mi = m[i] + (g - m[i]) * c.one_minus_beta1;
        let vi = v[i] + (g * g - v[i]) * c.one_minus_beta2;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - c.alpha * mi / (vi.sqrt() + c.epsilon);
    }
}

multiversion! {
    /// One Adam step (see `optim::adam` for the formula).
    pub fn adam_update(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], c: AdamCoefficients) {
        adam_body(params, grads, m, v, c)
    }
}

/// p -= lr · g
#[inline(always)]
fn sgd_body(params: &mut [f32], grads: &[f32], learning_rate: f32) {
    let grads = &grads[..params.len()];
    for (p, &g) in params.iter_mut().zip(grads) {
        *p -= learning_rate * g;
    }
}

/// v = momentum · v - lr · g; then p += v (heavy ball) or p += momentum · v - lr · g (Nesterov).
#[inline(always)]
fn momentum_body(
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
    learning_rate: f32,
    momentum: f32,
    nesterov: bool,
) {
    let len = params.len();
    let (grads, velocity) = (&grads[..len], &mut velocity[..len]);
    if nesterov {
        for i in 0..len {
            let v = momentum * velocity[i] - learning_rate * grads[i];
            velocity[i] = v;
            params[i] += momentum * v - learning_rate * grads[i];
        }
    } else {
        for i in 0..len {
            let v = momentum * velocity[i] - learning_rate * grads[i];
            velocity[i] = v;
            params[i] += v;
        }
    }
}

/// s = ρ·s + (1-ρ)·g²;  p -= lr·g / √(s + ε)   (Keras adds ε inside the root)
#[inline(always)]
fn rmsprop_body(
    params: &mut [f32],
    grads: &[f32],
    mean_square: &mut [f32],
    learning_rate: f32,
    rho: f32,
    epsilon: f32,
) {
    let len = params.len();
    let (grads, mean_square) = (&grads[..len], &mut mean_square[..len]);
    for i in 0..len {
        let g = grads[i];
        let s = rho * mean_square[i] + (1.0 - rho) * g * g;
        mean_square[i] = s;
        params[i] -= learning_rate * g / (s + epsilon).sqrt();
    }
}

/// One step's update rule with its scalars worked out (Adam's bias-corrected rate): the
/// element-wise optimizer kernels above, chosen once per step.
#[derive(Debug, Clone, Copy)]
pub enum UpdateRule {
    Sgd {
        learning_rate: f32,
    },
    Momentum {
        learning_rate: f32,
        momentum: f32,
        nesterov: bool,
    },
    Adam(AdamCoefficients),
    Rmsprop {
        learning_rate: f32,
        rho: f32,
        epsilon: f32,
    },
}

/// [`UpdateRule`] on one piece: `slots` are the same piece of each of the optimizer's slots.
/// (Also the update the first layer's weight-gradient product applies to each finished row:
/// `sparse`.)
#[inline(always)]
pub(super) fn rule_body(
    rule: UpdateRule,
    params: &mut [f32],
    grads: &[f32],
    slots: &mut [&mut [f32]],
) {
    match (rule, slots) {
        (UpdateRule::Sgd { learning_rate }, _) => sgd_body(params, grads, learning_rate),
        (
            UpdateRule::Momentum {
                learning_rate,
                momentum,
                nesterov,
            },
            [velocity],
        ) => momentum_body(params, grads, velocity, learning_rate, momentum, nesterov),
        (UpdateRule::Adam(coefficients), [m, v]) => adam_body(params, grads, m, v, coefficients),
        (
            UpdateRule::Rmsprop {
                learning_rate,
                rho,
                epsilon,
            },
            [mean_square],
        ) => rmsprop_body(params, grads, mean_square, learning_rate, rho, epsilon),
        _ => unreachable!("slots are created to match the rule"),
    }
}

multiversion! {
    /// Updates `params` (any piece of the buffer) with the same piece of the gradient and of
    /// each of the optimizer's slots.
    pub fn update_piece(rule: UpdateRule, params: &mut [f32], grads: &[f32], slots: &mut [&mut [f32]]) {
        rule_body(rule, params, grads, slots)
    }
}
