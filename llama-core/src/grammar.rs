//! Grammar-constrained sampling: a GBNF grammar (`--grammar`, the request's `grammar`), or
//! one converted from a JSON schema (`--json-schema`, `json_schema`, `response_format`) by
//! llama.cpp's converter, optionally lazy (unconstrained until a trigger, for tool calls).
//!
//! [`GrammarSpec`] is what a request carries to the engine; [`Grammar::from_gbnf`] and
//! [`Grammar::from_json_schema`] (feature `ffi`) check it against the model's vocabulary first,
//! so a grammar llama.cpp cannot use is a [`GrammarError`] naming what is wrong before any
//! generation, never an abort.

use serde_json::Value as Json;

use crate::params::Token;

/// A grammar for the sampler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrammarSpec {
    /// GBNF text whose start rule is `root`.
    pub gbnf: String,
    /// Regex patterns that start a lazy grammar when the generated text matches one.
    pub trigger_patterns: Vec<String>,
    /// Tokens that start a lazy grammar when sampled.
    pub trigger_tokens: Vec<Token>,
}

impl GrammarSpec {
    /// A grammar that constrains the whole answer.
    pub fn new(gbnf: impl Into<String>) -> GrammarSpec {
        GrammarSpec {
            gbnf: gbnf.into(),
            trigger_patterns: Vec::new(),
            trigger_tokens: Vec::new(),
        }
    }

    /// Whether the grammar waits for a trigger.
    pub fn is_lazy(&self) -> bool {
        !self.trigger_patterns.is_empty() || !self.trigger_tokens.is_empty()
    }
}

/// A grammar or schema that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The GBNF text does not parse, lacks a `root` rule, or is left-recursive.
    #[error("invalid grammar: {message}")]
    InvalidGrammar {
        /// What is wrong.
        message: String,
    },
    /// The JSON schema is not one llama.cpp's converter accepts.
    #[error("invalid JSON schema: {message}")]
    InvalidSchema {
        /// What is wrong.
        message: String,
    },
    /// A grammar or schema file could not be read.
    #[error("cannot read {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// The operating system's error.
        message: String,
    },
}

/// Checks what can be checked of a schema before llama.cpp's converter sees it: it must be an
/// object (or `true`), and its `type`s must be JSON schema's.
pub fn precheck_schema(schema: &Json) -> Result<(), GrammarError> {
    fn check(value: &Json, path: &str) -> Result<(), String> {
        const TYPES: [&str; 7] = [
            "object", "array", "string", "number", "integer", "boolean", "null",
        ];
        let Json::Object(map) = value else {
            return match value {
                Json::Bool(_) => Ok(()),
                other => Err(format!("{path} must be an object, not {other}")),
            };
        };
        if let Some(t) = map.get("type") {
            let ok = match t {
                Json::String(s) => TYPES.contains(&s.as_str()),
                Json::Array(list) => list
                    .iter()
                    .all(|v| v.as_str().is_some_and(|s| TYPES.contains(&s))),
                _ => false,
            };
            if !ok {
                return Err(format!("{path}.type = {t} is not a JSON schema type"));
            }
        }
        for key in ["properties", "$defs", "definitions"] {
            if let Some(Json::Object(props)) = map.get(key) {
                for (name, sub) in props {
                    check(sub, &format!("{path}.{key}.{name}"))?;
                }
            }
        }
        if let Some(items) = map.get("items") {
            if items.is_object() {
                check(items, &format!("{path}.items"))?;
            }
        }
        Ok(())
    }
    check(schema, "schema").map_err(|message| GrammarError::InvalidSchema { message })
}

#[cfg(feature = "ffi")]
pub use checked::{Grammar, JSON_OBJECT_SCHEMA};

#[cfg(feature = "ffi")]
mod checked {
    use super::*;
    use crate::ffi::{GrammarFailure, GrammarSampler, Model};

    /// The schema of `response_format: {"type": "json_object"}`: any JSON object.
    pub const JSON_OBJECT_SCHEMA: &str = "{\"type\": \"object\"}";

    /// Builders of checked [`GrammarSpec`]s.
    pub struct Grammar;

    impl Grammar {
        /// The GBNF `text`, checked by building llama.cpp's sampler for `model` once.
        pub fn from_gbnf(model: &Model, text: &str) -> Result<GrammarSpec, GrammarError> {
            if text.trim().is_empty() {
                return Err(GrammarError::InvalidGrammar {
                    message: "it is empty".into(),
                });
            }
            let spec = GrammarSpec::new(text);
            Grammar::check(model, &spec)?;
            Ok(spec)
        }

        /// The grammar of `schema` (JSON schema), converted by llama.cpp's
        /// `json_schema_to_grammar` and checked.
        pub fn from_json_schema(model: &Model, schema: &Json) -> Result<GrammarSpec, GrammarError> {
            let gbnf = Grammar::schema_to_gbnf(schema)?;
            let spec = GrammarSpec::new(gbnf);
            Grammar::check(model, &spec).map_err(|e| GrammarError::InvalidSchema {
                message: e.to_string(),
            })?;
            Ok(spec)
        }

        /// GBNF for a JSON schema (llama.cpp's converter), unchecked against a vocabulary.
        pub fn schema_to_gbnf(schema: &Json) -> Result<String, GrammarError> {
            precheck_schema(schema)?;
            crate::ffi::json_schema_to_gbnf(&schema.to_string()).ok_or_else(|| {
                GrammarError::InvalidSchema {
                    message: "llama.cpp's json_schema_to_grammar cannot convert it (an unsupported or malformed keyword)".into(),
                }
            })
        }

        /// Builds the sampler once to see that llama.cpp accepts `spec` for `model`.
        pub fn check(model: &Model, spec: &GrammarSpec) -> Result<(), GrammarError> {
            Grammar::sampler(model, spec).map(drop)
        }

        /// llama.cpp's sampler for `spec`.
        pub fn sampler(model: &Model, spec: &GrammarSpec) -> Result<GrammarSampler, GrammarError> {
            GrammarSampler::new(model, &spec.gbnf, &spec.trigger_patterns, &spec.trigger_tokens)
                .map_err(|failure| GrammarError::InvalidGrammar {
                    message: match failure {
                        GrammarFailure::Nul => "it contains a NUL byte".into(),
                        GrammarFailure::Refused => {
                            let hint = if !spec.gbnf.contains("root") {
                                " (there is no `root` rule)"
                            } else {
                                ""
                            };
                            format!(
                                "llama.cpp cannot parse it as GBNF{hint}; expected rules such as `root ::= \"yes\" | \"no\"`"
                            )
                        }
                    },
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prechecks_name_the_bad_part() {
        assert!(precheck_schema(&json!({"type": "object"})).is_ok());
        assert!(precheck_schema(&json!(true)).is_ok());
        let err = precheck_schema(&json!(123)).unwrap_err().to_string();
        assert!(err.contains("must be an object"), "{err}");
        let err = precheck_schema(&json!({"type": "hiccup"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema.type"), "{err}");
        let err = precheck_schema(&json!({"properties": {"a": {"type": 5}}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema.properties.a.type"), "{err}");
    }
}
