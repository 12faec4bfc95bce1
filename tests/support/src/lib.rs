//! Test support for libfae.
