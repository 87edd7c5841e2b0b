//! llama.cpp's grammar sampler and JSON-schema converter, through llama-cpp-sys-2's
//! exception-safe `llama_rs_*` wrappers: a grammar that does not parse, or a schema that
//! cannot be converted, is an error here, never an abort.

use std::ffi::{c_char, CString};
use std::ptr::NonNull;

use llama_sys as sys;

use super::{Model, Token};

/// Why llama.cpp refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrammarFailure {
    /// The text holds a NUL byte.
    Nul,
    /// llama.cpp returned no sampler or threw.
    Refused,
}

/// An owned grammar sampler. Freed on drop.
pub struct GrammarSampler {
    ptr: NonNull<sys::llama_sampler>,
}

// SAFETY: owned exclusively and only used through `&mut self`.
unsafe impl Send for GrammarSampler {}

impl std::fmt::Debug for GrammarSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrammarSampler")
    }
}

impl GrammarSampler {
    /// A sampler for the GBNF grammar `gbnf` (start rule `root`) over `model`'s vocabulary.
    /// With trigger `patterns` or `tokens` it is lazy: unconstrained until a pattern (regex)
    /// matches the text generated so far or a trigger token is sampled.
    pub fn new(
        model: &Model,
        gbnf: &str,
        patterns: &[String],
        tokens: &[Token],
    ) -> Result<GrammarSampler, GrammarFailure> {
        let text = CString::new(gbnf).map_err(|_| GrammarFailure::Nul)?;
        let root = c"root";
        let lazy = !patterns.is_empty() || !tokens.is_empty();
        let ptr = if lazy {
            let owned: Vec<CString> = patterns
                .iter()
                .map(|p| CString::new(p.as_str()))
                .collect::<Result<_, _>>()
                .map_err(|_| GrammarFailure::Nul)?;
            let mut ptrs: Vec<*const c_char> = owned.iter().map(|p| p.as_ptr()).collect();
            // SAFETY: every string is a valid C string alive until the call returns (llama.cpp
            // copies them); the arrays have the lengths passed. The wrapper catches C++
            // exceptions and returns null instead.
            unsafe {
                sys::llama_rs_sampler_init_grammar_lazy_patterns(
                    model.vocab(),
                    text.as_ptr(),
                    root.as_ptr(),
                    ptrs.as_mut_ptr(),
                    ptrs.len(),
                    tokens.as_ptr(),
                    tokens.len(),
                )
            }
        } else {
            // SAFETY: as above; null when the grammar does not parse.
            unsafe {
                sys::llama_rs_sampler_init_grammar(model.vocab(), text.as_ptr(), root.as_ptr())
            }
        };
        NonNull::new(ptr)
            .map(|ptr| GrammarSampler { ptr })
            .ok_or(GrammarFailure::Refused)
    }

    /// Sets the logit of every candidate the grammar forbids to -infinity.
    pub(super) fn apply(&mut self, candidates: &mut sys::llama_token_data_array) {
        // SAFETY: valid sampler; `candidates` points at `size` valid entries.
        unsafe { sys::llama_sampler_apply(self.ptr.as_ptr(), candidates) };
    }

    /// Advances the grammar past `token`. False when the grammar cannot take it (llama.cpp
    /// threw; the exception was caught). Never call it with an end-of-generation token the
    /// grammar does not allow: llama.cpp aborts on that, so the caller never passes one.
    pub fn accept(&mut self, token: Token) -> bool {
        // SAFETY: valid sampler; the wrapper catches C++ exceptions.
        let status = unsafe { sys::llama_rs_sampler_accept(self.ptr.as_ptr(), token) };
        status == sys::LLAMA_RS_STATUS_OK
    }
}

impl Drop for GrammarSampler {
    fn drop(&mut self) {
        // SAFETY: created by llama.cpp's grammar constructor, freed only here.
        unsafe { sys::llama_sampler_free(self.ptr.as_ptr()) };
    }
}

/// llama.cpp's JSON-schema-to-GBNF converter (`json_schema_to_grammar`). `None` when it
/// rejects the schema.
pub fn json_schema_to_gbnf(schema_json: &str) -> Option<String> {
    let schema = CString::new(schema_json).ok()?;
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: `schema` is a valid C string; `out` receives a malloc'd string or stays null;
    // the wrapper catches C++ exceptions.
    let status = unsafe { sys::llama_rs_json_schema_to_grammar(schema.as_ptr(), false, &mut out) };
    if out.is_null() {
        return None;
    }
    // SAFETY: non-null `out` is a NUL-terminated string from the wrapper.
    let text = unsafe { std::ffi::CStr::from_ptr(out) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: allocated by the wrapper, freed once with its own free function.
    unsafe { sys::llama_rs_string_free(out) };
    (status == sys::LLAMA_RS_STATUS_OK).then_some(text)
}
