//! `llama-cli serve`: load the model, plan memory for `--parallel` sequences under
//! `--max-mem`, start the engine and serve the OpenAI-compatible API (see `crate::server`).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use llama_core::budget;
use llama_core::cache_spec::KvCacheParams;
use llama_core::engine::{Engine, EngineConfig};
use llama_core::memory_probe::ProbeError;
use llama_core::metrics::BudgetCounters;
use llama_core::planner::{max_mem_arg, Degradation, PlanError, Suggestion};
use llama_core::{ByteSize, ChatTemplate, Model, ModelCacheSpec, TemplateChoice};
use serde::{Deserialize, Serialize};

use crate::cli::ServeArgs;
use crate::error::CliError;
use crate::options::{RunOptions, Settings};
use crate::runtime;
use crate::server::auth::ApiKey;
use crate::server::openai::Defaults;
use crate::server::state::{Limits, StateParts};
use crate::server::{ServeError, ServerConfig};

/// The server's own options: flags, or keys of the same name in the `--config` file (where
/// they sit next to the run options; flags win).
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeOptions {
    /// Address to listen on; a non-loopback address needs an API key or --no-auth
    /// [default: 127.0.0.1].
    #[arg(long = "host", value_name = "ADDR")]
    pub host: Option<String>,

    /// Port to listen on; 0 picks a free one (printed on stderr) [default: 8080].
    #[arg(long = "port", value_name = "N")]
    pub port: Option<u16>,

    /// Requests decoded together (also -np) [default: 4].
    #[arg(long = "parallel", value_name = "N")]
    pub parallel: Option<u32>,

    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long = "api-key", value_name = "KEY", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,

    /// Read the API key from this file (first line).
    #[arg(long = "api-key-file", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Serve without an API key on a non-loopback address.
    #[arg(long = "no-auth", num_args = 0, default_missing_value = "true")]
    pub no_auth: Option<bool>,

    /// Largest request body [default: 1M].
    #[arg(long = "max-body", value_name = "SIZE")]
    pub max_body: Option<ByteSize>,

    /// Largest max_tokens a request may ask for; also the limit when it asks none
    /// [default: the context per sequence].
    #[arg(long = "max-tokens-cap", value_name = "N")]
    pub max_tokens_cap: Option<usize>,

    /// Requests that may wait for a free sequence before 429 [default: 64].
    #[arg(long = "queue", value_name = "N")]
    pub queue: Option<usize>,

    /// Seconds in-flight requests may run on after SIGINT/SIGTERM [default: 10].
    #[arg(long = "shutdown-timeout", value_name = "SECONDS")]
    pub shutdown_timeout: Option<f64>,

    /// Directory for sessions evicted from the KV cache [default: a temporary directory,
    /// removed at exit].
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Model id in responses and /v1/models [default: the file name without .gguf].
    #[arg(long = "alias", value_name = "NAME")]
    pub alias: Option<String>,
}

macro_rules! layer {
    ($high:expr, $low:expr, $($field:ident),* $(,)?) => {
        ServeOptions { $($field: $high.$field.or($low.$field),)* }
    };
}

impl ServeOptions {
    fn over(self, lower: ServeOptions) -> ServeOptions {
        layer!(
            self,
            lower,
            host,
            port,
            parallel,
            api_key,
            api_key_file,
            no_auth,
            max_body,
            max_tokens_cap,
            queue,
            shutdown_timeout,
            state_dir,
            alias,
        )
    }
}

/// Reads a config file holding run options and server options.
fn load_config(path: &Path) -> Result<(RunOptions, ServeOptions), CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ConfigRead {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |key: String, message: String| CliError::ConfigInvalid {
        path: path.to_path_buf(),
        key,
        message,
    };
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        // Let the run-options reader report the syntax error with its line.
        Err(e) => {
            crate::config::parse(&text).map_err(|(k, m)| invalid(k, m))?;
            return Err(invalid("?".into(), e.to_string()));
        }
    };
    let mut serve = toml::Table::new();
    for key in crate::config::SERVE_KEYS {
        if let Some(value) = table.remove(key) {
            serve.insert(key.to_string(), value);
        }
    }
    let rest = toml::to_string(&table).map_err(|e| invalid("?".into(), e.to_string()))?;
    let run = crate::config::parse(&rest).map_err(|(k, m)| invalid(k, m))?;
    let serve: ServeOptions = serde_path_to_error::deserialize(toml::Value::Table(serve))
        .map_err(|e| invalid(e.path().to_string(), e.into_inner().to_string()))?;
    Ok((run, serve))
}

/// The effective server settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
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
    let s = ServeSettings {
        host: o.host.clone().unwrap_or_else(|| "127.0.0.1".to_string()),
        port: o.port.unwrap_or(8080),
        parallel: o.parallel.unwrap_or(4),
        no_auth: o.no_auth.unwrap_or(false),
        max_body: o.max_body.map_or(1 << 20, |b| b.0),
        max_tokens_cap: o.max_tokens_cap,
        queue: o.queue.unwrap_or(64),
        shutdown_timeout: o.shutdown_timeout.unwrap_or(10.0),
        state_dir: o.state_dir.clone(),
        alias: o.alias.clone(),
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

/// A directory removed when dropped (the default state directory).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes default state directories (`llama-rs-serve-PID` in the temporary directory) left
/// by servers that were killed, i.e. whose process no longer exists.
fn remove_stale_state_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("llama-rs-serve-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs the command.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let (file_run, file_serve) = match &args.config.config {
        Some(path) => load_config(path)?,
        None => (RunOptions::default(), ServeOptions::default()),
    };
    let settings = args.options.over(file_run).resolve()?;
    let serve_options = args.serve.over(file_serve);
    let serve = resolve(&serve_options)?;
    if args.config.print_config {
        // One document: the run settings with the server's under [serve] (appended after the
        // run settings' own tables, they would read as part of the last one).
        let text = toml::Table::try_from(&settings)
            .and_then(|mut table| {
                table.insert("serve".into(), toml::Value::try_from(&serve)?);
                toml::to_string_pretty(&table)
            })
            .unwrap_or_else(|e| format!("# {e}\n"));
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
    let template =
        match ChatTemplate::resolve(started.engine.model(), settings.chat_template.as_deref())? {
            TemplateChoice::Template(t) => Some(t),
            TemplateChoice::PlainCompletion => {
                eprintln!(
                    "note: the model has no chat template; chat messages are sent as plain text"
                );
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
        },
        api_key: key,
        budget: started.counters,
    };
    let _state_dir = started.temp_dir;
    crate::server::serve(
        parts,
        ServerConfig {
            addr,
            shutdown_timeout: Duration::from_secs_f64(serve.shutdown_timeout),
        },
    )?;
    Ok(())
}

/// The planner sizes one context for all sequences; `--ctx-size` is per sequence.
fn per_sequence(d: Degradation, n_parallel: u32) -> Degradation {
    match d {
        Degradation::Context { from, to } => Degradation::Context {
            from: from / n_parallel,
            to: to / n_parallel,
        },
        other => other,
    }
}

/// A planning error with its suggested `--ctx-size` per sequence.
fn per_sequence_error(err: PlanError<ProbeError>, n_parallel: u32) -> PlanError<ProbeError> {
    match err {
        PlanError::DoesNotFit {
            required,
            budget,
            breakdown,
            suggestion: Suggestion::Reconfigure { changes },
        } => PlanError::DoesNotFit {
            required,
            budget,
            breakdown,
            suggestion: Suggestion::Reconfigure {
                changes: changes
                    .into_iter()
                    .map(|d| per_sequence(d, n_parallel))
                    .collect(),
            },
        },
        other => other,
    }
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
    temp_dir: Option<TempDir>,
}

impl Started {
    fn new(settings: &Settings, serve: &ServeSettings) -> Result<Started, CliError> {
        let settings = &crate::model_source::resolved(settings)?;
        let path = settings.model.clone().ok_or(CliError::NoModel)?;
        let gguf = llama_core::check_model_file(&path)?;
        let params = runtime::model_params(settings, &gguf);
        let cache = ModelCacheSpec::from_gguf(&gguf).map_err(ServeError::from)?;
        let n_ctx_train = runtime::training_context(&gguf);
        let n_parallel = serve.parallel;
        let per_seq = match settings.ctx_size {
            0 => n_ctx_train.max(256),
            n => n,
        };
        let total = per_seq.saturating_mul(n_parallel);
        let (state_dir, temp_dir) = match &serve.state_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                remove_stale_state_dirs();
                let dir =
                    std::env::temp_dir().join(format!("llama-rs-serve-{}", std::process::id()));
                (dir.clone(), Some(TempDir(dir)))
            }
        };
        std::fs::create_dir_all(&state_dir).map_err(|source| ServeError::StateDir {
            path: state_dir.clone(),
            source,
        })?;
        let mut config = EngineConfig::new(n_parallel, per_seq, 0, state_dir);
        config.threads = settings.threads;
        config.n_batch = settings.batch_size;
        config.n_ubatch = settings.ubatch_size.min(settings.batch_size);
        config.flash_attention = settings.flash_attn;
        config.type_k = settings.type_k;
        config.type_v = settings.type_v;
        config.queue_capacity = serve.queue;
        let plan = match settings.max_mem {
            None => {
                config.kv_budget_bytes = cache
                    .kv_bytes(&KvCacheParams {
                        n_ctx: u64::from(total),
                        n_ubatch: u64::from(config.n_ubatch),
                        n_seq: u64::from(n_parallel),
                        type_k: settings.type_k,
                        type_v: settings.type_v,
                        swa_full: true,
                        unified: true,
                    })
                    .map_err(ServeError::from)?
                    .total_bytes();
                None
            }
            Some(limit) => {
                let mut request = runtime::plan_request(settings, limit.0, n_ctx_train);
                request.n_ctx = total;
                request.n_seq = n_parallel;
                let plan = budget::plan_model(&path, &gguf, &params, settings.threads, &request)
                    .map_err(|e| per_sequence_error(e, n_parallel))?;
                for d in &plan.degraded {
                    eprintln!(
                        "note: {} to fit --max-mem {} with --parallel {n_parallel}",
                        per_sequence(*d, n_parallel),
                        max_mem_arg(plan.budget)
                    );
                }
                let c = &plan.candidate;
                config.n_ctx_per_seq = (c.n_ctx / n_parallel).max(1);
                config.n_batch = c.n_batch;
                config.n_ubatch = c.n_ubatch;
                config.type_k = c.type_k;
                config.type_v = c.type_v;
                config.flash_attention = if c.flash_attn {
                    llama_core::FlashAttention::On
                } else {
                    llama_core::FlashAttention::Off
                };
                config.kv_budget_bytes = plan.breakdown.kv;
                tracing::info!(plan = ?plan.breakdown, "memory plan");
                match budget::install_data_limit(&plan, gguf.file_size()) {
                    Ok(limit) => tracing::info!(limit, "data segment limit set"),
                    Err(err) => tracing::warn!("could not set the data segment limit: {err}"),
                }
                Some(plan)
            }
        };
        let model = Arc::new(Model::load_unchecked(&path, &params, None)?);
        tracing::info!(
            n_parallel,
            n_ctx_per_seq = config.n_ctx_per_seq,
            kv_budget_bytes = config.kv_budget_bytes,
            "starting the engine"
        );
        let engine = Engine::start(model, &cache, config).map_err(ServeError::from)?;
        Ok(Started {
            engine,
            path,
            counters: BudgetCounters::new(
                settings.max_mem.map(|b| b.0),
                plan.as_ref().map(|p| p.breakdown),
            ),
            temp_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_holds_run_and_serve_keys() {
        let dir = std::env::temp_dir().join(format!("llama-rs-serve-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        std::fs::write(
            &path,
            "temp = 0.5\nport = 9000\nparallel = 2\nmax-body = \"2M\"\n",
        )
        .unwrap();
        let (run, serve) = load_config(&path).unwrap();
        assert_eq!(run.temp, Some(0.5));
        assert_eq!(serve.port, Some(9000));
        assert_eq!(serve.max_body, Some(ByteSize(2 << 20)));
        std::fs::write(&path, "prot = 9000\n").unwrap();
        let err = load_config(&path).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        std::fs::write(&path, "port = \"x\"\n").unwrap();
        let err = load_config(&path).unwrap_err().to_string();
        assert!(err.contains("port"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
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
