//! Writing a generated model's tensors: random matrices of the chosen weight type, norms of
//! ones, and F32 tensors with given values.

use half::f16;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::gguf::ggml_type::GgmlType;
use crate::gguf::writer::GgufWriter;

/// Adds tensors to a [`GgufWriter`], drawing random values from one seeded generator in the
/// order the tensors are added (so the same seed and order give the same file).
pub(super) struct TensorWriter<'a> {
    w: &'a mut GgufWriter,
    rng: StdRng,
    weight_type: GgmlType,
}

impl<'a> TensorWriter<'a> {
    /// Matrices get `weight_type`; the values come from `seed`.
    pub(super) fn new(w: &'a mut GgufWriter, seed: u64, weight_type: GgmlType) -> TensorWriter<'a> {
        TensorWriter {
            w,
            rng: StdRng::seed_from_u64(seed),
            weight_type,
        }
    }

    /// A weight matrix (or stack of matrices) of random values of about 0.02 in magnitude, as
    /// in a trained model, stored in the weight type; in F32 when its rows (`dims[0]`) are not a
    /// whole number of the type's blocks, as llama.cpp's quantizer leaves such tensors.
    pub(super) fn matrix(&mut self, name: &str, dims: &[u64]) {
        let t = if dims[0] % self.weight_type.block_size() == 0 {
            self.weight_type
        } else {
            GgmlType::F32
        };
        let data = random_data(&mut self.rng, dims.iter().product(), t);
        self.w.add_tensor(name, dims, t, data);
    }

    /// An F32 norm weight of ones (the identity scale).
    pub(super) fn norm(&mut self, name: &str, n: u64) {
        self.values(name, &[n], |_, _| 1.0);
    }

    /// An F32 tensor whose element `i` is `value(rng, i)`.
    pub(super) fn values(
        &mut self,
        name: &str,
        dims: &[u64],
        mut value: impl FnMut(&mut StdRng, u64) -> f32,
    ) {
        let n: u64 = dims.iter().product();
        let data = (0..n)
            .flat_map(|i| value(&mut self.rng, i).to_le_bytes())
            .collect();
        self.w.add_tensor(name, dims, GgmlType::F32, data);
    }
}

/// `n` random values of about 0.02 in magnitude, stored in `t` (`n` a multiple of its blocks).
/// The random bits are drawn in one call, which keeps large tensors quick to generate even in
/// unoptimised test builds.
fn random_data(rng: &mut StdRng, n: u64, t: GgmlType) -> Vec<u8> {
    let n = usize::try_from(n).expect("tensor fits in memory");
    let random = |rng: &mut StdRng, len: usize| {
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        bytes
    };
    // Uniform in [-0.02, 0.02) from 4 random bytes.
    let uniform = |b: &[u8]| {
        let u = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        (u as f32 / 4_294_967_296.0 * 2.0 - 1.0) * 0.02
    };
    // Blocks of 32 values: a header (scale, minimum) then `quants` random bytes.
    let blocks = |rng: &mut StdRng, header: &[u8], quants: usize| {
        let bits = random(rng, n / 32 * quants);
        let mut data = Vec::with_capacity(n / 32 * (header.len() + quants));
        for block in bits.chunks_exact(quants) {
            data.extend_from_slice(header);
            data.extend_from_slice(block);
        }
        data
    };
    let f16_bytes = |x: f32| f16::from_f32(x).to_le_bytes();
    match t {
        GgmlType::F32 => {
            let mut data = random(rng, 4 * n);
            for value in data.chunks_exact_mut(4) {
                let x = uniform(value);
                value.copy_from_slice(&x.to_le_bytes());
            }
            data
        }
        GgmlType::F16 => {
            let bits = random(rng, 4 * n);
            let mut data = Vec::with_capacity(2 * n);
            for b in bits.chunks_exact(4) {
                data.extend_from_slice(&f16_bytes(uniform(b)));
            }
            data
        }
        // Signed bytes times 0.02 / 127.
        GgmlType::Q8_0 => blocks(rng, &f16_bytes(0.02 / 127.0), 32),
        // Nibbles minus 8, times 0.02 / 8.
        GgmlType::Q4_0 => blocks(rng, &f16_bytes(0.02 / 8.0), 16),
        // Nibbles times 0.04 / 15, minus 0.02.
        GgmlType::Q4_1 => {
            let header = [f16_bytes(0.04 / 15.0), f16_bytes(-0.02)].concat();
            blocks(rng, &header, 16)
        }
        other => {
            panic!("synthetic models support F32, F16, Q4_0, Q4_1 and Q8_0 weights, not {other}")
        }
    }
}
