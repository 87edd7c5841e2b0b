//! An owned `llama_batch`: token ids, positions, sequence ids and output flags.

use llama_sys as sys;

use super::Token;

/// A reusable batch of tokens for `llama_decode`, freed on drop.
pub struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
}

// SAFETY: the batch owns its arrays exclusively; nothing else aliases them.
unsafe impl Send for Batch {}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Batch {
    /// A batch holding up to `capacity` tokens, each in one sequence.
    pub fn new(capacity: usize) -> Batch {
        let capacity = capacity.max(1);
        let n = i32::try_from(capacity).unwrap_or(i32::MAX);
        // SAFETY: llama_batch_init allocates arrays for `n` tokens with one sequence id each;
        // the result is freed exactly once in Drop.
        let raw = unsafe { sys::llama_batch_init(n, 0, 1) };
        Batch {
            raw,
            capacity: n as usize,
        }
    }

    /// Number of tokens in the batch.
    pub fn len(&self) -> usize {
        self.raw.n_tokens.max(0) as usize
    }

    /// Whether the batch holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Maximum number of tokens.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Removes every token.
    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Appends a token at position `pos` of sequence `seq`; `logits` asks for its output.
    /// Returns false (and adds nothing) when the batch is full.
    pub fn push(&mut self, token: Token, pos: i32, seq: i32, logits: bool) -> bool {
        let i = self.len();
        if i >= self.capacity {
            return false;
        }
        // SAFETY: `i < capacity`, and llama_batch_init allocated `capacity` entries in each
        // array, with room for one sequence id per token.
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = seq;
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        true
    }

    /// Marks whether the last token produces logits.
    pub fn set_last_logits(&mut self, logits: bool) {
        let n = self.len();
        if n > 0 {
            // SAFETY: `n - 1 < capacity`; the logits array has `capacity` entries.
            unsafe { *self.raw.logits.add(n - 1) = i8::from(logits) };
        }
    }

    /// The raw batch, passed by value to `llama_decode` (it borrows the arrays).
    pub(super) fn raw(&self) -> sys::llama_batch {
        self.raw
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: `raw` came from llama_batch_init and is freed only here.
        unsafe { sys::llama_batch_free(self.raw) };
    }
}
