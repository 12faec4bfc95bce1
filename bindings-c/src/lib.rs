//! libfae C ABI.
