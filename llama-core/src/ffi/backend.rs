//! Process-wide llama.cpp initialisation and the bridge from llama.cpp's log to `tracing`.

use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use llama_sys as sys;

/// Proof that llama.cpp's backend was initialised. Obtain it with [`Backend::init`]; every type
/// that calls into llama.cpp initialises it first, so callers rarely need it directly.
#[derive(Debug)]
pub struct Backend {
    _private: (),
}

static BACKEND: OnceLock<Backend> = OnceLock::new();

/// Observers of llama.cpp's log lines (used to read figures llama.cpp only logs).
type LogTap = Box<dyn Fn(&str) + Send + Sync>;
static LOG_TAPS: Mutex<Vec<(u64, LogTap)>> = Mutex::new(Vec::new());

impl Backend {
    /// Initialises llama.cpp once per process, fixes the heap's mmap threshold
    /// ([`super::pin_heap_thresholds`]) and routes llama.cpp's log into `tracing`
    /// (target `llama_cpp`). Later calls return the same token.
    pub fn init() -> &'static Backend {
        BACKEND.get_or_init(|| {
            super::pin_heap_thresholds();
            // SAFETY: `log_to_tracing` has the signature llama.cpp expects, never unwinds, and
            // needs no user data. `llama_backend_init` has no preconditions and runs once here.
            unsafe {
                sys::llama_log_set(Some(log_to_tracing), std::ptr::null_mut());
                sys::llama_backend_init();
            }
            Backend { _private: () }
        })
    }

    /// Registers an observer that sees every complete llama.cpp log line while the returned
    /// guard lives.
    pub fn tap_log(observer: impl Fn(&str) + Send + Sync + 'static) -> LogTapGuard {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&LOG_TAPS).push((id, Box::new(observer)));
        LogTapGuard { id }
    }
}

/// Removes its log observer when dropped.
#[derive(Debug)]
pub struct LogTapGuard {
    id: u64,
}

impl Drop for LogTapGuard {
    fn drop(&mut self) {
        lock(&LOG_TAPS).retain(|(id, _)| *id != self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

unsafe extern "C" fn log_to_tracing(
    level: sys::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string that lives for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // A panic must not unwind into C; logging cannot fail in a way worth aborting for.
    let _ = std::panic::catch_unwind(|| emit(level, &text));
}

thread_local! {
    /// While this thread runs a decode: the flag that says the decode was aborted on purpose.
    static ABORTED: std::cell::Cell<*const std::sync::atomic::AtomicBool> =
        const { std::cell::Cell::new(std::ptr::null()) };
}

/// Runs `decode` (a `llama_decode` call on this thread) with `aborted` as the flag that tells
/// whether an abort was asked for: then the errors llama.cpp logs about the aborted graph are
/// logged at debug level, not shown as errors.
pub(super) fn while_decoding<R>(
    aborted: &std::sync::atomic::AtomicBool,
    decode: impl FnOnce() -> R,
) -> R {
    let previous = ABORTED.with(|a| a.replace(aborted));
    let result = decode();
    ABORTED.with(|a| a.set(previous));
    result
}

/// Whether `line` is one of llama.cpp's reports of a graph that was aborted, logged while this
/// thread's decode was aborted on purpose.
fn is_requested_abort(line: &str) -> bool {
    let aborted = ABORTED.with(|a| {
        let flag = a.get();
        // SAFETY: a non-null pointer is the running decode's flag, which lives in its context
        // for the whole `while_decoding` call during which it is set.
        !flag.is_null() && unsafe { &*flag }.load(std::sync::atomic::Ordering::Relaxed)
    });
    aborted
        && (line.contains("graph_compute")
            || line.contains("failed to compute graph")
            || line.contains("failed to decode"))
}

thread_local! {
    /// The unfinished log line of this thread and its level: llama.cpp may log a line in
    /// pieces, and threads log concurrently, so lines are assembled per thread.
    static PENDING_LINE: std::cell::RefCell<(String, u32)> =
        const { std::cell::RefCell::new((String::new(), 0)) };
}

fn emit(level: sys::ggml_log_level, text: &str) {
    let complete: Vec<(u32, String)> = PENDING_LINE.with(|pending| {
        let mut pending = pending.borrow_mut();
        if level != sys::GGML_LOG_LEVEL_CONT {
            pending.1 = level;
        }
        pending.0.push_str(text);
        let mut lines = Vec::new();
        while let Some(end) = pending.0.find('\n') {
            let line: String = pending.0.drain(..=end).collect();
            let line = line.trim_end();
            if !line.is_empty() {
                lines.push((pending.1, line.to_string()));
            }
        }
        lines
    });
    for (level, line) in complete {
        forward(level, &line);
    }
}

fn forward(level: u32, line: &str) {
    for (_, tap) in lock(&LOG_TAPS).iter() {
        tap(line);
    }
    match level {
        sys::GGML_LOG_LEVEL_ERROR if is_requested_abort(line) => {
            tracing::debug!(target: "llama_cpp", "{line} (the decode was cancelled)")
        }
        sys::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama_cpp", "{line}"),
        sys::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama_cpp", "{line}"),
        sys::GGML_LOG_LEVEL_INFO => tracing::info!(target: "llama_cpp", "{line}"),
        _ => tracing::debug!(target: "llama_cpp", "{line}"),
    }
}
