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

/// Whether this build carries the `mmap` interposer that lets a streaming load map the model
/// without `MAP_POPULATE` (64-bit Linux only; see `src/mmap_shim.c`).
pub const STREAMING_LOAD_SUPPORTED: bool = cfg!(llama_rs_mmap_shim);

#[cfg(llama_rs_mmap_shim)]
unsafe extern "C" {
    fn llama_rs_streaming_load_begin();
    fn llama_rs_streaming_load_end(addrs: *mut usize, lens: *mut usize, capacity: usize) -> usize;
    // `unsigned long`: 64 bits on the 64-bit Linux targets the shim is built for.
    fn llama_rs_populate_cleared_count() -> u64;
}

/// One buffer type's share of a context's memory, in bytes (`src/buffers_shim.cpp`). `name` is
/// owned by the buffer type and lives as long as the process.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llama_rs_buffer_usage {
    /// The buffer type's name, e.g. `CPU`, `CPU_Mapped`, `CPU_REPACK`, `AMX`, `CUDA0`.
    pub name: *const std::ffi::c_char,
    /// Whether the buffer type lives in host memory.
    pub is_host: bool,
    /// Bytes of the model's weights.
    pub model: usize,
    /// Bytes of the context's caches (KV cache, recurrent state).
    pub context: usize,
    /// Bytes of the compute buffers.
    pub compute: usize,
}

// The C++ shim over llama.cpp's memory breakdown and the CPU backend's extra buffer types
// (`src/buffers_shim.cpp`).
unsafe extern "C" {
    /// Writes up to `capacity` entries of the memory breakdown of `ctx` (llama.cpp's
    /// `llama_get_memory_breakdown`) to `out`; returns the number of buffer types (0 on failure).
    pub fn llama_rs_memory_breakdown(
        ctx: *const llama_context,
        out: *mut llama_rs_buffer_usage,
        capacity: usize,
    ) -> usize;
    /// Writes up to `capacity` names of the extra buffer types the CPU backend registered;
    /// returns their count.
    pub fn llama_rs_cpu_extra_bufts_registered(
        names: *mut *const std::ffi::c_char,
        capacity: usize,
    ) -> usize;
    /// Writes up to `capacity` names of the extra buffer types model loads are offered now;
    /// returns their count.
    pub fn llama_rs_cpu_extra_bufts_offered(
        names: *mut *const std::ffi::c_char,
        capacity: usize,
    ) -> usize;
    /// Offers model loads every registered extra buffer type but the `n_excluded` named ones;
    /// returns the number offered. Must not run concurrently with a model load.
    pub fn llama_rs_cpu_extra_bufts_offer(
        excluded: *const *const std::ffi::c_char,
        n_excluded: usize,
    ) -> usize;
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
    fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
}

/// glibc's `M_MMAP_THRESHOLD` parameter of `mallopt`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const M_MMAP_THRESHOLD: std::ffi::c_int = -3;

/// Fixes glibc's mmap threshold at `bytes` (`mallopt(M_MMAP_THRESHOLD, bytes)`): allocations of
/// at least that size get their own mapping, which `free` returns to the operating system at
/// once. Setting it turns off glibc's dynamic threshold (raised to the size of each mapped block
/// freed, so that later blocks of that size stay in the heap after `free`), which makes a
/// process's peak depend on the order of its frees. Returns false where it was not set (another
/// C library, or a value glibc refuses).
pub fn pin_mmap_threshold(bytes: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(value) = std::ffi::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt has no preconditions; it changes a malloc tuning parameter.
        unsafe { mallopt(M_MMAP_THRESHOLD, value) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = bytes;
        false
    }
}

/// Returns freed heap memory to the operating system (glibc's `malloc_trim(0)`), so memory a
/// dry run freed is not still counted in the process's RSS when the real load allocates its
/// own. Does nothing on other C libraries.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages of the heap.
    unsafe {
        malloc_trim(0);
    }
}

// libc's mincore(2), for residency checks of mapped model files (not in llama.cpp's bindings).
unsafe extern "C" {
    /// mincore(2): one byte per page of `[addr, addr + length)`, bit 0 set when it is resident.
    pub fn mincore(addr: *mut std::ffi::c_void, length: usize, vec: *mut u8) -> std::ffi::c_int;
}

/// Starts a streaming load on the calling thread: until [`streaming_load_end`] (on the same
/// thread), its `mmap` calls (llama.cpp's mapping of the model among them) have `MAP_POPULATE`
/// cleared and are recorded, so loading a model maps it without faulting the file in. Other
/// threads' loads are unaffected. Returns false (and does nothing) where the interposer is not
/// built.
pub fn streaming_load_begin() -> bool {
    #[cfg(llama_rs_mmap_shim)]
    {
        // SAFETY: sets thread-local state; no preconditions.
        unsafe { llama_rs_streaming_load_begin() };
        true
    }
    #[cfg(not(llama_rs_mmap_shim))]
    {
        false
    }
}

/// Ends the calling thread's streaming load; returns the file mappings (address, length) it made.
pub fn streaming_load_end() -> Vec<(usize, usize)> {
    #[cfg(llama_rs_mmap_shim)]
    {
        const CAP: usize = 16;
        let (mut addrs, mut lens) = ([0usize; CAP], [0usize; CAP]);
        // SAFETY: both arrays have room for CAP entries; the shim writes at most that many.
        let n = unsafe { llama_rs_streaming_load_end(addrs.as_mut_ptr(), lens.as_mut_ptr(), CAP) };
        (0..n.min(CAP)).map(|i| (addrs[i], lens[i])).collect()
    }
    #[cfg(not(llama_rs_mmap_shim))]
    {
        Vec::new()
    }
}

/// A visitor of a loaded model's tensors: name, data address, size, user data
/// (`src/buffers_shim.cpp`).
#[allow(non_camel_case_types)]
pub type llama_rs_tensor_visitor = unsafe extern "C" fn(
    name: *const std::ffi::c_char,
    data: *const std::ffi::c_void,
    n_bytes: usize,
    user: *mut std::ffi::c_void,
);

unsafe extern "C" {
    /// Calls `visit` for every tensor of `model` (llama.cpp's internal tensor map); returns the
    /// number visited.
    pub fn llama_rs_model_tensors(
        model: *const llama_model,
        visit: llama_rs_tensor_visitor,
        user: *mut std::ffi::c_void,
    ) -> usize;
}

/// How many `mmap` calls had `MAP_POPULATE` cleared by the interposer so far (0 where it is not
/// built).
pub fn populate_cleared_count() -> u64 {
    #[cfg(llama_rs_mmap_shim)]
    {
        // SAFETY: reads an atomic counter; no preconditions.
        unsafe { llama_rs_populate_cleared_count() }
    }
    #[cfg(not(llama_rs_mmap_shim))]
    {
        0
    }
}

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
