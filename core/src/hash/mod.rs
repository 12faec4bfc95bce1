//! Key → u32 hash functions, pure and bit-exact with the clients libfae replaces.
