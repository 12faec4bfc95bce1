//! `gutter`: a pool that keeps a dead server's keys for a short while (Facebook, "Scaling
//! Memcache" §3.3). About 1 % of a cluster's servers, idle normally; when a get gets no
//! response the client asks the gutter, and on a gutter miss fills it, with a short TTL so the
//! entries need no invalidation.
//!
//! - get/gets/gat/gats: the gutter pool, unchanged.
//! - set/add/replace/append/prepend/cas: the gutter pool with the TTL capped at `max_ttl`
//!   (0 = "never" is capped too; an absolute unix expiry is converted first).
//! - touch: the new TTL is capped the same way. delete, incr/decr: unchanged.
//!
//! Used as the last child of a `failover` (or with `route`, which builds exactly that with the
//! failures of a dead server: timeouts, connection errors, `tko`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde::Deserialize;

use crate::error::{Reason, Result};
use crate::item::Item;
use crate::op::Op;
use crate::protocol::{Request, Response};
use crate::stats::RouteCounters;

use super::failover::{FailoverOn, FailoverRoute};
use super::schema::{Builder, RouteSpec};
use super::{Cx, GetOpts, Key, Route, RouteConfig, Visit, Write, cap_ttl};

/// `{"type": "gutter", "pool": "gutter", "max_ttl": 10}`, optionally with the `route` it
/// protects (and `failover_on`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The gutter pool.
    pub pool: String,
    /// Longest TTL stored in the gutter pool, seconds.
    pub max_ttl: u32,
    /// The route the gutter protects (optional: without it, use this inside a failover).
    pub route: Option<Box<RouteConfig>>,
    /// With `route`: which failures go to the gutter (default: a dead server's, see
    /// [`dead_server`]).
    #[serde(default)]
    pub failover_on: FailoverOn,
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        self.route
            .iter()
            .map(|r| (".route".to_string(), &**r))
            .collect()
    }

    fn pools(&self) -> Vec<(&'static str, &str)> {
        vec![("pool", &self.pool)]
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        let gutter: Arc<dyn Route> =
            Arc::new(GutterRoute::new(b.pool(&self.pool, path)?, self.max_ttl));
        let Some(route) = &self.route else {
            return Ok(gutter);
        };
        let main = b.child(route, path, ".route")?;
        let on = if self.failover_on == FailoverOn::default() {
            dead_server()
        } else {
            self.failover_on.clone()
        };
        Ok(Arc::new(FailoverRoute::new(vec![main, gutter], &on, 2)))
    }
}

/// A gutter takes what a dead or unreachable server leaves: connection failures, timeouts and
/// open breakers (Facebook: "when a get gets no response"), not server replies.
pub fn dead_server() -> FailoverOn {
    use Reason::*;
    let dead = vec![
        Timeout,
        ConnectTimeout,
        ConnectRefused,
        ConnectFailed,
        Reset,
        Io,
        Tko,
    ];
    FailoverOn {
        gets: Some(dead.clone()),
        updates: Some(dead.clone()),
        deletes: Some(dead),
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct GutterRoute {
    pool: Arc<dyn Route>,
    max_ttl: u32,
    counters: RouteCounters,
}

impl GutterRoute {
    /// Writes to `pool` live at most `max_ttl` seconds.
    pub fn new(pool: Arc<dyn Route>, max_ttl: u32) -> GutterRoute {
        GutterRoute {
            pool,
            max_ttl: max_ttl.max(1),
            counters: RouteCounters::default(),
        }
    }
}

impl Route for GutterRoute {
    fn name(&self) -> &'static str {
        "gutter"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.counters.requests.fetch_add(keys.len() as u64, Relaxed);
        let opts = GetOpts {
            touch: opts.touch.map(|t| cap_ttl(t, self.max_ttl)),
            ..opts
        };
        self.pool.get(cx, keys, opts)
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.counters.requests.fetch_add(reqs.len() as u64, Relaxed);
        let capped: Vec<Write<'_>> = reqs
            .iter()
            .map(|w| {
                let mut w = *w;
                match &mut w.req {
                    Request::Store { exptime, .. } | Request::Touch { exptime, .. } => {
                        let c = cap_ttl(*exptime, self.max_ttl);
                        if c != *exptime {
                            self.counters.ttl_capped.fetch_add(1, Relaxed);
                        }
                        *exptime = c;
                    }
                    _ => {}
                }
                w
            })
            .collect();
        self.pool.write(cx, &capped)
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.pool.traverse(op, key, visit);
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        vec![(".pool".to_string(), &self.pool)]
    }

    fn counters(&self) -> Option<&RouteCounters> {
        Some(&self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::StoreOp;
    use crate::route::testing::{Recorder, cx};
    use crate::route::unix_now;

    fn store(key: &[u8], exptime: u32) -> Write<'_> {
        Write::new(Request::Store {
            op: StoreOp::Set,
            key,
            value: b"v",
            flags: 0,
            exptime,
            noreply: false,
        })
    }

    #[test]
    fn ttls_are_capped_including_never_and_absolute() {
        let g = Recorder::new("g");
        let r = GutterRoute::new(g.route(), 10);
        let abs_far = (unix_now() + 3600) as u32;
        let abs_near = (unix_now() + 5) as u32;
        r.write(
            &cx(),
            &[
                store(b"a", 0),
                store(b"b", 5),
                store(b"c", 100),
                store(b"d", abs_far),
                store(b"e", abs_near),
            ],
        );
        r.write(
            &cx(),
            &[Write::new(Request::Touch {
                key: b"a",
                exptime: 60,
                noreply: false,
            })],
        );
        r.write(
            &cx(),
            &[Write::new(Request::Delete {
                key: b"a",
                noreply: false,
                invalidate: None,
                cas: None,
            })],
        );
        let seen = g.saw_exptimes();
        assert_eq!(&seen[..3], &[10, 5, 10]);
        assert_eq!(seen[3], 10);
        assert!((4..=5).contains(&seen[4]), "{seen:?}");
        assert_eq!(seen[5], 10, "touch is capped");
        assert_eq!(g.saw_ops().last().unwrap(), "delete");
    }
}
