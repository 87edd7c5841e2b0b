//! An owned LoRA adapter of a loaded model (`llama_adapter_lora_init`), applied to contexts
//! with a scale (`llama_set_adapters_lora`).

use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use llama_sys as sys;

use super::Model;
use crate::error::LoadError;

/// A LoRA adapter loaded for a model. Freed when dropped; it keeps its model alive (an
/// adapter is only valid as long as its model).
pub struct LoraAdapter {
    ptr: NonNull<sys::llama_adapter_lora>,
    path: PathBuf,
    _model: Arc<Model>,
}

// SAFETY: an adapter is read-only after loading; contexts on any thread only read it.
unsafe impl Send for LoraAdapter {}
// SAFETY: as above.
unsafe impl Sync for LoraAdapter {}

impl std::fmt::Debug for LoraAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraAdapter")
            .field("path", &self.path)
            .finish()
    }
}

impl LoraAdapter {
    /// Loads the adapter at `path` for `model`. A missing file, a file that is no LoRA
    /// adapter, or one made for another model is an error naming the file.
    pub fn load(model: &Arc<Model>, path: &Path) -> Result<LoraAdapter, LoadError> {
        if !path.is_file() {
            return Err(LoadError::NotFound {
                path: path.to_path_buf(),
            });
        }
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            LoadError::InvalidPath {
                path: path.to_path_buf(),
            }
        })?;
        // SAFETY: the model is valid and outlives the adapter (held below); the path is a C
        // string. Null means llama.cpp refused the file.
        let ptr = unsafe { sys::llama_adapter_lora_init(model.as_ptr(), c_path.as_ptr()) };
        let ptr = NonNull::new(ptr).ok_or_else(|| LoadError::Adapter {
            path: path.to_path_buf(),
        })?;
        Ok(LoraAdapter {
            ptr,
            path: path.to_path_buf(),
            _model: Arc::clone(model),
        })
    }

    /// The adapter's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn as_ptr(&self) -> *mut sys::llama_adapter_lora {
        self.ptr.as_ptr()
    }
}

impl Drop for LoraAdapter {
    fn drop(&mut self) {
        // SAFETY: freed once, before the model (which `_model` keeps alive until after this).
        unsafe { sys::llama_adapter_lora_free(self.ptr.as_ptr()) };
    }
}
