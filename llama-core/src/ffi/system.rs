//! What this build of llama.cpp can do: compiled backends, devices found, CPU features.

use std::ffi::CStr;

use llama_sys as sys;

use super::Backend;

/// One compute device llama.cpp found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// Short name, e.g. `CPU` or `CUDA0`.
    pub name: String,
    /// Description, e.g. the CPU or GPU model.
    pub description: String,
    /// `cpu`, `gpu`, `igpu` or `accel`.
    pub kind: &'static str,
    /// Free memory the device reports, in bytes.
    pub free_bytes: u64,
    /// Total memory the device reports, in bytes.
    pub total_bytes: u64,
}

/// A description of this build and machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemInfo {
    /// Version of the llama-cpp-sys-2 crate that carries llama.cpp.
    pub llama_cpp_sys_version: &'static str,
    /// llama.cpp's feature line (`CPU : AVX2 = 1 | ...`).
    pub features: String,
    /// GPU backends compiled into this build.
    pub gpu_backends: Vec<&'static str>,
    /// Backends registered at run time.
    pub registered_backends: Vec<String>,
    /// Devices found.
    pub devices: Vec<DeviceInfo>,
    /// Whether this build can offload layers to a GPU.
    pub gpu_offload: bool,
}

fn c_str(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: llama.cpp returns static or device-owned NUL-terminated strings.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

impl SystemInfo {
    /// Queries llama.cpp.
    pub fn query() -> SystemInfo {
        Backend::init();
        // SAFETY: these are read-only registry queries; every index is below the count
        // llama.cpp reported, and the returned handles are owned by the registry.
        unsafe {
            let registered_backends = (0..sys::ggml_backend_reg_count())
                .map(|i| c_str(sys::ggml_backend_reg_name(sys::ggml_backend_reg_get(i))))
                .collect();
            let devices = (0..sys::ggml_backend_dev_count())
                .map(|i| {
                    let dev = sys::ggml_backend_dev_get(i);
                    let (mut free, mut total) = (0usize, 0usize);
                    sys::ggml_backend_dev_memory(dev, &mut free, &mut total);
                    DeviceInfo {
                        name: c_str(sys::ggml_backend_dev_name(dev)),
                        description: c_str(sys::ggml_backend_dev_description(dev)),
                        kind: match sys::ggml_backend_dev_type(dev) {
                            sys::GGML_BACKEND_DEVICE_TYPE_CPU => "cpu",
                            sys::GGML_BACKEND_DEVICE_TYPE_GPU => "gpu",
                            sys::GGML_BACKEND_DEVICE_TYPE_IGPU => "igpu",
                            _ => "accel",
                        },
                        free_bytes: free as u64,
                        total_bytes: total as u64,
                    }
                })
                .collect();
            SystemInfo {
                llama_cpp_sys_version: LLAMA_CPP_SYS_VERSION,
                features: c_str(sys::llama_print_system_info()).trim().to_string(),
                gpu_backends: llama_sys::compiled_gpu_backends(),
                registered_backends,
                devices,
                gpu_offload: sys::llama_supports_gpu_offload(),
            }
        }
    }
}

/// The pinned llama-cpp-sys-2 version (keep in step with llama-sys/Cargo.toml).
pub const LLAMA_CPP_SYS_VERSION: &str = "0.1.161";
