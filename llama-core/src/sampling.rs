//! Sampling parameters, with llama.cpp's defaults and range checks.

use crate::error::ParamError;

/// How the next token is chosen. Defaults follow llama.cpp's `llama-cli`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    /// Temperature; 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: i32,
    /// Nucleus sampling: keep the smallest set with this much probability; 1 disables.
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the best one; 0 disables.
    pub min_p: f32,
    /// Locally typical sampling; 1 disables.
    pub typical_p: f32,
    /// Penalty for repeating recent tokens; 1 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at; 0 disables, -1 means the context size.
    pub repeat_last_n: i32,
    /// Penalty proportional to how often a token appeared; 0 disables.
    pub frequency_penalty: f32,
    /// Penalty for a token having appeared at all; 0 disables.
    pub presence_penalty: f32,
    /// Mirostat: 0 off, 1 (Mirostat), 2 (Mirostat 2.0). It replaces top-k, top-p, min-p and
    /// typical sampling.
    pub mirostat: u8,
    /// Mirostat's target entropy (tau).
    pub mirostat_tau: f32,
    /// Mirostat's learning rate (eta).
    pub mirostat_eta: f32,
    /// DRY ("don't repeat yourself") penalty multiplier; 0 disables.
    pub dry_multiplier: f32,
    /// DRY's penalty base.
    pub dry_base: f32,
    /// Repeated sequences at most this long are not penalised by DRY.
    pub dry_allowed_length: i32,
    /// Recent tokens DRY looks at; 0 disables, -1 the context size.
    pub dry_penalty_last_n: i32,
    /// Strings that break a repeated sequence for DRY.
    pub dry_sequence_breakers: Vec<String>,
    /// XTC ("exclude top choices") probability; 0 disables.
    pub xtc_probability: f32,
    /// XTC's threshold.
    pub xtc_threshold: f32,
    /// Seed of the random draw.
    pub seed: u32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            mirostat: 0,
            mirostat_tau: 5.0,
            mirostat_eta: 0.1,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: -1,
            dry_sequence_breakers: ["\n", ":", "\"", "*"].map(String::from).to_vec(),
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: deterministic, the most likely token every step.
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }

    /// Whether the chain reduces to picking the most likely token (after the penalties).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || (self.top_k == 1 && self.mirostat == 0)
    }

    /// Whether every token is the most likely one of the logits as they are: greedy, and no
    /// penalty changes them. The engine then reads the token from the logits without a
    /// sampler chain, and the memory plan counts no candidate arrays for it.
    pub fn is_plain_greedy(&self) -> bool {
        self.is_greedy() && !self.has_penalties()
    }

    /// Whether any penalty (repeat, frequency, presence, DRY) changes the logits.
    pub fn has_penalties(&self) -> bool {
        self.repeat_penalty != 1.0
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
            || self.dry_multiplier != 0.0
    }

    /// Checks every value's range; the error names the flag / config key.
    pub fn validate(&self) -> Result<(), ParamError> {
        fn check(
            ok: bool,
            name: &'static str,
            value: impl ToString,
            expected: &'static str,
        ) -> Result<(), ParamError> {
            if ok {
                Ok(())
            } else {
                Err(ParamError {
                    name,
                    value: value.to_string(),
                    expected,
                })
            }
        }
        let finite = |v: f32| v.is_finite();
        check(
            finite(self.temperature) && self.temperature >= 0.0,
            "temp",
            self.temperature,
            "a number >= 0",
        )?;
        check(
            self.top_k >= 0,
            "top-k",
            self.top_k,
            "an integer >= 0 (0 disables)",
        )?;
        check(
            finite(self.top_p) && (0.0..=1.0).contains(&self.top_p),
            "top-p",
            self.top_p,
            "a number between 0 and 1",
        )?;
        check(
            finite(self.min_p) && (0.0..=1.0).contains(&self.min_p),
            "min-p",
            self.min_p,
            "a number between 0 and 1",
        )?;
        check(
            finite(self.typical_p) && self.typical_p > 0.0 && self.typical_p <= 1.0,
            "typical",
            self.typical_p,
            "a number in (0, 1] (1 disables)",
        )?;
        check(
            finite(self.repeat_penalty) && self.repeat_penalty > 0.0,
            "repeat-penalty",
            self.repeat_penalty,
            "a number > 0 (1 disables)",
        )?;
        check(
            self.repeat_last_n >= -1,
            "repeat-last-n",
            self.repeat_last_n,
            "an integer >= -1 (-1: the context size, 0 disables)",
        )?;
        check(
            finite(self.frequency_penalty),
            "frequency-penalty",
            self.frequency_penalty,
            "a finite number",
        )?;
        check(
            finite(self.presence_penalty),
            "presence-penalty",
            self.presence_penalty,
            "a finite number",
        )?;
        check(self.mirostat <= 2, "mirostat", self.mirostat, "0, 1 or 2")?;
        check(
            finite(self.mirostat_tau) && self.mirostat_tau > 0.0,
            "mirostat-ent",
            self.mirostat_tau,
            "a number > 0",
        )?;
        check(
            finite(self.mirostat_eta) && self.mirostat_eta > 0.0,
            "mirostat-lr",
            self.mirostat_eta,
            "a number > 0",
        )?;
        check(
            finite(self.dry_multiplier) && self.dry_multiplier >= 0.0,
            "dry-multiplier",
            self.dry_multiplier,
            "a number >= 0 (0 disables)",
        )?;
        check(
            finite(self.dry_base) && self.dry_base >= 1.0,
            "dry-base",
            self.dry_base,
            "a number >= 1",
        )?;
        check(
            self.dry_allowed_length >= 0,
            "dry-allowed-length",
            self.dry_allowed_length,
            "an integer >= 0",
        )?;
        check(
            self.dry_penalty_last_n >= -1,
            "dry-penalty-last-n",
            self.dry_penalty_last_n,
            "an integer >= -1 (-1: the context size, 0 disables)",
        )?;
        check(
            finite(self.xtc_probability) && (0.0..=1.0).contains(&self.xtc_probability),
            "xtc-probability",
            self.xtc_probability,
            "a number between 0 and 1 (0 disables)",
        )?;
        check(
            finite(self.xtc_threshold) && (0.0..=1.0).contains(&self.xtc_threshold),
            "xtc-threshold",
            self.xtc_threshold,
            "a number between 0 and 1",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        SamplingParams::default().validate().unwrap();
        SamplingParams::greedy().validate().unwrap();
    }

    #[test]
    fn out_of_range_values_name_the_flag() {
        let bad = SamplingParams {
            top_p: 1.5,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().name, "top-p");
        let bad = SamplingParams {
            temperature: -1.0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().name, "temp");
        let bad = SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().name, "temp");
        let bad = SamplingParams {
            typical_p: 0.0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().name, "typical");
        let bad = SamplingParams {
            repeat_last_n: -2,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().name, "repeat-last-n");
    }
}
