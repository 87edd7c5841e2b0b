//! Tests of the KV block pool (`llama_core::kv_pool`): examples for every operation and error,
//! proptest properties over random operation sequences on tiny pools (1000 cases each), a
//! model-based test against a HashMap reference model, and an 8-thread stress test of
//! `SharedBlockPool`.

use std::collections::{HashMap, HashSet};
use std::mem::discriminant;
use std::sync::Arc;
use std::thread;

use llama_core::kv_pool::{
    Block, BlockId, BlockPool, InvariantViolation, PoolError, PoolSnapshot, PoolSpec, SessionId,
    SharedBlockPool, DEFAULT_BLOCK_TOKENS,
};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

fn s(id: u64) -> SessionId {
    SessionId(id)
}

/// A pool of `blocks` global blocks of `bt` tokens at 1 byte per token.
fn tiny(bt: u32, blocks: u64) -> BlockPool {
    BlockPool::new(PoolSpec::new(1, blocks * u64::from(bt)).with_block_tokens(bt)).unwrap()
}

#[track_caller]
fn check(pool: &BlockPool) {
    if let Err(e) = pool.check_invariants() {
        panic!("invariant broken: {e}\n{pool:#?}");
    }
}

/// Checks the invariants and recomputes the reference counts through the public API.
fn external_check(pool: &BlockPool) -> Result<(), String> {
    pool.check_invariants()
        .map_err(|e| format!("{e}\n{pool:#?}"))?;
    if pool.used_bytes() + pool.available_bytes() != pool.total_bytes() {
        return Err(format!("bytes do not add up\n{pool:#?}"));
    }
    if pool.used_blocks() + pool.available_blocks() != pool.total_blocks() {
        return Err(format!("blocks do not add up\n{pool:#?}"));
    }
    let mut holders: HashMap<BlockId, u32> = HashMap::new();
    let spec = *pool.spec();
    let mut sliding = 0u64;
    for (_, sb) in pool.sessions() {
        let distinct: HashSet<_> = sb.blocks().iter().collect();
        if distinct.len() != sb.len() {
            return Err(format!("a session holds a block twice\n{pool:#?}"));
        }
        for &b in sb.blocks() {
            *holders.entry(b).or_default() += 1;
        }
        sliding += u64::from(spec.sliding_blocks_for(sb.len() as u32));
    }
    for (&b, &n) in &holders {
        let rec = pool.block(b).ok_or("held block missing")?;
        if rec.refs != n || rec.owner.is_none() {
            return Err(format!("{b}: refs {} but {n} holders\n{pool:#?}", rec.refs));
        }
    }
    if pool.used_global_blocks() as usize != holders.len() {
        return Err(format!("live count != distinct held blocks\n{pool:#?}"));
    }
    let bytes =
        holders.len() as u64 * spec.global_block_bytes() + sliding * spec.sliding_block_bytes();
    if bytes != pool.used_bytes() || bytes > pool.total_bytes() {
        return Err(format!("used bytes {bytes} recomputed\n{pool:#?}"));
    }
    if !spec.has_sliding() && pool.used_blocks() != pool.used_global_blocks() {
        return Err(format!(
            "used_blocks != live blocks without sliding\n{pool:#?}"
        ));
    }
    Ok(())
}

// ---- spec ----------------------------------------------------------------------------------

#[test]
fn spec_defaults_and_arithmetic() {
    let spec = PoolSpec::new(128 * KIB, 24 << 30);
    assert_eq!(spec.block_tokens, DEFAULT_BLOCK_TOKENS);
    assert_eq!(spec.block_tokens, 256);
    assert!(!spec.has_sliding());
    assert_eq!(spec.global_block_bytes(), 32 * MIB);
    assert_eq!(spec.sliding_block_bytes(), 0);
    assert_eq!(spec.sliding_blocks_cap(), 0);
    assert_eq!(spec.total_blocks(), 768);
    assert_eq!(spec.blocks_for_tokens(0), 0);
    assert_eq!(spec.blocks_for_tokens(1), 1);
    assert_eq!(spec.blocks_for_tokens(256), 1);
    assert_eq!(spec.blocks_for_tokens(257), 2);
    assert_eq!(spec.session_bytes(8192), 32 * 32 * MIB);
    spec.validate().unwrap();
}

#[test]
fn spec_numbers_from_the_adr() {
    // Llama 3.1 8B: 32 layers x 8 KV heads x 128 dims x 2 (K and V) x 2 bytes (f16).
    let llama = PoolSpec::new(32 * 8 * 128 * 2 * 2, 24 << 30);
    assert_eq!(llama.global_bytes_per_token, 128 * KIB);
    assert_eq!(llama.global_block_bytes(), 32 * MIB);
    // Qwen 2.5 14B: 48 layers.
    let qwen = PoolSpec::new(48 * 8 * 128 * 2 * 2, 24 << 30);
    assert_eq!(qwen.global_block_bytes(), 48 * MIB);
    // Gemma 3 12B: 48 layers, 8 global and 40 sliding, head dim 256, window 1024.
    let gemma = PoolSpec::new(8 * 8 * 256 * 4, 24 << 30).with_sliding(40 * 8 * 256 * 4, 1024);
    assert_eq!(gemma.global_block_bytes(), 16 * MIB);
    assert_eq!(gemma.sliding_block_bytes(), 80 * MIB);
    assert_eq!(gemma.sliding_blocks_cap(), 5);
    assert_eq!(gemma.session_bytes(32768), 128 * 16 * MIB + 5 * 80 * MIB);
    // GPT-OSS 20B: 24 layers, 12 full and 12 sliding, head dim 64, window 128.
    let gpt_oss = PoolSpec::new(12 * 8 * 64 * 4, 24 << 30).with_sliding(12 * 8 * 64 * 4, 128);
    assert_eq!(gpt_oss.global_block_bytes(), 6 * MIB);
    assert_eq!(gpt_oss.sliding_blocks_cap(), 2);
    assert_eq!(gpt_oss.session_bytes(8192), 32 * 6 * MIB + 2 * 6 * MIB);
    let gpt_oss_128 = gpt_oss.with_block_tokens(128);
    assert_eq!(gpt_oss_128.sliding_blocks_cap(), 2);
    assert_eq!(
        gpt_oss_128.sliding_blocks_cap() as u64 * gpt_oss_128.sliding_block_bytes(),
        6 * MIB
    );
}

#[test]
fn spec_validation_errors() {
    let ok = PoolSpec::new(1, 1000).with_block_tokens(10);
    ok.validate().unwrap();
    assert_eq!(
        ok.with_block_tokens(0).validate(),
        Err(PoolError::ZeroBlockTokens)
    );
    assert_eq!(
        PoolSpec::new(0, 1000).validate(),
        Err(PoolError::ZeroGlobalBytesPerToken)
    );
    assert!(matches!(
        ok.with_sliding(1, 0).validate(),
        Err(PoolError::InconsistentSliding {
            sliding_bytes_per_token: 1,
            sliding_window_tokens: 0
        })
    ));
    assert!(matches!(
        ok.with_sliding(0, 5).validate(),
        Err(PoolError::InconsistentSliding { .. })
    ));
    assert!(matches!(
        PoolSpec::new(u64::MAX, u64::MAX).validate(),
        Err(PoolError::BlockBytesOverflow {
            block_tokens: 256,
            ..
        })
    ));
    assert!(matches!(
        PoolSpec::new(1, u64::MAX)
            .with_sliding(u64::MAX / 256, 4)
            .validate(),
        Err(PoolError::BlockBytesOverflow { .. })
    ));
    assert_eq!(
        ok.with_budget(9).validate(),
        Err(PoolError::BudgetTooSmall {
            budget_bytes: 9,
            min_bytes: 10
        })
    );
    assert_eq!(
        ok.with_sliding(2, 5).with_budget(29).validate(),
        Err(PoolError::BudgetTooSmall {
            budget_bytes: 29,
            min_bytes: 30
        })
    );
    assert!(matches!(
        PoolSpec::new(1, u64::MAX).with_block_tokens(1).validate(),
        Err(PoolError::TooManyBlocks { max, .. }) if max == u64::from(u32::MAX)
    ));
    assert!(BlockPool::new(PoolSpec::new(0, 1)).is_err());
    // Derived numbers of an invalid spec do not panic.
    let zero = PoolSpec::new(0, 10).with_block_tokens(0).with_sliding(1, 4);
    assert_eq!(zero.total_blocks(), 0);
    assert_eq!(zero.sliding_blocks_cap(), 0);
    assert_eq!(zero.blocks_for_tokens(5), 5);
    assert_eq!(
        PoolSpec::new(1, u64::MAX)
            .with_block_tokens(1)
            .total_blocks(),
        u32::MAX
    );
}

// ---- basic operations ----------------------------------------------------------------------

#[test]
fn allocate_and_free_account_blocks_and_bytes() {
    let mut pool = tiny(4, 5);
    assert_eq!((pool.total_blocks(), pool.total_bytes()), (5, 20));
    let ids = pool.allocate(s(1), 3).unwrap();
    assert_eq!(ids, vec![BlockId(0), BlockId(1), BlockId(2)]);
    assert_eq!((pool.used_blocks(), pool.available_blocks()), (3, 2));
    assert_eq!((pool.used_bytes(), pool.available_bytes()), (12, 8));
    assert_eq!(pool.blocks_of(s(1)), &ids[..]);
    let block = pool.block(BlockId(1)).unwrap();
    assert_eq!(block.owner, Some(s(1)));
    assert!(!block.is_shared() && !block.is_free());
    pool.free(s(1), BlockId(1)).unwrap();
    assert_eq!(pool.blocks_of(s(1)), &[BlockId(0), BlockId(2)]);
    assert!(pool.block(BlockId(1)).unwrap().is_free());
    // The freed block is reused first.
    assert_eq!(pool.allocate(s(2), 1).unwrap(), vec![BlockId(1)]);
    assert_eq!(pool.release_session(s(1)).unwrap(), 2);
    assert_eq!(pool.used_blocks(), 1);
    assert_eq!(pool.allocate(s(2), 0).unwrap(), vec![]);
    assert_eq!(pool.blocks_of(s(9)), &[]);
    assert!(pool.block(BlockId(99)).is_none());
    assert_eq!(format!("{}", BlockId(7)), "block#7");
    assert_eq!(format!("{}", s(7)), "session#7");
    check(&pool);
}

#[test]
fn grow_to_allocates_exactly_the_blocks_needed() {
    let mut pool = tiny(4, 10);
    assert_eq!(pool.grow_to(s(1), 0).unwrap(), vec![]);
    assert!(pool.contains_session(s(1)));
    assert_eq!(pool.grow_to(s(1), 1).unwrap().len(), 1);
    assert_eq!(pool.grow_to(s(1), 4).unwrap().len(), 0);
    assert_eq!(pool.grow_to(s(1), 5).unwrap().len(), 1);
    assert_eq!(pool.grow_to(s(1), 3).unwrap().len(), 0, "never shrinks");
    assert_eq!(pool.session(s(1)).unwrap().tokens(), 5);
    assert_eq!(pool.grow_to(s(1), 17).unwrap().len(), 3);
    assert_eq!(pool.blocks_of(s(1)).len(), 5);
    let held: Vec<u32> = pool
        .blocks_of(s(1))
        .iter()
        .map(|&b| pool.block(b).unwrap().tokens_held)
        .collect();
    assert_eq!(held, vec![4, 4, 4, 4, 1]);
    // Blocks reserved by allocate are used before new ones.
    pool.allocate(s(2), 2).unwrap();
    assert_eq!(pool.grow_to(s(2), 8).unwrap(), vec![]);
    assert_eq!(pool.grow_to(s(2), 9).unwrap().len(), 1);
    check(&pool);
}

#[test]
fn out_of_memory_is_an_error_and_changes_nothing() {
    let mut pool = tiny(4, 3);
    pool.allocate(s(1), 2).unwrap();
    let before = pool.snapshot();
    let err = pool.allocate(s(2), 2).unwrap_err();
    assert_eq!(
        err,
        PoolError::OutOfMemory {
            session: s(2),
            requested_blocks: 2,
            requested_bytes: 8,
            available_blocks: 1,
            available_bytes: 4,
        }
    );
    assert!(!pool.contains_session(s(2)));
    assert!(matches!(
        pool.grow_to(s(1), 13),
        Err(PoolError::OutOfMemory {
            requested_blocks: 2,
            ..
        })
    ));
    assert!(pool.allocate(s(1), u32::MAX).is_err());
    assert_eq!(pool.snapshot(), before);
    assert!(pool.can_admit(s(1), 12));
    assert!(!pool.can_admit(s(1), 13));
    assert!(pool.can_admit(s(3), 4));
    assert!(!pool.can_admit(s(3), 5));
    assert_eq!(pool.bytes_to_grow(s(1), 8), 0);
    assert_eq!(pool.bytes_to_grow(s(3), 5), 8);
    check(&pool);
}

#[test]
fn free_errors_are_typed_and_change_nothing() {
    let mut pool = tiny(2, 6);
    let a = pool.allocate(s(1), 2).unwrap();
    let b = pool.allocate(s(2), 1).unwrap();
    pool.free(s(1), a[1]).unwrap();
    let before = pool.snapshot();
    assert_eq!(
        pool.free(s(1), a[1]),
        Err(PoolError::DoubleFree {
            session: s(1),
            block: a[1]
        })
    );
    assert_eq!(
        pool.free(s(1), b[0]),
        Err(PoolError::NotOwner {
            session: s(1),
            block: b[0],
            owner: Some(s(2)),
            refs: 1
        })
    );
    assert_eq!(
        pool.free(s(1), BlockId(40)),
        Err(PoolError::UnknownBlock {
            block: BlockId(40),
            table_len: 3
        })
    );
    assert_eq!(
        pool.free(s(5), a[0]),
        Err(PoolError::UnknownSession { session: s(5) })
    );
    assert_eq!(
        pool.release_session(s(5)),
        Err(PoolError::UnknownSession { session: s(5) })
    );
    assert_eq!(
        pool.create_session(s(1)),
        Err(PoolError::SessionExists { session: s(1) })
    );
    assert_eq!(pool.snapshot(), before);
    check(&pool);
}

#[test]
fn free_clamps_the_session_tokens() {
    let mut pool = tiny(4, 4);
    let ids = pool.grow_to(s(1), 10).unwrap();
    pool.free(s(1), ids[2]).unwrap();
    assert_eq!(pool.session(s(1)).unwrap().tokens(), 8);
    pool.free(s(1), ids[0]).unwrap();
    assert_eq!(pool.session(s(1)).unwrap().tokens(), 4);
    let sb = pool.session(s(1)).unwrap();
    assert!(sb.contains(ids[1]) && !sb.is_empty() && sb.len() == 1);
    check(&pool);
}

// ---- sharing and copy-on-write -------------------------------------------------------------

#[test]
fn shared_blocks_count_once_and_free_at_refcount_zero() {
    let mut pool = tiny(4, 6);
    let a = pool.grow_to(s(1), 12).unwrap();
    pool.share(s(1), s(2), 2).unwrap();
    assert_eq!(pool.blocks_of(s(2)), &a[..2]);
    assert_eq!(pool.session(s(2)).unwrap().tokens(), 8);
    assert_eq!(pool.used_blocks(), 3);
    assert_eq!(pool.block(a[0]).unwrap().refs, 2);
    assert!(pool.block(a[0]).unwrap().is_shared());
    pool.release_session(s(1)).unwrap();
    assert_eq!(
        pool.used_blocks(),
        2,
        "shared blocks outlive their allocator"
    );
    assert_eq!(pool.block(a[0]).unwrap().refs, 1);
    assert_eq!(pool.block(a[0]).unwrap().owner, Some(s(1)));
    pool.free(s(2), a[0]).unwrap();
    assert_eq!(pool.used_blocks(), 1);
    assert!(pool.block(a[0]).unwrap().is_free());
    check(&pool);
}

#[test]
fn share_errors() {
    let mut pool = tiny(4, 4);
    pool.allocate(s(1), 2).unwrap();
    pool.allocate(s(3), 1).unwrap();
    let before = pool.snapshot();
    assert_eq!(
        pool.share(s(1), s(1), 1),
        Err(PoolError::ShareWithSelf { session: s(1) })
    );
    assert_eq!(
        pool.share(s(9), s(2), 1),
        Err(PoolError::UnknownSession { session: s(9) })
    );
    assert_eq!(
        pool.share(s(1), s(2), 3),
        Err(PoolError::ShareTooMany {
            from: s(1),
            requested: 3,
            held: 2
        })
    );
    assert_eq!(
        pool.share(s(1), s(3), 1),
        Err(PoolError::SessionNotEmpty {
            session: s(3),
            blocks: 1
        })
    );
    assert_eq!(pool.snapshot(), before);
    pool.create_session(s(4)).unwrap();
    pool.share(s(1), s(4), 0).unwrap();
    pool.share(s(1), s(4), 2).unwrap();
    assert_eq!(pool.used_blocks(), 3);
    check(&pool);
}

#[test]
fn writing_into_a_shared_block_copies_it() {
    let mut pool = tiny(4, 6);
    let a = pool.grow_to(s(1), 6).unwrap(); // block 1 holds 2 tokens
    pool.share(s(1), s(2), 2).unwrap();
    assert_eq!(pool.session(s(2)).unwrap().tokens(), 6);
    // s(2) writes token 7: block a[1] is shared, so s(2) gets a copy.
    let new = pool.grow_to(s(2), 7).unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(pool.blocks_of(s(2)), &[a[0], new[0]]);
    assert_eq!(pool.block(a[1]).unwrap().refs, 1);
    assert_eq!(pool.block(new[0]).unwrap().tokens_held, 3);
    assert_eq!(pool.block(new[0]).unwrap().owner, Some(s(2)));
    // s(1) now writes in place: its block is no longer shared.
    assert_eq!(pool.grow_to(s(1), 8).unwrap(), vec![]);
    assert_eq!(pool.block(a[1]).unwrap().tokens_held, 4);
    // Growing past a full shared block appends without copying it.
    pool.share(s(1), s(3), 2).unwrap();
    let more = pool.grow_to(s(3), 9).unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(pool.blocks_of(s(3))[..2], a[..]);
    check(&pool);
}

#[test]
fn copy_on_write_needs_room() {
    let mut pool = tiny(4, 2);
    pool.grow_to(s(1), 6).unwrap();
    pool.share(s(1), s(2), 2).unwrap();
    let before = pool.snapshot();
    assert!(!pool.can_admit(s(2), 7));
    assert!(matches!(
        pool.grow_to(s(2), 7),
        Err(PoolError::OutOfMemory {
            requested_blocks: 1,
            requested_bytes: 4,
            ..
        })
    ));
    assert_eq!(pool.snapshot(), before);
    check(&pool);
}

// ---- sliding-window layers -----------------------------------------------------------------

/// Block 4 tokens; global 1 byte/token (4 B/block); sliding 2 bytes/token (8 B/block);
/// window 6 tokens, so at most ceil(6/4)+1 = 3 sliding blocks per session.
fn swa_pool(budget: u64) -> BlockPool {
    BlockPool::new(
        PoolSpec::new(1, budget)
            .with_block_tokens(4)
            .with_sliding(2, 6),
    )
    .unwrap()
}

#[test]
fn sliding_blocks_are_capped_per_session_and_counted_separately() {
    let mut pool = swa_pool(100);
    assert_eq!(pool.spec().sliding_blocks_cap(), 3);
    assert_eq!(pool.total_blocks(), 25);
    pool.grow_to(s(1), 4).unwrap();
    assert_eq!(
        (pool.used_global_bytes(), pool.used_sliding_bytes()),
        (4, 8)
    );
    pool.grow_to(s(1), 20).unwrap(); // 5 blocks, 3 sliding
    assert_eq!(pool.used_global_blocks(), 5);
    assert_eq!(pool.used_sliding_blocks(), 3);
    assert_eq!(
        (pool.used_global_bytes(), pool.used_sliding_bytes()),
        (20, 24)
    );
    assert_eq!(pool.used_bytes(), 44);
    assert_eq!(pool.available_blocks(), 14); // 56 bytes / 4
    assert_eq!(pool.used_blocks(), 11); // 5 global + 24 bytes of sliding = 6 block units
    let blocks = pool.blocks_of(s(1)).to_vec();
    pool.free(s(1), blocks[4]).unwrap();
    pool.free(s(1), blocks[3]).unwrap();
    assert_eq!(pool.used_sliding_blocks(), 3);
    pool.free(s(1), blocks[2]).unwrap();
    assert_eq!(pool.used_sliding_blocks(), 2);
    // A shared prefix gets private sliding blocks.
    pool.share(s(1), s(2), 2).unwrap();
    assert_eq!(pool.used_sliding_blocks(), 4);
    assert_eq!(pool.used_global_blocks(), 2);
    assert_eq!(pool.max_sessions(20), 100 / 44);
    assert_eq!(pool.max_sessions(0), 100 / 12);
    pool.release_session(s(1)).unwrap();
    assert_eq!(pool.used_sliding_blocks(), 2);
    check(&pool);
}

#[test]
fn sliding_blocks_must_fit_too() {
    // 4 + 8 = 12 bytes for a session's first block; 20 bytes do not hold two sessions.
    let mut pool = swa_pool(20);
    pool.grow_to(s(1), 1).unwrap();
    let before = pool.snapshot();
    assert!(matches!(
        pool.grow_to(s(2), 1),
        Err(PoolError::OutOfMemory {
            requested_blocks: 1,
            requested_bytes: 12,
            available_bytes: 8,
            ..
        })
    ));
    assert_eq!(pool.snapshot(), before);
    // Sharing costs only the target's sliding block: 8 bytes, exactly what is left.
    pool.share(s(1), s(2), 1).unwrap();
    assert_eq!(pool.available_bytes(), 0);
    check(&pool);
    // Beyond the cap, growing costs only global bytes.
    let mut pool = swa_pool(3 * 4 + 3 * 8 + 4);
    pool.grow_to(s(1), 12).unwrap();
    assert_eq!(pool.available_bytes(), 4);
    pool.grow_to(s(1), 16).unwrap();
    assert_eq!(pool.available_bytes(), 0);
    check(&pool);
}

#[test]
fn share_fails_when_the_target_sliding_blocks_do_not_fit() {
    let mut pool = swa_pool(12 + 4);
    pool.grow_to(s(1), 1).unwrap();
    let before = pool.snapshot();
    assert_eq!(
        pool.share(s(1), s(2), 1),
        Err(PoolError::OutOfMemory {
            session: s(2),
            requested_blocks: 0,
            requested_bytes: 8,
            available_blocks: 1,
            available_bytes: 4,
        })
    );
    assert_eq!(pool.snapshot(), before);
}

// ---- reconfigure, admission ----------------------------------------------------------------

#[test]
fn reconfigure_succeeds_or_leaves_the_pool_unchanged() {
    let mut pool = tiny(4, 10);
    pool.grow_to(s(1), 20).unwrap(); // 5 blocks
    let spec = *pool.spec();
    pool.reconfigure(spec.with_budget(80)).unwrap();
    assert_eq!(pool.total_blocks(), 20);
    let before = pool.snapshot();
    assert_eq!(
        pool.reconfigure(spec.with_budget(16)),
        Err(PoolError::WouldNotFit {
            needed_bytes: 20,
            budget_bytes: 16,
            sessions: 1
        })
    );
    assert_eq!(
        pool.reconfigure(spec.with_block_tokens(8)),
        Err(PoolError::BlockSizeChange {
            old_block_tokens: 4,
            new_block_tokens: 8,
            live_blocks: 5
        })
    );
    assert_eq!(
        pool.reconfigure(spec.with_budget(0)).unwrap_err(),
        PoolError::BudgetTooSmall {
            budget_bytes: 0,
            min_bytes: 4
        }
    );
    // Adding sliding layers to live sessions: 5 global (20 B) + 3 sliding x 8 B = 44 B.
    assert!(matches!(
        pool.reconfigure(spec.with_sliding(2, 6).with_budget(43)),
        Err(PoolError::WouldNotFit {
            needed_bytes: 44,
            ..
        })
    ));
    assert_eq!(pool.snapshot(), before);
    assert_eq!(*pool.spec(), spec.with_budget(80));
    pool.reconfigure(spec.with_sliding(2, 6).with_budget(44))
        .unwrap();
    assert_eq!((pool.used_bytes(), pool.available_bytes()), (44, 0));
    check(&pool);
    // Exactly the live blocks: shrink to the minimum, keep the ids.
    let ids = pool.blocks_of(s(1)).to_vec();
    pool.reconfigure(spec.with_budget(20)).unwrap();
    assert_eq!(pool.blocks_of(s(1)), &ids[..]);
    assert_eq!(pool.available_blocks(), 0);
    check(&pool);
    // After release, block size changes are fine, and the old table is reused.
    pool.release_session(s(1)).unwrap();
    pool.create_session(s(2)).unwrap();
    pool.reconfigure(spec.with_block_tokens(8).with_budget(16))
        .unwrap();
    assert_eq!(pool.total_blocks(), 2);
    assert_eq!(pool.grow_to(s(2), 16).unwrap().len(), 2);
    assert!(pool.grow_to(s(2), 17).is_err());
    check(&pool);
}

#[test]
fn max_sessions_counts_whole_pool() {
    let pool = BlockPool::new(PoolSpec::new(128 * KIB, 24 << 30)).unwrap();
    assert_eq!(pool.max_sessions(8192), 24);
    assert_eq!(pool.max_sessions(8193), 23);
    assert_eq!(pool.max_sessions(131_072), 1);
    let tiny = tiny(4, 10);
    assert_eq!(tiny.max_sessions(0), 10);
    assert_eq!(tiny.max_sessions(5), 5);
    assert_eq!(tiny.max_sessions(41), 0);
}

// ---- errors, debug -------------------------------------------------------------------------

#[test]
fn errors_display_their_numbers() {
    let cases: Vec<(PoolError, &str)> = vec![
        (PoolError::ZeroBlockTokens, "block_tokens"),
        (PoolError::ZeroGlobalBytesPerToken, "global_bytes_per_token"),
        (
            PoolError::InconsistentSliding {
                sliding_bytes_per_token: 3,
                sliding_window_tokens: 0,
            },
            "(3)",
        ),
        (
            PoolError::BlockBytesOverflow {
                block_tokens: 256,
                bytes_per_token: 9,
            },
            "256 tokens x 9",
        ),
        (
            PoolError::BudgetTooSmall {
                budget_bytes: 5,
                min_bytes: 6,
            },
            "5 bytes",
        ),
        (PoolError::TooManyBlocks { blocks: 7, max: 6 }, "7 blocks"),
        (
            PoolError::OutOfMemory {
                session: s(1),
                requested_blocks: 2,
                requested_bytes: 64,
                available_blocks: 1,
                available_bytes: 32,
            },
            "requested 2 blocks (64 bytes), available 1 blocks (32 bytes)",
        ),
        (PoolError::UnknownSession { session: s(4) }, "session#4"),
        (PoolError::SessionExists { session: s(4) }, "already exists"),
        (
            PoolError::UnknownBlock {
                block: BlockId(3),
                table_len: 2,
            },
            "2 entries",
        ),
        (
            PoolError::DoubleFree {
                session: s(1),
                block: BlockId(3),
            },
            "already free",
        ),
        (
            PoolError::NotOwner {
                session: s(1),
                block: BlockId(3),
                owner: Some(s(2)),
                refs: 1,
            },
            "owner session#2, 1 references",
        ),
        (
            PoolError::NotOwner {
                session: s(1),
                block: BlockId(3),
                owner: None,
                refs: 0,
            },
            "owner none",
        ),
        (PoolError::ShareWithSelf { session: s(1) }, "itself"),
        (
            PoolError::ShareTooMany {
                from: s(1),
                requested: 5,
                held: 2,
            },
            "share 5 blocks",
        ),
        (
            PoolError::SessionNotEmpty {
                session: s(1),
                blocks: 2,
            },
            "holds 2 blocks",
        ),
        (
            PoolError::BlockSizeChange {
                old_block_tokens: 4,
                new_block_tokens: 8,
                live_blocks: 3,
            },
            "from 4 to 8 tokens while 3",
        ),
        (
            PoolError::WouldNotFit {
                needed_bytes: 9,
                budget_bytes: 8,
                sessions: 2,
            },
            "need 9 bytes",
        ),
    ];
    for (err, needle) in cases {
        let text = err.to_string();
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        let _: &dyn std::error::Error = &err;
    }
    let violations: Vec<(InvariantViolation, &str)> = vec![
        (
            InvariantViolation::Accounting {
                unit: "bytes",
                used: 1,
                available: 2,
                total: 4,
            },
            "used 1",
        ),
        (
            InvariantViolation::OverBudget {
                used_bytes: 5,
                budget_bytes: 4,
            },
            "used 5",
        ),
        (
            InvariantViolation::RefCount {
                block: BlockId(1),
                stored: 2,
                actual: 1,
            },
            "refcount 2",
        ),
        (
            InvariantViolation::BlockOutOfRange {
                session: s(1),
                block: BlockId(9),
            },
            "outside",
        ),
        (
            InvariantViolation::DuplicateInSession {
                session: s(1),
                block: BlockId(9),
            },
            "twice",
        ),
        (
            InvariantViolation::FreeList { block: BlockId(2) },
            "free list",
        ),
        (
            InvariantViolation::LostBlock { block: BlockId(2) },
            "not on the free list",
        ),
        (
            InvariantViolation::BlockState { block: BlockId(2) },
            "inconsistent",
        ),
        (
            InvariantViolation::Counter {
                name: "live_blocks",
                stored: 1,
                actual: 2,
            },
            "live_blocks",
        ),
        (
            InvariantViolation::SessionTokens {
                session: s(1),
                tokens: 9,
                capacity: 8,
            },
            "9 tokens",
        ),
    ];
    for (v, needle) in violations {
        let text = v.to_string();
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        let _: &dyn std::error::Error = &v;
    }
}

#[test]
fn debug_shows_the_state() {
    let mut pool = tiny(4, 4);
    pool.grow_to(s(1), 5).unwrap();
    pool.share(s(1), s(2), 1).unwrap();
    pool.allocate(s(3), 1).unwrap();
    pool.release_session(s(3)).unwrap();
    let text = format!("{pool:?}");
    for needle in [
        "BlockPool",
        "used 8 (global 8 + sliding 0) + available 8 of total 16",
        "free_list: [2]",
        "tokens 5 blocks [0, 1]",
        "refs 2 owner Some(1) tokens 4",
    ] {
        assert!(text.contains(needle), "{text} lacks {needle:?}");
    }
    let shared = SharedBlockPool::from_pool(pool);
    assert!(format!("{shared:?}").contains("BlockPool"));
}

// ---- SharedBlockPool and leases ------------------------------------------------------------

#[test]
fn shared_pool_mirrors_the_pool() {
    let pool = SharedBlockPool::new(PoolSpec::new(1, 40).with_block_tokens(4)).unwrap();
    assert!(SharedBlockPool::new(PoolSpec::new(0, 1)).is_err());
    assert_eq!(pool.spec().block_tokens, 4);
    pool.create_session(s(1)).unwrap();
    let ids = pool.allocate(s(1), 2).unwrap();
    assert_eq!(pool.grow_to(s(1), 9).unwrap().len(), 1);
    pool.share(s(1), s(2), 2).unwrap();
    assert_eq!(pool.blocks_of(s(2)), ids);
    assert_eq!(pool.session_count(), 2);
    pool.free(s(2), ids[0]).unwrap();
    assert_eq!(pool.release_session(s(2)).unwrap(), 1);
    assert_eq!(
        (
            pool.used_blocks(),
            pool.available_blocks(),
            pool.total_blocks()
        ),
        (3, 7, 10)
    );
    assert_eq!(
        (
            pool.used_bytes(),
            pool.available_bytes(),
            pool.total_bytes()
        ),
        (12, 28, 40)
    );
    assert_eq!(pool.max_sessions(8), 5);
    assert!(pool.can_admit(s(1), 40) && !pool.can_admit(s(1), 41));
    pool.reconfigure(pool.spec().with_budget(12)).unwrap();
    assert!(pool.reconfigure(pool.spec().with_budget(11)).is_err());
    assert_eq!(pool.snapshot().used_global_blocks, 3);
    pool.check_invariants().unwrap();
}

#[test]
fn lease_releases_on_drop() {
    let pool = SharedBlockPool::new(PoolSpec::new(1, 40).with_block_tokens(4)).unwrap();
    {
        let lease = pool.lease(s(1)).unwrap();
        assert_eq!(lease.session(), s(1));
        assert!(matches!(
            pool.lease(s(1)),
            Err(PoolError::SessionExists { .. })
        ));
        lease.grow_to(6).unwrap();
        let extra = lease.allocate(1).unwrap();
        lease.free(extra[0]).unwrap();
        assert_eq!(lease.tokens(), 6);
        assert_eq!(lease.blocks().len(), 2);
        let fork = lease.fork(s(2), 2).unwrap();
        assert!(matches!(
            lease.fork(s(2), 1),
            Err(PoolError::SessionExists { .. })
        ));
        assert!(matches!(
            lease.fork(s(3), 5),
            Err(PoolError::ShareTooMany { .. })
        ));
        assert_eq!(fork.blocks(), lease.blocks());
        assert_eq!(lease.pool().used_blocks(), 2);
        drop(fork);
        assert_eq!(pool.used_blocks(), 2);
    }
    assert_eq!(pool.used_blocks(), 0);
    assert_eq!(pool.session_count(), 0);
    let lease = pool.lease(s(5)).unwrap();
    lease.grow_to(4).unwrap();
    assert_eq!(lease.release(), 1);
    // A lease whose session was released behind its back is harmless.
    let lease = pool.lease(s(6)).unwrap();
    pool.release_session(s(6)).unwrap();
    assert_eq!(lease.tokens(), 0);
    drop(lease);
    let lease = pool.lease(s(7)).unwrap();
    pool.release_session(s(7)).unwrap();
    assert_eq!(lease.release(), 0);
    pool.check_invariants().unwrap();
    assert_eq!(pool.used_bytes(), 0);
}

#[test]
fn released_lease_does_not_release_a_reused_id() {
    let pool = SharedBlockPool::new(PoolSpec::new(1, 40).with_block_tokens(4)).unwrap();
    let lease = pool.lease(s(1)).unwrap();
    lease.grow_to(4).unwrap();
    assert_eq!(lease.release(), 1);
    pool.grow_to(s(1), 8).unwrap();
    assert_eq!(pool.blocks_of(s(1)).len(), 2);
}

#[test]
fn poisoned_lock_is_recovered() {
    let pool = SharedBlockPool::new(PoolSpec::new(1, 40).with_block_tokens(4)).unwrap();
    pool.grow_to(s(1), 4).unwrap();
    let other = pool.clone();
    let result = thread::spawn(move || {
        other.with(|p| {
            p.grow_to(s(2), 4).unwrap();
            panic!("panic while holding the pool lock (expected by this test)");
        })
    })
    .join();
    assert!(result.is_err());
    pool.check_invariants().unwrap();
    assert_eq!(pool.used_blocks(), 2);
}

/// A small xorshift generator, so the stress test needs no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn shared_pool_survives_eight_threads() {
    // Tiny capacity so that threads contend for blocks and hit out-of-memory often.
    let spec = PoolSpec::new(1, 4 * 40)
        .with_block_tokens(4)
        .with_sliding(1, 6);
    let pool = SharedBlockPool::new(spec).unwrap();
    let ok_ops = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let pool = pool.clone();
            let ok_ops = Arc::clone(&ok_ops);
            thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0x1234_5678_9ABC));
                let mut leases = Vec::new();
                let mut raw = Vec::new();
                let mut next = t * 1_000_000;
                for _ in 0..2_000 {
                    let ok = match rng.below(8) {
                        0 | 1 => {
                            next += 1;
                            leases.push(pool.lease(s(next)).unwrap());
                            true
                        }
                        2 | 3 if !leases.is_empty() => {
                            let i = rng.below(leases.len() as u64) as usize;
                            let tokens = rng.below(48) as u32;
                            leases[i].grow_to(tokens).is_ok()
                        }
                        4 if !leases.is_empty() => {
                            let i = rng.below(leases.len() as u64) as usize;
                            next += 1;
                            let n = rng.below(3) as u32;
                            match leases[i].fork(s(next), n) {
                                Ok(fork) => {
                                    leases.push(fork);
                                    true
                                }
                                Err(_) => false,
                            }
                        }
                        5 => {
                            // Share from a session of any thread (it may be gone already).
                            let from =
                                s(rng.below(8) * 1_000_000 + 1 + rng.below(next % 1_000_000 + 1));
                            next += 1;
                            let ok = pool.share(from, s(next), rng.below(3) as u32).is_ok();
                            if ok {
                                raw.push(s(next));
                            }
                            ok
                        }
                        6 if !leases.is_empty() => {
                            let i = rng.below(leases.len() as u64) as usize;
                            drop(leases.swap_remove(i));
                            true
                        }
                        _ => pool.with(|p| {
                            if let Some(&r) = raw.last() {
                                if rng.below(2) == 0 {
                                    raw.pop();
                                    return p.release_session(r).is_ok();
                                }
                            }
                            p.check_invariants().unwrap();
                            let id = s(t * 1_000_000 + rng.below(next % 1_000_000 + 1));
                            let b = p.blocks_of(id).first().copied();
                            b.is_some_and(|b| p.free(id, b).is_ok())
                        }),
                    };
                    if ok {
                        ok_ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                for r in raw {
                    pool.release_session(r).unwrap();
                }
                drop(leases);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    if let Err(e) = pool.check_invariants() {
        panic!("{e}\n{pool:#?}");
    }
    assert!(ok_ops.load(std::sync::atomic::Ordering::Relaxed) > 1_000);
    assert_eq!(pool.used_bytes(), 0, "{pool:#?}");
    assert_eq!(pool.session_count(), 0, "{pool:#?}");
    assert_eq!(pool.available_blocks(), pool.total_blocks());
}

// ---- properties ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Create(u64),
    Allocate(u64, u32),
    GrowTo(u64, u32),
    /// Free the session's block at this index (modulo its length), or block 0 if it has none.
    FreeOwn(u64, usize),
    /// Free an arbitrary block id: exercises double free, wrong owner and unknown ids.
    FreeAny(u64, u32),
    Release(u64),
    Share(u64, u64, u32),
    /// New budget as a number of extra global blocks, and optionally a new window or block size.
    Reconfigure(u64, Option<u32>, Option<u32>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let session = 0u64..5;
    prop_oneof![
        1 => session.clone().prop_map(Op::Create),
        4 => (session.clone(), 0u32..4).prop_map(|(s, n)| Op::Allocate(s, n)),
        5 => (session.clone(), 0u32..40).prop_map(|(s, n)| Op::GrowTo(s, n)),
        3 => (session.clone(), 0usize..8).prop_map(|(s, i)| Op::FreeOwn(s, i)),
        2 => (session.clone(), 0u32..24).prop_map(|(s, b)| Op::FreeAny(s, b)),
        2 => session.clone().prop_map(Op::Release),
        3 => (session.clone(), session.clone(), 0u32..5).prop_map(|(a, b, n)| Op::Share(a, b, n)),
        1 => (0u64..16, prop::option::of(1u32..20), prop::option::of(prop::sample::select(vec![1u32, 2, 4, 8])))
            .prop_map(|(b, w, t)| Op::Reconfigure(b, w, t)),
    ]
}

/// Tiny specs: 1 to 16 tokens per block, 1 to 3 bytes per token, optional sliding layers with a
/// window of 1 to 40 tokens, and a budget of one first block plus 0 to 12 global blocks plus a
/// remainder that is not a whole block.
fn spec_strategy() -> impl Strategy<Value = PoolSpec> {
    (
        prop::sample::select(vec![1u32, 2, 4, 16]),
        1u64..=3,
        prop::option::of((1u64..=3, 1u32..=40)),
        0u64..=12,
        0u64..64,
    )
        .prop_map(|(bt, g, sliding, extra, rem)| {
            let mut spec = PoolSpec::new(g, 0).with_block_tokens(bt);
            if let Some((sb, w)) = sliding {
                spec = spec.with_sliding(sb, w);
            }
            let gb = spec.global_block_bytes();
            spec.with_budget(gb + spec.sliding_block_bytes() + extra * gb + rem % gb)
        })
}

fn reconfigured(spec: &PoolSpec, extra: u64, window: Option<u32>, bt: Option<u32>) -> PoolSpec {
    let mut new = *spec;
    if let Some(bt) = bt {
        new.block_tokens = bt;
    }
    if let (Some(w), true) = (window, spec.has_sliding()) {
        new.sliding_window_tokens = w;
    }
    let gb = new.global_block_bytes();
    new.with_budget(gb + new.sliding_block_bytes() + extra * gb)
}

/// Applies `op`; returns whether it succeeded.
fn apply(pool: &mut BlockPool, op: &Op) -> Result<(), PoolError> {
    match *op {
        Op::Create(a) => pool.create_session(s(a)),
        Op::Allocate(a, n) => pool.allocate(s(a), n).map(drop),
        Op::GrowTo(a, n) => pool.grow_to(s(a), n).map(drop),
        Op::FreeOwn(a, i) => {
            let blocks = pool.blocks_of(s(a));
            let b = if blocks.is_empty() {
                BlockId(0)
            } else {
                blocks[i % blocks.len()]
            };
            pool.free(s(a), b)
        }
        Op::FreeAny(a, b) => pool.free(s(a), BlockId(b)),
        Op::Release(a) => pool.release_session(s(a)).map(drop),
        Op::Share(a, b, n) => pool.share(s(a), s(b), n),
        Op::Reconfigure(extra, w, bt) => {
            let new = reconfigured(pool.spec(), extra, w, bt);
            pool.reconfigure(new)
        }
    }
}

/// 1000 cases per property. Failures are not persisted to files (shrunk cases are printed, and
/// the tests must not write into the source tree).
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(1000)
    }
}

proptest! {
    #![proptest_config(config())]

    /// After every operation: used + available = total (blocks and bytes), reference counts equal
    /// the number of holders (so no block is held twice except through sharing), the pool's own
    /// check passes, and a failed operation left the observable state unchanged.
    #[test]
    fn invariants_hold_after_every_operation(spec in spec_strategy(), ops in prop::collection::vec(op_strategy(), 1..60)) {
        let mut pool = BlockPool::new(spec).unwrap();
        for op in &ops {
            let before = pool.snapshot();
            let spec_before = *pool.spec();
            let result = apply(&mut pool, op);
            if let Err(msg) = external_check(&pool) {
                prop_assert!(false, "after {:?} -> {:?}: {}", op, result, msg);
            }
            if result.is_err() {
                prop_assert_eq!(&before, &pool.snapshot(), "failed {:?} changed the pool: {:?}", op, result);
                prop_assert_eq!(spec_before, *pool.spec());
            }
        }
    }

    /// Allocating blocks and then freeing them (in either order) restores the snapshot; so does
    /// sharing into a new session and releasing it, and allocating for a new session and
    /// releasing it.
    #[test]
    fn allocate_then_free_restores_the_state(
        spec in spec_strategy(),
        ops in prop::collection::vec(op_strategy(), 0..40),
        session in 0u64..5,
        n in 0u32..5,
        reverse in any::<bool>(),
        from in 0u64..5,
        share_n in 0u32..4,
    ) {
        let mut pool = BlockPool::new(spec).unwrap();
        for op in &ops {
            let _ = apply(&mut pool, op);
        }
        let before = pool.snapshot();
        let existed = pool.contains_session(s(session));
        if let Ok(mut ids) = pool.allocate(s(session), n) {
            if existed {
                if reverse {
                    ids.reverse();
                }
                for id in ids {
                    pool.free(s(session), id).unwrap();
                }
            } else {
                prop_assert_eq!(pool.release_session(s(session)).unwrap(), n);
            }
        }
        prop_assert_eq!(&before, &pool.snapshot(), "{:?}", pool);
        if pool.share(s(from), s(99), share_n).is_ok() {
            prop_assert_eq!(pool.release_session(s(99)).unwrap(), share_n);
        }
        prop_assert_eq!(&before, &pool.snapshot(), "{:?}", pool);
        if let Err(msg) = external_check(&pool) {
            prop_assert!(false, "{}", msg);
        }
    }

    /// Double free and freeing a block that another session holds are typed errors that leave
    /// the pool unchanged.
    #[test]
    fn double_free_and_foreign_free_are_rejected(
        spec in spec_strategy(),
        ops in prop::collection::vec(op_strategy(), 0..40),
        session in 0u64..5,
    ) {
        let mut pool = BlockPool::new(spec).unwrap();
        for op in &ops {
            let _ = apply(&mut pool, op);
        }
        // Make sure the session exists and there is a free block and a foreign block if possible.
        let _ = pool.grow_to(s(session), 1);
        let _ = pool.grow_to(s(session + 10), 1);
        if let Some(&mine) = pool.blocks_of(s(session)).first() {
            pool.free(s(session), mine).unwrap();
            let before = pool.snapshot();
            let err = pool.free(s(session), mine).unwrap_err();
            let expected = if pool.block(mine).unwrap().is_free() {
                PoolError::DoubleFree { session: s(session), block: mine }
            } else {
                // Still held through sharing by another session.
                let b: &Block = pool.block(mine).unwrap();
                PoolError::NotOwner { session: s(session), block: mine, owner: b.owner, refs: b.refs }
            };
            prop_assert_eq!(err, expected);
            prop_assert_eq!(&before, &pool.snapshot());
        }
        let held: HashSet<BlockId> = pool.blocks_of(s(session)).iter().copied().collect();
        let foreign = pool
            .sessions()
            .flat_map(|(_, sb)| sb.blocks().to_vec())
            .find(|b| !held.contains(b));
        if let Some(foreign) = foreign {
            let before = pool.snapshot();
            let err = pool.free(s(session), foreign).unwrap_err();
            if pool.contains_session(s(session)) {
                prop_assert!(matches!(err, PoolError::NotOwner { block, .. } if block == foreign), "{:?}", err);
            } else {
                prop_assert_eq!(err, PoolError::UnknownSession { session: s(session) });
            }
            prop_assert_eq!(&before, &pool.snapshot());
        }
        if let Err(msg) = external_check(&pool) {
            prop_assert!(false, "{}", msg);
        }
    }

    /// The pool behaves like a simple HashMap reference model: same successes and error kinds,
    /// same block tables and tokens, same byte and block accounting.
    #[test]
    fn pool_matches_reference_model(spec in spec_strategy(), ops in prop::collection::vec(op_strategy(), 1..60)) {
        let mut pool = BlockPool::new(spec).unwrap();
        let mut model = Model::new(spec);
        for op in &ops {
            let expected = model.predict(op);
            let result = apply_with_ids(&mut pool, op);
            match (&expected, &result) {
                (Ok(()), Ok(ids)) => {
                    if let Err(msg) = model.commit(op, ids) {
                        prop_assert!(false, "{:?}: {}\n{:?}", op, msg, pool);
                    }
                }
                (Err(e), Err(r)) => prop_assert_eq!(discriminant(e), discriminant(r), "{:?}: model {:?}, pool {:?}", op, e, r),
                _ => prop_assert!(false, "{:?}: model {:?}, pool {:?}\n{:?}", op, expected, result, pool),
            }
            if let Err(msg) = model.compare(&pool) {
                prop_assert!(false, "after {:?}: {}\n{:?}", op, msg, pool);
            }
        }
    }
}

/// Like [`apply`], returning the new block ids of `allocate` and `grow_to`.
fn apply_with_ids(pool: &mut BlockPool, op: &Op) -> Result<Vec<BlockId>, PoolError> {
    match *op {
        Op::Allocate(a, n) => pool.allocate(s(a), n),
        Op::GrowTo(a, n) => pool.grow_to(s(a), n),
        _ => apply(pool, op).map(|()| Vec::new()),
    }
}

/// The reference model: sessions and reference counts in HashMaps, costs recomputed from scratch.
struct Model {
    spec: PoolSpec,
    sessions: HashMap<SessionId, (Vec<BlockId>, u32)>,
    refs: HashMap<BlockId, u32>,
    /// Ids handed out so far (the pool's table length).
    ever: u32,
}

impl Model {
    fn new(spec: PoolSpec) -> Self {
        Self {
            spec,
            sessions: HashMap::new(),
            refs: HashMap::new(),
            ever: 0,
        }
    }

    fn sliding_of(&self, len: usize, spec: &PoolSpec) -> u64 {
        if spec.sliding_window_tokens == 0 {
            0
        } else {
            let cap = spec.sliding_window_tokens.div_ceil(spec.block_tokens) as usize + 1;
            len.min(cap) as u64
        }
    }

    fn used_under(&self, spec: &PoolSpec) -> u64 {
        let sliding: u64 = self
            .sessions
            .values()
            .map(|(b, _)| self.sliding_of(b.len(), spec))
            .sum();
        self.refs.len() as u64 * spec.block_tokens as u64 * spec.global_bytes_per_token
            + sliding * spec.block_tokens as u64 * spec.sliding_bytes_per_token
    }

    fn available(&self) -> u64 {
        self.spec.budget_bytes - self.used_under(&self.spec)
    }

    fn cost(&self, global: u64, len_before: usize, len_after: usize) -> u64 {
        let bt = self.spec.block_tokens as u64;
        global * bt * self.spec.global_bytes_per_token
            + (self.sliding_of(len_after, &self.spec) - self.sliding_of(len_before, &self.spec))
                * bt
                * self.spec.sliding_bytes_per_token
    }

    fn oom(&self, a: u64) -> PoolError {
        PoolError::OutOfMemory {
            session: s(a),
            requested_blocks: 0,
            requested_bytes: 0,
            available_blocks: 0,
            available_bytes: 0,
        }
    }

    /// The copy-on-write indices and appended count of a grow.
    fn grow_plan(&self, a: u64, n: u32) -> (Vec<usize>, usize) {
        let (blocks, tokens) = self.sessions.get(&s(a)).cloned().unwrap_or_default();
        if n <= tokens {
            return (Vec::new(), 0);
        }
        let bt = self.spec.block_tokens;
        let needed = n.div_ceil(bt) as usize;
        let cow = (0..blocks.len())
            .filter(|&i| {
                i as u32 * bt + bt > tokens && (i as u32) * bt < n && self.refs[&blocks[i]] > 1
            })
            .collect();
        (cow, needed.saturating_sub(blocks.len()))
    }

    fn predict(&self, op: &Op) -> Result<(), PoolError> {
        let len = |a: u64| self.sessions.get(&s(a)).map_or(0, |(b, _)| b.len());
        match *op {
            Op::Create(a) => {
                if self.sessions.contains_key(&s(a)) {
                    return Err(PoolError::SessionExists { session: s(a) });
                }
            }
            Op::Allocate(a, n) => {
                if self.cost(n.into(), len(a), len(a) + n as usize) > self.available() {
                    return Err(self.oom(a));
                }
            }
            Op::GrowTo(a, n) => {
                let (cow, append) = self.grow_plan(a, n);
                let after = len(a) + append;
                if self.cost((cow.len() + append) as u64, len(a), after) > self.available() {
                    return Err(self.oom(a));
                }
            }
            Op::FreeOwn(..) | Op::FreeAny(..) => {
                let (a, b) = self.free_target(op);
                if b.0 >= self.ever {
                    return Err(PoolError::UnknownBlock {
                        block: b,
                        table_len: 0,
                    });
                }
                let Some((blocks, _)) = self.sessions.get(&s(a)) else {
                    return Err(PoolError::UnknownSession { session: s(a) });
                };
                if !self.refs.contains_key(&b) {
                    return Err(PoolError::DoubleFree {
                        session: s(a),
                        block: b,
                    });
                }
                if !blocks.contains(&b) {
                    return Err(PoolError::NotOwner {
                        session: s(a),
                        block: b,
                        owner: None,
                        refs: 0,
                    });
                }
            }
            Op::Release(a) => {
                if !self.sessions.contains_key(&s(a)) {
                    return Err(PoolError::UnknownSession { session: s(a) });
                }
            }
            Op::Share(a, b, n) => {
                if a == b {
                    return Err(PoolError::ShareWithSelf { session: s(a) });
                }
                let Some((blocks, _)) = self.sessions.get(&s(a)) else {
                    return Err(PoolError::UnknownSession { session: s(a) });
                };
                if n as usize > blocks.len() {
                    return Err(PoolError::ShareTooMany {
                        from: s(a),
                        requested: 0,
                        held: 0,
                    });
                }
                if len(b) > 0 {
                    return Err(PoolError::SessionNotEmpty {
                        session: s(b),
                        blocks: 0,
                    });
                }
                if self.cost(0, 0, n as usize) > self.available() {
                    return Err(self.oom(b));
                }
            }
            Op::Reconfigure(extra, w, bt) => {
                let new = reconfigured(&self.spec, extra, w, bt);
                new.validate()?;
                if new.block_tokens != self.spec.block_tokens && !self.refs.is_empty() {
                    return Err(PoolError::BlockSizeChange {
                        old_block_tokens: 0,
                        new_block_tokens: 0,
                        live_blocks: 0,
                    });
                }
                if self.used_under(&new) > new.budget_bytes {
                    return Err(PoolError::WouldNotFit {
                        needed_bytes: 0,
                        budget_bytes: 0,
                        sessions: 0,
                    });
                }
            }
        }
        Ok(())
    }

    fn free_target(&self, op: &Op) -> (u64, BlockId) {
        match *op {
            Op::FreeOwn(a, i) => {
                let blocks = self
                    .sessions
                    .get(&s(a))
                    .map(|(b, _)| b.clone())
                    .unwrap_or_default();
                (
                    a,
                    if blocks.is_empty() {
                        BlockId(0)
                    } else {
                        blocks[i % blocks.len()]
                    },
                )
            }
            Op::FreeAny(a, b) => (a, BlockId(b)),
            _ => unreachable!(),
        }
    }

    fn take(&mut self, ids: &mut impl Iterator<Item = BlockId>) -> Result<BlockId, String> {
        let id = ids.next().ok_or("pool returned too few ids")?;
        if self.refs.contains_key(&id) {
            return Err(format!("pool handed out live {id}"));
        }
        if id.0 > self.ever {
            return Err(format!("pool skipped ids: {id} after {}", self.ever));
        }
        self.ever = self.ever.max(id.0 + 1);
        self.refs.insert(id, 1);
        Ok(id)
    }

    fn unref(&mut self, b: BlockId) {
        let r = self.refs.get_mut(&b).unwrap();
        *r -= 1;
        if *r == 0 {
            self.refs.remove(&b);
        }
    }

    /// Applies a predicted success, taking new block ids from the pool's answer.
    fn commit(&mut self, op: &Op, ids: &[BlockId]) -> Result<(), String> {
        let mut it = ids.iter().copied();
        let bt = self.spec.block_tokens;
        match *op {
            Op::Create(a) => {
                self.sessions.insert(s(a), (Vec::new(), 0));
            }
            Op::Allocate(a, n) => {
                let mut new = Vec::new();
                for _ in 0..n {
                    new.push(self.take(&mut it)?);
                }
                self.sessions.entry(s(a)).or_default().0.extend(new);
            }
            Op::GrowTo(a, n) => {
                let (cow, append) = self.grow_plan(a, n);
                let (mut blocks, tokens) = self.sessions.remove(&s(a)).unwrap_or_default();
                for i in cow {
                    let id = self.take(&mut it)?;
                    self.unref(blocks[i]);
                    blocks[i] = id;
                }
                for _ in 0..append {
                    blocks.push(self.take(&mut it)?);
                }
                self.sessions.insert(s(a), (blocks, tokens.max(n)));
            }
            Op::FreeOwn(..) | Op::FreeAny(..) => {
                let (a, b) = self.free_target(op);
                let (blocks, tokens) = self.sessions.get_mut(&s(a)).unwrap();
                blocks.retain(|&x| x != b);
                *tokens = (*tokens).min(blocks.len() as u32 * bt);
                self.unref(b);
            }
            Op::Release(a) => {
                let (blocks, _) = self.sessions.remove(&s(a)).unwrap();
                for b in blocks {
                    self.unref(b);
                }
            }
            Op::Share(a, b, n) => {
                let (blocks, tokens) = self.sessions[&s(a)].clone();
                let shared = blocks[..n as usize].to_vec();
                for &x in &shared {
                    *self.refs.get_mut(&x).unwrap() += 1;
                }
                self.sessions.insert(s(b), (shared, tokens.min(n * bt)));
            }
            Op::Reconfigure(extra, w, t) => {
                self.spec = reconfigured(&self.spec, extra, w, t);
            }
        }
        if it.next().is_some() {
            return Err("pool returned too many ids".into());
        }
        Ok(())
    }

    fn compare(&self, pool: &BlockPool) -> Result<(), String> {
        if *pool.spec() != self.spec {
            return Err(format!("spec {:?} != model {:?}", pool.spec(), self.spec));
        }
        let snap: PoolSnapshot = pool.snapshot();
        if snap.sessions.len() != self.sessions.len() {
            return Err(format!(
                "{} sessions, model {}",
                snap.sessions.len(),
                self.sessions.len()
            ));
        }
        for (id, blocks, tokens) in &snap.sessions {
            let Some((mb, mt)) = self.sessions.get(id) else {
                return Err(format!("{id} not in model"));
            };
            if mb != blocks || mt != tokens {
                return Err(format!("{id}: {blocks:?}/{tokens} vs model {mb:?}/{mt}"));
            }
        }
        for b in &snap.live_blocks {
            if self.refs.get(&b.id) != Some(&b.refs) {
                return Err(format!(
                    "{}: refs {} vs model {:?}",
                    b.id,
                    b.refs,
                    self.refs.get(&b.id)
                ));
            }
        }
        if snap.live_blocks.len() != self.refs.len() {
            return Err("live block count differs".into());
        }
        let used = self.used_under(&self.spec);
        if pool.used_bytes() != used || pool.available_bytes() != self.spec.budget_bytes - used {
            return Err(format!("used {} vs model {used}", pool.used_bytes()));
        }
        let g = self.spec.block_tokens as u64 * self.spec.global_bytes_per_token;
        let avail_blocks = (self.available() / g) as u32;
        if pool.available_blocks() != avail_blocks
            || pool.total_blocks() != (self.spec.budget_bytes / g) as u32
        {
            return Err(format!(
                "available blocks {} vs model {avail_blocks}",
                pool.available_blocks()
            ));
        }
        Ok(())
    }
}
