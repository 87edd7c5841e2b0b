//! The models `serve` without `-m` offers: the Hugging Face cache (the model store), the GGUF
//! files of `--models-dir`, and the `[models.NAME]` tables of `--models-preset`.
//!
//! A preset table holds run options (the long flags' names, as in `--config`: `ctx-size`,
//! `cache-type-k`, `temp`, ...) and the router's keys `model` (a file; or `hf-repo`),
//! `aliases` (a list of names) or `alias`, `pin` (keep loaded) and `parallel` (sequences). A
//! table named like a model found in the store or the directory sets that model's options;
//! another one must name its file with `model` or `hf-repo`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use llama_core::router::scan_models_dir;

use super::RouterError;
use crate::options::RunOptions;

/// One model to serve, with its own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The id requests name.
    pub id: String,
    /// Other names.
    pub aliases: Vec<String>,
    /// Where it was found: `cache`, `dir` or `preset`.
    pub source: &'static str,
    /// Its run options (the file, and what its preset sets); the server's fill the rest.
    pub options: RunOptions,
    /// Sequences decoded together (the server's `--parallel` when `None`).
    pub parallel: Option<u32>,
    /// Kept loaded.
    pub pin: bool,
}

/// One `[models.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preset {
    /// Its run options.
    pub options: RunOptions,
    /// Other names.
    pub aliases: Vec<String>,
    /// Kept loaded.
    pub pin: bool,
    /// Sequences decoded together.
    pub parallel: Option<u32>,
}

/// Reads a presets file.
pub fn load_presets(path: &Path) -> Result<BTreeMap<String, Preset>, RouterError> {
    let text = std::fs::read_to_string(path).map_err(|e| RouterError::Presets {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_presets(&text).map_err(|message| RouterError::Presets {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses presets text; the error names the table and key.
pub fn parse_presets(text: &str) -> Result<BTreeMap<String, Preset>, String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let models = match table.remove("models") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err("`models` must be a table of [models.NAME] tables".into()),
        None => toml::Table::new(),
    };
    if let Some(key) = table.keys().next() {
        return Err(format!(
            "unknown key `{key}`: the file holds [models.NAME] tables"
        ));
    }
    let mut out = BTreeMap::new();
    for (name, value) in models {
        let toml::Value::Table(mut t) = value else {
            return Err(format!("models.{name} must be a table"));
        };
        let mut preset = Preset::default();
        let mut take = |key: &str| t.remove(key);
        if let Some(v) = take("aliases") {
            let list = v
                .as_array()
                .ok_or(format!("models.{name}.aliases: expected a list of strings"))?;
            for a in list {
                let a = a
                    .as_str()
                    .ok_or(format!("models.{name}.aliases: expected a list of strings"))?;
                preset.aliases.push(a.to_string());
            }
        }
        if let Some(v) = take("alias") {
            let a = v
                .as_str()
                .ok_or(format!("models.{name}.alias: expected a string"))?;
            preset.aliases.push(a.to_string());
        }
        if let Some(v) = take("pin") {
            preset.pin = v
                .as_bool()
                .ok_or(format!("models.{name}.pin: expected true or false"))?;
        }
        if let Some(v) = take("parallel") {
            let n = v
                .as_integer()
                .filter(|n| (1..=256).contains(n))
                .ok_or(format!("models.{name}.parallel: expected 1 to 256"))?;
            preset.parallel = Some(n as u32);
        }
        if let Some(key) = t.keys().find(|k| !RunOptions::is_key(k)) {
            return Err(format!(
                "models.{name}: unknown key `{key}`; the keys are the long flags (ctx-size, cache-type-k, temp, ...) and model, hf-repo, aliases, pin, parallel"
            ));
        }
        preset.options = serde_path_to_error::deserialize(toml::Value::Table(t))
            .map_err(|e| format!("models.{name}.{}: {}", e.path(), e.inner()))?;
        out.insert(name, preset);
    }
    Ok(out)
}

fn file_options(path: PathBuf) -> RunOptions {
    RunOptions {
        model: Some(path),
        ..RunOptions::default()
    }
}

/// The models of the store (`cache`: its models as `(name, path)`), the directory and the
/// presets, in that order; a preset named like a model found sets its options.
pub fn collect(
    cache: Vec<(String, PathBuf)>,
    models_dir: Option<&Path>,
    presets: BTreeMap<String, Preset>,
) -> Result<Vec<ModelSpec>, RouterError> {
    let mut specs: Vec<ModelSpec> = cache
        .into_iter()
        .map(|(id, path)| ModelSpec {
            id,
            aliases: Vec::new(),
            source: "cache",
            options: file_options(path),
            parallel: None,
            pin: false,
        })
        .collect();
    if let Some(dir) = models_dir {
        let found = scan_models_dir(dir).map_err(|e| RouterError::ModelsDir {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        for f in found {
            if specs.iter().any(|s| s.id == f.id) {
                continue;
            }
            specs.push(ModelSpec {
                id: f.id,
                aliases: Vec::new(),
                source: "dir",
                options: file_options(f.path),
                parallel: None,
                pin: false,
            });
        }
    }
    for (name, preset) in presets {
        let names_file = preset.options.model.is_some() || preset.options.hf_repo.is_some();
        match specs.iter_mut().find(|s| s.id == name) {
            Some(spec) => {
                spec.options = preset.options.over(spec.options.clone());
                spec.aliases.extend(preset.aliases);
                spec.pin |= preset.pin;
                spec.parallel = preset.parallel.or(spec.parallel);
            }
            None if names_file => specs.push(ModelSpec {
                id: name,
                aliases: preset.aliases,
                source: "preset",
                options: preset.options,
                parallel: preset.parallel,
                pin: preset.pin,
            }),
            None => return Err(RouterError::PresetWithoutModel { name }),
        }
    }
    Ok(specs)
}

/// `90`, `90s`, `10m`, `1h`, `1.5h` as a duration.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(k) => t.split_at(k),
        None => (t, "s"),
    };
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let value: f64 = number.trim().parse().ok()?;
    let secs = value * scale;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_with_run_options_and_router_keys() {
        let p = parse_presets(
            r#"
[models.small]
ctx-size = 1024
cache-type-k = "q8_0"
aliases = ["s", "tiny"]
pin = true
parallel = 2

[models.other]
model = "/m/other.gguf"
alias = "o"
temp = 0.2
"#,
        )
        .unwrap();
        let small = &p["small"];
        assert_eq!(small.options.ctx_size, Some(1024));
        assert_eq!(small.options.cache_type_k.as_deref(), Some("q8_0"));
        assert_eq!(small.aliases, ["s", "tiny"]);
        assert!(small.pin);
        assert_eq!(small.parallel, Some(2));
        assert_eq!(
            p["other"].options.model,
            Some(PathBuf::from("/m/other.gguf"))
        );
        assert_eq!(p["other"].aliases, ["o"]);
    }

    #[test]
    fn bad_presets_name_the_key() {
        let err = parse_presets("[models.a]\nctx-sise = 1\n").unwrap_err();
        assert!(
            err.contains("models.a") && err.contains("ctx-sise"),
            "{err}"
        );
        let err = parse_presets("[models.a]\nctx-size = \"x\"\n").unwrap_err();
        assert!(err.contains("ctx-size"), "{err}");
        let err = parse_presets("[models.a]\nparallel = 0\n").unwrap_err();
        assert!(err.contains("parallel"), "{err}");
        let err = parse_presets("port = 1\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn presets_apply_to_found_models_or_add_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.gguf"), b"GGUF").unwrap();
        let presets = parse_presets(
            "[models.a]\nctx-size = 512\npin = true\n[models.b]\nmodel = \"/m/b.gguf\"\n",
        )
        .unwrap();
        let cache = vec![("org/repo:Q4_0".to_string(), PathBuf::from("/c/r.gguf"))];
        let specs = collect(cache, Some(dir.path()), presets).unwrap();
        let ids: Vec<(&str, &str)> = specs.iter().map(|s| (s.id.as_str(), s.source)).collect();
        assert_eq!(
            ids,
            [("org/repo:Q4_0", "cache"), ("a", "dir"), ("b", "preset")]
        );
        assert_eq!(specs[1].options.ctx_size, Some(512));
        assert_eq!(specs[1].options.model, Some(dir.path().join("a.gguf")));
        assert!(specs[1].pin);
        let lone = parse_presets("[models.c]\nctx-size = 1\n").unwrap();
        assert!(matches!(
            collect(Vec::new(), None, lone),
            Err(RouterError::PresetWithoutModel { .. })
        ));
    }

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("5 fortnights"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
