//! `--models-dir DIR`: the GGUF files in a directory, and split models (or single files) in
//! its sub-folders.
//!
//! - `DIR/NAME.gguf` is the model `NAME`; `DIR/NAME-00001-of-00003.gguf` (with its other
//!   parts beside it) is the split model `NAME`;
//! - a sub-folder `DIR/SUB/` holding one model (a file, or the parts of a split model) is the
//!   model `SUB`; one holding several is `SUB/NAME` for each;
//! - multimodal projectors (`mmproj*.gguf`) and the later parts of split models are not
//!   models; hidden entries are skipped. Deeper folders are not read.

use std::path::{Path, PathBuf};

/// A model found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundModel {
    /// Its name.
    pub id: String,
    /// The file to open (the first part of a split model).
    pub path: PathBuf,
}

/// `NAME-00001-of-00003.gguf` → `Some(("NAME", 1, 3))`.
pub fn split_part(file_name: &str) -> Option<(&str, u32, u32)> {
    let stem = file_name.strip_suffix(".gguf")?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (name, part) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(part) || !digits(total) || name.is_empty() {
        return None;
    }
    Some((name, part.parse().ok()?, total.parse().ok()?))
}

/// The models among the file names of one folder: `(name, file)`, sorted by name.
fn heads(names: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = names
        .iter()
        .filter(|n| n.ends_with(".gguf") && !n.starts_with("mmproj") && !n.starts_with('.'))
        .filter_map(|n| match split_part(n) {
            Some((name, 1, _)) => Some((name.to_string(), n.clone())),
            Some(_) => None,
            None => Some((n.trim_end_matches(".gguf").to_string(), n.clone())),
        })
        .collect();
    out.sort();
    out
}

fn file_names(dir: &Path, want_dirs: bool) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // Follows symbolic links, as a model store's snapshot entries are links.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() == want_dirs && (want_dirs || meta.is_file()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// The models in `dir` (see the module docs), sorted by id.
pub fn scan_models_dir(dir: &Path) -> std::io::Result<Vec<FoundModel>> {
    let mut out: Vec<FoundModel> = heads(&file_names(dir, false)?)
        .into_iter()
        .map(|(id, file)| FoundModel {
            id,
            path: dir.join(file),
        })
        .collect();
    for sub in file_names(dir, true)? {
        let folder = dir.join(&sub);
        let Ok(names) = file_names(&folder, false) else {
            continue;
        };
        let found = heads(&names);
        let single = found.len() == 1;
        for (name, file) in found {
            out.push(FoundModel {
                id: if single {
                    sub.clone()
                } else {
                    format!("{sub}/{name}")
                },
                path: folder.join(file),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_parse() {
        assert_eq!(
            split_part("m-Q4_K-00001-of-00003.gguf"),
            Some(("m-Q4_K", 1, 3))
        );
        assert_eq!(split_part("m.gguf"), None);
        assert_eq!(split_part("m-1-of-3.gguf"), None);
        assert_eq!(split_part("-00001-of-00002.gguf"), None);
    }

    #[test]
    fn finds_files_split_models_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let touch = |p: &str| {
            let p = d.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"GGUF").unwrap();
        };
        touch("a.gguf");
        touch("notes.txt");
        touch("mmproj-a.gguf");
        touch(".hidden.gguf");
        touch("big-00001-of-00002.gguf");
        touch("big-00002-of-00002.gguf");
        touch("qwen/qwen-00001-of-00002.gguf");
        touch("qwen/qwen-00002-of-00002.gguf");
        touch("qwen/mmproj-qwen.gguf");
        touch("pair/x.gguf");
        touch("pair/y.gguf");
        touch("empty/readme.md");
        touch("deep/inner/z.gguf");
        let found = scan_models_dir(d).unwrap();
        let ids: Vec<(&str, PathBuf)> = found
            .iter()
            .map(|f| (f.id.as_str(), f.path.strip_prefix(d).unwrap().to_path_buf()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("a", PathBuf::from("a.gguf")),
                ("big", PathBuf::from("big-00001-of-00002.gguf")),
                ("pair/x", PathBuf::from("pair/x.gguf")),
                ("pair/y", PathBuf::from("pair/y.gguf")),
                ("qwen", PathBuf::from("qwen/qwen-00001-of-00002.gguf")),
            ]
        );
        assert!(scan_models_dir(&d.join("missing")).is_err());
    }
}
