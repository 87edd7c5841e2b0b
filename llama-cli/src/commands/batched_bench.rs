//! `llama-cli batched-bench`: llama.cpp's `llama-batched-bench` table (`-npp`, `-ntg`, `-npl`;
//! columns PP, TG, B, N_KV, T_PP, S_PP, T_TG, S_TG, T, S with the same meaning), measured by
//! llama-core's [`batched_bench`](llama_core::batched_bench) on a context planned through the
//! run path (under `--max-mem`).

use std::io::Write;

use clap::Args;
use llama_core::batched_bench::{self, BatchedBenchConfig, BatchedBenchRow, KvLayout};

use crate::context_args::ContextArgs;
use crate::error::CliError;

/// `llama-cli batched-bench`.
#[derive(Debug, Args)]
pub struct BatchedBenchArgs {
    /// Prompt lengths (also -npp), comma-separated.
    #[arg(
        long = "n-pp",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "128,256,512"
    )]
    pub n_pp: Vec<u32>,

    /// Generation lengths (also -ntg), comma-separated.
    #[arg(
        long = "n-tg",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "128,256"
    )]
    pub n_tg: Vec<u32>,

    /// Parallel sequences (also -npl), comma-separated.
    #[arg(
        long = "n-pl",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32"
    )]
    pub n_pl: Vec<u32>,

    /// One prompt shared by all sequences (also -pps).
    #[arg(long = "pp-shared")]
    pub pp_shared: bool,

    /// Sequences generate one after another instead of together (also -tgs).
    #[arg(long = "tg-separate")]
    pub tg_separate: bool,

    /// One pool of KV cells for all sequences (also -kvu) instead of a share each.
    #[arg(long = "kv-unified")]
    pub kv_unified: bool,

    /// KV cells of the whole context (0: the model's training context).
    #[arg(short = 'c', long = "ctx-size", value_name = "N", default_value_t = 0)]
    pub ctx_size: u32,

    /// Logical batch size.
    #[arg(
        short = 'b',
        long = "batch-size",
        value_name = "N",
        default_value_t = 2048
    )]
    pub batch_size: u32,

    /// Print one JSON object per row (llama-batched-bench's -oj / jsonl output).
    #[arg(long = "json")]
    pub json: bool,

    #[command(flatten)]
    pub context: ContextArgs,
}

fn row_line(r: &BatchedBenchRow) -> String {
    format!(
        "|{:6} | {:6} | {:4} | {:6} | {:8.3} | {:8.2} | {:8.3} | {:8.2} | {:8.3} | {:8.2} |",
        r.pp, r.tg, r.pl, r.n_kv, r.t_pp, r.speed_pp, r.t_tg, r.speed_tg, r.t, r.speed
    )
}

/// Runs the command.
pub fn run(args: BatchedBenchArgs) -> Result<(), CliError> {
    let n_seq = args.n_pl.iter().copied().max().unwrap_or(1).max(1);
    if args.n_pp.is_empty() || args.n_tg.is_empty() || args.n_pl.contains(&0) {
        return Err(llama_core::ParamError {
            name: "n-pl",
            value: format!("{:?}", args.n_pl),
            expected: "positive numbers of sequences, and at least one -npp and -ntg",
        }
        .into());
    }
    // The whole context as llama-batched-bench's -c means it; the run path plans per sequence.
    let resolved = args.context.settings(0, args.batch_size)?;
    let model = resolved.model.clone().ok_or(CliError::NoModel)?;
    let gguf = llama_core::check_model_file(&model)?;
    let total = match args.ctx_size {
        0 => llama_core::run::training_context(&gguf),
        n => n,
    };
    let per_seq = total.div_ceil(n_seq);
    let settings = crate::options::Settings {
        ctx_size: per_seq,
        ..resolved
    };
    let run_settings = crate::runtime::run_settings(&settings, n_seq)?;
    let mut prepared = llama_core::run::prepare_with_outputs(&run_settings, n_seq)?;
    crate::runtime::print_notes(&prepared.notes);
    prepared.ctx_params.kv_unified = args.kv_unified;
    let params = prepared.ctx_params.clone();
    let gpu_layers = prepared.params.n_gpu_layers;
    let mut opened = prepared.open_context(None)?;
    let config = BatchedBenchConfig {
        n_pp: args.n_pp.clone(),
        n_tg: args.n_tg.clone(),
        n_pl: args.n_pl.clone(),
        pp_shared: args.pp_shared,
        tg_separate: args.tg_separate,
    };
    let mut out = std::io::stdout().lock();
    let ctx = &mut opened.context;
    let n_kv_max = ctx.n_ctx();
    let header = format!(
        "batched-bench: n_kv_max = {n_kv_max}, n_batch = {}, n_ubatch = {}, flash_attn = {}, is_pp_shared = {}, is_tg_separate = {}, n_gpu_layers = {gpu_layers}, n_threads = {}, n_threads_batch = {}",
        ctx.n_batch(),
        ctx.n_ubatch(),
        match params.flash_attention {
            llama_core::FlashAttention::On => 1,
            llama_core::FlashAttention::Off => 0,
            llama_core::FlashAttention::Auto => -1,
        },
        u8::from(args.pp_shared),
        u8::from(args.tg_separate),
        params.n_threads,
        params.n_threads_batch,
    );
    if !args.json {
        writeln!(out)?;
        writeln!(out, "{header}")?;
        writeln!(out)?;
        writeln!(
            out,
            "|{:>6} | {:>6} | {:>4} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} |",
            "PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s"
        )?;
        writeln!(
            out,
            "|{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|",
            "-".repeat(6),
            "-".repeat(6),
            "-".repeat(4),
            "-".repeat(6),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8)
        )?;
    }
    let mut write_error = None;
    let layout = KvLayout {
        unified: args.kv_unified,
        n_seq_max: n_seq,
    };
    let measured = batched_bench::run(ctx, &config, layout, |row| {
        let line = if args.json {
            let mut value = serde_json::to_value(row).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("n_kv_max".into(), n_kv_max.into());
                map.insert("n_batch".into(), params.n_batch.into());
                map.insert("n_ubatch".into(), params.n_ubatch.into());
                map.insert("is_pp_shared".into(), args.pp_shared.into());
                map.insert("n_gpu_layers".into(), gpu_layers.into());
                map.insert("n_threads".into(), params.n_threads.into());
            }
            value.to_string()
        } else {
            row_line(row)
        };
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            write_error.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if !measured.skipped.is_empty() {
        let skipped: Vec<String> = measured
            .skipped
            .iter()
            .map(|[pp, tg, pl]| format!("pp {pp} tg {tg} B {pl}"))
            .collect();
        eprintln!(
            "note: skipped {} rows whose KV cells exceed the context of {n_kv_max} ({} per sequence{}): {}",
            skipped.len(),
            n_kv_max / n_seq,
            if args.kv_unified { ", unified" } else { "; -kvu pools them" },
            skipped.join(", ")
        );
    }
    Ok(())
}
