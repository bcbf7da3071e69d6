//! Winograd F(2×2, 3×3) transforms for 3×3 convolutions over channels-last images (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), compiled per backend.
//!
//! The output is cut into 2×2 tiles; tile t reads the 4×4 input window d_t at rows 2·ty.. and
//! columns 2·tx.. (zero past the image's edge). For one input channel c and filter f:
//!
//! ```text
//! y_t = Aᵀ [ (G w Gᵀ) ⊙ (Bᵀ d_t B) ] A        (4×4 inside the brackets, 2×2 out)
//! ```
//!
//! With V = Bᵀ d B (per tile and channel) and U = G w Gᵀ (per channel and filter), each of the 16
//! positions ξ of the 4×4 transformed tile is one matrix product, `M_ξ[t, f] = Σ_c V_ξ[t, c] ·
//! U_ξ[c, f]`: 16 multiply-adds per tile and channel pair where the direct convolution does 36
//! (4 outputs × 9 taps). Backward is the adjoint of the same steps: with dM = A dy Aᵀ,
//!
//! ```text
//! dU_ξ = V_ξᵀ · dM_ξ,   dw = Gᵀ dU G,   dV_ξ = dM_ξ · U_ξᵀ,   dx += B dV Bᵀ  (tiles overlap)
//! ```
//!
//! Transformed tiles are stored as 16 planes, one per ξ = 4·row + column: V: [16, tiles, c],
//! M and dM: [16, tiles, f], U and dU: [16, c, f]. The matrix products live with the layer
//! (`nn::conv2d`); here are the transforms, which use separate multiplies and adds (never fused),
//! so every backend gives the same bits.

use super::backend;
use super::elementwise::{for_each_block, multiversion};
#[cfg(target_arch = "x86_64")]
use super::Backend;

/// Positions of a transformed tile (4 × 4): the number of planes.
pub const WINOGRAD_POSITIONS: usize = 16;

/// Channels handled together.
const BLOCK: usize = 16;

/// The shape of a Winograd pass: `rows` images of `in_height × in_width × in_channels` into
/// `filters` channels of `(in_height - 2) × (in_width - 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinogradShape {
    pub rows: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub in_channels: usize,
    pub filters: usize,
}

impl WinogradShape {
    pub fn out_dims(&self) -> (usize, usize) {
        (self.in_height - 2, self.in_width - 2)
    }

    /// Tiles per image, down and across (the last ones overhang an odd output).
    pub fn tile_dims(&self) -> (usize, usize) {
        let (out_h, out_w) = self.out_dims();
        (out_h.div_ceil(2), out_w.div_ceil(2))
    }

    /// Tiles of the whole pass: the rows of every plane.
    pub fn tiles(&self) -> usize {
        let (down, across) = self.tile_dims();
        self.rows.saturating_mul(down * across)
    }

    /// Floats of V or dV: [16, tiles, in_channels].
    pub fn input_planes_len(&self) -> usize {
        self.tiles()
            .saturating_mul(WINOGRAD_POSITIONS * self.in_channels)
    }

    /// Floats of M or dM: [16, tiles, filters].
    pub fn output_planes_len(&self) -> usize {
        self.tiles()
            .saturating_mul(WINOGRAD_POSITIONS * self.filters)
    }

    /// Floats of U or dU: [16, in_channels, filters].
    pub fn weight_planes_len(&self) -> usize {
        WINOGRAD_POSITIONS * self.in_channels * self.filters
    }

    fn in_len(&self) -> usize {
        self.in_height * self.in_width * self.in_channels
    }

    fn out_len(&self) -> usize {
        let (out_h, out_w) = self.out_dims();
        out_h * out_w * self.filters
    }
}

/// Bᵀ d B of one 4×4 window (d[4·row + column]): V = Bᵀ d B, where Bᵀ u = [u0 - u2, u1 + u2,
/// u2 - u1, u1 - u3].
#[inline(always)]
fn input_tile_transform(d: [f32; 16]) -> [f32; 16] {
    let bt = |u: [f32; 4]| [u[0] - u[2], u[1] + u[2], u[2] - u[1], u[1] - u[3]];
    let columns: [[f32; 4]; 4] = std::array::from_fn(|j| bt([d[j], d[4 + j], d[8 + j], d[12 + j]]));
    let mut v = [0.0; 16];
    for i in 0..4 {
        let transformed = bt([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]);
        v[4 * i..4 * i + 4].copy_from_slice(&transformed);
    }
    v
}

/// B dV Bᵀ of one transformed tile: the adjoint of [`input_tile_transform`], where B u = [u0,
/// (u1 - u2) + u3, (u1 + u2) - u0, -u3].
#[inline(always)]
fn input_gradient_tile_transform(dv: [f32; 16]) -> [f32; 16] {
    let b = |u: [f32; 4]| [u[0], (u[1] - u[2]) + u[3], (u[1] + u[2]) - u[0], -u[3]];
    let columns: [[f32; 4]; 4] =
        std::array::from_fn(|j| b([dv[j], dv[4 + j], dv[8 + j], dv[12 + j]]));
    let mut dd = [0.0; 16];
    for i in 0..4 {
        let transformed = b([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]);
        dd[4 * i..4 * i + 4].copy_from_slice(&transformed);
    }
    dd
}

/// Aᵀ M A of one transformed tile: 2×2 outputs (y[2·row + column]), where Aᵀ u = [(u0 + u1) +
/// u2, (u1 - u2) - u3].
#[inline(always)]
fn output_tile_transform(m: [f32; 16]) -> [f32; 4] {
    let at = |u: [f32; 4]| [(u[0] + u[1]) + u[2], (u[1] - u[2]) - u[3]];
    let columns: [[f32; 2]; 4] = std::array::from_fn(|j| at([m[j], m[4 + j], m[8 + j], m[12 + j]]));
    let top = at([columns[0][0], columns[1][0], columns[2][0], columns[3][0]]);
    let bottom = at([columns[0][1], columns[1][1], columns[2][1], columns[3][1]]);
    [top[0], top[1], bottom[0], bottom[1]]
}

/// A dy Aᵀ of one 2×2 output gradient: the adjoint of [`output_tile_transform`], where A u =
/// [u0, u0 + u1, u0 - u1, -u1].
#[inline(always)]
fn output_gradient_tile_transform(g: [f32; 4]) -> [f32; 16] {
    let a = |u: [f32; 2]| [u[0], u[0] + u[1], u[0] - u[1], -u[1]];
    let columns: [[f32; 4]; 2] = std::array::from_fn(|j| a([g[j], g[2 + j]]));
    let mut dm = [0.0; 16];
    for i in 0..4 {
        let transformed = a([columns[0][i], columns[1][i]]);
        dm[4 * i..4 * i + 4].copy_from_slice(&transformed);
    }
    dm
}

/// The `side` × `side` window of channels `first..first + W` at (top, left) of one
/// channels-last image (height, width, channels), zero past its edge: [AREA = side², W].
#[inline(always)]
fn load_window<const W: usize, const AREA: usize>(
    image: &[f32],
    (height, width, channels): (usize, usize, usize),
    (top, left, side): (usize, usize, usize),
    first: usize,
) -> [[f32; W]; AREA] {
    debug_assert_eq!(side * side, AREA, "a square window");
    let mut window = [[0.0f32; W]; AREA];
    for (position, values) in window.iter_mut().enumerate() {
        let (y, x) = (top + position / side, left + position % side);
        if y < height && x < width {
            let start = (y * width + x) * channels + first;
            values.copy_from_slice(&image[start..start + W]);
        }
    }
    window
}

/// Channels `first..first + W` of row `tile` of N planes (each `tiles · channels` long).
#[inline(always)]
fn load_planes<const W: usize, const N: usize>(
    planes: &[f32],
    (tiles, channels): (usize, usize),
    tile: usize,
    first: usize,
) -> [[f32; W]; N] {
    let mut grid = [[0.0f32; W]; N];
    for (position, values) in grid.iter_mut().enumerate() {
        let start = (position * tiles + tile) * channels + first;
        values.copy_from_slice(&planes[start..start + W]);
    }
    grid
}

/// The reverse of [`load_planes`].
#[inline(always)]
fn store_planes<const W: usize, const N: usize>(
    grid: &[[f32; W]; N],
    planes: &mut [f32],
    (tiles, channels): (usize, usize),
    tile: usize,
    first: usize,
) {
    for (position, values) in grid.iter().enumerate() {
        let start = (position * tiles + tile) * channels + first;
        planes[start..start + W].copy_from_slice(values);
    }
}

/// `transform(lane, values)` applied to every lane (channel) of a grid of N values: the same straight-line
/// code per lane, so the loop over lanes vectorizes.
#[inline(always)]
fn per_lane<const W: usize, const N: usize, const K: usize>(
    grid: &[[f32; W]; N],
    transform: impl Fn(usize, [f32; N]) -> [f32; K],
) -> [[f32; W]; K] {
    let mut out = [[0.0f32; W]; K];
    for l in 0..W {
        for (slot, value) in out
            .iter_mut()
            .zip(transform(l, std::array::from_fn(|p| grid[p][l])))
        {
            slot[l] = value;
        }
    }
    out
}

/// Tile (ty, tx) of one image, channels `first..first + W`: V = Bᵀ d B into the planes.
#[inline(always)]
fn input_tile<const W: usize>(
    (image, v): (&[f32], &mut [f32]),
    shape: &WinogradShape,
    (ty, tx, tile): (usize, usize, usize),
    first: usize,
) {
    let dims = (shape.in_height, shape.in_width, shape.in_channels);
    let window = load_window::<W, 16>(image, dims, (2 * ty, 2 * tx, 4), first);
    let transformed = per_lane(&window, |_, d| input_tile_transform(d));
    store_planes(
        &transformed,
        v,
        (shape.tiles(), shape.in_channels),
        tile,
        first,
    );
}

/// Tile (ty, tx) of one image, filters `first..first + W`: y = bias + Aᵀ M A (then ReLU'd when
/// asked, with `relu_forward`'s select), the part inside the image.
#[inline(always)]
fn output_tile<const W: usize>(
    (m, y): (&[f32], &mut [f32]),
    (shape, bias, relu): (&WinogradShape, &[f32], bool),
    (ty, tx, tile): (usize, usize, usize),
    first: usize,
) {
    let f = shape.filters;
    let grid = load_planes::<W, 16>(m, (shape.tiles(), f), tile, first);
    let bias: &[f32; W] = bias[first..first + W].try_into().expect("W values");
    let out = per_lane(&grid, |l, m| {
        output_tile_transform(m).map(|value| {
            let value = bias[l] + value;
            if !relu || value > 0.0 {
                value
            } else {
                0.0
            }
        })
    });
    let (out_h, out_w) = shape.out_dims();
    for (position, values) in out.iter().enumerate() {
        let (oy, ox) = (2 * ty + position / 2, 2 * tx + position % 2);
        if oy < out_h && ox < out_w {
            let start = (oy * out_w + ox) * f + first;
            y[start..start + W].copy_from_slice(values);
        }
    }
}

/// Tile (ty, tx) of one image, filters `first..first + W`: dM = A dy Aᵀ into the planes (dy is 0
/// where the tile overhangs the output).
#[inline(always)]
fn output_gradient_tile<const W: usize>(
    (grad_y, dm): (&[f32], &mut [f32]),
    shape: &WinogradShape,
    (ty, tx, tile): (usize, usize, usize),
    first: usize,
) {
    let (out_h, out_w) = shape.out_dims();
    let dims = (out_h, out_w, shape.filters);
    let g = load_window::<W, 4>(grad_y, dims, (2 * ty, 2 * tx, 2), first);
    let transformed = per_lane(&g, |_, g| output_gradient_tile_transform(g));
    store_planes(
        &transformed,
        dm,
        (shape.tiles(), shape.filters),
        tile,
        first,
    );
}

/// Tile (ty, tx) of one image, channels `first..first + W`: dx += B dV Bᵀ, the part inside the
/// image.
#[inline(always)]
fn input_gradient_tile<const W: usize>(
    (dv, grad_x): (&[f32], &mut [f32]),
    shape: &WinogradShape,
    (ty, tx, tile): (usize, usize, usize),
    first: usize,
) {
    let c = shape.in_channels;
    let grid = load_planes::<W, 16>(dv, (shape.tiles(), c), tile, first);
    let out = per_lane(&grid, |_, dv| input_gradient_tile_transform(dv));
    for (position, values) in out.iter().enumerate() {
        let (iy, ix) = (2 * ty + position / 4, 2 * tx + position % 4);
        if iy < shape.in_height && ix < shape.in_width {
            let start = (iy * shape.in_width + ix) * c + first;
            for (target, &value) in grad_x[start..start + W].iter_mut().zip(values) {
                *target += value;
            }
        }
    }
}

/// Every tile of the pass in plane order: (image, (ty, tx, tile)). (A loop, not a closure
/// callback: closures would not be compiled for the caller's backend.)
#[inline(always)]
fn tiles(shape: &WinogradShape) -> impl Iterator<Item = (usize, (usize, usize, usize))> {
    let (down, across) = shape.tile_dims();
    (0..shape.rows)
        .flat_map(move |image| {
            (0..down).flat_map(move |ty| (0..across).map(move |tx| (image, ty, tx)))
        })
        .enumerate()
        .map(|(tile, (image, ty, tx))| (image, (ty, tx, tile)))
}

multiversion! {
    /// x: [rows, in_h, in_w, c] -> v: [16, tiles, c] (V = Bᵀ d B of every tile)
    pub fn winograd_input_transform(x: &[f32], v: &mut [f32], shape: WinogradShape) {
        let in_len = shape.in_len();
        let v = &mut v[..shape.input_planes_len()];
        for (image, tile) in tiles(&shape) {
            let image = &x[image * in_len..(image + 1) * in_len];
            for_each_block!(BLOCK, shape.in_channels, input_tile((image, &mut *v), &shape, tile));
        }
    }
}

multiversion! {
    /// m: [16, tiles, f] -> y: [rows, out_h, out_w, f] = bias + Aᵀ M A (ReLU'd with `relu`)
    pub fn winograd_output_transform(m: &[f32], bias: &[f32], y: &mut [f32], shape: WinogradShape, relu: bool) {
        let out_len = shape.out_len();
        let m = &m[..shape.output_planes_len()];
        for (image, tile) in tiles(&shape) {
            let y = &mut y[image * out_len..(image + 1) * out_len];
            for_each_block!(BLOCK, shape.filters, output_tile((m, &mut *y), (&shape, bias, relu), tile));
        }
    }
}

multiversion! {
    /// grad_y: [rows, out_h, out_w, f] -> dm: [16, tiles, f] (dM = A dy Aᵀ of every tile)
    pub fn winograd_output_gradient_transform(grad_y: &[f32], dm: &mut [f32], shape: WinogradShape) {
        let out_len = shape.out_len();
        let dm = &mut dm[..shape.output_planes_len()];
        for (image, tile) in tiles(&shape) {
            let grad_y = &grad_y[image * out_len..(image + 1) * out_len];
            for_each_block!(BLOCK, shape.filters, output_gradient_tile((grad_y, &mut *dm), &shape, tile));
        }
    }
}

multiversion! {
    /// dv: [16, tiles, c] -> grad_x: [rows, in_h, in_w, c] = Σ over tiles of B dV Bᵀ (overwritten)
    pub fn winograd_input_gradient_transform(dv: &[f32], grad_x: &mut [f32], shape: WinogradShape) {
        let in_len = shape.in_len();
        let grad_x = &mut grad_x[..shape.rows * in_len];
        grad_x.fill(0.0);
        let dv = &dv[..shape.input_planes_len()];
        for (image, tile) in tiles(&shape) {
            let grad_x = &mut grad_x[image * in_len..(image + 1) * in_len];
            for_each_block!(BLOCK, shape.in_channels, input_gradient_tile((dv, &mut *grad_x), &shape, tile));
        }
    }
}

/// G g Gᵀ of one 3×3 kernel (g[3·row + column]), where G u = [u0, ((u0 + u1) + u2)/2,
/// ((u0 - u1) + u2)/2, u2].
#[inline(always)]
fn weight_tile_transform(g: [f32; 9]) -> [f32; 16] {
    let gm = |u: [f32; 3]| {
        [
            u[0],
            ((u[0] + u[1]) + u[2]) * 0.5,
            ((u[0] - u[1]) + u[2]) * 0.5,
            u[2],
        ]
    };
    let columns: [[f32; 4]; 3] = std::array::from_fn(|j| gm([g[j], g[3 + j], g[6 + j]]));
    let mut u = [0.0; 16];
    for i in 0..4 {
        let transformed = gm([columns[0][i], columns[1][i], columns[2][i]]);
        u[4 * i..4 * i + 4].copy_from_slice(&transformed);
    }
    u
}

/// Gᵀ dU G of one transformed tile: the adjoint of [`weight_tile_transform`], where Gᵀ u =
/// [u0 + (u1 + u2)/2, (u1 - u2)/2, (u1 + u2)/2 + u3].
#[inline(always)]
fn weight_gradient_tile_transform(du: [f32; 16]) -> [f32; 9] {
    let gt = |u: [f32; 4]| {
        [
            u[0] + (u[1] + u[2]) * 0.5,
            (u[1] - u[2]) * 0.5,
            (u[1] + u[2]) * 0.5 + u[3],
        ]
    };
    let columns: [[f32; 3]; 4] =
        std::array::from_fn(|j| gt([du[j], du[4 + j], du[8 + j], du[12 + j]]));
    let mut dw = [0.0; 9];
    for i in 0..3 {
        let transformed = gt([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]);
        dw[3 * i..3 * i + 3].copy_from_slice(&transformed);
    }
    dw
}

/// Channel pairs `first..first + W`: U = G w Gᵀ.
#[inline(always)]
fn weight_block<const W: usize>((w, u): (&[f32], &mut [f32]), pairs: usize, first: usize) {
    let taps = load_planes::<W, 9>(w, (1, pairs), 0, first);
    let transformed = per_lane(&taps, |_, g| weight_tile_transform(g));
    store_planes(&transformed, u, (1, pairs), 0, first);
}

/// Channel pairs `first..first + W`: grad_w (+)= Gᵀ dU G.
#[inline(always)]
fn weight_gradient_block<const W: usize>(
    (du, grad_w): (&[f32], &mut [f32]),
    (pairs, accumulate): (usize, bool),
    first: usize,
) {
    let grid = load_planes::<W, 16>(du, (1, pairs), 0, first);
    let mut taps = per_lane(&grid, |_, du| weight_gradient_tile_transform(du));
    if accumulate {
        let before = load_planes::<W, 9>(grad_w, (1, pairs), 0, first);
        for (values, old) in taps.iter_mut().zip(&before) {
            for (value, &old) in values.iter_mut().zip(old) {
                *value += old;
            }
        }
    }
    store_planes(&taps, grad_w, (1, pairs), 0, first);
}

multiversion! {
    /// w: [3, 3, c, f] -> u: [16, c, f] (U = G w Gᵀ for every channel pair); `pairs` = c · f.
    pub fn winograd_weight_transform(w: &[f32], u: &mut [f32], pairs: usize) {
        for_each_block!(BLOCK, pairs, weight_block((w, &mut *u), pairs));
    }
}

multiversion! {
    /// du: [16, c, f] -> grad_w: [3, 3, c, f] (+)= Gᵀ dU G (added with `accumulate`, else
    /// written).
    pub fn winograd_weight_gradient_transform(du: &[f32], grad_w: &mut [f32], pairs: usize, accumulate: bool) {
        for_each_block!(BLOCK, pairs, weight_gradient_block((du, &mut *grad_w), (pairs, accumulate)));
    }
}
