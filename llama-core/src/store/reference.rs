//! What the user names: `org/repo`, `org/repo:Q4_K_M`, `org/repo:file.gguf`,
//! `org/repo/dir/file.gguf`, or a plain `https://` URL ([`ModelRef`]).

use std::fmt;

use super::error::StoreError;

/// A Hub repository id, `org/name`, checked as llama.cpp checks it: letters, digits and `_`,
/// with `.`, `-` (and the one `/`) only between them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId(String);

impl RepoId {
    /// Checks `text` is a repository id.
    pub fn parse(text: &str) -> Result<RepoId, StoreError> {
        let invalid = |reason| StoreError::InvalidReference {
            input: text.to_string(),
            reason,
        };
        if text.is_empty() || text.len() > 256 {
            return Err(invalid("a repository id is org/name, 1 to 256 characters"));
        }
        let mut slashes = 0;
        let mut after_special = true;
        for c in text.chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                after_special = false;
            } else if matches!(c, '/' | '.' | '-') {
                if after_special {
                    return Err(invalid(
                        "'/', '.' and '-' must stand between letters or digits",
                    ));
                }
                slashes += usize::from(c == '/');
                after_special = true;
            } else {
                return Err(invalid(
                    "a repository id holds only letters, digits, '_', '.', '-' and one '/'",
                ));
            }
        }
        if after_special || slashes != 1 {
            return Err(invalid(
                "expected org/name, e.g. bartowski/SmolLM2-135M-Instruct-GGUF",
            ));
        }
        Ok(RepoId(text.to_string()))
    }

    /// `org/name`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which GGUF file of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSelector {
    /// The default choice (llama.cpp's): Q4_K_M, else Q8_0, else the first model file.
    Default,
    /// The file whose quantisation tag is this (case-insensitive), e.g. `Q4_K_M`.
    Quant(String),
    /// This file (a path inside the repository).
    File(String),
}

/// A model to fetch or find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A GGUF file of a Hub repository, at a revision.
    Hub {
        /// The repository.
        repo: RepoId,
        /// Branch, tag or commit (`main` unless given).
        revision: String,
        /// Which file.
        selector: FileSelector,
    },
    /// A file at a plain `http(s)://` URL.
    Url(String),
}

impl ModelRef {
    /// Parses `org/repo[:QUANT]`, `org/repo:file.gguf`, `org/repo/path/file.gguf` or an
    /// `http(s)://` URL. The revision is `main`.
    pub fn parse(text: &str) -> Result<ModelRef, StoreError> {
        let text = text.trim();
        if text.starts_with("https://") || text.starts_with("http://") {
            return Ok(ModelRef::Url(text.to_string()));
        }
        let invalid = |reason| StoreError::InvalidReference {
            input: text.to_string(),
            reason,
        };
        let (repo_part, tag) = match text.split_once(':') {
            Some((_, "")) => {
                return Err(invalid(
                    "nothing after ':'; expected a quantisation such as Q4_K_M",
                ));
            }
            Some((repo, tag)) => (repo, Some(tag)),
            None => (text, None),
        };
        let mut parts = repo_part.splitn(3, '/');
        let (org, name, path) = (parts.next(), parts.next(), parts.next());
        let repo = match (org, name) {
            (Some(org), Some(name)) => RepoId::parse(&format!("{org}/{name}")).map_err(|_| {
                invalid(
                    "expected org/name[:QUANT], e.g. bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M",
                )
            })?,
            _ => {
                return Err(invalid(
                    "expected org/name[:QUANT], e.g. bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M",
                ))
            }
        };
        let selector = match (path, tag) {
            (Some(_), Some(_)) => {
                return Err(invalid("give either a file path or a :QUANT, not both"))
            }
            (Some(path), None) => FileSelector::File(checked_path(path).ok_or_else(|| {
                invalid("a file path inside a repository must not be empty or hold '..'")
            })?),
            (None, Some(tag)) if tag.to_ascii_lowercase().ends_with(".gguf") => {
                FileSelector::File(checked_path(tag).ok_or_else(|| {
                    invalid("a file path inside a repository must not be empty or hold '..'")
                })?)
            }
            (None, Some(tag)) => {
                if !tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(invalid(
                        "a quantisation tag holds letters, digits and '_', e.g. Q4_K_M",
                    ));
                }
                FileSelector::Quant(tag.to_ascii_uppercase())
            }
            (None, None) => FileSelector::Default,
        };
        Ok(ModelRef::Hub {
            repo,
            revision: "main".to_string(),
            selector,
        })
    }
}

impl ModelRef {
    /// The Hub file a `{endpoint}/{org}/{name}/resolve/{revision}/{path}` URL names, if `url`
    /// is one on `endpoint`.
    pub fn from_resolve_url(url: &str, endpoint: &str) -> Option<ModelRef> {
        let rest = url.strip_prefix(endpoint)?.strip_prefix('/')?;
        let rest = rest.split(['?', '#']).next()?;
        let mut parts = rest.splitn(5, '/');
        let (org, name, resolve, revision, path) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if resolve != "resolve" || revision.is_empty() {
            return None;
        }
        let repo = RepoId::parse(&format!("{org}/{name}")).ok()?;
        Some(ModelRef::Hub {
            repo,
            revision: revision.to_string(),
            selector: FileSelector::File(checked_path(path)?),
        })
    }
}

/// `path` if it is a relative path that stays inside the repository.
fn checked_path(path: &str) -> Option<String> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    ok.then(|| path.to_string())
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Url(url) => f.write_str(url),
            ModelRef::Hub { repo, selector, .. } => match selector {
                FileSelector::Default => write!(f, "{repo}"),
                FileSelector::Quant(tag) => write!(f, "{repo}:{tag}"),
                FileSelector::File(path) => write!(f, "{repo}/{path}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(text: &str) -> (String, FileSelector) {
        match ModelRef::parse(text).unwrap() {
            ModelRef::Hub { repo, selector, .. } => (repo.to_string(), selector),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn references_parse_like_llama_cpp_hf() {
        assert_eq!(hub("a/b"), ("a/b".into(), FileSelector::Default));
        assert_eq!(
            hub("a/b:q4_k_m"),
            ("a/b".into(), FileSelector::Quant("Q4_K_M".into()))
        );
        assert_eq!(
            hub("a/b:model.Q4_0.gguf"),
            ("a/b".into(), FileSelector::File("model.Q4_0.gguf".into()))
        );
        assert_eq!(
            hub("a/b/dir/m-00001-of-00002.gguf"),
            (
                "a/b".into(),
                FileSelector::File("dir/m-00001-of-00002.gguf".into())
            )
        );
        assert_eq!(
            ModelRef::parse("https://x.org/m.gguf").unwrap(),
            ModelRef::Url("https://x.org/m.gguf".into())
        );
    }

    #[test]
    fn bad_references_are_refused_with_a_reason() {
        for bad in [
            "",
            "justname",
            "a/b:",
            "a//b",
            "-a/b",
            "a/b:Q4 K",
            "a/b/../x.gguf",
            "a/b/x.gguf:Q4_0",
            "a b/c",
        ] {
            let err = ModelRef::parse(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidReference { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn resolve_urls_on_the_endpoint_are_hub_files() {
        let r = ModelRef::from_resolve_url(
            "http://127.0.0.1:5/a/b/resolve/main/dir/m.gguf?download=true",
            "http://127.0.0.1:5",
        )
        .unwrap();
        assert_eq!(r.to_string(), "a/b/dir/m.gguf");
        assert_eq!(
            ModelRef::from_resolve_url("https://x.org/a/b/resolve/main/m.gguf", "http://h"),
            None
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["a/b", "a/b:Q4_0", "a/b/x.gguf"] {
            assert_eq!(ModelRef::parse(text).unwrap().to_string(), text);
        }
    }
}
