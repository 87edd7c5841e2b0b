//! Stop strings: ends generation when the output contains one, without ever showing it. Text
//! that could be the start of a stop string is held back until it is clearly not one. Reverse
//! prompts (llama.cpp's `-r`) end it the same way but are shown.

/// Watches streamed text for stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// How many of `stops` (the last ones) are shown when they end the text.
    n_shown: usize,
    held: String,
}

/// What to do with newly streamed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopCheck {
    /// Text that is safe to show now.
    pub emit: String,
    /// Whether a stop string was found (generation should end).
    pub stopped: bool,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            n_shown: 0,
            held: String::new(),
        }
    }

    /// Adds strings that end the text too, but are shown (reverse prompts).
    pub fn with_shown(mut self, shown: &[String]) -> StopMatcher {
        let shown: Vec<String> = shown.iter().filter(|s| !s.is_empty()).cloned().collect();
        self.n_shown = shown.len();
        self.stops.extend(shown);
        self
    }

    /// Feeds new text.
    pub fn push(&mut self, text: &str) -> StopCheck {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return StopCheck {
                emit: std::mem::take(&mut self.held),
                stopped: false,
            };
        }
        let first_shown = self.stops.len() - self.n_shown;
        if let Some((_, end)) = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(k, s)| {
                let at = self.held.find(s.as_str())?;
                Some((at, if k >= first_shown { at + s.len() } else { at }))
            })
            .min_by_key(|&(at, _)| at)
        {
            let emit = self.held[..end].to_string();
            self.held.clear();
            return StopCheck {
                emit,
                stopped: true,
            };
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopCheck {
            emit,
            stopped: false,
        }
    }

    /// Ends the stream: whatever was held back is shown.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on char boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.is_char_boundary(n) && text[start..] == stop[..n]
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_prompts_end_the_text_and_are_shown() {
        let mut m = StopMatcher::new(&["STOP".into()]).with_shown(&["User:".into()]);
        let a = m.push("Hello. Us");
        assert_eq!((a.emit.as_str(), a.stopped), ("Hello. ", false));
        let b = m.push("er: more");
        assert_eq!((b.emit.as_str(), b.stopped), ("User:", true));
        let mut m = StopMatcher::new(&["STOP".into()]).with_shown(&["User:".into()]);
        assert_eq!(m.push("x STOP User:").emit, "x ");
    }

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let c = m.push(p);
            out.push_str(&c.emit);
            if c.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_split_across_pieces_is_never_shown() {
        assert_eq!(
            run(&["\nUser:"], &["Hi", "\nUs", "er:", " more"]),
            ("Hi".into(), true)
        );
    }

    #[test]
    fn near_miss_is_released() {
        assert_eq!(run(&["STOP"], &["ST", "OP!"]), ("".into(), true));
        assert_eq!(run(&["STOP"], &["ST", "ART"]), ("START".into(), false));
        assert_eq!(run(&["STOP"], &["abc", "ST"]), ("abcST".into(), false));
    }

    #[test]
    fn earliest_stop_wins_and_no_stops_passes_through() {
        assert_eq!(run(&["b", "a"], &["xxab"]), ("xx".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn multibyte_boundaries_are_respected() {
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
        assert_eq!(run(&["éx"], &["é", "é"]), ("éé".into(), false));
    }
}
