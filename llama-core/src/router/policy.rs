//! Admission by planned bytes: which models are resident, which one to unload to make room,
//! and which request must wait. Pure bookkeeping (no loading, no threads): the caller does the
//! loads and unloads the [`Policy`] asks for and reports back.
//!
//! Rules:
//! - the planned bytes of every model that is loading, loaded or unloading stay within the
//!   capacity (and, with a count limit, so does the number of such models);
//! - room is made by unloading loaded models that have no request in flight and are not
//!   pinned, least recently used first, and only when that makes enough room (never a partial
//!   eviction that leaves the request waiting anyway);
//! - a model still loading, a model with requests in flight and a pinned model are never
//!   chosen;
//! - a model that cannot fit even with every unpinned model unloaded is refused with the
//!   figures.

use std::time::{Duration, Instant};

use crate::size::ByteSize;

/// Where a model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not in memory.
    Unloaded,
    /// Being loaded; its bytes are counted.
    Loading,
    /// In memory and answering.
    Loaded,
    /// Being unloaded; its bytes are counted until it is gone.
    Unloading,
}

impl Phase {
    /// Whether the model's bytes are counted against the capacity.
    pub fn holds_memory(self) -> bool {
        !matches!(self, Phase::Unloaded)
    }

    /// The word `/v1/models` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unloaded => "unloaded",
            Phase::Loading => "loading",
            Phase::Loaded => "loaded",
            Phase::Unloading => "unloading",
        }
    }
}

/// Why a model can never be admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its plan alone is larger than the capacity.
    #[error(
        "the model needs {} but the budget leaves {} for models",
        ByteSize(*bytes),
        ByteSize(*capacity)
    )]
    TooLarge {
        /// Planned bytes.
        bytes: u64,
        /// Bytes for all models together.
        capacity: u64,
    },
    /// It fits alone, but not beside the pinned models.
    #[error(
        "the model needs {} but only {} is left beside the pinned models ({})",
        ByteSize(*bytes),
        ByteSize(capacity.saturating_sub(*pinned)),
        ByteSize(*pinned)
    )]
    Pinned {
        /// Planned bytes.
        bytes: u64,
        /// Bytes for all models together.
        capacity: u64,
        /// Bytes of the other pinned models.
        pinned: u64,
    },
    /// It could not be planned (the planner's reason).
    #[error("{0}")]
    Unplanned(String),
}

/// Why a request has to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The model is loading.
    Loading,
    /// The model is being unloaded (it loads again afterwards).
    Unloading,
    /// Not enough room can be made now: the other models are busy, loading or unloading.
    Busy,
}

/// What the caller does next for a model it wants to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Loaded: the request is counted in flight until [`Policy::release`].
    Ready,
    /// The caller loads the model (now marked loading) after unloading `evict` (now marked
    /// unloading), then reports [`Policy::unloaded`] for each and [`Policy::loaded`] or
    /// [`Policy::load_failed`].
    Load {
        /// Models to unload first, least recently used first.
        evict: Vec<usize>,
    },
    /// Try again once something changes.
    Wait(Wait),
}

/// Why an explicit unload is not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnloadRefusal {
    /// The model is not loaded.
    #[error("the model is not loaded")]
    NotLoaded,
    /// It is still loading.
    #[error("the model is still loading")]
    Loading,
    /// Requests are in flight.
    #[error("the model has {0} request(s) in flight")]
    Busy(usize),
}

/// One model as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelView {
    /// Where it is.
    pub phase: Phase,
    /// Planned bytes (`None`: it could not be planned).
    pub bytes: Option<u64>,
    /// Requests in flight.
    pub inflight: usize,
    /// Kept resident.
    pub pinned: bool,
    /// Whether it can be admitted at all (`None` when it can: see [`Policy::refusal`]).
    pub refusal: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    bytes: Result<u64, String>,
    pinned: bool,
    phase: Phase,
    inflight: usize,
    /// Logical time of the last use: orders least recently used.
    tick: u64,
    /// Wall time of the last use: for idle unloading.
    used_at: Instant,
}

/// The admission state of every model under one capacity.
#[derive(Debug, Clone)]
pub struct Policy {
    capacity: u64,
    max_resident: Option<usize>,
    entries: Vec<Entry>,
    tick: u64,
}

impl Policy {
    /// A policy for `capacity` bytes of models and, when given, at most `max_resident` models
    /// in memory at once.
    pub fn new(capacity: u64, max_resident: Option<usize>) -> Policy {
        Policy {
            capacity,
            max_resident: max_resident.map(|n| n.max(1)),
            entries: Vec::new(),
            tick: 0,
        }
    }

    /// Adds a model with its planned bytes (or why it could not be planned); returns its index.
    pub fn add(&mut self, bytes: Result<u64, String>, pinned: bool, now: Instant) -> usize {
        self.entries.push(Entry {
            bytes,
            pinned,
            phase: Phase::Unloaded,
            inflight: 0,
            tick: 0,
            used_at: now,
        });
        self.entries.len() - 1
    }

    /// Models known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no model is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes for all models together.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Planned bytes of the models loading, loaded or unloading.
    pub fn resident_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.phase.holds_memory())
            .map(|e| *e.bytes.as_ref().unwrap_or(&0))
            .sum()
    }

    /// Models loading, loaded or unloading.
    pub fn resident_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.phase.holds_memory())
            .count()
    }

    /// What the policy knows of model `i`.
    pub fn view(&self, i: usize) -> ModelView {
        let e = &self.entries[i];
        ModelView {
            phase: e.phase,
            bytes: e.bytes.as_ref().ok().copied(),
            inflight: e.inflight,
            pinned: e.pinned,
            refusal: self.refusal(i).map(|r| r.to_string()),
        }
    }

    /// Why model `i` can never be admitted, if it cannot.
    pub fn refusal(&self, i: usize) -> Option<Refusal> {
        let bytes = match &self.entries[i].bytes {
            Ok(b) => *b,
            Err(reason) => return Some(Refusal::Unplanned(reason.clone())),
        };
        if bytes > self.capacity {
            return Some(Refusal::TooLarge {
                bytes,
                capacity: self.capacity,
            });
        }
        let pinned: u64 = self
            .entries
            .iter()
            .enumerate()
            .filter(|&(k, e)| k != i && e.pinned)
            .map(|(_, e)| *e.bytes.as_ref().unwrap_or(&0))
            .sum();
        if bytes.saturating_add(pinned) > self.capacity {
            return Some(Refusal::Pinned {
                bytes,
                capacity: self.capacity,
                pinned,
            });
        }
        None
    }

    fn touch(&mut self, i: usize, now: Instant) {
        self.tick += 1;
        self.entries[i].tick = self.tick;
        self.entries[i].used_at = now;
    }

    /// A request wants model `i`: counted in flight when it is loaded, else told what to do.
    pub fn acquire(&mut self, i: usize, now: Instant) -> Result<Acquire, Refusal> {
        let step = self.admit(i, now)?;
        if step == Acquire::Ready {
            self.entries[i].inflight += 1;
            self.touch(i, now);
        }
        Ok(step)
    }

    /// Like [`acquire`](Self::acquire) without counting a request (`POST /models/load`, pins).
    pub fn admit(&mut self, i: usize, now: Instant) -> Result<Acquire, Refusal> {
        if let Some(refusal) = self.refusal(i) {
            return Err(refusal);
        }
        match self.entries[i].phase {
            Phase::Loaded => return Ok(Acquire::Ready),
            Phase::Loading => return Ok(Acquire::Wait(Wait::Loading)),
            Phase::Unloading => return Ok(Acquire::Wait(Wait::Unloading)),
            Phase::Unloaded => {}
        }
        let Some(evict) = self.victims(i) else {
            return Ok(Acquire::Wait(Wait::Busy));
        };
        for &k in &evict {
            self.entries[k].phase = Phase::Unloading;
        }
        self.entries[i].phase = Phase::Loading;
        self.touch(i, now);
        Ok(Acquire::Load { evict })
    }

    /// The least recently used idle models whose unloading makes room for model `i`, or
    /// `None` when no such set exists now.
    fn victims(&self, i: usize) -> Option<Vec<usize>> {
        let need = *self.entries[i].bytes.as_ref().ok()?;
        let mut resident = self.resident_bytes();
        let mut count = self.resident_count();
        let fits = |resident: u64, count: usize| {
            resident.saturating_add(need) <= self.capacity
                && self.max_resident.is_none_or(|m| count < m)
        };
        let mut candidates: Vec<usize> = (0..self.entries.len())
            .filter(|&k| {
                let e = &self.entries[k];
                k != i && e.phase == Phase::Loaded && e.inflight == 0 && !e.pinned
            })
            .collect();
        candidates.sort_by_key(|&k| self.entries[k].tick);
        let mut evict = Vec::new();
        for k in candidates {
            if fits(resident, count) {
                break;
            }
            resident -= *self.entries[k].bytes.as_ref().unwrap_or(&0);
            count -= 1;
            evict.push(k);
        }
        fits(resident, count).then_some(evict)
    }

    /// A request on model `i` finished.
    pub fn release(&mut self, i: usize, now: Instant) {
        let e = &mut self.entries[i];
        e.inflight = e.inflight.saturating_sub(1);
        self.touch(i, now);
    }

    /// Model `i` finished loading.
    pub fn loaded(&mut self, i: usize, now: Instant) {
        if self.entries[i].phase == Phase::Loading {
            self.entries[i].phase = Phase::Loaded;
            self.touch(i, now);
        }
    }

    /// Model `i` failed to load: unloaded again, its bytes freed. The error is the caller's to
    /// report; a later request tries again.
    pub fn load_failed(&mut self, i: usize) {
        if self.entries[i].phase == Phase::Loading {
            self.entries[i].phase = Phase::Unloaded;
        }
    }

    /// Model `i` is unloaded (its memory freed).
    pub fn unloaded(&mut self, i: usize) {
        if self.entries[i].phase == Phase::Unloading {
            self.entries[i].phase = Phase::Unloaded;
        }
    }

    /// An explicit unload of model `i` (`POST /models/unload`): marks it unloading, or says
    /// why not.
    pub fn unload(&mut self, i: usize) -> Result<(), UnloadRefusal> {
        let e = &mut self.entries[i];
        match e.phase {
            Phase::Unloaded | Phase::Unloading => Err(UnloadRefusal::NotLoaded),
            Phase::Loading => Err(UnloadRefusal::Loading),
            Phase::Loaded if e.inflight > 0 => Err(UnloadRefusal::Busy(e.inflight)),
            Phase::Loaded => {
                e.phase = Phase::Unloading;
                Ok(())
            }
        }
    }

    /// Loaded, unpinned models without requests that were last used more than `after` before
    /// `now`: marked unloading and returned (the caller unloads them).
    pub fn idle(&mut self, now: Instant, after: Duration) -> Vec<usize> {
        let mut out = Vec::new();
        for (k, e) in self.entries.iter_mut().enumerate() {
            if e.phase == Phase::Loaded
                && e.inflight == 0
                && !e.pinned
                && now.saturating_duration_since(e.used_at) >= after
            {
                e.phase = Phase::Unloading;
                out.push(k);
            }
        }
        out
    }

    /// Pinned models that are not in memory (to load at start, or again after a failure).
    pub fn pinned_unloaded(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&k| self.entries[k].pinned && self.entries[k].phase == Phase::Unloaded)
            .collect()
    }
}

#[cfg(test)]
mod tests;
