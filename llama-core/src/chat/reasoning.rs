//! Whether the model thinks before it answers: llama.cpp's `--reasoning on|off|auto`. Templates
//! of reasoning models read the `enable_thinking` variable (Qwen3 writes an empty
//! `<think>\n\n</think>` when it is false; the DeepSeek-R1, QwQ and Command R7B templates of
//! llama.cpp's tree close the thinking block their generation prompt opens), so the setting is
//! passed to every render as `enable_thinking`, unless the request's template variables set it.

/// The reasoning setting of a render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reasoning {
    /// Thinking on: `enable_thinking` is true.
    On,
    /// Thinking off: `enable_thinking` is false, so a template that supports it opens the
    /// answer without reasoning (or with an empty, closed reasoning block).
    Off,
    /// As the template does by default. `enable_thinking` is true, as llama-server passes it
    /// for templates that can think (for the others it changes nothing).
    #[default]
    Auto,
}

impl Reasoning {
    /// Parses llama.cpp's values: `on`, `off`, `auto` (also `true`/`false`, `1`/`0`,
    /// `enabled`/`disabled`).
    pub fn from_name(name: &str) -> Option<Reasoning> {
        match name {
            "on" | "true" | "1" | "enabled" => Some(Reasoning::On),
            "off" | "false" | "0" | "disabled" => Some(Reasoning::Off),
            "auto" => Some(Reasoning::Auto),
            _ => None,
        }
    }

    /// The value templates see as `enable_thinking`.
    pub fn enable_thinking(self) -> bool {
        self != Reasoning::Off
    }
}

#[cfg(test)]
mod tests {
    use super::Reasoning;

    #[test]
    fn names_and_enable_thinking() {
        assert_eq!(Reasoning::from_name("on"), Some(Reasoning::On));
        assert_eq!(Reasoning::from_name("off"), Some(Reasoning::Off));
        assert_eq!(Reasoning::from_name("auto"), Some(Reasoning::Auto));
        assert_eq!(Reasoning::from_name("maybe"), None);
        assert!(Reasoning::On.enable_thinking());
        assert!(Reasoning::Auto.enable_thinking());
        assert!(!Reasoning::Off.enable_thinking());
    }
}
