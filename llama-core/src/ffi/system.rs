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
    /// The CPU's AMX and whether it is used.
    pub amx: AmxInfo,
    /// The CPU backend's extra weight buffer types, and whether loads use them by default.
    pub extra_buffer_types: Vec<ExtraBufferType>,
}

/// The state of Intel AMX on this machine and build.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AmxInfo {
    /// The CPU has AMX (`amx_int8` or `amx_tile` among the flags of `/proc/cpuinfo`).
    pub cpu: bool,
    /// ggml's AMX kernels are compiled into this build.
    pub compiled: bool,
    /// The CPU backend registered its AMX buffer type (both of the above, and the kernel allowed
    /// the process to use AMX tiles).
    pub registered: bool,
    /// Loads use it by default (never: it is opt-in with `--amx`, llama.cpp #20824).
    pub used_by_default: bool,
}

/// One of the CPU backend's extra weight buffer types.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtraBufferType {
    /// llama.cpp's name (`CPU_REPACK`, `AMX`, ...).
    pub name: String,
    /// Whether a load with default settings may put weights in it.
    pub used_by_default: bool,
}

/// Whether the `flags` line of `/proc/cpuinfo` text names an AMX feature.
pub fn cpuinfo_has_amx(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_whitespace())
        .any(|flag| flag == "amx_int8" || flag == "amx_tile")
}

/// Whether this machine's CPU has AMX (read from `/proc/cpuinfo`; false where it cannot be read).
pub fn cpu_has_amx() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| cpuinfo_has_amx(&text))
        .unwrap_or(false)
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
            let registered = super::buffers::registered_extra_buffer_types();
            let by_default = super::buffers::extra_buffer_types_for(&registered, true, false, &[]);
            let amx = AmxInfo {
                cpu: cpu_has_amx(),
                compiled: super::buffers::amx_compiled(),
                registered: registered
                    .iter()
                    .any(|n| n == super::buffers::AMX_BUFFER_TYPE),
                used_by_default: by_default
                    .iter()
                    .any(|n| n == super::buffers::AMX_BUFFER_TYPE),
            };
            let extra_buffer_types = registered
                .iter()
                .map(|name| ExtraBufferType {
                    name: name.clone(),
                    used_by_default: by_default.contains(name),
                })
                .collect();
            SystemInfo {
                amx,
                extra_buffer_types,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amx_flags_are_read_from_cpuinfo() {
        let sapphire = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n";
        assert!(cpuinfo_has_amx(sapphire));
        let epyc = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n";
        assert!(!cpuinfo_has_amx(epyc));
        assert!(!cpuinfo_has_amx("model name\t: amx_int8 in a name\n"));
    }
}
