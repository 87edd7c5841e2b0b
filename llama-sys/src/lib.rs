//! Raw FFI to llama.cpp. This is the only crate of llama-rs that declares foreign functions.
//!
//! llama.cpp itself arrives through the crates.io crate `llama-cpp-sys-2` (pinned to an exact
//! version in `Cargo.toml`): its package carries llama.cpp's source, builds it with cmake and
//! generates the bindings with bindgen. This crate re-exports those bindings and adds the
//! compile-time facts llama-rs needs (which backends were compiled in).
//!
//! Everything here is `unsafe` to call; the safe API lives in `llama-core`.

pub use llama_cpp_sys_2::*;

/// Whether this build was compiled with the CUDA backend.
pub const BACKEND_CUDA: bool = cfg!(feature = "cuda");
/// Whether this build was compiled with the Metal backend.
pub const BACKEND_METAL: bool = cfg!(feature = "metal");
/// Whether this build was compiled with the Vulkan backend.
pub const BACKEND_VULKAN: bool = cfg!(feature = "vulkan");
/// Whether llama.cpp's CPU backend uses OpenMP for its thread pool.
pub const OPENMP: bool = cfg!(feature = "openmp");

/// Names of the GPU backends compiled into this build, empty for a CPU-only build.
pub fn compiled_gpu_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if BACKEND_CUDA {
        names.push("CUDA");
    }
    if BACKEND_METAL {
        names.push("Metal");
    }
    if BACKEND_VULKAN {
        names.push("Vulkan");
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_reports_system_info() {
        // SAFETY: llama_print_system_info returns a pointer to a static, NUL-terminated buffer.
        let info = unsafe { std::ffi::CStr::from_ptr(llama_print_system_info()) };
        assert!(!info.to_bytes().is_empty());
        // SAFETY: a pure query with no preconditions.
        assert!(unsafe { llama_max_devices() } >= 1);
    }
}
