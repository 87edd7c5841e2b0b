//! The responses kept for `previous_response_id`: the [`CAPACITY`] most recent, in memory
//! (nothing survives a restart). Each holds its conversation as OpenAI chat messages (without
//! its `instructions`, which OpenAI does not carry over), the answer included.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// How many responses are kept; the oldest goes first.
pub const CAPACITY: usize = 64;

/// One kept response: its id and conversation.
type Kept = (String, Arc<Vec<Value>>);

/// The stored responses, shared by the routes of one server.
#[derive(Debug, Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<VecDeque<Kept>>>,
}

impl Store {
    /// Keeps `messages` as response `id`'s conversation, dropping the oldest past
    /// [`CAPACITY`].
    pub fn put(&self, id: String, messages: Vec<Value>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.len() >= CAPACITY {
            inner.pop_front();
        }
        inner.push_back((id, Arc::new(messages)));
    }

    /// The conversation of response `id`, when it is still kept.
    pub fn get(&self, id: &str) -> Option<Arc<Vec<Value>>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .iter()
            .rev()
            .find(|(k, _)| k == id)
            .map(|(_, v)| Arc::clone(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_oldest_goes_first() {
        let store = Store::default();
        for i in 0..=CAPACITY {
            store.put(format!("r{i}"), vec![json!(i)]);
        }
        assert!(store.get("r0").is_none());
        assert_eq!(store.get("r1").unwrap()[0], json!(1));
        assert_eq!(
            store.get(&format!("r{CAPACITY}")).unwrap()[0],
            json!(CAPACITY)
        );
    }
}
