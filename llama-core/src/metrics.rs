//! Counters of the memory budget at run time: planned bytes per category next to what the
//! process actually holds, the peak, and how often the peak went over the budget. Printed by
//! `--stats`; kept for the server's metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::planner::Breakdown;
use crate::process_memory::ProcessMemory;

/// Planned vs actual memory of one model run. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct BudgetCounters {
    budget: Option<u64>,
    planned: Option<Breakdown>,
    exceeded_events: AtomicU64,
    observations: AtomicU64,
    last: Mutex<ProcessMemory>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BudgetSnapshot {
    /// The budget, if one was given.
    pub budget: Option<u64>,
    /// The planned breakdown, if a plan was made.
    pub planned: Option<Breakdown>,
    /// Measured memory at the last observation.
    pub actual: ProcessMemory,
    /// Observations whose peak RSS was over the budget.
    pub exceeded_events: u64,
    /// Observations made.
    pub observations: u64,
}

impl BudgetCounters {
    /// Counters for a run planned as `planned` under `budget` (both optional).
    pub fn new(budget: Option<u64>, planned: Option<Breakdown>) -> BudgetCounters {
        BudgetCounters {
            budget,
            planned,
            ..BudgetCounters::default()
        }
    }

    /// Reads the process's memory now; counts a budget-exceeded event when the peak is over.
    /// Returns whether this observation exceeded the budget.
    pub fn observe(&self) -> bool {
        let now = ProcessMemory::current();
        self.observations.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let exceeded = self.budget.is_some_and(|b| now.peak_rss > b);
        if exceeded {
            self.exceeded_events.fetch_add(1, Ordering::Relaxed);
        }
        exceeded
    }

    /// The counters now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        BudgetSnapshot {
            budget: self.budget,
            planned: self.planned,
            actual: *self.last.lock().unwrap_or_else(|p| p.into_inner()),
            exceeded_events: self.exceeded_events.load(Ordering::Relaxed),
            observations: self.observations.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exceeded_observations() {
        let tiny = BudgetCounters::new(Some(1), None);
        assert!(tiny.observe());
        assert!(tiny.observe());
        let roomy = BudgetCounters::new(Some(u64::MAX), None);
        assert!(!roomy.observe());
        let snap = tiny.snapshot();
        assert_eq!((snap.exceeded_events, snap.observations), (2, 2));
        assert!(snap.actual.peak_rss > 0);
        assert_eq!(roomy.snapshot().exceeded_events, 0);
    }
}
