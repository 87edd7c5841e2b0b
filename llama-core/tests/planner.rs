//! Tests of `llama_core::planner` against arithmetic sizers: KV bytes from a real
//! `ModelCacheSpec` (a SmolLM2-135M-shaped, metadata-only GGUF), compute linear in the
//! micro-batch and context. Covers fitting as requested, each degradation step, strict
//! refusals whose suggestions are re-planned, nothing fitting, sizer failures, invalid
//! requests, and (proptest) the budget invariant and the bound on sizer calls.

use std::collections::HashSet;
use std::fmt;

use llama_core::cache_spec::{CacheSpecError, KvCacheParams, KvCacheType, ModelCacheSpec};
use llama_core::gguf::writer::GgufWriter;
use llama_core::gguf::{GgufFile, GgufModel};
use llama_core::planner::{
    largest_context, max_mem_arg, plan, Breakdown, BufferSizer, Candidate, Degradation,
    FlashAttnMode, Plan, PlanError, PlanRequest, Suggestion,
};
use proptest::prelude::*;

use KvCacheType::{BF16, F16, F32, Q4_0, Q8_0};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const N_CTX_TRAIN: u32 = 8192;

/// SmolLM2-135M's attention: 30 layers, 9 heads, 3 KV heads, embedding 576 (head dim 64):
/// 23040 bytes of f16 KV per token.
fn smollm2_spec() -> ModelCacheSpec {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "llama");
    w.add("llama.block_count", 30u32);
    w.add("llama.context_length", N_CTX_TRAIN);
    w.add("llama.embedding_length", 576u32);
    w.add("llama.attention.head_count", 9u32);
    w.add("llama.attention.head_count_kv", 3u32);
    let model = GgufModel::from_file(GgufFile::parse(&w.to_bytes()).expect("fixture parses"));
    ModelCacheSpec::from_gguf(&model).expect("spec")
}

/// Why a test sizer failed.
#[derive(Debug)]
enum SizerError {
    Cache(CacheSpecError),
    /// What llama.cpp refuses: a quantised V cache without flash attention.
    QuantisedVWithoutFlashAttn,
    Injected,
}

impl fmt::Display for SizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizerError::Cache(e) => write!(f, "{e}"),
            SizerError::QuantisedVWithoutFlashAttn => {
                f.write_str("V cache quantization requires flash_attn")
            }
            SizerError::Injected => f.write_str("injected dry-run failure"),
        }
    }
}

impl std::error::Error for SizerError {}

fn quantised(t: KvCacheType) -> bool {
    !matches!(t, F32 | F16 | BF16)
}

/// weights constant; KV from the cache spec; compute `a + b*n_ubatch + c*n_ctx_padded`
/// (plus a KQ matrix term without flash attention); output per sequence; overhead constant.
/// Records every call.
struct LinearSizer {
    spec: ModelCacheSpec,
    weights: u64,
    a: u64,
    b: u64,
    c: u64,
    kq_no_fa: u64,
    output_per_seq: u64,
    overhead: u64,
    /// Fail on this call (0-based), if set.
    fail_at: Option<usize>,
    calls: Vec<Candidate>,
}

impl LinearSizer {
    fn new() -> LinearSizer {
        LinearSizer {
            spec: smollm2_spec(),
            weights: 100 * MIB,
            a: 20 * MIB,
            b: 64 * KIB,
            c: 4 * KIB,
            kq_no_fa: 36,
            output_per_seq: 49152 * 4,
            overhead: MIB,
            fail_at: None,
            calls: Vec::new(),
        }
    }

    fn failing_at(call: usize) -> LinearSizer {
        LinearSizer {
            fail_at: Some(call),
            ..LinearSizer::new()
        }
    }

    /// The breakdown without recording a call.
    fn size(&self, c: &Candidate) -> Result<Breakdown, SizerError> {
        if quantised(c.type_v) && !c.flash_attn {
            return Err(SizerError::QuantisedVWithoutFlashAttn);
        }
        let kv = self
            .spec
            .kv_bytes(&KvCacheParams {
                n_ctx: u64::from(c.n_ctx),
                n_ubatch: u64::from(c.n_ubatch),
                n_seq: u64::from(c.n_seq),
                type_k: c.type_k,
                type_v: c.type_v,
                swa_full: true,
                unified: false,
            })
            .map_err(SizerError::Cache)?;
        let ubatch = u64::from(c.n_ubatch);
        let mut compute = self.a + self.b * ubatch + self.c * kv.n_ctx_padded;
        if !c.flash_attn {
            compute += self.kq_no_fa * ubatch * kv.n_ctx_padded;
        }
        Ok(Breakdown {
            weights: self.weights,
            kv: kv.total_bytes(),
            compute,
            compute_unwritten: 0,
            output: self.output_per_seq * u64::from(c.n_seq),
            overhead: self.overhead,
            embeddings: 0,
        })
    }

    fn total(&self, c: &Candidate) -> u64 {
        self.size(c).expect("sizes").total()
    }
}

impl BufferSizer for LinearSizer {
    type Error = SizerError;

    fn measure(&mut self, candidate: &Candidate) -> Result<Breakdown, SizerError> {
        let call = self.calls.len();
        self.calls.push(*candidate);
        if self.fail_at == Some(call) {
            return Err(SizerError::Injected);
        }
        self.size(candidate)
    }
}

fn request(budget: u64, n_ctx: u32) -> PlanRequest {
    PlanRequest {
        n_ctx,
        ..PlanRequest::new(budget, N_CTX_TRAIN)
    }
}

fn candidate(n_ctx: u32, n_ubatch: u32, t: KvCacheType, flash_attn: bool) -> Candidate {
    Candidate {
        n_ctx,
        n_batch: 2048,
        n_ubatch,
        n_seq: 1,
        type_k: t,
        type_v: t,
        flash_attn,
        gpu_layers: 0,
    }
}

/// The largest multiple of 256 in `[256, limit]` with which `base` fits, by brute force.
fn brute_largest(sizer: &LinearSizer, base: Candidate, budget: u64, limit: u32) -> Option<u32> {
    (1..=limit / 256)
        .map(|k| k * 256)
        .filter(|&n| sizer.total(&Candidate { n_ctx: n, ..base }) <= budget)
        .max()
}

fn plan_ok(req: &PlanRequest) -> (Plan, LinearSizer) {
    let mut sizer = LinearSizer::new();
    let p = plan(req, &mut sizer).unwrap_or_else(|e| panic!("plan failed: {e}"));
    (p, sizer)
}

fn plan_err(req: &PlanRequest) -> PlanError<SizerError> {
    let mut sizer = LinearSizer::new();
    match plan(req, &mut sizer) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    }
}

/// The number after `flag` in `text`.
fn flag_value(text: &str, flag: &str) -> Option<u32> {
    let rest = &text[text.find(flag)? + flag.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn assert_no_repeated_calls(sizer: &LinearSizer) {
    let distinct: HashSet<_> = sizer.calls.iter().collect();
    assert_eq!(
        distinct.len(),
        sizer.calls.len(),
        "a candidate was measured twice"
    );
}

#[test]
fn fits_as_requested() {
    let (p, sizer) = plan_ok(&request(1 << 30, 4096));
    assert!(p.degraded.is_empty());
    assert!(p.announcements().is_empty());
    assert_eq!(p.candidate, candidate(4096, 512, F16, true));
    assert_eq!(p.breakdown, sizer.size(&p.candidate).unwrap());
    assert!(p.breakdown.total() <= p.budget);
    assert_eq!(p.headroom(), p.budget - p.breakdown.total());
    // 8192 (the training context) fits in 1 GiB, so that is the largest.
    assert_eq!(p.max_ctx_that_fits, Some(8192));
    assert_no_repeated_calls(&sizer);
}

#[test]
fn max_ctx_that_fits_is_the_largest_fitting_multiple_of_256() {
    let budget = 300 * MIB;
    let (p, sizer) = plan_ok(&request(budget, 1024));
    assert!(p.degraded.is_empty());
    let expected = brute_largest(&sizer, p.candidate, budget, N_CTX_TRAIN);
    assert!(expected.unwrap() > 1024 && expected.unwrap() < 8192);
    assert_eq!(p.max_ctx_that_fits, expected);
}

#[test]
fn n_ctx_zero_means_the_training_context() {
    let (p, _) = plan_ok(&request(1 << 30, 0));
    assert_eq!(p.candidate.n_ctx, N_CTX_TRAIN);
}

#[test]
fn ubatch_above_batch_is_clamped() {
    let req = PlanRequest {
        n_batch: 256,
        n_ubatch: 1024,
        ..request(1 << 30, 2048)
    };
    let (p, _) = plan_ok(&req);
    assert_eq!((p.candidate.n_batch, p.candidate.n_ubatch), (256, 256));
    assert!(p.degraded.is_empty());
}

#[test]
fn context_degraded_to_the_largest_fitting_multiple_of_256() {
    let budget = 300 * MIB;
    let (p, sizer) = plan_ok(&request(budget, 8192));
    let expected = brute_largest(&sizer, candidate(0, 512, F16, true), budget, 8192).unwrap();
    assert!((512..8192).contains(&expected));
    assert_eq!(p.candidate, candidate(expected, 512, F16, true));
    assert_eq!(
        p.degraded,
        vec![Degradation::Context {
            from: 8192,
            to: expected
        }]
    );
    assert_eq!(
        p.announcements(),
        vec![format!(
            "reduced --ctx-size from 8192 to {expected} to fit --max-mem 300M"
        )]
    );
    assert_eq!(p.max_ctx_that_fits, Some(expected));
    assert!(p.breakdown.total() <= budget);
    assert!(sizer.calls.len() < 20, "{} calls", sizer.calls.len());
    assert_no_repeated_calls(&sizer);
}

#[test]
fn ubatch_degraded_when_the_context_floor_does_not_fit() {
    let s = LinearSizer::new();
    // Just enough for the floor (512) with ubatch 128, not with 256.
    let budget = s.total(&candidate(512, 128, F16, true)) + 10 * KIB;
    assert!(s.total(&candidate(512, 256, F16, true)) > budget);
    let (p, sizer) = plan_ok(&request(budget, 8192));
    let expected_ctx = brute_largest(&sizer, candidate(0, 128, F16, true), budget, 8192).unwrap();
    assert_eq!(p.candidate, candidate(expected_ctx, 128, F16, true));
    assert_eq!(
        p.degraded,
        vec![
            Degradation::Context {
                from: 8192,
                to: expected_ctx
            },
            Degradation::Ubatch { from: 512, to: 128 },
        ]
    );
    assert!(p.announcements()[1].starts_with("reduced --ubatch-size from 512 to 128 to fit"));
    assert_no_repeated_calls(&sizer);
}

/// A budget at which f16 does not fit even at the floors but q8_0 with ubatch 512 does,
/// with the floor at the full context (so the cache type is what must give).
fn cache_request(strict: bool, flash_attn: FlashAttnMode) -> (PlanRequest, u64) {
    let s = LinearSizer::new();
    let budget = s.total(&candidate(8192, 512, Q8_0, true)) + KIB;
    assert!(s.total(&candidate(8192, 32, F16, true)) > budget);
    let req = PlanRequest {
        ctx_floor: 8192,
        strict,
        flash_attn,
        ..request(budget, 8192)
    };
    (req, budget)
}

#[test]
fn quantised_cache_used_when_flash_attention_is_allowed() {
    for mode in [FlashAttnMode::Auto, FlashAttnMode::On] {
        let (req, _) = cache_request(false, mode);
        let (p, _) = plan_ok(&req);
        assert_eq!(p.candidate, candidate(8192, 512, Q8_0, true));
        assert_eq!(
            p.degraded,
            vec![Degradation::CacheType {
                from_k: F16,
                from_v: F16,
                to_k: Q8_0,
                to_v: Q8_0
            }]
        );
        assert!(p.announcements()[0].starts_with("changed --cache-type from f16 to q8_0 to fit"));
    }
}

#[test]
fn quantised_cache_never_tried_without_flash_attention() {
    let (req, budget) = cache_request(false, FlashAttnMode::Off);
    let mut sizer = LinearSizer::new();
    let err = plan(&req, &mut sizer).unwrap_err();
    assert!(sizer
        .calls
        .iter()
        .all(|c| !c.flash_attn && c.type_k == F16 && c.type_v == F16));
    match err {
        PlanError::DoesNotFit {
            required,
            suggestion: Suggestion::RaiseMaxMem { needed, smallest },
            ..
        } => {
            assert!(required > budget && smallest);
            assert_eq!(needed, required);
        }
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn q4_0_after_q8_0() {
    let s = LinearSizer::new();
    let budget = s.total(&candidate(8192, 512, Q4_0, true)) + KIB;
    assert!(s.total(&candidate(8192, 32, Q8_0, true)) > budget);
    let req = PlanRequest {
        ctx_floor: 8192,
        ..request(budget, 8192)
    };
    let (p, _) = plan_ok(&req);
    assert_eq!(p.candidate, candidate(8192, 512, Q4_0, true));
}

#[test]
fn quantised_v_with_flash_attention_off_is_invalid() {
    let req = PlanRequest {
        type_v: Q8_0,
        flash_attn: FlashAttnMode::Off,
        ..request(1 << 30, 4096)
    };
    assert!(matches!(plan_err(&req), PlanError::InvalidRequest { .. }));
}

#[test]
fn invalid_requests() {
    let zero_budget = request(0, 4096);
    let no_ctx = PlanRequest {
        n_ctx: 0,
        n_ctx_train: 0,
        ..request(1 << 30, 0)
    };
    let zero_batch = PlanRequest {
        n_batch: 0,
        ..request(1 << 30, 4096)
    };
    for req in [zero_budget, no_ctx, zero_batch] {
        let err = plan_err(&req);
        assert!(matches!(err, PlanError::InvalidRequest { .. }), "{err}");
        assert!(err.to_string().starts_with("invalid value 0 for "), "{err}");
    }
}

#[test]
fn strict_refuses_with_a_ctx_size_that_fits() {
    let budget = 300 * MIB;
    let req = PlanRequest {
        strict: true,
        ..request(budget, 8192)
    };
    let err = plan_err(&req);
    let text = err.to_string();
    assert!(text.starts_with("does not fit: needs "), "{text}");
    assert!(
        text.contains("(weights 100.00 MiB, KV 180.00 MiB, compute "),
        "{text}"
    );
    assert!(
        text.contains("but the budget is 300.00 MiB; fits with --ctx-size "),
        "{text}"
    );
    match &err {
        PlanError::DoesNotFit {
            required,
            budget: b,
            breakdown,
            ..
        } => {
            assert_eq!(*b, budget);
            assert_eq!(*required, breakdown.total());
            assert!(*required > budget);
        }
        e => panic!("unexpected {e}"),
    }
    let n = flag_value(&text, "--ctx-size").expect("a --ctx-size in the suggestion");
    let (p, sizer) = plan_ok(&PlanRequest { n_ctx: n, ..req });
    assert!(p.degraded.is_empty());
    // The largest: one more step does not fit.
    let next = Candidate {
        n_ctx: n + 256,
        ..p.candidate
    };
    assert!(sizer.total(&next) > budget);
}

#[test]
fn strict_suggests_ubatch_and_cache_type_changes_that_fit() {
    let (req, budget) = cache_request(true, FlashAttnMode::Auto);
    let err = plan_err(&req);
    let PlanError::DoesNotFit { suggestion, .. } = &err else {
        panic!("unexpected {err}")
    };
    assert_eq!(suggestion.flags(), "--cache-type q8_0");
    assert!(err.to_string().ends_with("; fits with --cache-type q8_0"));
    let (p, _) = plan_ok(&PlanRequest {
        type_k: Q8_0,
        type_v: Q8_0,
        ..req.clone()
    });
    assert!(p.degraded.is_empty() && p.breakdown.total() <= budget);

    let s = LinearSizer::new();
    let budget = s.total(&candidate(512, 64, F16, true)) + KIB;
    let req = PlanRequest {
        strict: true,
        ..request(budget, 4096)
    };
    let err = plan_err(&req);
    let text = err.to_string();
    let n_ctx = flag_value(&text, "--ctx-size").expect("ctx");
    let n_ubatch = flag_value(&text, "--ubatch-size").expect("ubatch");
    assert_eq!(n_ubatch, 64, "{text}");
    let (p, _) = plan_ok(&PlanRequest {
        n_ctx,
        n_ubatch,
        ..req
    });
    assert!(p.degraded.is_empty());
}

#[test]
fn nothing_fits_names_the_minimum_budget() {
    let budget = 110 * MIB;
    let err = plan_err(&request(budget, 8192));
    let PlanError::DoesNotFit {
        required,
        breakdown,
        suggestion,
        ..
    } = &err
    else {
        panic!("unexpected {err}")
    };
    let needed = match suggestion {
        Suggestion::RaiseMaxMem {
            needed,
            smallest: true,
        } => *needed,
        s => panic!("unexpected {s:?}"),
    };
    // The smallest configuration: floors and q4_0.
    let s = LinearSizer::new();
    assert_eq!(needed, s.total(&candidate(512, 32, Q4_0, true)));
    assert_eq!((*required, breakdown.total()), (needed, needed));
    let text = err.to_string();
    // The suggestion keeps room for the next run's baseline, measured anew.
    let arg = max_mem_arg(needed + llama_core::planner::SUGGESTED_ROOM);
    assert!(
        text.ends_with(&format!(
            "the smallest configuration needs {:.2} MiB: raise --max-mem to at least {arg}",
            needed as f64 / MIB as f64
        )),
        "{text}"
    );
    // Re-planning with that budget (exact, or as the flag says) succeeds.
    let mib: u64 = arg.trim_end_matches('M').parse().expect("an M size");
    for b in [needed, mib * MIB] {
        let (p, _) = plan_ok(&request(b, 8192));
        assert!(p.breakdown.total() <= b);
        assert!(!p.degraded.is_empty());
    }
}

#[test]
fn strict_nothing_fits_names_the_requested_needs() {
    let req = PlanRequest {
        strict: true,
        ..request(110 * MIB, 4096)
    };
    let err = plan_err(&req);
    let s = LinearSizer::new();
    let requested = s.total(&candidate(4096, 512, F16, true));
    match &err {
        PlanError::DoesNotFit {
            required,
            suggestion: Suggestion::RaiseMaxMem { needed, smallest },
            ..
        } => assert_eq!(
            (*required, *needed, *smallest),
            (requested, requested, false)
        ),
        e => panic!("unexpected {e}"),
    }
    let (p, _) = plan_ok(&PlanRequest {
        budget: requested,
        ..req
    });
    assert!(p.degraded.is_empty());
}

#[test]
fn sizer_errors_propagate() {
    for fail_at in 0..6 {
        let mut sizer = LinearSizer::failing_at(fail_at);
        match plan(&request(200 * MIB, 8192), &mut sizer) {
            Err(PlanError::Sizer(SizerError::Injected)) => {}
            other => panic!("call {fail_at}: unexpected {other:?}"),
        }
        assert_eq!(sizer.calls.len(), fail_at + 1);
    }
    let mut sizer = LinearSizer::failing_at(0);
    let err = largest_context(&request(1 << 30, 8192), &mut sizer).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sizing a configuration failed: injected dry-run failure"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn largest_context_matches_brute_force() {
    for budget in [120 * MIB, 150 * MIB, 200 * MIB, 300 * MIB, 1 << 30] {
        let req = request(budget, 2048);
        let mut sizer = LinearSizer::new();
        let got = largest_context(&req, &mut sizer).unwrap();
        let want = brute_largest(&sizer, candidate(0, 512, F16, true), budget, N_CTX_TRAIN);
        assert_eq!(got, want, "budget {budget}");
        assert!(sizer.calls.len() <= 7, "{} calls", sizer.calls.len());
    }
}

#[test]
fn degradations_display_as_flag_changes() {
    let d = Degradation::Context {
        from: 8192,
        to: 2048,
    };
    assert_eq!(d.to_string(), "reduced --ctx-size from 8192 to 2048");
    assert_eq!(d.flag(), "--ctx-size 2048");
    let d = Degradation::CacheType {
        from_k: F16,
        from_v: BF16,
        to_k: Q8_0,
        to_v: Q4_0,
    };
    assert_eq!(
        d.to_string(),
        "changed --cache-type-k from f16 to q8_0 and --cache-type-v from bf16 to q4_0"
    );
    assert_eq!(d.flag(), "--cache-type-k q8_0 --cache-type-v q4_0");
    assert_eq!(max_mem_arg(2 << 30), "2G");
    assert_eq!(max_mem_arg(512 * MIB), "512M");
    assert_eq!(max_mem_arg(180 * MIB + 1), "181M");
    assert_eq!(max_mem_arg(1023 * MIB + 1), "1G");
}

fn cache_type() -> impl Strategy<Value = KvCacheType> {
    prop::sample::select(vec![F32, F16, BF16, Q8_0, Q4_0])
}

fn flash_attn_mode() -> impl Strategy<Value = FlashAttnMode> {
    prop::sample::select(vec![
        FlashAttnMode::Auto,
        FlashAttnMode::On,
        FlashAttnMode::Off,
    ])
}

prop_compose! {
    fn any_request()(
        budget in prop_oneof![1u64..(3u64 << 30), (100 * MIB)..(400 * MIB)],
        n_ctx in prop_oneof![Just(0u32), 1u32..40_000],
        n_batch in 1u32..4096,
        n_ubatch in 1u32..4096,
        n_seq in 1u32..4,
        type_k in cache_type(),
        type_v in cache_type(),
        flash_attn in flash_attn_mode(),
        strict in any::<bool>(),
        ctx_floor in prop_oneof![Just(512u32), 1u32..4096],
        ubatch_floor in prop_oneof![Just(32u32), 1u32..512],
        n_ctx_train in prop::sample::select(vec![0u32, 2048, 8192, 32768, 131_072]),
    ) -> PlanRequest {
        PlanRequest {
            budget, n_ctx, n_batch, n_ubatch, n_seq, type_k, type_v, flash_attn, strict,
            ctx_floor, ubatch_floor, gpu_layers: 0, n_ctx_train,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plans_fit_and_refusals_do_not(req in any_request()) {
        let mut sizer = LinearSizer::new();
        let result = plan(&req, &mut sizer);
        prop_assert!(sizer.calls.len() < 40, "{} sizer calls", sizer.calls.len());
        assert_no_repeated_calls(&sizer);
        let invalid = (req.n_ctx == 0 && req.n_ctx_train == 0)
            || (quantised(req.type_v) && req.flash_attn == FlashAttnMode::Off);
        match result {
            Ok(p) => {
                prop_assert!(!invalid);
                prop_assert!(p.breakdown.total() <= req.budget);
                prop_assert_eq!(p.breakdown, sizer.size(&p.candidate).unwrap());
                prop_assert!(p.candidate.n_ubatch <= p.candidate.n_batch);
                prop_assert!(!req.strict || p.degraded.is_empty());
                let max = p.max_ctx_that_fits.unwrap();
                prop_assert!(max >= p.candidate.n_ctx);
                if quantised(p.candidate.type_v) {
                    prop_assert!(p.candidate.flash_attn);
                }
            }
            Err(PlanError::DoesNotFit { required, budget, breakdown, suggestion }) => {
                prop_assert!(!invalid);
                prop_assert!(required > budget);
                prop_assert_eq!(required, breakdown.total());
                if let Suggestion::Reconfigure { changes } = &suggestion {
                    prop_assert!(req.strict && !changes.is_empty());
                }
            }
            Err(PlanError::InvalidRequest { .. }) => prop_assert!(invalid),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    #[test]
    fn largest_context_fits_and_the_next_step_does_not(req in any_request()) {
        prop_assume!(req.n_ctx_train > 0);
        prop_assume!(!(quantised(req.type_v) && req.flash_attn == FlashAttnMode::Off));
        let mut sizer = LinearSizer::new();
        let got = largest_context(&req, &mut sizer).unwrap();
        prop_assert!(sizer.calls.len() <= 12);
        let base = *sizer.calls.first().unwrap();
        let limit = req.ctx_search_limit();
        let total_at = |n_ctx: u32| sizer.total(&Candidate { n_ctx, ..base });
        match got {
            None => prop_assert!(total_at(256) > req.budget),
            Some(n) => {
                prop_assert!(n % 256 == 0 && n <= limit);
                prop_assert!(total_at(n) <= req.budget);
                if n < limit {
                    prop_assert!(total_at(n + 256) > req.budget);
                }
            }
        }
    }
}
