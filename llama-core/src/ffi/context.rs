//! An owned `llama_context`: decoding batches, the KV cache of its sequences, cancellation.

use std::ffi::c_void;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use llama_sys as sys;

use super::residency::{eval_trampoline, EvalObserver, ObserverBox};
use super::{Batch, ContextParams, FlashAttention, Model, Token};
use crate::cache_spec::KvCacheType;
use crate::cancel::CancelToken;
use crate::embedding::Pooling;
use crate::error::ContextError;

/// The ggml type id of a KV cache element type.
fn ggml_type_of(t: KvCacheType) -> sys::ggml_type {
    t.ggml_type().id() as sys::ggml_type
}

fn pooling_type_of(p: Pooling) -> sys::llama_pooling_type {
    match p {
        Pooling::Model => sys::LLAMA_POOLING_TYPE_UNSPECIFIED,
        Pooling::None => sys::LLAMA_POOLING_TYPE_NONE,
        Pooling::Mean => sys::LLAMA_POOLING_TYPE_MEAN,
        Pooling::Cls => sys::LLAMA_POOLING_TYPE_CLS,
        Pooling::Last => sys::LLAMA_POOLING_TYPE_LAST,
        Pooling::Rank => sys::LLAMA_POOLING_TYPE_RANK,
    }
}

/// What a decode call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeOutcome {
    /// Every token was processed.
    Done,
    /// The cancel token fired; some ubatches may have been processed.
    Aborted,
    /// No KV slot was free for the batch (nothing was processed).
    NoKvSlot,
    /// Another llama.cpp failure code.
    Failed(i32),
}

/// A llama.cpp context over a shared model. Freed when dropped.
pub struct Context {
    ptr: NonNull<sys::llama_context>,
    /// What the abort callback reads; boxed so its address is stable, kept alive as long as
    /// the context.
    abort: Box<AbortState>,
    model: Arc<Model>,
    n_batch: u32,
    n_ubatch: u32,
    cache_types: (KvCacheType, KvCacheType),
    /// The eval observer llama.cpp's `cb_eval` calls, if any; freed after the context.
    _observer: Option<ObserverBox>,
    /// The LoRA adapters applied ([`Context::set_loras`]): llama.cpp's context points at
    /// them, so they live as long as it (freed after the context).
    adapters: Vec<Arc<super::LoraAdapter>>,
}

// SAFETY: a context is used by one thread at a time (all methods take `&mut self` or only read
// sizes); llama.cpp contexts may move between threads.
unsafe impl Send for Context {}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("n_ctx", &self.n_ctx())
            .field("n_batch", &self.n_batch)
            .finish()
    }
}

/// What llama.cpp's abort callback reads: the context's own token, and the tokens of the
/// requests whose tokens the running decode call holds. The decode stops when the own token
/// fired, or when every one of those requests was cancelled (nobody wants its result).
#[derive(Default)]
struct AbortState {
    own: CancelToken,
    requests: Mutex<Vec<CancelToken>>,
    /// Whether the running decode was told to stop (llama.cpp then logs the aborted graph as
    /// errors, which the log bridge turns into debug lines: an abort we asked for is no error).
    fired: std::sync::atomic::AtomicBool,
}

impl AbortState {
    fn should_abort(&self) -> bool {
        let abort = self.own.is_cancelled()
            // The scheduler replaces the list between decode calls only; never wait for it.
            || match self.requests.try_lock() {
                Ok(requests) => {
                    !requests.is_empty() && requests.iter().all(CancelToken::is_cancelled)
                }
                Err(_) => false,
            };
        if abort {
            self.fired.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        abort
    }
}

unsafe extern "C" fn abort_trampoline(data: *mut c_void) -> bool {
    // SAFETY: `data` is the context's boxed AbortState, which the context keeps alive for as
    // long as llama.cpp can call this.
    let state = unsafe { &*(data as *const AbortState) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.should_abort())).unwrap_or(true)
}

impl Context {
    /// Creates a context. It sizes and allocates the KV cache and compute buffers now.
    pub fn new(model: Arc<Model>, params: &ContextParams) -> Result<Context, ContextError> {
        Self::create(model, params, None, None)
    }

    /// A context that outputs embeddings instead of logits (llama.cpp's `embeddings` context
    /// parameter), pooled per sequence as `pooling` says (`Model`: as the model's metadata
    /// says). Every token in a batch that asks for output gets one.
    pub fn for_embeddings(
        model: Arc<Model>,
        params: &ContextParams,
        pooling: Pooling,
    ) -> Result<Context, ContextError> {
        Self::create(model, params, None, Some(pooling))
    }

    /// Like [`new`](Self::new), with `observer` told about the graph nodes it asks for as each
    /// decode call computes them (llama.cpp's `cb_eval`).
    pub fn with_eval_observer(
        model: Arc<Model>,
        params: &ContextParams,
        observer: Box<dyn EvalObserver>,
    ) -> Result<Context, ContextError> {
        Self::create(model, params, Some(Box::new(observer)), None)
    }

    fn create(
        model: Arc<Model>,
        params: &ContextParams,
        mut observer: Option<ObserverBox>,
        embeddings: Option<Pooling>,
    ) -> Result<Context, ContextError> {
        // SAFETY: returns a plain struct of defaults.
        let mut raw = unsafe { sys::llama_context_default_params() };
        raw.n_ctx = params.n_ctx;
        raw.n_batch = params.n_batch;
        raw.n_ubatch = params.n_ubatch.min(params.n_batch);
        raw.n_seq_max = params.n_seq_max;
        raw.n_outputs_max = params.n_outputs_max;
        raw.n_threads = params.n_threads;
        raw.n_threads_batch = params.n_threads_batch;
        raw.flash_attn_type = match params.flash_attention {
            FlashAttention::Auto => sys::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        raw.type_k = ggml_type_of(params.type_k);
        raw.type_v = ggml_type_of(params.type_v);
        raw.kv_unified = params.kv_unified;
        raw.swa_full = params.swa_full;
        if let Some(pooling) = embeddings {
            raw.embeddings = true;
            raw.pooling_type = pooling_type_of(pooling);
        }
        let abort = Box::new(AbortState::default());
        raw.abort_callback = Some(abort_trampoline);
        raw.abort_callback_data = (&*abort as *const AbortState).cast_mut().cast();
        if let Some(obs) = observer.as_mut() {
            raw.cb_eval = Some(eval_trampoline);
            raw.cb_eval_user_data = (&mut **obs as *mut Box<dyn EvalObserver>).cast();
        }
        // SAFETY: the model pointer is valid and kept alive by the Arc stored in the context;
        // the abort data and the observer (heap-allocated, stored in the context) outlive the
        // context. Null means failure.
        let ptr =
            super::with_loading_heap(|| unsafe { sys::llama_init_from_model(model.as_ptr(), raw) });
        let ptr = NonNull::new(ptr).ok_or(ContextError::LlamaCpp {
            n_ctx: params.n_ctx,
            n_batch: params.n_batch,
            n_ubatch: params.n_ubatch,
        })?;
        // llama.cpp clamps the batch to the context (and the micro-batch to the batch): keep
        // the sizes it will accept.
        // SAFETY: read-only queries on the context just created.
        let (n_batch, n_ubatch) = unsafe {
            (
                sys::llama_n_batch(ptr.as_ptr()),
                sys::llama_n_ubatch(ptr.as_ptr()),
            )
        };
        Ok(Context {
            ptr,
            abort,
            model,
            n_batch,
            n_ubatch,
            cache_types: (params.type_k, params.type_v),
            _observer: observer,
            adapters: Vec::new(),
        })
    }

    /// The memory of this context and its model per buffer type, as llama.cpp reports it
    /// (for a `no_alloc` model: the sizes the buffers would have).
    pub fn memory_breakdown(&self) -> Vec<super::BufferUsage> {
        super::buffers::breakdown_of(self.ptr.as_ptr())
    }

    /// The model this context runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The token that cancels this context's decode calls (and generation loops using it).
    pub fn cancel_token(&self) -> &CancelToken {
        &self.abort.own
    }

    /// Makes the next decode calls stop early once every one of `requests` is cancelled (the
    /// requests whose tokens they hold); an empty list turns this off.
    pub fn abort_when_all_cancelled(&self, requests: Vec<CancelToken>) {
        *self
            .abort
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = requests;
    }

    /// Context length in tokens, as llama.cpp allocated it.
    pub fn n_ctx(&self) -> u32 {
        // SAFETY: read-only query on a valid context.
        unsafe { sys::llama_n_ctx(self.ptr.as_ptr()) }
    }

    /// Largest batch accepted by one decode call (llama.cpp's effective `n_batch`: the requested
    /// one, clamped to the context).
    pub fn n_batch(&self) -> u32 {
        self.n_batch
    }

    /// Physical batch size.
    pub fn n_ubatch(&self) -> u32 {
        self.n_ubatch
    }

    /// Element types of the K and V caches.
    pub fn cache_types(&self) -> (KvCacheType, KvCacheType) {
        self.cache_types
    }

    /// Decodes a prepared batch.
    pub fn decode(&mut self, batch: &Batch) -> DecodeOutcome {
        if batch.is_empty() {
            return DecodeOutcome::Done;
        }
        self.abort
            .fired
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let ptr = self.ptr.as_ptr();
        // SAFETY: the batch's arrays are valid for its n_tokens entries and outlive the call.
        let code = super::backend::while_decoding(&self.abort.fired, || unsafe {
            sys::llama_decode(ptr, batch.raw())
        });
        match code {
            0 => DecodeOutcome::Done,
            1 => DecodeOutcome::NoKvSlot,
            2 => DecodeOutcome::Aborted,
            code => DecodeOutcome::Failed(code),
        }
    }

    /// Waits until queued computation has finished.
    pub fn synchronize(&mut self) {
        // SAFETY: valid context.
        unsafe { sys::llama_synchronize(self.ptr.as_ptr()) };
    }

    fn memory(&self) -> sys::llama_memory_t {
        // SAFETY: valid context; the memory handle lives as long as it.
        unsafe { sys::llama_get_memory(self.ptr.as_ptr()) }
    }

    /// Removes positions `[p0, p1)` of sequence `seq` from the KV cache (`p1 < 0`: to the end).
    /// Returns false when the cache cannot remove a partial range.
    pub fn kv_remove(&mut self, seq: i32, p0: i32, p1: i32) -> bool {
        // SAFETY: valid memory handle; llama.cpp checks the ranges.
        unsafe { sys::llama_memory_seq_rm(self.memory(), seq, p0, p1) }
    }

    /// Clears every sequence from the KV cache.
    pub fn kv_clear(&mut self) {
        // SAFETY: valid memory handle.
        unsafe { sys::llama_memory_clear(self.memory(), true) };
    }

    /// Smallest position held for `seq` (in a sliding-window cache: the oldest position still
    /// in the window), or -1 when it is empty.
    pub fn kv_pos_min(&self, seq: i32) -> i32 {
        // SAFETY: valid memory handle.
        unsafe { sys::llama_memory_seq_pos_min(self.memory(), seq) }
    }

    /// Largest position held for `seq`, or -1 when it is empty.
    pub fn kv_pos_max(&self, seq: i32) -> i32 {
        // SAFETY: valid memory handle.
        unsafe { sys::llama_memory_seq_pos_max(self.memory(), seq) }
    }

    /// Applies LoRA `adapters` with their scales to this context (replacing any before).
    /// Returns false when llama.cpp refused them.
    pub fn set_loras(&mut self, adapters: &[(Arc<super::LoraAdapter>, f32)]) -> bool {
        let mut ptrs: Vec<*mut sys::llama_adapter_lora> =
            adapters.iter().map(|(a, _)| a.as_ptr()).collect();
        let mut scales: Vec<f32> = adapters.iter().map(|(_, s)| *s).collect();
        // SAFETY: valid context; both arrays hold `adapters.len()` entries, and the adapters
        // are kept by this context (below) for as long as llama.cpp may use them.
        let rc = unsafe {
            sys::llama_set_adapters_lora(
                self.ptr.as_ptr(),
                ptrs.as_mut_ptr(),
                ptrs.len(),
                scales.as_mut_ptr(),
            )
        };
        if rc == 0 {
            self.adapters = adapters.iter().map(|(a, _)| Arc::clone(a)).collect();
        }
        rc == 0
    }

    /// Adds `delta` to the positions of sequence `seq` in `[p0, p1)` (`p1 < 0`: to the end):
    /// what a context shift does to the tokens after the ones it drops.
    pub fn kv_shift(&mut self, seq: i32, p0: i32, p1: i32, delta: i32) {
        // SAFETY: valid memory handle; llama.cpp checks the ranges.
        unsafe { sys::llama_memory_seq_add(self.memory(), seq, p0, p1, delta) };
    }

    /// Whether the cache can shift positions ([`kv_shift`](Self::kv_shift)); recurrent states
    /// and some caches cannot.
    pub fn can_shift(&self) -> bool {
        // SAFETY: valid memory handle.
        unsafe { sys::llama_memory_can_shift(self.memory()) }
    }

    /// Makes sequence `dst` share the cells of `src` for positions `[p0, p1)` (`p1 < 0`: to
    /// the end). In a unified cache the cells are shared, not copied.
    pub fn kv_copy(&mut self, src: i32, dst: i32, p0: i32, p1: i32) {
        // SAFETY: valid memory handle; llama.cpp checks the sequence ids and ranges.
        unsafe { sys::llama_memory_seq_cp(self.memory(), src, dst, p0, p1) };
    }

    /// Writes sequence `seq`'s state (its KV cells, or recurrent state) and `tokens` to a new
    /// file at `path` in llama.cpp's sequence-state format. llama.cpp streams it there one
    /// tensor range at a time: no copy of the whole state is held in memory. Returns the bytes
    /// written, `None` when llama.cpp failed.
    pub fn save_seq_file(&mut self, seq: i32, path: &Path, tokens: &[Token]) -> Option<u64> {
        let c_path = path_to_c(path)?;
        // SAFETY: valid context; `c_path` is a C string and `tokens` valid for its length.
        let n = unsafe {
            sys::llama_state_seq_save_file(
                self.ptr.as_ptr(),
                c_path.as_ptr(),
                seq,
                tokens.as_ptr(),
                tokens.len(),
            )
        };
        (n > 0).then_some(n as u64)
    }

    /// Replaces sequence `seq`'s state with the one in the llama.cpp sequence-state file at
    /// `path` (bytes after it are ignored), streaming it in; returns its tokens, at most
    /// `max_tokens` of them. `None` when llama.cpp rejects the file (another model or cache
    /// layout, too many tokens, no room).
    pub fn load_seq_file(
        &mut self,
        seq: i32,
        path: &Path,
        max_tokens: usize,
    ) -> Option<Vec<Token>> {
        let c_path = path_to_c(path)?;
        let mut tokens: Vec<Token> = vec![0; max_tokens.max(1)];
        let mut n_tokens = 0usize;
        // SAFETY: valid context; `tokens` has room for `tokens.len()` ids and llama.cpp writes
        // at most that many (it refuses a file with more).
        let read = unsafe {
            sys::llama_state_seq_load_file(
                self.ptr.as_ptr(),
                c_path.as_ptr(),
                seq,
                tokens.as_mut_ptr(),
                tokens.len(),
                &mut n_tokens,
            )
        };
        if read == 0 {
            return None;
        }
        tokens.truncate(n_tokens);
        Some(tokens)
    }

    /// The logits row of output `index` (`-1`: the last output), one value per vocabulary entry.
    pub fn logits(&self, index: i32) -> Option<&[f32]> {
        // SAFETY: valid context; null when there is no such output.
        let ptr = unsafe { sys::llama_get_logits_ith(self.ptr.as_ptr(), index) };
        if ptr.is_null() {
            return None;
        }
        let n = self.model.n_vocab() as usize;
        // SAFETY: llama.cpp's logits row has n_vocab floats and lives until the next decode,
        // which needs `&mut self`, so the borrow cannot outlive it.
        Some(unsafe { std::slice::from_raw_parts(ptr, n) })
    }

    /// The pooling an embeddings context applies (`Model` is never returned: llama.cpp has
    /// resolved it from the metadata).
    pub fn pooling(&self) -> Pooling {
        // SAFETY: read-only query on a valid context.
        match unsafe { sys::llama_pooling_type(self.ptr.as_ptr()) } {
            sys::LLAMA_POOLING_TYPE_MEAN => Pooling::Mean,
            sys::LLAMA_POOLING_TYPE_CLS => Pooling::Cls,
            sys::LLAMA_POOLING_TYPE_LAST => Pooling::Last,
            sys::LLAMA_POOLING_TYPE_RANK => Pooling::Rank,
            _ => Pooling::None,
        }
    }

    /// Floats in one embedding of this context's output (llama.cpp's `n_embd_out`).
    pub fn n_embd_out(&self) -> usize {
        // SAFETY: read-only query on a valid model.
        unsafe { sys::llama_model_n_embd_out(self.model.as_ptr()) }.max(0) as usize
    }

    /// Scores per sequence of a rank-pooling context (llama.cpp's `n_cls_out`; at least 1).
    fn n_cls_out(&self) -> usize {
        // SAFETY: read-only query on a valid model.
        (unsafe { sys::llama_model_n_cls_out(self.model.as_ptr()) } as usize).max(1)
    }

    /// The pooled embedding of sequence `seq` after the last decode (a rank-pooling context:
    /// its scores), or `None` (no pooling, or the sequence had no output).
    pub fn embeddings_seq(&self, seq: i32) -> Option<&[f32]> {
        // SAFETY: valid context; null when there is none.
        let ptr = unsafe { sys::llama_get_embeddings_seq(self.ptr.as_ptr(), seq) };
        if ptr.is_null() {
            return None;
        }
        let n = match self.pooling() {
            Pooling::Rank => self.n_cls_out(),
            _ => self.n_embd_out(),
        };
        // SAFETY: llama.cpp's pooled row for a sequence has `n` floats (n_embd_out, or
        // n_cls_out for rank pooling) and lives until the next decode, which needs `&mut self`.
        Some(unsafe { std::slice::from_raw_parts(ptr, n) })
    }

    /// The embedding of output `index` of the last decode (an unpooled context), or `None`.
    pub fn embeddings_ith(&self, index: i32) -> Option<&[f32]> {
        // SAFETY: valid context; null when there is no such output (llama.cpp checks the
        // index).
        let ptr = unsafe { sys::llama_get_embeddings_ith(self.ptr.as_ptr(), index) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: each output row has n_embd_out floats and lives until the next decode.
        Some(unsafe { std::slice::from_raw_parts(ptr, self.n_embd_out()) })
    }

    pub(super) fn as_ptr(&self) -> *mut sys::llama_context {
        self.ptr.as_ptr()
    }

    /// Convenience: decodes `tokens` at positions starting at `pos` in sequence `seq`, in
    /// chunks of the batch size, with logits only for the last token.
    pub fn decode_tokens(
        &mut self,
        batch: &mut Batch,
        tokens: &[Token],
        pos: i32,
        seq: i32,
    ) -> (usize, DecodeOutcome) {
        let chunk = (self.n_batch as usize).min(batch.capacity()).max(1);
        let mut done = 0;
        for piece in tokens.chunks(chunk) {
            batch.clear();
            for (i, &t) in piece.iter().enumerate() {
                batch.push(t, pos + (done + i) as i32, seq, false);
            }
            if done + piece.len() == tokens.len() {
                batch.set_last_logits(true);
            }
            let outcome = self.decode(batch);
            if outcome != DecodeOutcome::Done {
                return (done, outcome);
            }
            done += piece.len();
        }
        (done, DecodeOutcome::Done)
    }
}

fn path_to_c(path: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the pointer came from llama_init_from_model and is freed only here; the model
        // it refers to is still alive (the Arc field drops after this).
        unsafe { sys::llama_free(self.ptr.as_ptr()) };
    }
}
