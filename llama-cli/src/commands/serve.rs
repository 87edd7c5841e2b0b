//! `llama-cli serve`: load the model, plan memory for `--parallel` sequences under
//! `--max-mem`, start the engine and serve the OpenAI-compatible API (see `crate::server`).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use llama_core::engine::Engine;
use llama_core::metrics::BudgetCounters;
use llama_core::run::StartOptions;
use llama_core::{ByteSize, TemplateChoice};

use crate::cli::ServeArgs;
use crate::error::CliError;
use crate::option_group::option_group;
use crate::options::{RunOptions, Settings};
use crate::runtime;
use crate::server::auth::ApiKey;
use crate::server::openai::Defaults;
use crate::server::state::{Limits, StateParts};
use crate::server::state_dir::StateDir;
use crate::server::{ServeError, ServerConfig};

option_group! {
    /// The server's own options: flags, or keys of the same name in the `--config` file (where
    /// they sit next to the run options; flags win).
    pub struct ServeOptions {
        /// Address to listen on; a non-loopback address needs an API key or --no-auth.
        #[arg(long = "host", value_name = "ADDR")]
        host: String = Some("127.0.0.1".to_string()),

        /// Port to listen on; 0 picks a free one (printed on stderr).
        #[arg(long = "port", value_name = "N")]
        port: u16 = Some(8080),

        /// Requests decoded together (also -np).
        #[arg(long = "parallel", value_name = "N")]
        parallel: u32 = Some(4),

        /// Require `Authorization: Bearer KEY` on every endpoint but /health.
        #[arg(long = "api-key", value_name = "KEY", conflicts_with = "api_key_file")]
        api_key: String = None,

        /// Read the API key from this file (first line).
        #[arg(long = "api-key-file", value_name = "FILE")]
        api_key_file: PathBuf = None,

        /// Serve without an API key on a non-loopback address.
        #[arg(long = "no-auth", num_args = 0, default_missing_value = "true")]
        no_auth: bool = Some(false),

        /// Largest request body.
        #[arg(long = "max-body", value_name = "SIZE")]
        max_body: ByteSize = Some(ByteSize(1 << 20)),

        /// Largest max_tokens a request may ask for; also the limit when it asks none
        /// (default: the context per sequence).
        #[arg(long = "max-tokens-cap", value_name = "N")]
        max_tokens_cap: usize = None,

        /// Requests that may wait for a free sequence before 429.
        #[arg(long = "queue", value_name = "N")]
        queue: usize = Some(64),

        /// Seconds in-flight requests may run on after SIGINT/SIGTERM.
        #[arg(long = "shutdown-timeout", value_name = "SECONDS")]
        shutdown_timeout: f64 = Some(10.0),

        /// Directory for sessions evicted from the KV cache (default: a temporary directory,
        /// removed at exit).
        #[arg(long = "state-dir", value_name = "DIR")]
        state_dir: PathBuf = None,

        /// Model id in responses and /v1/models (default: the file name without .gguf).
        #[arg(long = "alias", value_name = "NAME")]
        alias: String = None,
    }
}

/// The effective server settings.
#[derive(Debug, Clone)]
struct ServeSettings {
    host: String,
    port: u16,
    parallel: u32,
    no_auth: bool,
    max_body: u64,
    max_tokens_cap: Option<usize>,
    queue: usize,
    shutdown_timeout: f64,
    state_dir: Option<PathBuf>,
    alias: Option<String>,
}

fn resolve(o: &ServeOptions) -> Result<ServeSettings, ServeError> {
    let o = o.clone().over(ServeOptions::defaults());
    let s = ServeSettings {
        host: o.host.unwrap_or_default(),
        port: o.port.unwrap_or_default(),
        parallel: o.parallel.unwrap_or_default(),
        no_auth: o.no_auth.unwrap_or_default(),
        max_body: o.max_body.map_or(0, |b| b.0),
        max_tokens_cap: o.max_tokens_cap,
        queue: o.queue.unwrap_or_default(),
        shutdown_timeout: o.shutdown_timeout.unwrap_or_default(),
        state_dir: o.state_dir,
        alias: o.alias,
    };
    let bad = |name, value: String, expected| ServeError::Option {
        name,
        value,
        expected,
    };
    if s.parallel == 0 || s.parallel > 256 {
        return Err(bad("parallel", s.parallel.to_string(), "1 to 256"));
    }
    if s.queue == 0 {
        return Err(bad("queue", "0".into(), "at least 1"));
    }
    if s.max_tokens_cap == Some(0) {
        return Err(bad("max-tokens-cap", "0".into(), "at least 1"));
    }
    if !(s.shutdown_timeout.is_finite() && (0.0..=3600.0).contains(&s.shutdown_timeout)) {
        return Err(bad(
            "shutdown-timeout",
            s.shutdown_timeout.to_string(),
            "0 to 3600 seconds",
        ));
    }
    if s.max_body > (1 << 30) {
        return Err(bad("max-body", s.max_body.to_string(), "at most 1G"));
    }
    Ok(s)
}

/// Resolves `host:port`, preferring the first address.
fn socket_addr(host: &str, port: u16) -> Result<SocketAddr, ServeError> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ServeError::Host {
            host: host.to_string(),
            message: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ServeError::Host {
            host: host.to_string(),
            message: "it resolves to no address".into(),
        })
}

fn api_key(o: &ServeOptions) -> Result<Option<ApiKey>, ServeError> {
    if let Some(key) = &o.api_key {
        return ApiKey::new(key).map(Some).ok_or(ServeError::EmptyApiKey);
    }
    let Some(path) = &o.api_key_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| ServeError::ApiKeyFile {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let first = text.lines().next().unwrap_or("");
    ApiKey::new(first)
        .map(Some)
        .ok_or_else(|| ServeError::ApiKeyFile {
            path: path.clone(),
            message: "the file's first line is empty".into(),
        })
}

/// Runs the command.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let file = match &args.config.config {
        Some(path) => crate::config::load(path)?,
        None => crate::config::ConfigFile::default(),
    };
    let run_options = args.options.over(file.run);
    let settings = run_options.clone().resolve()?;
    let serve_options = args.serve.over(file.serve);
    let serve = resolve(&serve_options)?;
    if args.config.print_config {
        // One config file: the run keys, then the server's (both flat).
        let text = crate::config::print(&run_options.over(RunOptions::defaults()))
            + &crate::config::print(&serve_options.over(ServeOptions::defaults()));
        std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
        return Ok(());
    }
    let addr = socket_addr(&serve.host, serve.port)?;
    let key = api_key(&serve_options)?;
    if key.is_none() && !addr.ip().is_loopback() && !serve.no_auth {
        return Err(ServeError::NoAuthOnPublicAddress {
            host: serve.host.clone(),
        }
        .into());
    }
    let started = Started::new(&settings, &serve)?;
    let template = match crate::chat_setup::template(started.engine.model(), &settings)? {
        TemplateChoice::Template(t) => Some(t),
        TemplateChoice::PlainCompletion => {
            eprintln!("note: the model has no chat template; chat messages are sent as plain text");
            None
        }
    };
    let n_ctx_per_seq = started.engine.config().n_ctx_per_seq as usize;
    let defaults = Defaults {
        sampling: settings.sampling.clone(),
        random_seed: settings.seed_was_random,
        max_tokens: settings.n_predict,
        stop: settings.stop.clone(),
        max_tokens_cap: serve.max_tokens_cap.unwrap_or(n_ctx_per_seq),
        system: settings.system.clone(),
        grammar: crate::chat_setup::grammar(started.engine.model(), &settings)?,
        reasoning_format: settings.reasoning_format,
    };
    let model_id = serve
        .alias
        .clone()
        .unwrap_or_else(|| model_id(&started.path));
    let parts = StateParts {
        engine: started.engine,
        model_id,
        template,
        defaults,
        limits: Limits {
            max_body: serve.max_body as usize,
            queue_capacity: serve.queue,
            read_timeout: crate::server::READ_TIMEOUT,
        },
        api_key: key,
        budget: started.counters,
    };
    let _state_dir = started.state_dir;
    crate::server::serve(
        parts,
        ServerConfig {
            addr,
            shutdown_timeout: Duration::from_secs_f64(serve.shutdown_timeout),
        },
    )?;
    Ok(())
}

/// The model's id: its file name without `.gguf`.
fn model_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    name.strip_suffix(".gguf")
        .map(str::to_string)
        .unwrap_or(name)
}

/// The model loaded and the engine running.
struct Started {
    engine: Engine,
    path: PathBuf,
    counters: BudgetCounters,
    /// Kept until the server exits (a private default directory is removed then).
    state_dir: StateDir,
}

impl Started {
    /// Plans, loads and starts the engine on llama-core's run path, as `prompt` does, with
    /// `--parallel` sequences: the same plan, streaming and GPU fitting.
    fn new(settings: &Settings, serve: &ServeSettings) -> Result<Started, CliError> {
        let settings = &crate::model_source::resolved(settings)?;
        let run = runtime::run_settings(settings, serve.parallel)?;
        let path = run.model.clone();
        let prepared = llama_core::run::prepare(&run)?;
        runtime::print_notes(&prepared.notes);
        let state_dir = StateDir::prepare(serve.state_dir.as_deref())?;
        let running = prepared.start(StartOptions {
            queue_capacity: serve.queue,
            state_dir: Some(state_dir.path().to_path_buf()),
            progress: None,
        })?;
        Ok(Started {
            engine: running.engine,
            path,
            counters: running.counters,
            state_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_holds_run_and_serve_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            "temp = 0.5\nport = 9000\nparallel = 2\nmax-body = \"2M\"\n",
        )
        .unwrap();
        let file = crate::config::load(&path).unwrap();
        assert_eq!(file.run.temp, Some(0.5));
        assert_eq!(file.serve.port, Some(9000));
        assert_eq!(file.serve.max_body, Some(ByteSize(2 << 20)));
        std::fs::write(&path, "prot = 9000\n").unwrap();
        let err = crate::config::load(&path).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        std::fs::write(&path, "port = \"x\"\n").unwrap();
        let err = crate::config::load(&path).unwrap_err().to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let o = ServeOptions {
            parallel: Some(0),
            ..ServeOptions::default()
        };
        assert!(resolve(&o).unwrap_err().to_string().contains("parallel"));
        let s = resolve(&ServeOptions::default()).unwrap();
        assert_eq!((s.port, s.parallel, s.queue), (8080, 4, 64));
    }

    #[test]
    fn hosts_resolve() {
        assert!(socket_addr("127.0.0.1", 0).unwrap().ip().is_loopback());
        assert!(socket_addr("[::1]", 0).unwrap().ip().is_loopback());
        assert!(!socket_addr("0.0.0.0", 0).unwrap().ip().is_loopback());
    }
}
