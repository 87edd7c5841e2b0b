//! An owned `llama_model`: loading, metadata, the vocabulary and chat-template rendering.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use llama_sys as sys;

use super::{c_string, Backend, LoadMode, ModelParams, Token};
use crate::error::{LoadError, TemplateError, TokenizeError};

/// A loaded model. Freed when dropped; contexts keep it alive through an `Arc`.
pub struct Model {
    ptr: NonNull<sys::llama_model>,
    path: PathBuf,
}

// SAFETY: llama.cpp only reads a model after loading; it is shared by contexts on any thread.
unsafe impl Send for Model {}
// SAFETY: as above, every method used through `&Model` is a read-only query.
unsafe impl Sync for Model {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).finish()
    }
}

/// The user data of the progress trampoline.
type ProgressFn<'a> = &'a mut dyn FnMut(f32) -> bool;

unsafe extern "C" fn progress_trampoline(progress: f32, user_data: *mut c_void) -> bool {
    // SAFETY: `user_data` points at the `ProgressFn` on `Model::load`'s stack, alive for the
    // whole llama_model_load_from_file call that invokes this.
    let callback = unsafe { &mut *(user_data as *mut ProgressFn<'_>) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(progress))).unwrap_or(false)
}

impl ModelParams {
    /// The extra buffer types withheld from llama.cpp for this load.
    fn withheld_buffer_types(&self) -> Vec<String> {
        let mut withheld = self.excluded_buffer_types.clone();
        if !self.amx
            && !withheld
                .iter()
                .any(|n| n == super::buffers::AMX_BUFFER_TYPE)
        {
            withheld.push(super::buffers::AMX_BUFFER_TYPE.to_string());
        }
        withheld
    }
}

impl Model {
    /// Loads a GGUF model. The file must already have been checked by the GGUF reader
    /// (see [`crate::model_file::check_model_file`]); `progress` sees values from 0 to 1 and
    /// can return false to cancel.
    pub fn load_unchecked(
        path: &Path,
        params: &ModelParams,
        mut progress: Option<&mut dyn FnMut(f32) -> bool>,
    ) -> Result<Model, LoadError> {
        Backend::init();
        let c_path = path_to_c(path)?;
        // SAFETY: returns a plain struct of defaults.
        let mut raw = unsafe { sys::llama_model_default_params() };
        raw.n_gpu_layers = params.n_gpu_layers;
        raw.load_mode = match (params.no_alloc, params.load_mode) {
            // llama.cpp asserts when simulating allocations with mmap.
            (true, _) | (false, LoadMode::Read) => sys::LLAMA_LOAD_MODE_NONE,
            (false, LoadMode::Mmap) => sys::LLAMA_LOAD_MODE_MMAP,
            (false, LoadMode::MmapLocked) => sys::LLAMA_LOAD_MODE_MMAP_MLOCK,
            (false, LoadMode::ReadLocked) => sys::LLAMA_LOAD_MODE_MLOCK,
        };
        raw.use_extra_bufts = params.repack;
        raw.no_alloc = params.no_alloc;
        raw.vocab_only = params.vocab_only;
        let mut cancelled = false;
        let mut wrapped = |p: f32| {
            let go_on = progress.as_mut().is_none_or(|f| f(p));
            cancelled |= !go_on;
            go_on
        };
        let mut callback: ProgressFn<'_> = &mut wrapped;
        raw.progress_callback = Some(progress_trampoline);
        raw.progress_callback_user_data = (&mut callback as *mut ProgressFn<'_>).cast();
        // llama.cpp reads the CPU backend's list of extra buffer types during the load.
        let offer = super::buffers::offer_for_load(super::buffers::Offer {
            excluded: params.withheld_buffer_types(),
        });
        // SAFETY: `c_path` is a valid C string; `raw` holds valid parameters, and the progress
        // user data outlives the call. A null return means failure, handled below.
        let ptr = super::with_loading_heap(|| unsafe {
            sys::llama_model_load_from_file(c_path.as_ptr(), raw)
        });
        drop(offer);
        let path = path.to_path_buf();
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Model { ptr, path }),
            None if cancelled => Err(LoadError::Cancelled { path }),
            None => Err(LoadError::LlamaCpp { path }),
        }
    }

    /// The file the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn as_ptr(&self) -> *mut sys::llama_model {
        self.ptr.as_ptr()
    }

    pub(super) fn vocab(&self) -> *const sys::llama_vocab {
        // SAFETY: the model is valid; the vocabulary lives as long as the model.
        unsafe { sys::llama_model_get_vocab(self.ptr.as_ptr()) }
    }

    /// Context length the model was trained with.
    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: read-only query on a valid model.
        unsafe { sys::llama_model_n_ctx_train(self.ptr.as_ptr()) }.max(0) as u32
    }

    /// Number of transformer layers.
    pub fn n_layer(&self) -> u32 {
        // SAFETY: read-only query on a valid model.
        unsafe { sys::llama_model_n_layer(self.ptr.as_ptr()) }.max(0) as u32
    }

    /// Embedding width.
    pub fn n_embd(&self) -> u32 {
        // SAFETY: read-only query on a valid model.
        unsafe { sys::llama_model_n_embd(self.ptr.as_ptr()) }.max(0) as u32
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> u32 {
        // SAFETY: read-only query on a valid vocabulary.
        unsafe { sys::llama_vocab_n_tokens(self.vocab()) }.max(0) as u32
    }

    /// Total bytes of the weights.
    pub fn size_bytes(&self) -> u64 {
        // SAFETY: read-only query on a valid model.
        unsafe { sys::llama_model_size(self.ptr.as_ptr()) }
    }

    /// Number of parameters.
    pub fn n_params(&self) -> u64 {
        // SAFETY: read-only query on a valid model.
        unsafe { sys::llama_model_n_params(self.ptr.as_ptr()) }
    }

    /// llama.cpp's one-line description, e.g. `llama 135M Q4_1`.
    pub fn description(&self) -> String {
        read_c_buffer(|buf, len| {
            // SAFETY: `buf` has room for `len` bytes; llama.cpp writes at most that many.
            unsafe { sys::llama_model_desc(self.ptr.as_ptr(), buf, len) }
        })
        .unwrap_or_default()
    }

    /// A metadata value as text, `None` when the key is absent.
    pub fn meta(&self, key: &str) -> Option<String> {
        let key = c_string(key)?;
        read_c_buffer(|buf, len| {
            // SAFETY: `key` is a valid C string; `buf` has room for `len` bytes.
            unsafe { sys::llama_model_meta_val_str(self.ptr.as_ptr(), key.as_ptr(), buf, len) }
        })
    }

    /// The model's own chat template source, if its metadata has one.
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: a null name asks for the default template; the result is null or a string
        // owned by the model.
        let ptr = unsafe { sys::llama_model_chat_template(self.ptr.as_ptr(), std::ptr::null()) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: non-null pointers are valid C strings living as long as the model.
        let text = unsafe { CStr::from_ptr(ptr) };
        Some(text.to_string_lossy().into_owned())
    }

    /// Whether the model's vocabulary adds a BOS token when tokenizing with specials.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: read-only query on a valid vocabulary.
        unsafe { sys::llama_vocab_get_add_bos(self.vocab()) }
    }

    /// The beginning-of-sequence token.
    pub fn token_bos(&self) -> Token {
        // SAFETY: read-only query on a valid vocabulary.
        unsafe { sys::llama_vocab_bos(self.vocab()) }
    }

    /// The end-of-sequence token, if the vocabulary has one.
    pub fn token_eos(&self) -> Option<Token> {
        // SAFETY: read-only query on a valid vocabulary.
        let t = unsafe { sys::llama_vocab_eos(self.vocab()) };
        (t >= 0).then_some(t)
    }

    /// The separator token (BERT's SEP), if the vocabulary has one.
    pub fn token_sep(&self) -> Option<Token> {
        // SAFETY: read-only query on a valid vocabulary.
        let t = unsafe { sys::llama_vocab_sep(self.vocab()) };
        (t >= 0).then_some(t)
    }

    /// Whether the vocabulary adds an EOS token when tokenizing with specials.
    pub fn adds_eos(&self) -> bool {
        // SAFETY: read-only query on a valid vocabulary.
        unsafe { sys::llama_vocab_get_add_eos(self.vocab()) }
    }

    /// Whether `token` ends generation (end of sequence, end of turn, ...).
    pub fn is_end_of_generation(&self, token: Token) -> bool {
        // SAFETY: read-only query; out-of-range ids are handled by llama.cpp's lookup.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), token) }
    }

    /// Tokenizes `text`. `add_special` adds BOS/EOS as the model asks; `parse_special` turns
    /// special-token text such as `<|im_start|>` into its token.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, TokenizeError> {
        let len = text.len();
        let text_len = i32::try_from(len).map_err(|_| TokenizeError::InvalidText { len })?;
        let mut tokens: Vec<Token> = vec![0; len + 2];
        for _ in 0..2 {
            let capacity =
                i32::try_from(tokens.len()).map_err(|_| TokenizeError::InvalidText { len })?;
            // SAFETY: `text` is valid for `text_len` bytes (no NUL needed); `tokens` has room
            // for `capacity` ids.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab(),
                    text.as_ptr().cast(),
                    text_len,
                    tokens.as_mut_ptr(),
                    capacity,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            if n == i32::MIN {
                return Err(TokenizeError::InvalidText { len });
            }
            tokens.resize((-n) as usize, 0);
        }
        Err(TokenizeError::Failed { len })
    }

    /// The bytes a token stands for; a piece can end inside a UTF-8 sequence.
    /// `special` renders special tokens as their text.
    pub fn token_to_piece(&self, token: Token, special: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 32];
        for _ in 0..2 {
            // SAFETY: `buf` has room for `buf.len()` bytes.
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.vocab(),
                    token,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                    0,
                    special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
        Vec::new()
    }

    /// Concatenates the pieces of `tokens` into text (invalid UTF-8 is replaced).
    pub fn detokenize(&self, tokens: &[Token], special: bool) -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| self.token_to_piece(t, special))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Names of the chat templates llama.cpp can apply by name.
    pub fn builtin_chat_templates() -> Vec<String> {
        let mut names: Vec<*const c_char> = vec![std::ptr::null(); 128];
        // SAFETY: `names` has room for `len` pointers; llama.cpp fills static strings.
        let n = unsafe { sys::llama_chat_builtin_templates(names.as_mut_ptr(), names.len()) };
        names.truncate((n.max(0) as usize).min(names.len()));
        names
            .into_iter()
            .filter(|p| !p.is_null())
            // SAFETY: non-null entries are static NUL-terminated strings.
            .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .collect()
    }

    /// Renders `(role, content)` messages with `template` (a built-in name or a template
    /// source llama.cpp recognises). `add_assistant` opens the assistant's turn.
    pub fn apply_chat_template(
        template: &str,
        messages: &[(&str, &str)],
        add_assistant: bool,
    ) -> Result<String, TemplateError> {
        let tmpl = c_string(template).ok_or(TemplateError::InvalidMessage)?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|(role, content)| Some((c_string(role)?, c_string(content)?)))
            .collect::<Option<_>>()
            .ok_or(TemplateError::InvalidMessage)?;
        let chat: Vec<sys::llama_chat_message> = owned
            .iter()
            .map(|(role, content)| sys::llama_chat_message {
                role: role.as_ptr(),
                content: content.as_ptr(),
            })
            .collect();
        let total: usize = messages.iter().map(|(r, c)| r.len() + c.len()).sum();
        let mut buf = vec![0u8; total * 2 + 256];
        for _ in 0..2 {
            let len = i32::try_from(buf.len()).map_err(|_| TemplateError::InvalidMessage)?;
            // SAFETY: `tmpl` and every message string are valid C strings kept alive by
            // `owned`; `buf` has room for `len` bytes.
            let n = unsafe {
                sys::llama_chat_apply_template(
                    tmpl.as_ptr(),
                    chat.as_ptr(),
                    chat.len(),
                    add_assistant,
                    buf.as_mut_ptr().cast(),
                    len,
                )
            };
            if n < 0 {
                return Err(TemplateError::UnsupportedModelTemplate);
            }
            let n = n as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
            buf.resize(n, 0);
        }
        Err(TemplateError::UnsupportedModelTemplate)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: the pointer came from llama_model_load_from_file and is freed only here;
        // contexts hold an Arc<Model>, so none outlives it.
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) };
    }
}

fn path_to_c(path: &Path) -> Result<CString, LoadError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| LoadError::InvalidPath {
        path: path.to_path_buf(),
    })
}

/// Calls a llama.cpp "write into this buffer, return the full length" function, growing the
/// buffer once if needed. `None` when the function reports failure (negative length).
fn read_c_buffer(mut call: impl FnMut(*mut c_char, usize) -> i32) -> Option<String> {
    let mut buf = vec![0u8; 256];
    for _ in 0..2 {
        let n = call(buf.as_mut_ptr().cast(), buf.len());
        if n < 0 {
            return None;
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.resize(n + 1, 0);
    }
    None
}
