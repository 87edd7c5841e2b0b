//! Saved sessions on disk.
