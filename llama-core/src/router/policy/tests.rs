use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const MB: u64 = 1 << 20;

fn policy(capacity: u64, sizes: &[u64]) -> (Policy, Instant) {
    let now = Instant::now();
    let mut p = Policy::new(capacity, None);
    for &s in sizes {
        p.add(Ok(s), false, now);
    }
    (p, now)
}

/// Acquires `i`, doing any load (and the unloads before it) at once.
fn use_model(p: &mut Policy, i: usize, now: Instant) -> Result<Acquire, Refusal> {
    let step = p.acquire(i, now)?;
    if let Acquire::Load { evict } = &step {
        for &k in evict {
            p.unloaded(k);
        }
        p.loaded(i, now);
        assert_eq!(p.acquire(i, now)?, Acquire::Ready);
    }
    Ok(step)
}

#[test]
fn loads_on_first_use_and_counts_requests() {
    let (mut p, now) = policy(100 * MB, &[40 * MB]);
    assert_eq!(p.acquire(0, now), Ok(Acquire::Load { evict: vec![] }));
    assert_eq!(p.view(0).phase, Phase::Loading);
    assert_eq!(p.acquire(0, now), Ok(Acquire::Wait(Wait::Loading)));
    p.loaded(0, now);
    assert_eq!(p.acquire(0, now), Ok(Acquire::Ready));
    assert_eq!(p.view(0).inflight, 1);
    p.release(0, now);
    assert_eq!(p.view(0).inflight, 0);
    assert_eq!(p.resident_bytes(), 40 * MB);
}

#[test]
fn evicts_least_recently_used_idle_models_by_bytes() {
    let (mut p, now) = policy(100 * MB, &[40 * MB, 40 * MB, 30 * MB, 70 * MB]);
    for i in [0, 1] {
        use_model(&mut p, i, now).unwrap();
        p.release(i, now);
    }
    // 80 MiB used; 30 MiB more does not fit: the least recently used (0) goes.
    let step = use_model(&mut p, 2, now).unwrap();
    assert_eq!(step, Acquire::Load { evict: vec![0] });
    p.release(2, now);
    // Model 1 used again: now 2 is the least recent; 70 MiB needs both 2 and 1 out.
    assert_eq!(p.acquire(1, now), Ok(Acquire::Ready));
    p.release(1, now);
    assert_eq!(
        use_model(&mut p, 3, now).unwrap(),
        Acquire::Load { evict: vec![2, 1] }
    );
    assert_eq!(p.resident_bytes(), 70 * MB);
}

#[test]
fn a_busy_model_is_never_evicted() {
    let (mut p, now) = policy(100 * MB, &[60 * MB, 60 * MB]);
    use_model(&mut p, 0, now).unwrap(); // in flight, not released
    assert_eq!(p.acquire(1, now), Ok(Acquire::Wait(Wait::Busy)));
    assert_eq!(p.view(0).phase, Phase::Loaded);
    assert_eq!(p.unload(0), Err(UnloadRefusal::Busy(1)));
    p.release(0, now);
    assert_eq!(p.acquire(1, now), Ok(Acquire::Load { evict: vec![0] }));
}

#[test]
fn a_loading_model_is_never_evicted() {
    let (mut p, now) = policy(100 * MB, &[60 * MB, 60 * MB]);
    assert!(matches!(p.acquire(0, now), Ok(Acquire::Load { .. })));
    assert_eq!(p.acquire(1, now), Ok(Acquire::Wait(Wait::Busy)));
    assert_eq!(p.unload(0), Err(UnloadRefusal::Loading));
    assert!(p
        .idle(now + Duration::from_secs(3600), Duration::ZERO)
        .is_empty());
}

#[test]
fn no_partial_eviction_when_room_cannot_be_made() {
    let (mut p, now) = policy(100 * MB, &[30 * MB, 30 * MB, 80 * MB]);
    use_model(&mut p, 0, now).unwrap();
    p.release(0, now);
    use_model(&mut p, 1, now).unwrap(); // busy
    assert_eq!(p.acquire(2, now), Ok(Acquire::Wait(Wait::Busy)));
    // The idle model was not unloaded for nothing.
    assert_eq!(p.view(0).phase, Phase::Loaded);
}

#[test]
fn pinned_models_stay_and_bound_the_others() {
    let now = Instant::now();
    let mut p = Policy::new(100 * MB, None);
    let pinned = p.add(Ok(50 * MB), true, now);
    let small = p.add(Ok(40 * MB), false, now);
    let big = p.add(Ok(60 * MB), false, now);
    assert_eq!(p.pinned_unloaded(), vec![pinned]);
    use_model(&mut p, pinned, now).unwrap();
    p.release(pinned, now);
    assert!(p.refusal(small).is_none());
    assert_eq!(
        p.refusal(big),
        Some(Refusal::Pinned {
            bytes: 60 * MB,
            capacity: 100 * MB,
            pinned: 50 * MB
        })
    );
    assert!(p.acquire(big, now).is_err());
    use_model(&mut p, small, now).unwrap();
    p.release(small, now);
    assert!(p
        .idle(now + Duration::from_secs(10), Duration::from_secs(1))
        .contains(&small));
    assert_eq!(p.view(pinned).phase, Phase::Loaded);
}

#[test]
fn too_large_and_unplanned_models_are_refused_with_the_reason() {
    let now = Instant::now();
    let mut p = Policy::new(100 * MB, None);
    let big = p.add(Ok(101 * MB), false, now);
    let bad = p.add(Err("the context does not fit".into()), false, now);
    let err = p.acquire(big, now).unwrap_err();
    assert!(err.to_string().contains("101.00 MiB"), "{err}");
    assert!(err.to_string().contains("100.00 MiB"), "{err}");
    assert_eq!(
        p.acquire(bad, now),
        Err(Refusal::Unplanned("the context does not fit".into()))
    );
    assert!(p.view(big).refusal.is_some());
}

#[test]
fn idle_unload_frees_only_idle_unpinned_loaded_models() {
    let (mut p, now) = policy(100 * MB, &[10 * MB, 10 * MB, 10 * MB]);
    for i in 0..3 {
        use_model(&mut p, i, now).unwrap();
    }
    p.release(0, now);
    p.release(1, now + Duration::from_secs(5));
    let later = now + Duration::from_secs(8);
    // 0 idle 8 s, 1 idle 3 s, 2 busy.
    assert_eq!(p.idle(later, Duration::from_secs(5)), vec![0]);
    assert_eq!(p.view(0).phase, Phase::Unloading);
    assert_eq!(p.acquire(0, later), Ok(Acquire::Wait(Wait::Unloading)));
    p.unloaded(0);
    assert_eq!(p.view(0).phase, Phase::Unloaded);
}

#[test]
fn count_limit_evicts_like_llama_server_models_max() {
    let now = Instant::now();
    let mut p = Policy::new(u64::MAX / 2, Some(1));
    let a = p.add(Ok(MB), false, now);
    let b = p.add(Ok(MB), false, now);
    use_model(&mut p, a, now).unwrap();
    p.release(a, now);
    assert_eq!(
        use_model(&mut p, b, now).unwrap(),
        Acquire::Load { evict: vec![a] }
    );
}

#[test]
fn failed_load_frees_its_bytes() {
    let (mut p, now) = policy(100 * MB, &[60 * MB]);
    assert!(matches!(p.acquire(0, now), Ok(Acquire::Load { .. })));
    assert_eq!(p.resident_bytes(), 60 * MB);
    p.load_failed(0);
    assert_eq!(p.resident_bytes(), 0);
    assert!(matches!(p.acquire(0, now), Ok(Acquire::Load { .. })));
}

/// One operation of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    Acquire(usize),
    Release(usize),
    FinishLoad(usize, bool),
    FinishUnload(usize),
    Unload(usize),
    Idle(u64),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..n).prop_map(Op::Acquire),
        (0..n).prop_map(Op::Release),
        (0..n, any::<bool>()).prop_map(|(i, ok)| Op::FinishLoad(i, ok)),
        (0..n).prop_map(Op::FinishUnload),
        (0..n).prop_map(Op::Unload),
        (0u64..20).prop_map(Op::Idle),
    ]
}

proptest! {
    /// Any sequence of requests, loads, unloads and idle sweeps keeps the resident bytes and
    /// count within the limits, never evicts a busy, loading or pinned model, and answers
    /// `Ready` only for a loaded model.
    #[test]
    fn invariants_hold_for_any_sequence(
        sizes in proptest::collection::vec(1u64..60, 1..6),
        pins in proptest::collection::vec(any::<bool>(), 6),
        max in proptest::option::of(1usize..4),
        ops in proptest::collection::vec(op(6), 0..80),
    ) {
        let start = Instant::now();
        let mut p = Policy::new(100, max);
        for (k, &s) in sizes.iter().enumerate() {
            p.add(Ok(s), pins[k] && k == 0, start);
        }
        let n = sizes.len();
        let mut inflight = vec![0usize; n];
        let mut clock = 0u64;
        for op in ops {
            clock += 1;
            let now = start + Duration::from_secs(clock);
            let before = p.clone();
            match op {
                Op::Acquire(i) if i < n => match p.acquire(i, now) {
                    Ok(Acquire::Ready) => {
                        prop_assert_eq!(before.view(i).phase, Phase::Loaded);
                        inflight[i] += 1;
                    }
                    Ok(Acquire::Load { evict }) => {
                        prop_assert_eq!(before.view(i).phase, Phase::Unloaded);
                        for k in evict {
                            let v = before.view(k);
                            prop_assert_eq!(v.phase, Phase::Loaded, "evicted {} not loaded", k);
                            prop_assert_eq!(v.inflight, 0, "evicted busy model {}", k);
                            prop_assert!(!v.pinned, "evicted pinned model {}", k);
                            prop_assert_eq!(p.view(k).phase, Phase::Unloading);
                        }
                    }
                    Ok(Acquire::Wait(_)) => prop_assert_ne!(before.view(i).phase, Phase::Loaded),
                    Err(_) => prop_assert!(before.refusal(i).is_some()),
                },
                Op::Release(i) if i < n && inflight[i] > 0 => {
                    inflight[i] -= 1;
                    p.release(i, now);
                }
                Op::FinishLoad(i, ok) if i < n => {
                    if ok { p.loaded(i, now) } else { p.load_failed(i) }
                }
                Op::FinishUnload(i) if i < n => p.unloaded(i),
                Op::Unload(i) if i < n && p.unload(i).is_ok() => {
                    prop_assert_eq!(before.view(i).inflight, 0);
                    prop_assert_eq!(before.view(i).phase, Phase::Loaded);
                }
                Op::Idle(after) => {
                    for k in p.idle(now, Duration::from_secs(after)) {
                        let v = before.view(k);
                        prop_assert_eq!(v.inflight, 0);
                        prop_assert!(!v.pinned);
                        prop_assert_eq!(v.phase, Phase::Loaded);
                    }
                }
                _ => {}
            }
            // Unloading models are freed before a load starts (the caller unloads the
            // evicted models first): loaded and loading ones stay within the limits.
            let live: Vec<usize> = (0..n)
                .filter(|&k| matches!(p.view(k).phase, Phase::Loaded | Phase::Loading))
                .collect();
            let bytes: u64 = live.iter().map(|&k| p.view(k).bytes.unwrap_or(0)).sum();
            prop_assert!(bytes <= 100, "over capacity: {:?}", p);
            if let Some(m) = max {
                prop_assert!(live.len() <= m, "over count: {:?}", p);
            }
            for (k, &f) in inflight.iter().enumerate() {
                prop_assert_eq!(p.view(k).inflight, f);
                if f > 0 {
                    prop_assert_eq!(p.view(k).phase, Phase::Loaded);
                }
            }
        }
    }
}
