//! Config files (`--config FILE`, TOML): the same keys as the long flags, e.g. `ctx-size = 2048`.
//! An unknown key or a value of the wrong type is an error naming the key and the file.

use std::path::Path;

use crate::error::CliError;
use crate::options::RunOptions;

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<RunOptions, CliError> {
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
