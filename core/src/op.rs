//! The shared vocabulary of every layer: operation kinds, store outcomes, keys, reads and
//! writes as routes see them, a request's context ([`Cx`]: its one deadline), and memcached's
//! TTL rule. It sits at the bottom of the core (it imports only the protocol's request type),
//! so the route tree, the caches and the client facade all speak it without importing each
//! other.

use std::time::{Duration, Instant};

use crate::error::{Error, Reason, Result};
use crate::protocol::{Request, Response, Status};

/// One request's context: made once per call by the client (from `timeouts.io_ms`) and handed
/// to every route of the tree, so every child, retry, failover, warm-up copy, hedge and lease
/// poll of the call shares its one deadline: a request through any tree ends within `io_ms`
/// (plus scheduling slack), however many servers it tries.
///
/// Work done after the reply (shadow copies, `all_async` replicas, background warm-up adds,
/// migration copies) is not part of the request: it takes [`Cx::renewed`] when it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cx {
    /// Every exchange of the request ends by then (a connect by `min(deadline, now +
    /// connect_ms)`).
    pub deadline: Instant,
    /// The budget of one request (`timeouts.io_ms`), for the contexts of later work.
    pub budget: Duration,
}

impl Cx {
    /// A request that starts now and may take `budget`.
    pub fn within(budget: Duration) -> Cx {
        Cx {
            deadline: Instant::now() + budget,
            budget,
        }
    }

    /// A request with the caller's own `deadline`; later work gets `budget`.
    pub fn until(deadline: Instant, budget: Duration) -> Cx {
        Cx { deadline, budget }
    }

    /// A fresh context with the same budget, starting now (for work after the reply).
    pub fn renewed(&self) -> Cx {
        Cx::within(self.budget)
    }

    /// One step of a longer request (a lease poll of `get_or_set`): at most `max` from now,
    /// and never past this request's deadline.
    pub fn step(&self, max: Duration) -> Cx {
        Cx {
            deadline: self.deadline.min(Instant::now() + max),
            budget: self.budget,
        }
    }

    /// Time left before the deadline (zero once it passed).
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// The outcome of a storage command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The value was stored.
    Stored,
    /// Not stored: `add` on an existing key, `replace`/`append`/`prepend` on a missing one.
    NotStored,
    /// `cas`: the item changed since the CAS token was read.
    Exists,
    /// `cas`: the item does not exist.
    NotFound,
}

impl StoreOutcome {
    /// What a storage command's reply means.
    pub(crate) fn from_reply(resp: Response) -> Result<StoreOutcome> {
        match resp {
            Response::Status { status, .. } => match status {
                Status::Success => Ok(StoreOutcome::Stored),
                Status::NotStored => Ok(StoreOutcome::NotStored),
                Status::Exists => Ok(StoreOutcome::Exists),
                Status::NotFound => Ok(StoreOutcome::NotFound),
                Status::Miss => Err(unexpected(&resp)),
            },
            other => Err(unexpected(&other)),
        }
    }
}

/// What a delete's or touch's reply means: `Ok(true)` done, `Ok(false)` the key was not there.
pub(crate) fn found(resp: Response) -> Result<bool> {
    match resp {
        Response::Status {
            status: Status::Success,
            ..
        } => Ok(true),
        Response::Status {
            status: Status::NotFound | Status::Miss,
            ..
        } => Ok(false),
        other => Err(unexpected(&other)),
    }
}

/// A reply the command cannot have: the stream is not what we think it is.
#[cold]
#[inline(never)]
pub(crate) fn unexpected(resp: &Response) -> Error {
    Error::with_detail(Reason::Protocol, format!("unexpected reply {resp:?}"))
}

/// The operations `route_for` can be asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// get, gets, gat, gats.
    Get,
    /// set, add, replace, append, prepend, cas.
    Set,
    /// delete.
    Delete,
    /// incr, decr.
    Arith,
    /// touch.
    Touch,
}

impl Op {
    /// Parse an operation name (`get`, `set`, `add`, `delete`, `incr`, …).
    pub fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "get" | "gets" | "gat" | "gats" => Op::Get,
            "set" | "add" | "replace" | "append" | "prepend" | "cas" => Op::Set,
            "delete" => Op::Delete,
            "incr" | "decr" => Op::Arith,
            "touch" => Op::Touch,
            _ => return None,
        })
    }
}

/// One item of a `set_multi`.
#[derive(Clone, Copy, Debug)]
pub struct SetItem<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Expiry (0 = never).
    pub exptime: u32,
}

/// One key of a read: the key stored on the server and the key that places it (the same
/// slice, except for libmemcached's `*_by_key` calls).
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    /// The key sent to the server.
    pub key: &'a [u8],
    /// The key that is hashed to choose the server.
    pub place: &'a [u8],
}

impl<'a> Key<'a> {
    /// A key placed by itself.
    pub fn new(key: &'a [u8]) -> Key<'a> {
        Key { key, place: key }
    }
}

/// What a read asks for besides the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetOpts {
    /// Return CAS tokens (gets/gats).
    pub cas: bool,
    /// Set a new expiry on hits (gat/gats).
    pub touch: Option<u32>,
    /// Return the remaining TTL ([`Item::ttl`](crate::Item::ttl); meta protocol only).
    pub ttl: bool,
    /// Lease read (meta `N<ttl>`, see [`crate::lease`]): a miss leaves an empty stub for
    /// `ttl` seconds and comes back as an item with [`Item::win`](crate::Item::win) (fill it) or
    /// [`Item::win_taken`](crate::Item::win_taken) (someone else is). Implies a CAS read: the token is the CAS.
    pub lease: Option<u32>,
    /// Early recache (meta `R<ttl>`): a hit with less than `ttl` seconds left wins a refill.
    pub recache: Option<u32>,
}

impl GetOpts {
    /// Does this read take part in leases (`N`/`R`)? Such reads see stubs and stale items as
    /// they are; every other read sees them as misses.
    pub fn leased(&self) -> bool {
        self.lease.is_some() || self.recache.is_some()
    }
}

/// One write (store, delete, incr/decr, touch) and the key that places it.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    /// The key that is hashed to choose the server.
    pub place: &'a [u8],
    /// The command.
    pub req: Request<'a>,
}

impl<'a> Write<'a> {
    /// A command placed by its own key.
    pub fn new(req: Request<'a>) -> Write<'a> {
        Write {
            place: request_key(&req),
            req,
        }
    }

    /// The key the command is about.
    pub fn key(&self) -> &'a [u8] {
        request_key(&self.req)
    }

    /// The operation class (for `operation` and `failover_on`).
    pub fn op(&self) -> Op {
        match self.req {
            Request::Store { .. } => Op::Set,
            Request::Delete { .. } => Op::Delete,
            Request::Arith { .. } => Op::Arith,
            Request::Touch { .. } => Op::Touch,
            _ => Op::Set,
        }
    }
}

fn request_key<'a>(req: &Request<'a>) -> &'a [u8] {
    match *req {
        Request::Store { key, .. }
        | Request::Delete { key, .. }
        | Request::Arith { key, .. }
        | Request::Touch { key, .. } => key,
        Request::Get { keys, .. } => keys.first().copied().unwrap_or_default(),
        Request::FlushAll { .. } | Request::Version | Request::Noop => b"",
    }
}

/// memcached's relative/absolute expiry rule: ≤ 30 days is seconds from now.
pub const RELATIVE_TTL_MAX: u32 = 60 * 60 * 24 * 30;

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `exptime` capped at `max` seconds from now (0 = never is capped too).
pub fn cap_ttl(exptime: u32, max: u32) -> u32 {
    let remaining = if exptime == 0 {
        u64::MAX
    } else if exptime <= RELATIVE_TTL_MAX {
        u64::from(exptime)
    } else {
        // Absolute time: already past means "expired", which the server treats as such.
        u64::from(exptime).saturating_sub(unix_now()).max(1)
    };
    remaining.min(u64::from(max)) as u32
}

/// The delay `flush_all` sends, or an error. memcached reads it as an exptime: up to 30 days
/// is relative; more is an absolute unix time, and an absolute time in the past would move
/// the server's flush horizon back and bring items an earlier `flush_all` removed back to
/// life. So a past absolute time flushes now (0), and one more than 30 days ahead is refused.
pub fn flush_delay(delay: u32) -> crate::Result<u32> {
    if delay <= RELATIVE_TTL_MAX {
        return Ok(delay);
    }
    let now = unix_now();
    if u64::from(delay) <= now {
        return Ok(0);
    }
    if u64::from(delay) - now <= u64::from(RELATIVE_TTL_MAX) {
        return Ok(delay);
    }
    Err(crate::Error::with_detail(
        crate::Reason::InvalidArgument,
        format!("flush_all delay {delay} is more than 30 days ahead"),
    ))
}

#[cfg(test)]
mod flush_tests {
    use super::*;

    #[test]
    fn flush_delays_never_move_the_horizon_back() {
        assert_eq!(flush_delay(0).unwrap(), 0);
        assert_eq!(flush_delay(RELATIVE_TTL_MAX).unwrap(), RELATIVE_TTL_MAX);
        // 30 days + 1 s is an absolute time in 1970: flush now.
        assert_eq!(flush_delay(RELATIVE_TTL_MAX + 1).unwrap(), 0);
        assert_eq!(
            flush_delay(u32::try_from(unix_now() - 5).unwrap()).unwrap(),
            0
        );
        let soon = u32::try_from(unix_now() + 60).unwrap();
        assert_eq!(flush_delay(soon).unwrap(), soon);
        let e = flush_delay(u32::MAX).unwrap_err();
        assert_eq!(e.reason(), crate::Reason::InvalidArgument);
    }
}
