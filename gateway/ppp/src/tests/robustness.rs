//! Malformed input.
