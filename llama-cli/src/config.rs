//! Config files (`--config FILE`, TOML): the same keys as the long flags, e.g. `ctx-size = 2048`.
//! One file holds the run options and the server's (`port`, `parallel`, ...): `serve` reads
//! both, the other commands ignore the server's. An unknown key or a value of the wrong type is
//! an error naming the key, its line and the file. What `--print-config` prints is such a file.

use std::path::Path;

use crate::commands::serve::ServeOptions;
use crate::error::CliError;
use crate::options::RunOptions;

/// What a config file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    /// The run options.
    pub run: RunOptions,
    /// The server's options.
    pub serve: ServeOptions,
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<ConfigFile, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ConfigRead {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|(key, message)| CliError::ConfigInvalid {
        path: path.to_path_buf(),
        key,
        message,
    })
}

/// Parses config text; on error returns the offending key (`?` when there is none) and what is
/// wrong, with its line.
pub fn parse(text: &str) -> Result<ConfigFile, (String, String)> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ("?".to_string(), e.to_string()))?;
    let (mut run, mut serve) = (toml::Table::new(), toml::Table::new());
    for (key, value) in table {
        if RunOptions::is_key(&key) {
            run.insert(key, value);
        } else if ServeOptions::is_key(&key) {
            serve.insert(key, value);
        } else {
            let message = format!(
                "unknown field `{key}`{}; the keys are the long flags, e.g. ctx-size, temp, max-mem, port",
                line_of(text, &key)
            );
            return Err((key, message));
        }
    }
    Ok(ConfigFile {
        run: deserialize(text, run)?,
        serve: deserialize(text, serve)?,
    })
}

fn deserialize<T: serde::de::DeserializeOwned>(
    text: &str,
    table: toml::Table,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|err| {
        let key = err.path().to_string();
        let message = format!("{}{}", err.inner(), line_of(text, &key));
        (key, message)
    })
}

/// ` (line N)` for the line where `key` is set in `text`, if it can be found.
fn line_of(text: &str, key: &str) -> String {
    let top = key.split(['.', '[']).next().unwrap_or(key);
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(top)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| format!(" (line {})", i + 1))
        .unwrap_or_default()
}

/// `options` layered over the defaults, as config-file text.
pub fn print(options: &impl serde::Serialize) -> String {
    toml::to_string_pretty(options).unwrap_or_else(|e| format!("# {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_holds_run_and_serve_keys() {
        let c = parse("port = 8080\nctx-size = 1024\nhost = \"0.0.0.0\"\n").unwrap();
        assert_eq!(c.run.ctx_size, Some(1024));
        assert_eq!(c.serve.port, Some(8080));
        let (key, message) = parse("port = 8080\nctx-sise = 1\n").unwrap_err();
        assert_eq!(key, "ctx-sise", "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn reads_known_keys() {
        let c =
            parse("ctx-size = 2048\ntemp = 0.5\nstop = [\"</s>\"]\nmax-mem = \"2G\"\n").unwrap();
        assert_eq!(c.run.ctx_size, Some(2048));
        assert_eq!(c.run.temp, Some(0.5));
        assert_eq!(c.run.stop, Some(vec!["</s>".to_string()]));
        assert_eq!(c.run.max_mem.map(|m| m.0), Some(2 << 30));
    }

    #[test]
    fn unknown_key_is_named() {
        let (key, msg) = parse("ctx-size = 1\ncontext = 5\n").unwrap_err();
        assert_eq!(key, "context");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let (key, msg) = parse("top-k = \"many\"\n").unwrap_err();
        assert_eq!(key, "top-k");
        assert!(msg.contains("invalid type"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        let (key, _) = parse("max-mem = \"lots\"\n").unwrap_err();
        assert_eq!(key, "max-mem");
    }

    #[test]
    fn printed_defaults_read_back() {
        let printed = print(&RunOptions::defaults());
        let back = parse(&printed).unwrap();
        assert_eq!(back.run, RunOptions::defaults());
        let serve = print(&ServeOptions::defaults());
        assert_eq!(parse(&serve).unwrap().serve, ServeOptions::defaults());
    }
}
