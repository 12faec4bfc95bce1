//! pylibmc's stored-value layout (`_pylibmcmodule.h`, `_PylibMC_serialize_native`).
//!
//! | flag | value | written for |
//! |---|---|---|
//! | [`NONE`] | 0 | `bytes` |
//! | [`PICKLE`] | 1 | anything else, pickled |
//! | [`INTEGER`] | 2 | `bool`, as `"1"`/`"0"` |
//! | [`LONG`] | 4 | `int` (subclasses too), as decimal text |
//! | [`ZLIB`] | 8 | with a type bit: the payload is a zlib stream, no length prefix |
//! | [`TEXT`] | 16 | `str`, UTF-8 |
//!
//! The bits are pymemcache's ([`super::pymemcache`]), and so is reading them: [`decode`] and
//! [`compress`] are the same functions. pylibmc reads its own bools (2) back as ints.

pub use super::pymemcache::{Kind, compress, decode, kind};

/// Raw bytes.
pub const NONE: u32 = 0;
/// A pickled object.
pub const PICKLE: u32 = 1;
/// A bool, `"1"` or `"0"`.
pub const INTEGER: u32 = 2;
/// An int, as decimal text.
pub const LONG: u32 = 4;
/// The payload is a zlib stream (no length prefix).
pub const ZLIB: u32 = 8;
/// UTF-8 text.
pub const TEXT: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pylibmc_bits_are_pymemcache_bits() {
        use super::super::pymemcache as pm;
        assert_eq!(
            [NONE, PICKLE, INTEGER, LONG, ZLIB, TEXT],
            [
                pm::BYTES,
                pm::PICKLE,
                pm::INTEGER,
                pm::LONG,
                pm::COMPRESSED,
                pm::TEXT
            ]
        );
        assert_eq!(
            kind(INTEGER),
            Kind::Int,
            "a pylibmc bool reads back as an int"
        );
    }
}
