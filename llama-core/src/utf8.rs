//! Joins token pieces into text without splitting a UTF-8 character: a token can end in the
//! middle of a multi-byte sequence, whose remaining bytes arrive with the next token.

/// Buffers the bytes of an unfinished UTF-8 character between tokens.
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// An empty decoder.
    pub fn new() -> Utf8Decoder {
        Utf8Decoder::default()
    }

    /// Adds a token's bytes; returns the text that is complete so far. Bytes that can never
    /// be valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    // SAFETY-free: `valid_up_to` marks a prefix that is valid UTF-8.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match err.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an unfinished character comes out as U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_character_is_held_until_complete() {
        let mut d = Utf8Decoder::new();
        let euro = "€".as_bytes();
        assert_eq!(d.push(&euro[..1]), "");
        assert_eq!(d.push(&euro[1..2]), "");
        assert_eq!(d.push(&euro[2..]), "€");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = Utf8Decoder::new();
        assert_eq!(d.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(d.push(&[0xe2, 0x82]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }

    proptest! {
        #[test]
        fn any_split_of_valid_text_roundtrips(text in "\\PC{0,40}", cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort();
            let mut d = Utf8Decoder::new();
            let mut out = String::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                out.push_str(&d.push(&bytes[start..cut]));
                start = cut;
            }
            out.push_str(&d.finish());
            prop_assert_eq!(out, text);
        }
    }
}
