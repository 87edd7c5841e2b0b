//! The scheduler thread (continuous batching). Being written.

use std::sync::Arc;

use super::{
    Engine, EngineConfig, EngineError, EngineRequest, ResponseStream, Shared, SubmitError,
};
use crate::cache_spec::ModelCacheSpec;
use crate::ffi::Model;

/// A queued request with its consumer's channel.
pub(super) struct Job {
    pub(super) request: EngineRequest,
    pub(super) events: tokio::sync::mpsc::Sender<super::EngineEvent>,
    pub(super) submitted: std::time::Instant,
}

pub(super) fn start(
    _model: Arc<Model>,
    _cache: &ModelCacheSpec,
    _config: EngineConfig,
) -> Result<Engine, EngineError> {
    Err(EngineError::Start {
        message: "not implemented yet".into(),
    })
}

pub(super) fn submit(
    _shared: &Arc<Shared>,
    _request: EngineRequest,
) -> Result<ResponseStream, SubmitError> {
    Err(SubmitError::ShuttingDown)
}

pub(super) fn request_exit(_shared: &Arc<Shared>) {}
