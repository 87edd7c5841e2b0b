//! A GGUF string array stored end to end in one buffer.
//!
//! A vocabulary's token list is the largest metadata a model has (262,144 strings for Gemma 3).
//! As a `Vec<String>` every token is a heap block of its own plus a 24-byte header, about 56
//! bytes a token for short tokens; stored end to end it is its bytes plus a 4-byte end offset.
//! The reader's copy of a model's metadata lives next to llama.cpp's own through the model's
//! load, so that difference is part of every run's peak memory.

use std::fmt;

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Strings kept end to end in one buffer, with each string's end offset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StringArray {
    text: String,
    ends: Vec<u32>,
}

/// The strings of a [`StringArray`] would exceed its 4 GiB of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringArrayFull;

impl StringArray {
    /// An empty array.
    pub fn new() -> StringArray {
        StringArray::default()
    }

    /// An empty array with room for `n` strings.
    pub fn with_capacity(n: usize) -> StringArray {
        StringArray {
            text: String::new(),
            ends: Vec::with_capacity(n),
        }
    }

    /// Appends `s`, or refuses when the array's text would pass 4 GiB.
    pub fn try_push(&mut self, s: &str) -> Result<(), StringArrayFull> {
        let end = self
            .text
            .len()
            .checked_add(s.len())
            .and_then(|end| u32::try_from(end).ok())
            .ok_or(StringArrayFull)?;
        self.text.push_str(s);
        self.ends.push(end);
        Ok(())
    }

    /// Appends `s`.
    ///
    /// # Panics
    /// When the array's text would pass 4 GiB (a file's arrays are read with
    /// [`try_push`](Self::try_push), which refuses instead).
    pub fn push(&mut self, s: &str) {
        self.try_push(s)
            .expect("a string array holds at most 4 GiB of text");
    }

    /// The number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the array has no strings.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)? as usize;
        let start = match index {
            0 => 0,
            i => self.ends[i - 1] as usize,
        };
        self.text.get(start..end)
    }

    /// The strings in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(move |i| self.get(i).unwrap_or_default())
    }

    /// The strings as owned `String`s.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// Gives back the buffers' spare capacity (once the array is complete).
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// Bytes of heap the array holds (its text and offsets, by capacity).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * std::mem::size_of::<u32>()
    }
}

impl<S: AsRef<str>> FromIterator<S> for StringArray {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> StringArray {
        let mut array = StringArray::new();
        for s in iter {
            array.push(s.as_ref());
        }
        array.shrink_to_fit();
        array
    }
}

impl From<Vec<String>> for StringArray {
    fn from(v: Vec<String>) -> StringArray {
        v.iter().collect()
    }
}

impl From<Vec<&str>> for StringArray {
    fn from(v: Vec<&str>) -> StringArray {
        v.into_iter().collect()
    }
}

impl fmt::Debug for StringArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for StringArray {
    /// A plain list of strings.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for s in self.iter() {
            seq.serialize_element(s)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_in_order_with_empty_ones() {
        let array: StringArray = ["a", "", "héllo", "▁the"].into_iter().collect();
        assert_eq!(array.len(), 4);
        assert_eq!(array.get(0), Some("a"));
        assert_eq!(array.get(1), Some(""));
        assert_eq!(array.get(2), Some("héllo"));
        assert_eq!(array.get(3), Some("▁the"));
        assert_eq!(array.get(4), None);
        assert_eq!(array.to_vec(), vec!["a", "", "héllo", "▁the"]);
        assert_eq!(format!("{array:?}"), r#"["a", "", "héllo", "▁the"]"#);
        assert_eq!(
            serde_json::to_string(&array).unwrap(),
            r#"["a","","héllo","▁the"]"#
        );
    }

    #[test]
    fn a_vocabulary_takes_its_bytes_and_four_bytes_a_token() {
        let tokens: Vec<String> = (0..262_144).map(|i| format!("tok{i}")).collect();
        let text_bytes: usize = tokens.iter().map(String::len).sum();
        let array = StringArray::from(tokens);
        assert_eq!(array.len(), 262_144);
        assert_eq!(array.get(123_456), Some("tok123456"));
        assert!(array.heap_bytes() <= 2 * text_bytes + 4 * 262_144 + 64);
    }
}
