//! Codec tests (in progress)
