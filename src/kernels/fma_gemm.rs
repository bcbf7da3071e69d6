//! Our own AVX2/AVX-512 FMA matrix products for the shapes training runs (a few to a few hundred
//! rows against 784×128 and 128×10 weights).
//!
//! A general GEMM packs both operands into panels on every call; for a 784×128 weight matrix that
//! is a third of the product's time, and it allocates. Here the row-major operands already are
//! in a usable layout: `b` and `c` have contiguous rows, so a tile of `c` (R rows × NV vectors)
//! lives in registers while `k` runs, each step loading NV vectors of one row of `b` and
//! broadcasting R single values of `a` (any strides: `a` may be a transposed view). Nothing is
//! packed, nothing allocated.
//!
//! `a` is read through two [`Walk`]s (index → offset maps), so it can also be a convolution's
//! im2col matrix read in place from the images (no copy, no buffer).
//!
//! Every element is `c[i,j] = beta·c[i,j] + (((a[i,0]·b[0,j]) + a[i,1]·b[1,j]) + …)` with one FMA
//! per `k`, in `k` order, whatever the tiling: the AVX2 and AVX-512 paths give bit-identical
//! results, and so does any split of the rows between threads (or reading `a` in place instead
//! of from a copy). With a bias, `c[i,j] = bias[j] + (chain)`, the same bits as writing the
//! bias to `c` first and accumulating.

use std::ops::Range;

pub use super::walk::Walk;

/// A matrix operand: base pointer and how its row and column indices map to offsets.
#[derive(Clone, Copy)]
pub struct Operand {
    pub ptr: *const f32,
    pub rows: Walk,
    pub cols: Walk,
}

/// What `c` starts from before the chain is added.
#[derive(Clone, Copy)]
pub enum Start {
    /// `c = a·b`
    Zero,
    /// `c += a·b`
    Accumulate,
    /// `c = bias + a·b`, `bias: [n]`
    Bias(*const f32),
    /// `c = max(bias + a·b, 0)`: the bias, then a ReLU.
    BiasRelu(*const f32),
}

/// `c[m, n] = a[m, k] · b[k, n] + beta · c` (beta 0 or 1) for `b` and `c` with unit column stride.
pub struct Product {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a: Operand,
    /// Row stride of `b` (its column stride is 1).
    pub b: *const f32,
    pub b_row_stride: isize,
    /// Row stride of `c` (its column stride is 1).
    pub c: *mut f32,
    pub c_row_stride: isize,
    pub start: Start,
}

/// Columns left in a block starting at `j` of `n`, at most `width`.
#[inline(always)]
fn columns(j: usize, n: usize, width: usize) -> usize {
    (n - j).min(width)
}

/// Rows `rows` of the product, tiled R rows at a time (smaller tiles for the remainder).
macro_rules! gemm_for {
    ($feature:literal, $module:ident, $vector:ty, $lanes:literal, $rows:literal,
     load: $load:path, store: $store:path, splat: $splat:path, fma: $fma:path, add: $add:path,
     max: $max:path, zero: $zero:path) => {
        pub mod $module {
            #[allow(unused_imports)]
            use std::arch::x86_64::*;

            use super::{columns, Product, Range};

            const LANES: usize = $lanes;
            /// Rows of `c` per register tile.
            const ROWS: usize = $rows;

            /// Runs the product over all rows.
            ///
            /// # Safety
            /// The CPU supports the feature set; the operands are valid for the stated shapes and
            /// `c` overlaps neither `a` nor `b`.
            #[target_feature(enable = $feature)]
            pub unsafe fn gemm(p: &Product) {
                // Separate entry points, so each inlines only its own tiles (with both kinds in
                // one function the compiler stopped inlining the plain tiles, which costs 10%
                // on the short-k products of the MLP).
                if p.a.rows.is_plain() && p.a.cols.is_plain() {
                    gemm_plain(p)
                } else {
                    gemm_walked(p)
                }
            }

            #[inline(never)]
            #[target_feature(enable = $feature)]
            unsafe fn gemm_plain(p: &Product) {
                gemm_rows::<true>(p, 0..p.m)
            }

            #[inline(never)]
            #[target_feature(enable = $feature)]
            unsafe fn gemm_walked(p: &Product) {
                gemm_rows::<false>(p, 0..p.m)
            }

            #[target_feature(enable = $feature)]
            unsafe fn gemm_rows<const PLAIN: bool>(p: &Product, rows: Range<usize>) {
                let mut j = 0;
                while j < p.n {
                    let width = columns(j, p.n, 2 * LANES);
                    let mut i = rows.start;
                    let mut row_offsets = p.a.rows.cursor(i);
                    while i < rows.end {
                        let tile_rows = (rows.end - i).min(ROWS);
                        // (A plain tile computes its row pointers itself.)
                        let mut a_rows = [p.a.ptr; ROWS];
                        if !PLAIN {
                            for a_row in &mut a_rows[..tile_rows] {
                                *a_row = p.a.ptr.offset(row_offsets.next_offset());
                            }
                        }
                        if width > LANES {
                            tile_dispatch::<2, PLAIN>(p, &a_rows, i, tile_rows, j, width);
                        } else {
                            tile_dispatch::<1, PLAIN>(p, &a_rows, i, tile_rows, j, width);
                        }
                        i += tile_rows;
                    }
                    j += width;
                }
            }

            #[target_feature(enable = $feature)]
            unsafe fn tile_dispatch<const NV: usize, const PLAIN: bool>(
                p: &Product,
                a_rows: &[*const f32; ROWS],
                i: usize,
                rows: usize,
                j: usize,
                width: usize,
            ) {
                match rows {
                    1 => tile::<1, NV, PLAIN>(p, a_rows, i, j, width),
                    2 => tile::<2, NV, PLAIN>(p, a_rows, i, j, width),
                    3 => tile::<3, NV, PLAIN>(p, a_rows, i, j, width),
                    4 => tile::<4, NV, PLAIN>(p, a_rows, i, j, width),
                    5 => tile::<5, NV, PLAIN>(p, a_rows, i, j, width),
                    6 => tile::<6, NV, PLAIN>(p, a_rows, i, j, width),
                    7 => tile::<7, NV, PLAIN>(p, a_rows, i, j, width),
                    _ => tile::<ROWS, NV, PLAIN>(p, a_rows, i, j, width),
                }
            }

            /// One R × (NV vectors) tile of `c` at row `i`, column `j`, `width` valid columns.
            /// A walked `a` (not PLAIN) has the tile's row pointers in `a_rows`.
            #[target_feature(enable = $feature)]
            unsafe fn tile<const R: usize, const NV: usize, const PLAIN: bool>(
                p: &Product,
                a_rows: &[*const f32; ROWS],
                i: usize,
                j: usize,
                width: usize,
            ) {
                let valid: [usize; NV] =
                    std::array::from_fn(|v| width.saturating_sub(v * LANES).min(LANES));
                let mut acc: [[$vector; NV]; R] = [[$zero(); NV]; R];
                let mut b_row = p.b.add(j);
                if PLAIN {
                    let a_rows: [*const f32; R] =
                        std::array::from_fn(|r| p.a.ptr.offset((i + r) as isize * p.a.rows.step));
                    for kk in 0..p.k {
                        let b: [$vector; NV] =
                            std::array::from_fn(|v| $load(b_row.add(v * LANES), valid[v]));
                        let a_offset = kk as isize * p.a.cols.step;
                        for r in 0..R {
                            let a = $splat(*a_rows[r].offset(a_offset));
                            for v in 0..NV {
                                acc[r][v] = $fma(a, b[v], acc[r][v]);
                            }
                        }
                        b_row = b_row.offset(p.b_row_stride);
                    }
                } else {
                    let a_rows: [*const f32; R] = std::array::from_fn(|r| a_rows[r]);
                    let cols = p.a.cols;
                    // k in runs of consecutive indices (kernel rows or image rows of an im2col
                    // matrix), in k order. (Plain loops: a closure here made the compiler keep
                    // the accumulators in memory.)
                    let (mut kk, mut run_in_group, mut group_start) = (0, 0, 0isize);
                    while kk < p.k {
                        let run = cols.run.min(p.k - kk);
                        let run_start = group_start + run_in_group as isize * cols.run_stride;
                        for t in 0..run {
                            let b: [$vector; NV] =
                                std::array::from_fn(|v| $load(b_row.add(v * LANES), valid[v]));
                            let a_offset = run_start + t as isize * cols.step;
                            for r in 0..R {
                                let a = $splat(*a_rows[r].offset(a_offset));
                                for v in 0..NV {
                                    acc[r][v] = $fma(a, b[v], acc[r][v]);
                                }
                            }
                            b_row = b_row.offset(p.b_row_stride);
                        }
                        kk += run;
                        run_in_group += 1;
                        if run_in_group == cols.runs_per_group {
                            run_in_group = 0;
                            group_start += cols.group_stride;
                        }
                    }
                }
                let bias = match p.start {
                    super::Start::Bias(bias) | super::Start::BiasRelu(bias) => bias.add(j),
                    _ => std::ptr::null(),
                };
                let (accumulate, relu) = (
                    matches!(p.start, super::Start::Accumulate),
                    matches!(p.start, super::Start::BiasRelu(_)),
                );
                for r in 0..R {
                    let c_row = p.c.offset((i + r) as isize * p.c_row_stride).add(j);
                    for v in 0..NV {
                        let c = c_row.add(v * LANES);
                        let value = if accumulate {
                            $add($load(c, valid[v]), acc[r][v])
                        } else if PLAIN || bias.is_null() {
                            // (Plain products never start from a bias: `matmul` has no such
                            // option, and the smaller tile stays inlined.)
                            acc[r][v]
                        } else {
                            let value = $add($load(bias.add(v * LANES), valid[v]), acc[r][v]);
                            // max(x, 0) is x where x > 0, else 0: relu_forward's select.
                            if relu {
                                $max(value, $zero())
                            } else {
                                value
                            }
                        };
                        $store(c, valid[v], value);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512_ops {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn load(ptr: *const f32, valid: usize) -> __m512 {
        if valid == 16 {
            _mm512_loadu_ps(ptr)
        } else {
            _mm512_maskz_loadu_ps(((1u32 << valid) - 1) as u16, ptr)
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn store(ptr: *mut f32, valid: usize, value: __m512) {
        if valid == 16 {
            _mm512_storeu_ps(ptr, value)
        } else {
            _mm512_mask_storeu_ps(ptr, ((1u32 << valid) - 1) as u16, value)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_ops {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mask(valid: usize) -> __m256i {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(valid as i32), lane)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn load(ptr: *const f32, valid: usize) -> __m256 {
        if valid == 8 {
            _mm256_loadu_ps(ptr)
        } else {
            _mm256_maskload_ps(ptr, mask(valid))
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn store(ptr: *mut f32, valid: usize, value: __m256) {
        if valid == 8 {
            _mm256_storeu_ps(ptr, value)
        } else {
            _mm256_maskstore_ps(ptr, mask(valid), value)
        }
    }
}

#[cfg(target_arch = "x86_64")]
gemm_for!("avx512f", avx512, __m512, 16, 8,
    load: super::avx512_ops::load, store: super::avx512_ops::store, splat: _mm512_set1_ps,
    fma: _mm512_fmadd_ps, add: _mm512_add_ps, max: _mm512_max_ps,
    zero: _mm512_setzero_ps);

#[cfg(target_arch = "x86_64")]
gemm_for!("avx2,fma", avx2, __m256, 8, 6,
    load: super::avx2_ops::load, store: super::avx2_ops::store, splat: _mm256_set1_ps,
    fma: _mm256_fmadd_ps, add: _mm256_add_ps, max: _mm256_max_ps,
    zero: _mm256_setzero_ps);
