//! The vocabulary, as llama.cpp's `llama_vocab::impl::load` (llama-vocab.cpp) reads it: token
//! texts must be unique, the special tokens the tokenizer adds must exist, SentencePiece can
//! fall back to every byte, Unigram and RWKV tokens are not too long for their recursive
//! trie, WordPiece has no byte tokens, and there is a vocabulary at all.

use std::borrow::Cow;
use std::collections::HashMap;

use super::error::{Check, PreflightError, Subject};
use crate::gguf::model::GgufModel;
use crate::gguf::StringArray;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";

/// `LLAMA_TOKEN_TYPE_BYTE`.
const TOKEN_TYPE_BYTE: i64 = 6;

pub(super) fn check(model: &GgufModel) -> Result<(), PreflightError> {
    let Some(tokenizer) = model.get_str(KEY_MODEL) else {
        return Ok(()); // llama.cpp refuses a file without a tokenizer model
    };
    if tokenizer == "none" || tokenizer == "no_vocab" {
        return Err(no_vocabulary(model, tokenizer));
    }
    let Some(tokens) = model.get_array_str(KEY_TOKENS) else {
        return Ok(()); // llama.cpp refuses a vocabulary without tokens
    };
    unique(tokens)?;
    if tokenizer == "t5" || tokenizer == "rwkv" {
        token_lengths(tokens)?;
    }
    if tokenizer == "rwkv" {
        rwkv_progress(tokens)?;
    }
    if tokenizer == "bert" {
        no_byte_tokens(model)?;
    }
    // llama.cpp adds the special tokens before it encodes the text.
    special_tokens(model, tokenizer, tokens.len() as u64)?;
    if tokenizer == "llama" {
        byte_fallback(tokens)?;
    }
    Ok(())
}

/// Token texts are keys of llama.cpp's token-to-id map, which must end up as large as the
/// list (empty texts become `[EMPTY_<id>]` first).
fn unique(tokens: &StringArray) -> Result<(), PreflightError> {
    let mut seen: HashMap<Cow<'_, str>, usize> = HashMap::with_capacity(tokens.len());
    for (id, text) in tokens.iter().enumerate() {
        let text: Cow<'_, str> = if text.is_empty() {
            Cow::Owned(format!("[EMPTY_{id}]"))
        } else {
            Cow::Borrowed(text)
        };
        if let Some(first) = seen.insert(text.clone(), id) {
            return Err(PreflightError {
                check: Check::DuplicateToken,
                subject: Subject::Token(id as u64),
                found: format!("{text:?}, the text of token {first} too"),
                expected: "a text no other token has".into(),
            });
        }
    }
    Ok(())
}

/// The longest token the Unigram and RWKV tokenizers take: their trie (`naive_trie`) inserts,
/// looks up and frees a token recursively, one frame a byte, and overflows a 2 MiB thread
/// stack between 8 and 16 KiB (measured); real vocabularies' tokens are tens of bytes.
const MAX_TRIE_TOKEN_BYTES: usize = 1024;

fn token_lengths(tokens: &StringArray) -> Result<(), PreflightError> {
    match tokens.iter().position(|t| t.len() > MAX_TRIE_TOKEN_BYTES) {
        Some(id) => Err(PreflightError {
            check: Check::TokenLength,
            subject: Subject::Token(id as u64),
            found: format!("{} bytes long", tokens.get(id).map_or(0, str::len)),
            expected: format!(
                "at most {MAX_TRIE_TOKEN_BYTES} bytes (the tokenizer's trie recurses once a byte)"
            ),
        }),
        None => Ok(()),
    }
}

/// llama.cpp's `llama_unescape_rwkv_token`: `\t`, `\n`, `\r`, `\xNN` (hex digits read as
/// `c - 'a' + 10` from `a` up, else `c - '0'`, wrapping) and `\c` for any other `c`.
fn rwkv_unescape(escaped: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let (mut escaping, mut hex_remaining, mut hex) = (false, 0u8, 0u8);
    for c in escaped.bytes() {
        if hex_remaining != 0 {
            let value = if c >= b'a' {
                c.wrapping_sub(b'a').wrapping_add(10)
            } else {
                c.wrapping_sub(b'0')
            };
            hex = (hex << 4).wrapping_add(value);
            hex_remaining -= 1;
            if hex_remaining == 0 {
                out.push(hex);
                hex = 0;
            }
        } else if escaping {
            match c {
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'x' => hex_remaining = 2,
                other => out.push(other),
            }
            escaping = false;
        } else if c == b'\\' {
            escaping = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// The RWKV tokenizer takes the longest token at each position; when the bytes there start a
/// token but no token ends on the way, it restarts at position 0 and appends tokens without
/// end (until `std::bad_alloc` ends the process). Each byte that starts a token must then be
/// a token itself, as in RWKV's own vocabularies (all 256 bytes are tokens).
fn rwkv_progress(tokens: &StringArray) -> Result<(), PreflightError> {
    let (mut starts, mut single) = ([false; 256], [false; 256]);
    for token in tokens.iter() {
        let bytes = rwkv_unescape(token);
        if let Some(&first) = bytes.first() {
            starts[usize::from(first)] = true;
            single[usize::from(first)] |= bytes.len() == 1;
        }
    }
    let stuck =
        (0..=255u8).find(|&b| in_text(b) && starts[usize::from(b)] && !single[usize::from(b)]);
    match stuck {
        Some(byte) => Err(PreflightError::key(
            Check::TokenizerLoop,
            KEY_TOKENS,
            format!("an RWKV vocabulary where byte 0x{byte:02X} starts tokens but is not one"),
            "every byte that starts a token a token itself (text ending in it never advances)",
        )),
        None => Ok(()),
    }
}

/// Whether `byte` can occur in text given to llama.cpp: llama-rs passes only valid UTF-8
/// without NUL (`Model::tokenize` refuses NUL), which never holds 0xC0, 0xC1 or 0xF5 to 0xFF.
fn in_text(byte: u8) -> bool {
    matches!(byte, 0x01..=0xBF | 0xC2..=0xF4)
}

/// SentencePiece encodes a character missing from the vocabulary byte by byte, each byte as
/// its `<0xXX>` token or else as the one-byte text; a byte with neither makes
/// `token_to_id.at` throw out of `llama_tokenize` (`std::terminate`) on any text holding it,
/// so one character in a prompt or request would end the process.
fn byte_fallback(tokens: &StringArray) -> Result<(), PreflightError> {
    let texts: std::collections::HashSet<&str> = tokens.iter().collect();
    for byte in (0..=255u8).filter(|&b| in_text(b)) {
        let hex = format!("<0x{byte:02X}>");
        let single = (byte < 0x80).then(|| char::from(byte).to_string());
        let covered =
            texts.contains(hex.as_str()) || single.as_deref().is_some_and(|s| texts.contains(s));
        if !covered {
            return Err(PreflightError::key(
                Check::ByteFallback,
                KEY_TOKENS,
                format!("a SentencePiece vocabulary without {hex}"),
                "a token for every byte UTF-8 text can hold (a character the vocabulary lacks is encoded byte by byte)",
            ));
        }
    }
    Ok(())
}

/// Rendering a byte token of a WordPiece vocabulary is a `GGML_ABORT` (`token_to_byte`), and
/// llama.cpp renders every token while loading.
fn no_byte_tokens(model: &GgufModel) -> Result<(), PreflightError> {
    let Some(types) = model.metadata().get_array_i64(KEY_TOKEN_TYPE) else {
        return Ok(());
    };
    match types.iter().position(|&t| t == TOKEN_TYPE_BYTE) {
        Some(id) => Err(PreflightError {
            check: Check::ByteToken,
            subject: Subject::Token(id as u64),
            found: "a byte token (type 6) in a WordPiece (bert) vocabulary".into(),
            expected: "no byte tokens in WordPiece".into(),
        }),
        None => Ok(()),
    }
}

/// A special token: its key, and its default id for a tokenizer.
struct Special {
    /// `tokenizer.ggml.{name}_token_id`.
    key: &'static str,
    /// What the tokenizer adds it for.
    role: &'static str,
}

const BOS: Special = Special {
    key: "tokenizer.ggml.bos_token_id",
    role: "BOS",
};
const EOS: Special = Special {
    key: "tokenizer.ggml.eos_token_id",
    role: "EOS",
};
const SEP: Special = Special {
    key: "tokenizer.ggml.seperator_token_id",
    role: "separator",
};

/// What a tokenizer adds when text is tokenized with special tokens, and the defaults
/// llama.cpp starts from; `None` where llama.cpp's behaviour depends on more than the file
/// says (a BPE pre-tokenizer's own defaults), so only explicit flags count.
struct Adds {
    bos: Option<bool>,
    eos: Option<bool>,
    default_bos: Option<u64>,
    default_eos: Option<u64>,
}

fn adds(tokenizer: &str) -> Option<Adds> {
    let adds = |bos, eos, default_bos, default_eos| Adds {
        bos,
        eos,
        default_bos,
        default_eos,
    };
    Some(match tokenizer {
        // SentencePiece: BOS 1, EOS 2; adds BOS.
        "llama" => adds(Some(true), Some(false), Some(1), Some(2)),
        // Unigram: EOS 1, no BOS; adds EOS.
        "t5" => adds(Some(false), Some(true), None, Some(1)),
        // BPE: BOS and EOS 11; what is added depends on the pre-tokenizer.
        "gpt2" | "whitespace" | "hybriddna" => adds(None, None, Some(11), Some(11)),
        // Gemma 4 BPE: no defaults; BOS always added.
        "gemma4" => adds(Some(true), None, None, None),
        "plamo2" => adds(None, None, Some(1), Some(2)),
        _ => return None,
    })
}

/// The id llama.cpp ends up with for `special`: the file's when in range, else the default
/// when in range, else none.
fn resolve(model: &GgufModel, special: &Special, default: Option<u64>, n: u64) -> Option<u64> {
    let default = default.filter(|&id| id < n);
    match model.get_u64(special.key) {
        Some(id) if id < n => Some(id),
        _ => default,
    }
}

fn missing(model: &GgufModel, special: &Special, n: u64) -> PreflightError {
    let found = match model.get(special.key) {
        Some(v) => format!("{v}, and the vocabulary has {n} tokens"),
        None => "absent, and the tokenizer has no default in range".into(),
    };
    PreflightError::key(
        Check::MissingSpecialToken,
        special.key,
        found,
        format!(
            "a token id below {n} (the tokenizer adds a {} token)",
            special.role
        ),
    )
}

/// llama.cpp asserts that the special tokens it adds exist: WordPiece always adds BOS and
/// the separator; the others add BOS and EOS as `tokenizer.ggml.add_{bos,eos}_token` say, or
/// by their default.
fn special_tokens(model: &GgufModel, tokenizer: &str, n: u64) -> Result<(), PreflightError> {
    if tokenizer == "bert" {
        for (special, default) in [(BOS, 101), (SEP, 102)] {
            if resolve(model, &special, Some(default), n).is_none() {
                return Err(missing(model, &special, n));
            }
        }
        return Ok(());
    }
    let Some(adds) = adds(tokenizer) else {
        return Ok(());
    };
    let flag = |key: &str, default: Option<bool>| match model.get_bool(key) {
        // Gemma 4's BOS is added whatever the file says.
        Some(_) if tokenizer == "gemma4" && key.contains("bos") => default,
        Some(flag) => Some(flag),
        None => default,
    };
    let wanted = [
        (
            BOS,
            flag("tokenizer.ggml.add_bos_token", adds.bos),
            adds.default_bos,
        ),
        (
            EOS,
            flag("tokenizer.ggml.add_eos_token", adds.eos),
            adds.default_eos,
        ),
    ];
    for (special, added, default) in wanted {
        if added == Some(true) && resolve(model, &special, default, n).is_none() {
            return Err(missing(model, &special, n));
        }
    }
    Ok(())
}

/// llama.cpp loads a model without a vocabulary (`none`, `no_vocab`: `{arch}.vocab_size`
/// empty tokens, allocated at about 40 bytes each before any tensor is checked), but has no
/// tokenizer for it: the first text tokenized fails a `GGML_ASSERT`, and every command
/// tokenizes text.
fn no_vocabulary(model: &GgufModel, tokenizer: &str) -> PreflightError {
    let declared = model
        .arch_u64("vocab_size")
        .map_or(String::new(), |n| format!(" declaring {n} tokens"));
    PreflightError::key(
        Check::NoVocabulary,
        KEY_MODEL,
        format!("{tokenizer:?}{declared}"),
        "a tokenizer (llama.cpp cannot tokenize text without one)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rwkv_unescape_follows_llama_cpp() {
        assert_eq!(rwkv_unescape("ab"), b"ab");
        assert_eq!(rwkv_unescape("\\t\\n\\r"), b"\t\n\r");
        assert_eq!(rwkv_unescape("\\x41\\x0a"), b"A\n");
        assert_eq!(rwkv_unescape("a\\\\b\\q"), b"a\\bq");
        // Upper-case hex digits are read as `c - '0'`, as llama.cpp does: 'F' is 22.
        assert_eq!(rwkv_unescape("\\x4F"), [(4u8 << 4).wrapping_add(22)]);
        // A trailing escape or half a hex code adds nothing.
        assert_eq!(rwkv_unescape("a\\"), b"a");
        assert_eq!(rwkv_unescape("\\x4"), b"");
    }

    #[test]
    fn text_bytes_are_those_of_utf8_without_nul() {
        let text: Vec<u8> = (0..=255u8).filter(|&b| in_text(b)).collect();
        assert_eq!(
            text.len(),
            256 - 1 - 2 - 11,
            "all but NUL, 0xC0, 0xC1 and 0xF5 to 0xFF"
        );
        for s in ["\u{1}", "é", "\u{800}", "\u{10FFFF}", "\u{7F}"] {
            assert!(s.bytes().all(in_text), "{s:?}");
        }
        assert!(!in_text(0) && !in_text(0xC0) && !in_text(0xC1) && !in_text(0xF5));
    }

    #[test]
    fn rwkv_needs_each_starting_byte_as_a_token() {
        let tokens = |t: &[&str]| t.iter().collect::<StringArray>();
        assert!(rwkv_progress(&tokens(&["a", "ab", "abc", "\\x62"])).is_ok());
        let stuck = rwkv_progress(&tokens(&["a", "bc"])).unwrap_err();
        assert_eq!(stuck.check, Check::TokenizerLoop);
        assert!(stuck.found.contains("0x62"), "{stuck}");
    }

    #[test]
    fn trie_tokens_have_a_length_cap() {
        let ok = StringArray::from(vec!["x".repeat(MAX_TRIE_TOKEN_BYTES)]);
        assert!(token_lengths(&ok).is_ok());
        let long = StringArray::from(vec!["a".into(), "x".repeat(MAX_TRIE_TOKEN_BYTES + 1)]);
        assert_eq!(token_lengths(&long).unwrap_err().subject, Subject::Token(1));
    }
}
