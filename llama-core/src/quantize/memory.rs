//! How much memory llama.cpp's quantizer holds, from the input's tensor table, and the largest
//! row buffer (`max_buf_size`) that keeps it within a budget.
//!
//! llama.cpp's `llama_model_quantize` maps the input file and walks its tensors in file order.
//! For each tensor it reads the rows from the mapping (every page of the tensor stays mapped,
//! and so resident, until the tensor is done and llama.cpp unmaps it), converts them to f32 in
//! one buffer unless they are f32 already, quantizes them into a second buffer and writes that
//! out. It processes rows in slabs of at most `max_buf_size` bytes (source, f32 and quantized
//! bytes of a row together; at least one row). Both buffers only grow. So at its peak it holds:
//!
//! - the process itself (binary, libraries, allocator: measured before);
//! - its copies of the metadata and tensor table (the input's, and the output's it builds);
//! - the largest tensor of the input, mapped;
//! - the two buffers, at the largest slab any tensor needed (and, as an upper bound, every
//!   smaller buffer they grew from, which the allocator may keep);
//! - slack for threads and quantization tables.
//!
//! The figures are upper bounds where llama.cpp's choice is not known in advance: a converted
//! tensor's quantized rows are counted at 2 bytes per weight (4 for an F32 target), more than
//! any type llama.cpp picks for a quantized or 16-bit target.

use serde::Serialize;

use super::types::QuantType;
use crate::gguf::{GgmlType, TensorInfo};

/// llama.cpp's default row-buffer limit (`LLAMA_QUANT_MAX_BUF_SIZE`, 8 GiB).
pub const DEFAULT_MAX_BUFFER: u64 = 8 << 30;

/// Memory beyond the counted parts: worker threads' stacks, the quantization tables of the IQ
/// types, allocator slack.
pub const SLACK: u64 = 16 << 20;

/// What quantizing holds in memory at its peak, by part, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuantizeMemory {
    /// The process before quantizing (measured resident set).
    pub process: u64,
    /// llama.cpp's copies of the metadata and tensor table.
    pub metadata: u64,
    /// The largest input tensor, mapped while it is converted.
    pub mapped_tensor: u64,
    /// The f32 and quantized row buffers.
    pub buffers: u64,
    /// Threads, tables, allocator slack ([`SLACK`]).
    pub slack: u64,
    /// The row-buffer limit these figures are for (llama.cpp's `max_buf_size`).
    pub max_buffer_bytes: u64,
}

impl QuantizeMemory {
    /// The sum of the parts.
    pub fn total(&self) -> u64 {
        [self.metadata, self.mapped_tensor, self.buffers, self.slack]
            .into_iter()
            .fold(self.process, u64::saturating_add)
    }
}

/// Whether llama.cpp may convert `tensor` (a weight matrix: at least two dimensions, a name
/// ending in `weight`). Others (norms, biases) are copied.
fn may_convert(tensor: &TensorInfo) -> bool {
    tensor.dims.len() >= 2 && tensor.dims[1] > 0 && tensor.name.ends_with("weight")
}

/// The f32 and quantized buffers llama.cpp grows to with `max_buffer` for `tensors`, in file
/// order, counting each smaller size they grew from as still held.
fn buffer_bytes(tensors: &[TensorInfo], target: QuantType, max_buffer: u64) -> u64 {
    if target.is_copy() {
        return 0;
    }
    let dst_per_weight: u64 = if target.is_f32() { 4 } else { 2 };
    let (mut f32_cap, mut work_cap, mut outgrown) = (0u64, 0u64, 0u64);
    for t in tensors.iter().filter(|t| may_convert(t)) {
        let n_per_row = t.dims[0].max(1);
        let n_rows = (t.n_elements() / n_per_row).max(1);
        let src_row = t.ggml_type.row_size(n_per_row).unwrap_or(n_per_row * 4);
        let is_f32 = t.ggml_type == GgmlType::F32;
        let f32_row = if is_f32 { 0 } else { n_per_row * 4 };
        // llama.cpp divides by source + f32 + quantized row bytes; leaving the quantized row
        // out gives at least as many rows per slab.
        let rows = (max_buffer / (src_row + f32_row).max(1)).clamp(1, n_rows);
        let f32_bytes = rows * f32_row;
        let work_bytes = rows * n_per_row * dst_per_weight;
        if f32_bytes > f32_cap {
            outgrown += f32_cap;
            f32_cap = f32_bytes;
        }
        if work_bytes > work_cap {
            outgrown += work_cap;
            work_cap = work_bytes;
        }
    }
    f32_cap + work_cap + outgrown
}

/// llama.cpp's copies of the metadata: the input's and the output's (strings and arrays as
/// C++ objects take about twice their GGUF bytes each), and the tensors' descriptions.
fn metadata_bytes(header_bytes: u64, n_tensors: usize) -> u64 {
    header_bytes
        .saturating_mul(5)
        .saturating_add((n_tensors as u64).saturating_mul(1024))
        .saturating_add(4 << 20)
}

/// The memory quantizing `tensors` (whose header takes `header_bytes`) to `target` takes with
/// a row-buffer limit of `max_buffer`, in a process that holds `process` bytes before.
pub fn estimate(
    tensors: &[TensorInfo],
    header_bytes: u64,
    target: QuantType,
    process: u64,
    max_buffer: u64,
) -> QuantizeMemory {
    QuantizeMemory {
        process,
        metadata: metadata_bytes(header_bytes, tensors.len()),
        mapped_tensor: tensors.iter().map(|t| t.n_bytes).max().unwrap_or(0),
        buffers: buffer_bytes(tensors, target, max_buffer),
        slack: SLACK,
        max_buffer_bytes: max_buffer,
    }
}

/// The estimate with the largest row-buffer limit (up to llama.cpp's default) whose total fits
/// `budget`; `Err` with the smallest possible estimate (one row at a time) when none does.
pub fn fit(
    tensors: &[TensorInfo],
    header_bytes: u64,
    target: QuantType,
    process: u64,
    budget: u64,
) -> Result<QuantizeMemory, QuantizeMemory> {
    let at = |max_buffer| estimate(tensors, header_bytes, target, process, max_buffer);
    let full = at(DEFAULT_MAX_BUFFER);
    if full.total() <= budget {
        return Ok(full);
    }
    let smallest = at(1);
    if smallest.total() > budget {
        return Err(smallest);
    }
    // The total grows with the limit: binary search for the largest limit that fits.
    let (mut fits, mut too_big) = (1u64, DEFAULT_MAX_BUFFER);
    while too_big - fits > 1 {
        let mid = fits + (too_big - fits) / 2;
        if at(mid).total() <= budget {
            fits = mid;
        } else {
            too_big = mid;
        }
    }
    Ok(at(fits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, dims: &[u64], ggml_type: GgmlType) -> TensorInfo {
        let n: u64 = dims.iter().product();
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type,
            offset: 0,
            file_offset: 0,
            n_bytes: ggml_type.row_size(n).unwrap(),
            split: 0,
        }
    }

    fn q(name: &str) -> QuantType {
        QuantType::parse(name).unwrap()
    }

    #[test]
    fn the_largest_tensor_sizes_the_buffers_with_the_default_limit() {
        let tensors = vec![
            tensor("token_embd.weight", &[256, 1024], GgmlType::F16),
            tensor("blk.0.attn_norm.weight", &[256], GgmlType::F32),
            tensor("blk.0.attn_q.weight", &[256, 256], GgmlType::F16),
        ];
        let m = estimate(&tensors, 1000, q("Q8_0"), 10 << 20, DEFAULT_MAX_BUFFER);
        // token_embd: 1024 rows of 256 f32 (1 MiB) and 256 x 2 bytes (0.5 MiB).
        assert_eq!(m.buffers, (1 << 20) + (1 << 19));
        assert_eq!(m.mapped_tensor, 256 * 1024 * 2);
        assert_eq!(
            m.total(),
            (10 << 20) + m.metadata + m.mapped_tensor + m.buffers + SLACK
        );
        assert_eq!(
            estimate(&tensors, 1000, q("COPY"), 0, DEFAULT_MAX_BUFFER).buffers,
            0
        );
        // An F32 target counts 4 bytes per quantized weight; f32 sources need no f32 buffer.
        let f32_source = vec![tensor("w.weight", &[256, 4], GgmlType::F32)];
        assert_eq!(
            estimate(&f32_source, 0, q("F32"), 0, DEFAULT_MAX_BUFFER).buffers,
            256 * 4 * 4
        );
    }

    #[test]
    fn a_growing_buffer_counts_what_it_grew_from() {
        let tensors = vec![
            tensor("a.weight", &[256, 4], GgmlType::F16),
            tensor("b.weight", &[256, 8], GgmlType::F16),
        ];
        let m = estimate(&tensors, 0, q("Q8_0"), 0, DEFAULT_MAX_BUFFER);
        let (f_a, w_a, f_b, w_b) = (256 * 4 * 4, 256 * 4 * 2, 256 * 8 * 4, 256 * 8 * 2);
        assert_eq!(m.buffers, f_b + w_b + f_a + w_a);
    }

    #[test]
    fn fit_shrinks_the_row_buffer_to_the_budget_or_refuses_with_the_minimum() {
        let tensors = vec![tensor("token_embd.weight", &[1024, 4096], GgmlType::F16)];
        let full = estimate(&tensors, 0, q("Q4_0"), 0, DEFAULT_MAX_BUFFER);
        assert_eq!(fit(&tensors, 0, q("Q4_0"), 0, full.total()), Ok(full));
        let budget = full.total() - full.buffers / 2;
        let fitted = fit(&tensors, 0, q("Q4_0"), 0, budget).unwrap();
        assert!(fitted.total() <= budget);
        assert!(fitted.max_buffer_bytes < DEFAULT_MAX_BUFFER);
        let one_more = estimate(&tensors, 0, q("Q4_0"), 0, fitted.max_buffer_bytes + 1);
        assert!(one_more.total() > budget);
        let minimum = estimate(&tensors, 0, q("Q4_0"), 0, 1);
        assert_eq!(
            fit(&tensors, 0, q("Q4_0"), 0, minimum.total() - 1),
            Err(minimum)
        );
        // One row: 1024 f32 and 1024 x 2 bytes.
        assert_eq!(minimum.buffers, 1024 * 4 + 1024 * 2);
    }
}
