//! libfae core: a memcached client with a router inside.
//!
//! ```text
//! Client (client.rs)                 sync API, thread-safe, one per process; one Cx per call
//!   ├─ lease.rs, coalesce.rs         get_or_set and leases on the route layer; shared gets
//!   └─ Router (route/)               the route tree from config, swapped atomically on reload
//!        └─ Route::get / write       failover, replicated, shadow, warm_up, prefix, migrate, local …
//!             └─ PoolRoute           leaf: placement (hash/ + placement/), key → server index;
//!                  │                 what a reply means (lease stubs hidden, hits counted)
//!                  └─ exchange       the engine (pool/exchange.rs): per-destination batches
//!                       └─ Destination   one per server address (pool/): idle connections, health
//!                            └─ Conn     socket + buffers; protocol codec (protocol/, sans I/O)
//! ```
//!
//! Imports run down this picture, never up; the vocabulary every layer speaks (`op.rs`: keys,
//! reads, writes, outcomes, the request context `Cx`) sits below all of it. The caller's
//! thread does the I/O of its own request; a multi-key call groups keys by server and drives
//! every server's connection at once from the caller's thread, and every route, child and
//! retry of a call shares the one deadline of its `Cx`.
//!
//! `addr.rs` (server addresses: [`addr::Node`], [`addr::parse_server`], TCP or Unix-domain
//! socket) is the bottom every layer above may use; it imports nothing from the crate.
#![deny(missing_docs)]

pub mod addr;
pub mod client;
pub(crate) mod coalesce;
pub mod config;
pub mod discovery;
pub mod error;
pub mod export;
pub mod hash;
pub mod item;
pub mod key;
pub mod lease;
pub mod lru;
pub mod op;
pub mod placement;
pub mod pool;
pub mod process;
pub mod protocol;
pub mod route;
pub mod stats;
pub mod textfile;
pub mod values;

pub use client::Client;
pub use config::Config;
pub use error::{Error, ErrorKind, Reason, Result};
pub use item::Item;
pub use op::{Op, SetItem, StoreOutcome};
pub use protocol::StoreOp;
