//! Choosing a repository's GGUF file by quantisation tag, as llama.cpp's `-hf user/model:TAG`
//! does: the tag is the last `-` or `.` separated word of the file name before `.gguf` and
//! before a split suffix (`model-Q4_K_M-00001-of-00003.gguf` is `Q4_K_M`, part 1 of 3); split
//! parts are chosen together. Files that are not models (`mmproj`, `imatrix`, speculative
//! drafts) are never chosen.

use super::error::StoreError;
use super::reference::{FileSelector, RepoId};

/// A GGUF file name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufName {
    /// The path without `.gguf` and without the split suffix.
    pub prefix: String,
    /// The quantisation tag, upper case (empty when the name has none).
    pub tag: String,
    /// The 1-based split number (1 for a file that is not split).
    pub part: u32,
    /// The number of split parts (1 for a file that is not split).
    pub count: u32,
}

impl GgufName {
    /// Parses a repository path; `None` unless it ends in `.gguf`.
    pub fn parse(path: &str) -> Option<GgufName> {
        let stem = strip_suffix_ignore_case(path, ".gguf")?;
        let (prefix, part, count) = split_suffix(stem).unwrap_or((stem, 1, 1));
        let file_prefix = prefix.rsplit('/').next().unwrap_or(prefix);
        let tag = file_prefix
            .rfind(['-', '.'])
            .map(|at| &file_prefix[at + 1..])
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map(str::to_ascii_uppercase)
            .unwrap_or_default();
        Some(GgufName {
            prefix: prefix.to_string(),
            tag,
            part,
            count,
        })
    }

    /// Whether this is a model (not a projector, importance matrix or draft model).
    pub fn is_model(&self) -> bool {
        let name = self.prefix.rsplit('/').next().unwrap_or(&self.prefix);
        !["mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"]
            .iter()
            .any(|k| name.contains(k))
    }
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let at = text.len().checked_sub(suffix.len())?;
    (text.is_char_boundary(at) && text[at..].eq_ignore_ascii_case(suffix)).then(|| &text[..at])
}

/// `(prefix, part, count)` of `prefix-NNNNN-of-MMMMM`.
fn split_suffix(stem: &str) -> Option<(&str, u32, u32)> {
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, part) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if prefix.is_empty() || !digits(part) || !digits(count) {
        return None;
    }
    let (part, count): (u32, u32) = (part.parse().ok()?, count.parse().ok()?);
    (part >= 1 && part <= count).then_some((prefix, part, count))
}

/// What [`choose`] needs to know of a file.
pub trait NamedFile {
    /// Its path inside the repository.
    fn path(&self) -> &str;
}

/// The tags of the model files among `files`, sorted and without duplicates.
pub fn available_tags<F: NamedFile>(files: &[F]) -> Vec<String> {
    let mut tags: Vec<String> = files
        .iter()
        .filter_map(|f| GgufName::parse(f.path()))
        .filter(|n| n.is_model() && !n.tag.is_empty())
        .map(|n| n.tag)
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// The paths of the GGUF files among `files`.
pub fn gguf_paths<F: NamedFile>(files: &[F]) -> Vec<String> {
    files
        .iter()
        .filter(|f| GgufName::parse(f.path()).is_some())
        .map(|f| f.path().to_string())
        .collect()
}

/// The file(s) `selector` picks from `files`: one file, or every part of a split model in
/// part order. Errors list what the repository offers.
pub fn choose<'a, F: NamedFile>(
    repo: &RepoId,
    files: &'a [F],
    selector: &FileSelector,
) -> Result<Vec<&'a F>, StoreError> {
    let models = || {
        files.iter().filter_map(|f| {
            let name = GgufName::parse(f.path())?;
            (name.is_model() && name.part == 1).then_some((f, name))
        })
    };
    let first = match selector {
        FileSelector::File(path) => {
            files
                .iter()
                .find(|f| f.path() == path)
                .ok_or_else(|| StoreError::FileNotFound {
                    repo: repo.to_string(),
                    file: path.clone(),
                    available: gguf_paths(files),
                })?
        }
        FileSelector::Quant(tag) => models()
            .find(|(_, n)| n.tag.eq_ignore_ascii_case(tag))
            .map(|(f, _)| f)
            .ok_or_else(|| StoreError::NoSuchQuant {
                repo: repo.to_string(),
                quant: tag.clone(),
                available: available_tags(files),
            })?,
        FileSelector::Default => ["Q4_K_M", "Q8_0"]
            .iter()
            .find_map(|tag| models().find(|(_, n)| n.tag == *tag).map(|(f, _)| f))
            .or_else(|| models().next().map(|(f, _)| f))
            .ok_or_else(|| StoreError::NoGguf {
                repo: repo.to_string(),
            })?,
    };
    with_split_parts(repo, files, first)
}

/// `first` and, if it is part 1 of a split model, its other parts in order.
pub fn with_split_parts<'a, F: NamedFile>(
    repo: &RepoId,
    files: &'a [F],
    first: &'a F,
) -> Result<Vec<&'a F>, StoreError> {
    let Some(name) = GgufName::parse(first.path()).filter(|n| n.count > 1) else {
        return Ok(vec![first]);
    };
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    for part in 1..=name.count {
        let found = files.iter().find(|f| {
            GgufName::parse(f.path())
                .is_some_and(|n| n.prefix == name.prefix && n.count == name.count && n.part == part)
        });
        match found {
            Some(f) => parts.push(f),
            None => missing.push(part),
        }
    }
    if !missing.is_empty() {
        return Err(StoreError::IncompleteSplit {
            repo: repo.to_string(),
            file: first.path().to_string(),
            missing,
            count: name.count,
        });
    }
    Ok(parts)
}

/// The first part of every model in `files` (one entry per model, split or not).
pub fn model_heads<F: NamedFile>(files: &[F]) -> Vec<&F> {
    files
        .iter()
        .filter(|f| GgufName::parse(f.path()).is_some_and(|n| n.is_model() && n.part == 1))
        .collect()
}

impl NamedFile for String {
    fn path(&self) -> &str {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoId {
        RepoId::parse("a/b").unwrap()
    }

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_give_tags_and_splits() {
        let n = GgufName::parse("SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
        assert_eq!((n.tag.as_str(), n.part, n.count), ("Q4_1", 1, 1));
        let n = GgufName::parse("dir/model-q4_k_m-00002-of-00003.gguf").unwrap();
        assert_eq!(
            (n.prefix.as_str(), n.tag.as_str(), n.part, n.count),
            ("dir/model-q4_k_m", "Q4_K_M", 2, 3)
        );
        assert!(GgufName::parse("README.md").is_none());
        assert!(!GgufName::parse("mmproj-F16.gguf").unwrap().is_model());
    }

    #[test]
    fn quant_tags_choose_files_and_splits_come_together() {
        let all = files(&[
            "README.md",
            "m-Q8_0.gguf",
            "m-Q4_K_M-00001-of-00002.gguf",
            "m-Q4_K_M-00002-of-00002.gguf",
            "mmproj-Q8_0.gguf",
        ]);
        let chosen = choose(&repo(), &all, &FileSelector::Quant("q4_k_m".into())).unwrap();
        assert_eq!(
            chosen,
            vec![
                "m-Q4_K_M-00001-of-00002.gguf",
                "m-Q4_K_M-00002-of-00002.gguf"
            ]
        );
        let chosen = choose(&repo(), &all, &FileSelector::Default).unwrap();
        assert_eq!(chosen[0], "m-Q4_K_M-00001-of-00002.gguf");
        let chosen = choose(&repo(), &all, &FileSelector::Quant("Q8_0".into())).unwrap();
        assert_eq!(chosen, vec!["m-Q8_0.gguf"]);
    }

    #[test]
    fn a_bad_tag_lists_the_available_ones() {
        let all = files(&["m-Q8_0.gguf", "m-Q4_0.gguf"]);
        let err = choose(&repo(), &all, &FileSelector::Quant("Q2_K".into())).unwrap_err();
        match err {
            StoreError::NoSuchQuant { available, .. } => assert_eq!(available, ["Q4_0", "Q8_0"]),
            other => panic!("{other}"),
        }
        let err = choose(&repo(), &files(&["README.md"]), &FileSelector::Default).unwrap_err();
        assert!(matches!(err, StoreError::NoGguf { .. }), "{err}");
    }

    #[test]
    fn a_missing_split_part_is_an_error() {
        let all = files(&["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"]);
        let err = choose(
            &repo(),
            &all,
            &FileSelector::File("m-00001-of-00003.gguf".into()),
        )
        .unwrap_err();
        match err {
            StoreError::IncompleteSplit { missing, .. } => assert_eq!(missing, [2]),
            other => panic!("{other}"),
        }
    }
}
