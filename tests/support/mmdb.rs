//! Writes small MaxMind DB files for tests (placeholder: being written).
