//! Checks a model file before llama.cpp sees it, so a missing, unreadable, corrupt or hostile
//! file gets our typed error instead of llama.cpp's abort: the GGUF reader vets the format,
//! then the preflight (`gguf::preflight`) what llama.cpp's loader would abort, crash or
//! allocate without bound on.

use std::path::Path;

use crate::error::LoadError;
use crate::ffi::{Model, ModelParams};
use crate::gguf::{preflight, GgufModel};

/// Checks that `path` is a readable, well-formed GGUF model (header, metadata and tensor table
/// consistent with the file size) that passes the preflight, and returns what the reader
/// found.
pub fn check_model_file(path: &Path) -> Result<GgufModel, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound {
            path: path.to_path_buf(),
        },
        _ => LoadError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if meta.is_dir() {
        return Err(LoadError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let model = GgufModel::open(path).map_err(|source| LoadError::InvalidGguf {
        path: path.to_path_buf(),
        source,
    })?;
    preflight(&model).map_err(|source| LoadError::Hostile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(model)
}

/// Checks the file with [`check_model_file`], then loads it with llama.cpp.
pub fn load_model(
    path: &Path,
    params: &ModelParams,
    progress: Option<&mut dyn FnMut(f32) -> bool>,
) -> Result<(Model, GgufModel), LoadError> {
    let gguf = check_model_file(path)?;
    let model = Model::load_unchecked(path, params, progress)?;
    Ok((model, gguf))
}
