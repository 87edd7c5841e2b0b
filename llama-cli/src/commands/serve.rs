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
use crate::server::cors::CorsConfig;
use crate::server::embeddings::Embeddings;
use crate::server::openai::Defaults;
use crate::server::state::{Limits, StateParts};
use crate::server::state_dir::StateDir;
use crate::server::{ServeError, ServerConfig};
use llama_core::embedding::{Embedder, EmbeddingsContext, Pooling};

option_group! {
    /// The server's own options: flags, or keys of the same name in the `--config` file (where
    /// they sit next to the run options; flags win).
    pub struct ServeOptions {
        /// Addresses to listen on, comma-separated (`127.0.0.1,::1`); a non-loopback address
        /// needs an API key or --no-auth.
        #[arg(long = "host", value_name = "ADDR[,ADDR...]")]
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

        /// Seconds a client may take to send the next part of a request (its head or body)
        /// before the connection is closed (head) or answered 408 (body); also how long an
        /// idle keep-alive connection stays open.
        #[arg(long = "timeout", value_name = "SECONDS")]
        timeout: f64 = Some(crate::server::READ_TIMEOUT.as_secs_f64()),

        /// Directory for sessions evicted from the KV cache (default: a temporary directory,
        /// removed at exit).
        #[arg(long = "state-dir", value_name = "DIR")]
        state_dir: PathBuf = None,

        /// Model names, comma-separated: the first in sorted order is the id in responses,
        /// all are accepted and listed (default: the file name without .gguf).
        #[arg(long = "alias", value_name = "NAME[,NAME...]")]
        alias: String = None,

        /// Without -m: serve the GGUF models in this directory too (split models and models
        /// in sub-folders included).
        #[arg(long = "models-dir", value_name = "DIR")]
        models_dir: PathBuf = None,

        /// Without -m: per-model settings, a TOML file of [models.NAME] tables (any run
        /// option, plus model, aliases, pin, parallel).
        #[arg(long = "models-preset", value_name = "FILE")]
        models_preset: PathBuf = None,

        /// Without -m: do not serve the models of the Hugging Face cache.
        #[arg(long = "no-models-store", num_args = 0, default_missing_value = "true")]
        no_models_store: bool = Some(false),

        /// Without -m: keep these models (comma-separated ids or aliases) loaded.
        #[arg(long = "pin", value_name = "NAMES")]
        pin: String = None,

        /// Without -m: unload a model idle this long (e.g. 90s, 10m, 1h).
        #[arg(long = "idle-unload", value_name = "DURATION")]
        idle_unload: String = None,

        /// Without -m: at most this many models loaded at once (as llama-server's
        /// --models-max); memory is bounded by --max-mem either way.
        #[arg(long = "models-max", value_name = "N")]
        models_max: usize = None,

        /// Without -m: seconds a request waits for its model to load (or for room to load
        /// it) before 503.
        #[arg(long = "load-timeout", value_name = "SECONDS")]
        load_timeout: f64 = Some(120.0),

        /// Informational model tags, comma-separated, listed by /v1/models.
        #[arg(long = "tags", value_name = "TAG[,TAG...]")]
        tags: String = None,

        /// Do not serve GET /slots (it answers 501, as llama-server's --no-slots).
        #[arg(long = "no-slots", num_args = 0, default_missing_value = "true")]
        no_slots: bool = Some(false),

        /// Do not serve GET /metrics (it answers 501, as llama-server without --metrics).
        #[arg(long = "no-metrics", num_args = 0, default_missing_value = "true")]
        no_metrics: bool = Some(false),

        /// One KV pool for all sequences: a request may use the whole -c, instead of -c
        /// divided by --parallel (also -kvu).
        #[arg(long = "kv-unified", num_args = 0, default_missing_value = "true")]
        kv_unified: bool = Some(false),

        /// Origins allowed by CORS: *, localhost (only localhost origins), or a
        /// comma-separated list.
        #[arg(long = "cors-origins", value_name = "ORIGINS")]
        cors_origins: String = Some("*".to_string()),

        /// Methods allowed by CORS, comma-separated.
        #[arg(long = "cors-methods", value_name = "METHODS")]
        cors_methods: String = Some("GET, POST, DELETE, OPTIONS".to_string()),

        /// Headers allowed by CORS, comma-separated, or *.
        #[arg(long = "cors-headers", value_name = "HEADERS")]
        cors_headers: String = Some("*".to_string()),

        /// Also serve embeddings (/v1/embeddings, /embeddings) and, for a model with rank
        /// pooling, reranking (/v1/rerank), from a second context with embeddings on.
        #[arg(long = "embeddings", visible_alias = "embedding", num_args = 0, default_missing_value = "true")]
        embeddings: bool = Some(false),

        /// Pooling of the embeddings: none, mean, cls, last or rank (default: the model's).
        #[arg(long = "pooling", value_name = "TYPE", requires = "embeddings")]
        pooling: String = None,

        /// Whether CORS allows credentials (true or false).
        #[arg(long = "cors-credentials", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        cors_credentials: bool = Some(true),
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
    timeout: f64,
    state_dir: Option<PathBuf>,
    alias: Option<String>,
    kv_unified: bool,
    tags: Vec<String>,
    slots: bool,
    metrics: bool,
    cors: CorsConfig,
    embeddings: Option<Pooling>,
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
        timeout: o.timeout.unwrap_or_default(),
        state_dir: o.state_dir,
        alias: o.alias,
        kv_unified: o.kv_unified.unwrap_or_default(),
        tags: o.tags.as_deref().map(aliases).unwrap_or_default(),
        slots: !o.no_slots.unwrap_or_default(),
        metrics: !o.no_metrics.unwrap_or_default(),
        embeddings: match (o.embeddings.unwrap_or_default(), &o.pooling) {
            (false, _) => None,
            (true, None) => Some(Pooling::Model),
            (true, Some(p)) => Some(p.parse::<Pooling>().map_err(|_| ServeError::Option {
                name: "pooling",
                value: p.clone(),
                expected: "none, mean, cls, last or rank",
            })?),
        },
        cors: CorsConfig {
            origins: o.cors_origins.unwrap_or_default(),
            methods: o.cors_methods.unwrap_or_default(),
            headers: o.cors_headers.unwrap_or_default(),
            credentials: o.cors_credentials.unwrap_or_default(),
        },
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
    if !(s.timeout.is_finite() && (0.1..=86400.0).contains(&s.timeout)) {
        return Err(bad(
            "timeout",
            s.timeout.to_string(),
            "0.1 to 86400 seconds",
        ));
    }
    if s.max_body > (1 << 30) {
        return Err(bad("max-body", s.max_body.to_string(), "at most 1G"));
    }
    if let Err(e) = s.cors.layer() {
        return Err(bad(
            e.option_name(),
            e.value,
            "valid comma-separated entries",
        ));
    }
    Ok(s)
}

/// Every address of a comma-separated `--host` list.
fn socket_addrs(hosts: &str, port: u16) -> Result<Vec<SocketAddr>, ServeError> {
    let addrs = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| socket_addr(h, port))
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(ServeError::Host {
            host: hosts.to_string(),
            message: "no address given".into(),
        });
    }
    Ok(addrs)
}

/// `--alias a,b,c` (and `--tags`): the names, sorted and without repeats, as llama-server
/// keeps them.
fn aliases(alias: &str) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = alias
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    set.into_iter().collect()
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

/// Runs the command. With `verbose` (the global `-v`/`--verbose`) answers carry llama-server's
/// `__verbose` object unless a request says `verbose: false`.
pub fn run(args: ServeArgs, verbose: bool) -> Result<(), CliError> {
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
    let addrs = socket_addrs(&serve.host, serve.port)?;
    let key = api_key(&serve_options)?;
    if key.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) && !serve.no_auth {
        return Err(ServeError::NoAuthOnPublicAddress {
            host: serve.host.clone(),
        }
        .into());
    }
    if settings.model.is_none() && settings.hf_repo.is_none() {
        // No -m: serve every model of the store, --models-dir and --models-preset.
        let cors = serve.cors.layer().map_err(|e| ServeError::Option {
            name: "cors",
            value: e.to_string(),
            expected: "origins, methods and headers as --help says",
        })?;
        let parts = crate::server::router::RouterParts {
            run_options,
            serve: serve_options,
            addrs,
            api_key: key,
            cors,
        };
        crate::server::router::run(parts)?;
        return Ok(());
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
        reasoning: settings.reasoning,
        verbose,
    };
    let mut names = serve.alias.as_deref().map(aliases).unwrap_or_default();
    if names.is_empty() {
        names.push(model_id(&started.path));
    }
    let parts = StateParts {
        engine: started.engine,
        model_id: names[0].clone(),
        aliases: names,
        tags: serve.tags.clone(),
        template,
        defaults,
        limits: Limits {
            max_body: serve.max_body as usize,
            queue_capacity: serve.queue,
            read_timeout: Duration::from_secs_f64(serve.timeout),
        },
        api_key: key,
        budget: started.counters,
    };
    let embeddings = match serve.embeddings {
        Some(pooling) => Some(std::sync::Arc::new(embedder(&parts, &settings, pooling)?)),
        None => None,
    };
    let _state_dir = started.state_dir;
    crate::server::serve(
        parts,
        ServerConfig {
            addrs,
            cors: serve.cors.clone(),
            embeddings,
            native: crate::server::native::NativeConfig {
                slots: serve.slots,
                metrics: serve.metrics,
            },
            shutdown_timeout: Duration::from_secs_f64(serve.shutdown_timeout),
        },
    )?;
    Ok(())
}

/// The embeddings context of `--embeddings`, as llama-server makes it: inputs of up to one
/// micro-batch (`--ubatch-size`), four per decode. It is planned with the engine's context
/// under `--max-mem`.
fn embeddings_context(settings: &Settings, pooling: Pooling) -> EmbeddingsContext {
    EmbeddingsContext {
        max_tokens: settings.ubatch_size.min(settings.batch_size).max(8),
        n_seq: 4,
        pooling,
    }
}

/// Creates the embeddings context of `--embeddings` on the engine's model.
fn embedder(
    parts: &StateParts,
    settings: &Settings,
    pooling: Pooling,
) -> Result<Embeddings, CliError> {
    let params =
        embeddings_context(settings, pooling).params(settings.threads, settings.threads_batch);
    let embedder =
        Embedder::create(parts.engine.model().clone(), &params, pooling).map_err(|e| {
            ServeError::Engine(llama_core::engine::EngineError::Start {
                message: e.to_string(),
            })
        })?;
    eprintln!(
        "embeddings: pooling {}, {} dimensions, inputs of up to {} tokens",
        embedder.pooling().name(),
        embedder.dimensions(),
        embedder.max_tokens()
    );
    Ok(Embeddings::new(embedder))
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
        let mut settings = crate::model_source::resolved(settings)?;
        // llama-server's -c is the context of all slots together: each sequence gets its
        // share (with --kv-unified, any one may use it all). 0 stays the training context of
        // each sequence.
        if settings.ctx_size > 0 {
            settings.ctx_size = (settings.ctx_size / serve.parallel).max(1);
        }
        let settings = &settings;
        let mut run = llama_core::run::RunSettings {
            ctx_is_total: true,
            embeddings: serve
                .embeddings
                .map(|pooling| embeddings_context(settings, pooling)),
            ..runtime::run_settings(settings, serve.parallel)?
        };
        run.runtime.http_server = true;
        if run.embeddings.is_some() {
            // The embeddings context computes outside the layer streamer's window: it needs
            // the whole model resident, so the plan never streams.
            if run.stream == llama_core::arena::StreamMode::On {
                return Err(llama_core::run::RunError::StreamingUnavailable {
                    reason: "--embeddings needs the whole model resident; drop --stream on".into(),
                }
                .into());
            }
            run.stream = llama_core::arena::StreamMode::Off;
        }
        let path = run.model.clone();
        let prepared = llama_core::run::prepare(&run)?;
        runtime::print_notes(&prepared.notes);
        let state_dir = StateDir::prepare(serve.state_dir.as_deref())?;
        let running = prepared.start(StartOptions {
            queue_capacity: serve.queue,
            state_dir: Some(state_dir.path().to_path_buf()),
            progress: None,
            kv_unified: serve.kv_unified,
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
    fn aliases_and_hosts_are_lists() {
        assert_eq!(aliases(" b, a,,b "), vec!["a".to_string(), "b".to_string()]);
        let addrs = socket_addrs("127.0.0.1, ::1", 0).unwrap();
        assert_eq!(addrs.len(), 2);
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert!(socket_addrs(" , ", 0).is_err());
        let o = ServeOptions {
            cors_methods: Some("GET, B@D".into()),
            ..ServeOptions::default()
        };
        assert!(resolve(&o)
            .unwrap_err()
            .to_string()
            .contains("cors-methods"));
    }

    #[test]
    fn hosts_resolve() {
        assert!(socket_addr("127.0.0.1", 0).unwrap().ip().is_loopback());
        assert!(socket_addr("[::1]", 0).unwrap().ip().is_loopback());
        assert!(!socket_addr("0.0.0.0", 0).unwrap().ip().is_loopback());
    }
}
