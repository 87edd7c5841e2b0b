//! Sequence slots.
