//! Criterion benchmark of the KV block pool: allocating and freeing 10 blocks from a pool of
//! 1000 blocks (Llama 3.1 8B shape: 256-token blocks of 32 MiB), on an empty pool and on a pool
//! 90% held by 90 other sessions, plus the same through `SharedBlockPool` and `SessionLease`.
//!
//! Run: `cargo bench -p llama-core --bench kv_pool`. Each benchmark's throughput is 10 elements
//! (blocks), so criterion prints both the time per iteration and blocks per second; the time per
//! block operation is the iteration time divided by the operations listed in its name.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llama_core::kv_pool::{BlockPool, PoolSpec, SessionId, SharedBlockPool};

const BLOCKS: u64 = 1000;

fn spec() -> PoolSpec {
    // 128 KiB per token (Llama 3.1 8B, f16), 256 tokens per block: 32 MiB blocks.
    let per_token = 128 * 1024;
    PoolSpec::new(per_token, BLOCKS * 256 * per_token)
}

/// An empty pool, or one where 90 sessions hold 10 blocks each (900 of 1000 blocks).
fn pool(busy: bool) -> BlockPool {
    let mut pool = BlockPool::new(spec()).expect("valid spec");
    assert_eq!(pool.total_blocks(), 1000);
    if busy {
        for i in 0..90 {
            pool.grow_to(SessionId(1000 + i), 2560).expect("fits");
        }
        // Free some blocks in the middle so the free list is not in id order.
        for i in (0..90).step_by(3) {
            let b = pool.blocks_of(SessionId(1000 + i))[9];
            pool.free(SessionId(1000 + i), b).expect("held");
        }
    }
    pool
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("kv_pool");
    group.throughput(Throughput::Elements(10));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(50);
    let s = SessionId(1);

    for busy in [false, true] {
        let label = if busy { "busy_900_of_1000" } else { "empty" };

        // 1 allocate call for 10 blocks, then 10 free calls: 11 calls, 20 block operations.
        let mut p = pool(busy);
        p.create_session(s).expect("new session");
        group.bench_function(BenchmarkId::new("allocate10_free10", label), |b| {
            b.iter(|| {
                let ids = p.allocate(s, black_box(10)).expect("fits");
                for id in ids.into_iter().rev() {
                    p.free(s, id).expect("held");
                }
            })
        });
        p.check_invariants().expect("invariants");

        // grow_to 2560 tokens (10 blocks), then release_session: 2 calls, 20 block operations.
        let mut p = pool(busy);
        group.bench_function(BenchmarkId::new("grow_to_2560_release", label), |b| {
            b.iter(|| {
                let ids = p.grow_to(s, black_box(2560)).expect("fits");
                black_box(ids);
                p.release_session(s).expect("exists")
            })
        });
        p.check_invariants().expect("invariants");

        // share 10 blocks into a new session, then release it: 20 reference operations.
        let mut p = pool(busy);
        p.grow_to(s, 2560).expect("fits");
        group.bench_function(BenchmarkId::new("share10_release", label), |b| {
            b.iter(|| {
                p.share(s, SessionId(2), black_box(10)).expect("fits");
                p.release_session(SessionId(2)).expect("exists")
            })
        });
        p.check_invariants().expect("invariants");
    }

    // Through the mutex: lease, grow to 10 blocks, drop (uncontended lock).
    let shared = SharedBlockPool::from_pool(pool(true));
    group.bench_function("shared_lease_grow10_drop", |b| {
        b.iter(|| {
            let lease = shared.lease(s).expect("new session");
            black_box(lease.grow_to(black_box(2560)).expect("fits"));
        })
    });
    shared.check_invariants().expect("invariants");
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
