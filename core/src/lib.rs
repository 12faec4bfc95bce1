//! libfae core: a memcached client with a router inside.
//!
//! ```text
//! Client (client.rs)                 sync API, thread-safe, one per process
//!   └─ Router (route/)               the route tree from config, swapped atomically on reload
//!        └─ Route::get / write       failover, replicated, shadow, warm_up, prefix, migrate, local …
//!             └─ PoolRoute           leaf: placement (hash/ + dist/), key → server index
//!                  └─ Destination    one per server address (pool/): idle connections, health
//!                       └─ Conn      socket + buffers; protocol codec (protocol/, sans I/O)
//! ```
//!
//! `addr.rs` (server addresses: [`addr::Node`], [`addr::parse_server`], TCP or Unix-domain
//! socket) is the bottom every layer above may use; it imports nothing from the crate.
//!
//! The caller's thread does the I/O of its own request; a multi-key call groups keys by server
//! and drives every server's connection at once from the caller's thread, under one deadline.
#![deny(missing_docs)]

pub mod addr;
pub mod client;
pub(crate) mod coalesce;
pub mod config;
pub mod discovery;
pub mod dist;
pub mod error;
pub mod export;
pub mod hash;
pub mod item;
pub mod key;
pub mod lease;
pub mod lru;
pub mod pool;
pub mod protocol;
pub mod route;
pub mod stats;
pub mod supervisor;

pub use client::{Client, Op, SetItem, StoreOutcome};
pub use config::Config;
pub use error::{Error, ErrorKind, Reason, Result};
pub use item::Item;
pub use protocol::StoreOp;
