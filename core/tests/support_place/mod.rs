//! Keys by the server they are placed on, for tests that stop or lose one server.

use fae_core::{Client, Op};

/// The first `n` keys `k:0`, `k:1`, … that `c` places on `server`.
pub fn keys_on(c: &Client, server: &str, n: usize) -> Vec<String> {
    (0..10_000)
        .map(|i| format!("k:{i}"))
        .filter(|k| c.route_for(Op::Get, k.as_bytes()).unwrap()[0] == server)
        .take(n)
        .collect()
}
