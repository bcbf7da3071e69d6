//! Seeded random numbers. Every random stream (initialization, shuffling, dropout masks) is
//! derived from the run's seed plus *where* it is used (epoch, step, shard), never from a shared
//! sequential generator. That makes results independent of thread count and lets a resumed run
//! reproduce the uninterrupted one exactly without saving generator state.

use rand::{RngCore, SeedableRng};

/// xoshiro256++: small, fast and statistically strong; good for dropout masks in the hot loop.
#[derive(Debug, Clone)]
pub struct Rng {
    state: [u64; 4],
}

/// SplitMix64: turns arbitrary 64-bit inputs into well-mixed seeds.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn from_u64(seed: u64) -> Self {
        let mut x = seed;
        let state = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Rng { state }
    }

    /// The generator's state words (to seed generators run side by side, see
    /// `kernels::xoshiro_lanes`).
    pub fn state(&self) -> [u64; 4] {
        self.state
    }

    #[inline]
    pub fn next_u64_fast(&mut self) -> u64 {
        let s = &mut self.state;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform float in [0, 1) with 24 bits of precision.
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64_fast() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64_fast() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.next_u64_fast()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64_fast().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

impl SeedableRng for Rng {
    type Seed = [u8; 8];
    fn from_seed(seed: Self::Seed) -> Self {
        Rng::from_u64(u64::from_le_bytes(seed))
    }
}

/// What a random stream is used for; part of its identity.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Init = 1,
    Shuffle = 2,
    Dropout = 3,
    ValidationSplit = 4,
    /// Private training: which examples a step samples.
    PoissonSample = 5,
    /// Private training: the Gaussian noise added to a step's gradient.
    DpNoise = 6,
}

/// The generator for one use of randomness, identified by `(seed, kind, a, b)`,
/// e.g. `(seed, Dropout, global_step, shard)`.
pub fn stream(seed: u64, kind: Stream, a: u64, b: u64) -> Rng {
    let mut x = seed;
    let mut mixed = splitmix64(&mut x);
    for part in [kind as u64, a, b] {
        x = mixed ^ part;
        mixed = splitmix64(&mut x);
    }
    Rng::from_u64(mixed)
}
