//! Where llama.cpp puts weights and buffers: the CPU backend's extra weight buffer types (AMX,
//! CPU_REPACK) that model loads are offered, and the structured memory breakdown of a context
//! (bytes per buffer type), both through llama-sys's C++ shim.
//!
//! AMX is not offered by default. On Intel CPUs with AMX, a native build compiles ggml's AMX
//! kernels in, the AMX buffer type then takes the weights it has kernels for, and the first
//! decode segfaults in `ggml_backend_amx_mul_mat` (llama.cpp #20824, closed without a fix). The
//! other extra buffer types (CPU_REPACK's interleaved kernels) stay offered; `--no-repack` turns
//! them all off (llama.cpp's `use_extra_bufts = false`).

use std::ffi::{c_char, CStr, CString};
use std::sync::{Condvar, Mutex, MutexGuard};

use llama_sys as sys;

use super::Backend;

/// The name llama.cpp gives the AMX buffer type.
pub const AMX_BUFFER_TYPE: &str = "AMX";
/// The name llama.cpp gives the CPU backend's repacking buffer type.
pub const REPACK_BUFFER_TYPE: &str = "CPU_REPACK";

/// One buffer type's share of a context's memory, as llama.cpp reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BufferUsage {
    /// llama.cpp's name of the buffer type (`CPU`, `CPU_Mapped`, `CPU_REPACK`, `AMX`, `CUDA0`, ...).
    pub name: String,
    /// Whether it lives in host memory.
    pub is_host: bool,
    /// Bytes of model weights.
    pub model: u64,
    /// Bytes of the context's caches (KV cache, recurrent state).
    pub context: u64,
    /// Bytes of compute buffers.
    pub compute: u64,
}

impl BufferUsage {
    /// Whether this is one of the CPU backend's extra weight buffer types (weights copied into
    /// anonymous memory in another layout), as opposed to the plain or mapped CPU buffer.
    pub fn is_extra_cpu_buffer(&self) -> bool {
        is_extra_cpu_buffer_name(&self.name)
    }

    /// Whether it takes host memory (RAM): ggml's host buffer types, the CPU backend's extra
    /// buffer types (ggml does not call them "host", their layout is not plain) and Metal's
    /// (Apple GPUs share the RAM).
    pub fn in_host_memory(&self) -> bool {
        self.is_host || is_host_buffer_name(&self.name)
    }
}

/// Whether a llama.cpp buffer type, by name (`CPU_Mapped`, `CPU_REPACK`, `CUDA0`, `CUDA_Host`,
/// `Vulkan0`, ...), lives in host memory: CPU buffers, pinned host buffers of a GPU backend, and
/// Metal's.
pub fn is_host_buffer_name(name: &str) -> bool {
    name.starts_with("CPU") || name.ends_with("_Host") || name.starts_with("Metal") || name == "AMX"
}

/// Whether `name` is an extra CPU weight buffer type: a host buffer type that is not llama.cpp's
/// plain (`CPU`) or mapped (`CPU_Mapped`) one, nor a GPU backend's pinned host buffer.
pub fn is_extra_cpu_buffer_name(name: &str) -> bool {
    !matches!(name, "CPU" | "CPU_Mapped") && !name.ends_with("_Host") && !is_device_name(name)
}

fn is_device_name(name: &str) -> bool {
    [
        "CUDA", "Vulkan", "Metal", "ROCm", "SYCL", "CANN", "MUSA", "RPC", "OpenCL",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Which extra buffer types a load lets llama.cpp use for weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Offer {
    /// Names withheld from llama.cpp's list.
    pub(super) excluded: Vec<String>,
}

/// The offer in force and the loads using it: a load may start when no load is running or
/// when the running ones use the same offer.
struct OfferState {
    current: Option<Offer>,
    active: usize,
}

static OFFER: Mutex<OfferState> = Mutex::new(OfferState {
    current: None,
    active: 0,
});
static OFFER_CHANGED: Condvar = Condvar::new();

fn lock_offer() -> MutexGuard<'static, OfferState> {
    OFFER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds the offer of one model load in force until dropped.
pub(super) struct OfferGuard(());

impl Drop for OfferGuard {
    fn drop(&mut self) {
        let mut state = lock_offer();
        state.active -= 1;
        OFFER_CHANGED.notify_all();
    }
}

/// Puts `offer` in force for one model load (waiting for loads under another offer to end).
pub(super) fn offer_for_load(offer: Offer) -> OfferGuard {
    Backend::init();
    let mut state = lock_offer();
    while state.active > 0 && state.current.as_ref() != Some(&offer) {
        state = OFFER_CHANGED.wait(state).unwrap_or_else(|p| p.into_inner());
    }
    if state.current.as_ref() != Some(&offer) {
        let names: Vec<CString> = offer
            .excluded
            .iter()
            .filter_map(|n| CString::new(n.as_str()).ok())
            .collect();
        let pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        // SAFETY: `pointers` holds `pointers.len()` valid C strings kept alive by `names`; no
        // load runs now (`active` is 0 or the offer is already this one), so llama.cpp is not
        // reading the array being rewritten.
        unsafe { sys::llama_rs_cpu_extra_bufts_offer(pointers.as_ptr(), pointers.len()) };
        state.current = Some(offer);
    }
    state.active += 1;
    OfferGuard(())
}

fn names(call: unsafe extern "C" fn(*mut *const c_char, usize) -> usize) -> Vec<String> {
    Backend::init();
    let mut buf: Vec<*const c_char> = vec![std::ptr::null(); 16];
    loop {
        // SAFETY: `buf` has room for `buf.len()` pointers; the shim writes at most that many.
        let n = unsafe { call(buf.as_mut_ptr(), buf.len()) };
        if n > buf.len() {
            buf.resize(n, std::ptr::null());
            continue;
        }
        return buf[..n]
            .iter()
            .filter(|p| !p.is_null())
            // SAFETY: non-null entries are buffer type names owned by llama.cpp for the
            // process's lifetime.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .collect();
    }
}

/// The extra weight buffer types the CPU backend of this build registered on this machine (the
/// AMX one exists only in a build with AMX kernels running on a CPU with AMX).
pub fn registered_extra_buffer_types() -> Vec<String> {
    let _state = lock_offer();
    names(sys::llama_rs_cpu_extra_bufts_registered)
}

/// The extra weight buffer types model loads are offered at this moment.
pub fn offered_extra_buffer_types() -> Vec<String> {
    let _state = lock_offer();
    names(sys::llama_rs_cpu_extra_bufts_offered)
}

/// The extra buffer types a load with these settings may use, of those `registered`: none
/// without repacking, all but AMX by default, all with `amx`; never the `excluded` ones.
pub fn extra_buffer_types_for(
    registered: &[String],
    repack: bool,
    amx: bool,
    excluded: &[String],
) -> Vec<String> {
    if !repack {
        return Vec::new();
    }
    registered
        .iter()
        .filter(|n| amx || n.as_str() != AMX_BUFFER_TYPE)
        .filter(|n| !excluded.contains(n))
        .cloned()
        .collect()
}

/// Whether ggml's AMX kernels were compiled into this build (a native build on a CPU with AMX
/// compiles them in).
pub fn amx_compiled() -> bool {
    // SAFETY: a pure query of a compile-time constant.
    unsafe { sys::ggml_cpu_has_amx_int8() != 0 }
}

/// The memory breakdown of the context behind `ctx`.
pub(super) fn breakdown_of(ctx: *const sys::llama_context) -> Vec<BufferUsage> {
    let empty = sys::llama_rs_buffer_usage {
        name: std::ptr::null(),
        is_host: false,
        model: 0,
        context: 0,
        compute: 0,
    };
    let mut buf = vec![empty; 8];
    loop {
        // SAFETY: `ctx` is a valid context (the caller's `&Context`); `buf` has room for
        // `buf.len()` entries and the shim writes at most that many.
        let n = unsafe { sys::llama_rs_memory_breakdown(ctx, buf.as_mut_ptr(), buf.len()) };
        if n > buf.len() {
            buf.resize(n, empty);
            continue;
        }
        return buf[..n]
            .iter()
            .map(|u| BufferUsage {
                name: if u.name.is_null() {
                    String::new()
                } else {
                    // SAFETY: non-null names are owned by the buffer type, alive for the process.
                    unsafe { CStr::from_ptr(u.name) }
                        .to_string_lossy()
                        .into_owned()
                },
                is_host: u.is_host,
                model: u.model as u64,
                context: u.context as u64,
                compute: u.compute as u64,
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn amx_is_left_out_unless_asked_for() {
        let registered = s(&["AMX", "CPU_REPACK"]);
        assert_eq!(
            extra_buffer_types_for(&registered, true, false, &[]),
            s(&["CPU_REPACK"])
        );
        assert_eq!(
            extra_buffer_types_for(&registered, true, true, &[]),
            registered
        );
        assert!(extra_buffer_types_for(&registered, false, true, &[]).is_empty());
        assert!(
            extra_buffer_types_for(&registered, true, true, &s(&["AMX", "CPU_REPACK"])).is_empty()
        );
    }

    #[test]
    fn extra_buffers_are_told_from_plain_ones() {
        for extra in ["CPU_REPACK", "AMX", "CPU_KLEIDIAI"] {
            assert!(is_extra_cpu_buffer_name(extra), "{extra}");
        }
        for plain in [
            "CPU",
            "CPU_Mapped",
            "CUDA_Host",
            "CUDA0",
            "Vulkan0",
            "Metal",
        ] {
            assert!(!is_extra_cpu_buffer_name(plain), "{plain}");
        }
    }
}
