//! The fit check before a download: the model's GGUF headers are fetched (a few ranged
//! requests, no weights), written to sparse files ([`header::SparseModel`]) and planned under
//! the memory budget by the caller's planner. A model that cannot run is refused before its
//! gigabytes are fetched, with what would fit: a smaller quantisation of the same repository
//! (its headers planned the same way) or the planner's own change of flags (a smaller context).
//!
//! The planner is a callback so this module needs no llama.cpp: the CLI passes the same
//! planning its run commands do.

use std::path::Path;

use super::error::{QuantSuggestion, StoreError};
use super::header::{fetch_header, SparseModel};
use super::hub::{HubClient, RemoteFile, RepoListing};
use super::progress::Progress;
use super::quant::{self, GgufName};
use crate::size::ByteSize;

/// Other quantisations planned at most, when the chosen one does not fit.
pub const MAX_ALTERNATIVES: usize = 6;

/// The planner's answer for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FitVerdict {
    /// It runs under the budget (the notes say how: a reduced context, streaming, ...).
    Fits {
        /// What the plan changed, for the user.
        notes: Vec<String>,
    },
    /// It cannot run under the budget.
    DoesNotFit {
        /// The planner's refusal, with the change of flags that would fit if there is one.
        reason: String,
    },
}

/// Plans the model whose first file is at the path (a sparse copy); an `Err` is a failure to
/// plan at all, not a refusal.
pub type Planner = dyn FnMut(&Path) -> Result<FitVerdict, String>;

/// A budget and the planner that applies it.
pub struct FitRequest<'a> {
    /// `--max-mem`, for messages.
    pub budget: ByteSize,
    /// The planner.
    pub planner: &'a mut Planner,
}

/// The total size of a model's parts.
fn total_size(parts: &[&RemoteFile]) -> u64 {
    parts.iter().map(|f| f.size).sum()
}

/// Plans `parts` (one model) from their headers. Returns the verdict and the header bytes
/// fetched.
fn plan_parts(
    client: &HubClient,
    listing: &RepoListing,
    parts: &[&RemoteFile],
    planner: &mut Planner,
) -> Result<(FitVerdict, u64), StoreError> {
    let mut headers = Vec::new();
    let mut fetched = 0;
    for part in parts {
        let location = client.locate(&listing.repo, &listing.commit, &part.path)?;
        let header = fetch_header(client, &part.path, &location)?;
        fetched += header.fetched;
        headers.push((part.path.as_str(), header, location.size));
    }
    let refs: Vec<(&str, &super::header::RemoteHeader, u64)> =
        headers.iter().map(|(n, h, s)| (*n, h, *s)).collect();
    let sparse = SparseModel::write(&refs)?;
    let verdict = planner(sparse.path()).map_err(|message| StoreError::FitCheckFailed {
        model: format!("{}/{}", listing.repo, parts[0].path),
        message,
    })?;
    Ok((verdict, fetched))
}

/// Checks that `chosen` (the parts of one model of `listing`) fits; refuses with a smaller
/// quantisation that does when one exists. Returns the plan's notes.
pub fn check(
    client: &HubClient,
    listing: &RepoListing,
    chosen: &[&RemoteFile],
    model: &str,
    request: FitRequest<'_>,
    progress: &mut dyn Progress,
) -> Result<Vec<String>, StoreError> {
    let FitRequest { budget, planner } = request;
    let (verdict, mut header_bytes) = plan_parts(client, listing, chosen, planner)?;
    let reason = match verdict {
        FitVerdict::Fits { notes } => return Ok(notes),
        FitVerdict::DoesNotFit { reason } => reason,
    };
    progress.note(&format!(
        "{model} does not fit --max-mem {budget}; planning the smaller quantisations of {}",
        listing.repo
    ));
    let chosen_size = total_size(chosen);
    let mut smaller: Vec<(Vec<&RemoteFile>, u64)> = quant::model_heads(&listing.files)
        .into_iter()
        .filter(|head| head.path != chosen[0].path)
        .filter_map(|head| {
            let parts = quant::with_split_parts(&listing.repo, &listing.files, head).ok()?;
            let size = total_size(&parts);
            (size < chosen_size).then_some((parts, size))
        })
        .collect();
    // The largest (best quality) first: the first that fits is the suggestion.
    smaller.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    let mut suggestion = None;
    for (parts, size) in smaller.into_iter().take(MAX_ALTERNATIVES) {
        let (verdict, fetched) = plan_parts(client, listing, &parts, planner)?;
        header_bytes += fetched;
        if matches!(verdict, FitVerdict::Fits { .. }) {
            let tag = GgufName::parse(&parts[0].path)
                .map(|n| n.tag)
                .filter(|t| !t.is_empty());
            suggestion = Some(QuantSuggestion {
                model: match tag {
                    Some(tag) => format!("{}:{tag}", listing.repo),
                    None => format!("{}/{}", listing.repo, parts[0].path),
                },
                size,
            });
            break;
        }
    }
    Err(StoreError::DoesNotFit {
        model: model.to_string(),
        budget,
        reason,
        suggestion,
        header_bytes,
    })
}
