//! Configuration schema.
