//! Config files (`--config FILE`, TOML): the same keys as the long flags, e.g. `ctx-size = 2048`.
//! An unknown key or a value of the wrong type is an error naming the key and the file.

use std::path::Path;

use crate::error::CliError;
use crate::options::RunOptions;

/// Keys only `serve` reads (its own options). `prompt`, `chat` and `plan` accept and ignore
/// them, so one config file can serve every command.
pub const SERVE_KEYS: [&str; 12] = [
    "host",
    "port",
    "parallel",
    "api-key",
    "api-key-file",
    "no-auth",
    "max-body",
    "max-tokens-cap",
    "queue",
    "shutdown-timeout",
    "state-dir",
    "alias",
];

/// Reads and checks a config file for the run options (server keys are ignored).
pub fn load(path: &Path) -> Result<RunOptions, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ConfigRead {
        path: path.to_path_buf(),
        source,
    })?;
    parse_run_options(&text).map_err(|(key, message)| CliError::ConfigInvalid {
        path: path.to_path_buf(),
        key,
        message,
    })
}

/// [`parse`] after dropping the [`SERVE_KEYS`]. The text is parsed as it is when it holds none
/// (or is not valid TOML), so error messages keep their line numbers.
pub fn parse_run_options(text: &str) -> Result<RunOptions, (String, String)> {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return parse(text);
    };
    if !SERVE_KEYS.iter().any(|k| table.contains_key(*k)) {
        return parse(text);
    }
    for key in SERVE_KEYS {
        table.remove(key);
    }
    let rest = toml::to_string(&table).map_err(|e| ("?".to_string(), e.to_string()))?;
    parse(&rest)
}

/// Parses config text; on error returns the offending key (if known) and what is wrong.
pub fn parse(text: &str) -> Result<RunOptions, (String, String)> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_string();
        // An unknown key is reported at the table level: name it from the message.
        let key = if key == "." || key.is_empty() {
            message
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "?".to_string())
        } else {
            key
        };
        let message = match inner.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!("{message} (line {line})")
            }
            None => message,
        };
        (key, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_options_ignore_the_server_keys() {
        let o = parse_run_options("port = 8080\nctx-size = 1024\nhost = \"0.0.0.0\"\n").unwrap();
        assert_eq!(o.ctx_size, Some(1024));
        assert!(
            parse("port = 8080\n").is_err(),
            "plain parse still knows only run keys"
        );
        let (key, message) = parse_run_options("port = 8080\nctx-sise = 1\n").unwrap_err();
        assert_eq!(key, "ctx-sise", "{message}");
    }

    #[test]
    fn reads_known_keys() {
        let o =
            parse("ctx-size = 2048\ntemp = 0.5\nstop = [\"</s>\"]\nmax-mem = \"2G\"\n").unwrap();
        assert_eq!(o.ctx_size, Some(2048));
        assert_eq!(o.temp, Some(0.5));
        assert_eq!(o.stop, Some(vec!["</s>".to_string()]));
        assert_eq!(o.max_mem.map(|m| m.0), Some(2 << 30));
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
        let (key, _) = parse("max-mem = \"lots\"\n").unwrap_err();
        assert_eq!(key, "max-mem");
    }
}
