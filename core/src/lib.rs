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
//! The caller's thread does the I/O of its own request; a multi-key call groups keys by server
//! and drives every server's connection at once from the caller's thread, and every route,
//! child and retry of a call shares the one deadline of its `Cx`.
//!
//! # Layers
//!
//! A module imports only from its own layer's helpers and the layers below it (the few
//! intra-doc links that point up, such as `op`'s to [`lease`], are not imports):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 1 vocabulary | [`addr`], [`error`], [`item`], [`key`], [`op`], [`textfile`] | server addresses (TCP or Unix socket), the one error type, items, key rules, operations, outcomes, reads and writes, the request context `Cx`, bounded file reads |
//! | 2 pure functions | [`hash`], [`placement`], [`protocol`], [`values`], [`stats`] | key → u32, u32 → server, the sans-I/O codec, stored-value layouts of each client family with zlib/FastLZ and the key prefix, counter tables |
//! | 3 process | [`process`] | what a process has once: the fork generation, the supervisor thread, the background worker, random numbers a fork does not share |
//! | 4 I/O and in-process state | [`pool`] (with `pool::exchange`, the `poll(2)` engine), [`lru`], `coalesce` | connections, health and batches per destination; the in-process LRU; shared gets |
//! | 5 schema pieces | `config::sections`, [`config::defaults`], [`discovery`] | plain config sections and defaults; topology snapshot files (etcd/ZooKeeper sources with feature `watch`) |
//! | 6 routes | [`route`] | the tree: one file per route with its config struct, `route::schema` for what they share |
//! | 7 the document | [`config::Config`], `route::builder` | the whole config (pools + route tree), and the tree built from it |
//! | 8 on the tree | [`lease`] | leases and `get_or_set` on a `Router` |
//! | 9 facade | [`client`], [`export`] | `Client`, reload and stats export |
//!
//! Above the library: the `fae` binary (`src/bin/fae/`, feature `watch`) and the bindings.
//!
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
pub mod tls;
pub mod values;

pub use client::Client;
pub use config::Config;
pub use error::{Error, ErrorKind, Reason, Result};
pub use item::{Item, ItemRef, OnItem};
pub use op::{Op, SetItem, StoreOutcome};
pub use protocol::StoreOp;
