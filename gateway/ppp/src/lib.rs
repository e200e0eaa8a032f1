//! Placeholder; see the crate README.
