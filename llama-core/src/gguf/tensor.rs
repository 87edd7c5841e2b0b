//! Tensor descriptions: reading one entry of the tensor table and checking it.
//!
//! Each entry is `name: string, n_dims: u32, dims: [u64; n_dims], type: u32,
//! offset: u64`. The reader checks the dimension count, that the element and byte
//! counts do not overflow, that the type is known and the row length is a whole number
//! of blocks, and that the offset is aligned. Placement against the file size is
//! checked once the data-section start is known (see `reader.rs`).

use std::io::Read;

use serde::Serialize;

use super::error::{Field, GgufError};
use super::ggml_type::GgmlType;
use super::source::Input;
use super::{MAX_DIMS, MAX_TENSOR_NAME_LEN};

/// The fewest bytes one tensor-table entry takes: name length, n_dims, type, offset.
pub(super) const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

/// The description of one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost (row length) first, as ggml's `ne`.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Absolute offset of the data within its file.
    pub file_offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
    /// Index of the split file holding the data (0 for unsplit models).
    pub split: usize,
}

impl TensorInfo {
    /// The number of elements (product of the dimensions; 1 for a 0-d tensor).
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow; saturate for hand-built values.
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }

    /// The block index `N` for names of the form `blk.N.…`, else `None`.
    pub fn layer(&self) -> Option<u32> {
        let rest = self.name.strip_prefix("blk.")?;
        let (index, tail) = rest.split_once('.')?;
        if tail.is_empty() || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index.parse().ok()
    }
}

/// A tensor-table entry as read, before its placement in the file is checked.
pub(super) struct RawTensor {
    pub(super) info: TensorInfo,
    /// Byte offset of the entry's name (its length prefix).
    pub(super) name_offset: u64,
    /// Byte offset of the entry's offset field.
    pub(super) offset_field_at: u64,
}

/// Reads tensor-table entry `index`, checking everything that does not need the
/// data-section start.
pub(super) fn read_tensor_info<R: Read>(
    input: &mut Input<R>,
    index: u64,
    alignment: u64,
) -> Result<RawTensor, GgufError> {
    let name_field = || Field::TensorName { index };
    let name_offset = input.position();
    let name_len = input.u64(&name_field)?;
    if name_len > MAX_TENSOR_NAME_LEN {
        return Err(GgufError::TensorNameTooLong {
            field: name_field(),
            offset: name_offset,
            len: name_len,
            max: MAX_TENSOR_NAME_LEN,
        });
    }
    input.check_count(name_len, 1, name_offset, &name_field)?;
    let name_start = input.position();
    let name = String::from_utf8(input.bytes(name_len, &name_field)?).map_err(|_| {
        GgufError::InvalidUtf8 {
            field: name_field(),
            offset: name_start,
        }
    })?;

    let info_field = || Field::TensorInfo { name: name.clone() };
    let n_dims_at = input.position();
    let n_dims = input.u32(&info_field)?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            name,
            n_dims,
            offset: n_dims_at,
            max: MAX_DIMS,
        });
    }
    let mut dims = Vec::with_capacity(4);
    for dim in 0..n_dims {
        let dim_at = input.position();
        let value = input.u64(&info_field)?;
        if i64::try_from(value).is_err() {
            return Err(GgufError::BadDimension {
                name,
                dim,
                value,
                offset: dim_at,
            });
        }
        dims.push(value);
    }
    // ggml keeps element counts in i64: the product must fit.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| i64::try_from(n).is_ok());
    let Some(n_elements) = n_elements else {
        return Err(GgufError::ShapeOverflow {
            name,
            dims,
            offset: n_dims_at,
        });
    };

    let type_at = input.position();
    let type_id = input.u32(&info_field)?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownGgmlType {
            name,
            type_id,
            offset: type_at,
        });
    };
    let row_len = dims.first().copied().unwrap_or(1);
    if row_len % ggml_type.block_size() != 0 {
        return Err(GgufError::RowNotBlockAligned {
            name,
            offset: type_at,
            row_len,
            ggml_type: ggml_type.name(),
            block_size: ggml_type.block_size(),
        });
    }
    // n_elements is a multiple of row_len, hence of the block size.
    let Some(n_bytes) = ggml_type.row_size(n_elements) else {
        return Err(GgufError::ShapeOverflow {
            name,
            dims,
            offset: n_dims_at,
        });
    };

    let offset_field_at = input.position();
    let offset = input.u64(&info_field)?;
    // `alignment` is validated nonzero by the caller; `checked_rem` keeps this panic-free.
    if offset.checked_rem(alignment) != Some(0) {
        return Err(GgufError::MisalignedTensor {
            name,
            data_offset: offset,
            offset: offset_field_at,
            alignment,
        });
    }

    Ok(RawTensor {
        info: TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            file_offset: 0,
            n_bytes,
            split: 0,
        },
        name_offset,
        offset_field_at,
    })
}
