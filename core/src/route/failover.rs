//! `failover`: children in order (mcrouter FailoverRoute).
//!
//! - get/gets/gat/gats: child 0; keys that failed with a reason listed in
//!   `failover_on.gets` go to child 1, and so on, up to `max_tries` children. **A miss is not a
//!   failure** and never fails over. A key that fails everywhere returns the last child's error.
//! - set/add/replace/append/prepend/cas, incr/decr, touch: the same with `failover_on.updates`.
//!   A NOT_STORED/EXISTS/NOT_FOUND reply is an answer, not a failure.
//! - delete: the same with `failover_on.deletes`.
//!
//! The default list for every class is every reason where [`crate::Error::should_failover`]
//! holds (timeouts, connection failures, resets, `tko`, `SERVER_ERROR`, protocol errors, a
//! disabled or read-only pool); caller errors (bad key, value too large) never fail over.
//! Multi-key calls fail over per key: only the failed keys are re-sent, as one batch.
//!
//! All children share the request's context ([`Cx`]): a child that failed fast (refused,
//! reset, `tko`) leaves the rest of the deadline to the next one; after a timeout nothing is
//! left, and the next children fail with `timeout` without being asked. A failover over any
//! number of dead servers thus ends within one `io_ms`; the keys of a server that keeps timing
//! out fail over at once when its breaker opens.

use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

use crate::error::{Error, Reason, Result};
use crate::item::Item;
use crate::op::Op;
use crate::protocol::Response;
use crate::stats::RouteCounters;

use super::schema::{Builder, RouteSpec, invalid_field, typed};
use super::{Cx, GetOpts, Key, Route, RouteConfig, Visit, Write};

/// `{"type": "failover", "children": [...], "failover_on": [...], "max_tries": 2}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The routes to try, in order.
    pub children: Vec<RouteConfig>,
    /// Which failure reasons move to the next child, per operation class.
    #[serde(default)]
    pub failover_on: FailoverOn,
    /// Children tried at most (default: all).
    pub max_tries: Option<usize>,
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        indexed(&self.children)
    }

    fn check(&self, path: &str) -> Result<(), String> {
        if self.children.is_empty() {
            return invalid_field(path, "children", "a failover needs at least one child");
        }
        if self.max_tries == Some(0) {
            return invalid_field(path, "max_tries", "must be at least 1");
        }
        Ok(())
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        let kids = b.children(self, path)?;
        let tries = self.max_tries.unwrap_or(kids.len());
        Ok(Arc::new(FailoverRoute::new(kids, &self.failover_on, tries)))
    }
}

/// `children` as `(".children[i]", child)`, the path suffixes of a list of routes.
pub(crate) fn indexed(children: &[RouteConfig]) -> Vec<(String, &RouteConfig)> {
    children
        .iter()
        .enumerate()
        .map(|(i, c)| (format!(".children[{i}]"), c))
        .collect()
}

/// Failure reasons that move a failover to its next child, per operation class. A missing
/// class keeps the default: every reason for which [`crate::Error::should_failover`] holds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FailoverOn {
    /// get, gets, gat, gats.
    pub gets: Option<Vec<Reason>>,
    /// set, add, replace, append, prepend, cas, incr, decr, touch.
    pub updates: Option<Vec<Reason>>,
    /// delete.
    pub deletes: Option<Vec<Reason>>,
}

/// Reason names, as in errors and stats (`timeout`, `connect_refused`, `tko`, …).
fn reasons<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Reason>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| {
            Reason::ALL
                .iter()
                .copied()
                .find(|r| r.as_str() == n)
                .ok_or_else(|| {
                    let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                    de::Error::custom(format!(
                        "unknown reason \"{n}\"; expected one of {}",
                        all.join(", ")
                    ))
                })
        })
        .collect()
}

impl<'de> Deserialize<'de> for FailoverOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PerClass {
            #[serde(default, deserialize_with = "opt_reasons")]
            gets: Option<Vec<Reason>>,
            #[serde(default, deserialize_with = "opt_reasons")]
            updates: Option<Vec<Reason>>,
            #[serde(default, deserialize_with = "opt_reasons")]
            deletes: Option<Vec<Reason>>,
        }
        fn opt_reasons<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Reason>>, D::Error> {
            reasons(d).map(Some)
        }
        #[derive(Deserialize)]
        struct All(#[serde(deserialize_with = "reasons")] Vec<Reason>);
        // An array applies to every class; an object sets classes one by one.
        let v = Value::deserialize(d)?;
        if v.is_array() {
            let All(list) = typed(v)?;
            return Ok(FailoverOn {
                gets: Some(list.clone()),
                updates: Some(list.clone()),
                deletes: Some(list),
            });
        }
        let p: PerClass = typed(v)?;
        Ok(FailoverOn {
            gets: p.gets,
            updates: p.updates,
            deletes: p.deletes,
        })
    }
}

/// Reasons as a bit set over [`Reason::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasonSet(u64);

impl ReasonSet {
    fn bit(r: Reason) -> u64 {
        let i = Reason::ALL.iter().position(|x| *x == r).unwrap_or(63);
        1u64 << i
    }

    /// The set of `reasons`, or the default (every reason that should fail over).
    pub fn from_list(reasons: Option<&[Reason]>) -> ReasonSet {
        match reasons {
            Some(list) => ReasonSet(list.iter().map(|r| Self::bit(*r)).fold(0, |a, b| a | b)),
            None => ReasonSet(
                Reason::ALL
                    .iter()
                    .filter(|r| Error::new(**r).should_failover())
                    .map(|r| Self::bit(*r))
                    .fold(0, |a, b| a | b),
            ),
        }
    }

    /// Does `e` fail over?
    pub fn contains(&self, e: &Error) -> bool {
        self.0 & Self::bit(e.reason()) != 0
    }
}

/// Which reasons fail over, per operation class.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    gets: ReasonSet,
    updates: ReasonSet,
    deletes: ReasonSet,
}

impl Policy {
    /// From the config's `failover_on`.
    pub fn new(on: &FailoverOn) -> Policy {
        Policy {
            gets: ReasonSet::from_list(on.gets.as_deref()),
            updates: ReasonSet::from_list(on.updates.as_deref()),
            deletes: ReasonSet::from_list(on.deletes.as_deref()),
        }
    }

    /// Does `e` on an `op` fail over?
    pub fn fails_over(&self, op: Op, e: &Error) -> bool {
        match op {
            Op::Get => self.gets.contains(e),
            Op::Delete => self.deletes.contains(e),
            _ => self.updates.contains(e),
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct FailoverRoute {
    children: Vec<Arc<dyn Route>>,
    policy: Policy,
    max_tries: usize,
    counters: RouteCounters,
}

impl FailoverRoute {
    /// Try `children` in order, at most `max_tries` of them, on the failures `on` lists.
    pub fn new(children: Vec<Arc<dyn Route>>, on: &FailoverOn, max_tries: usize) -> FailoverRoute {
        FailoverRoute {
            max_tries: max_tries.clamp(1, children.len().max(1)),
            children,
            policy: Policy::new(on),
            counters: RouteCounters::default(),
        }
    }

    /// Run `first` on all positions, then `retry(child, positions)` for the positions whose
    /// result `failed` says should move on.
    fn run<T>(
        &self,
        n: usize,
        first: impl FnOnce(&Arc<dyn Route>) -> Vec<Result<T>>,
        mut retry: impl FnMut(&Arc<dyn Route>, &[usize]) -> Vec<Result<T>>,
        fails_over: impl Fn(usize, &Error) -> bool,
    ) -> Vec<Result<T>> {
        use std::sync::atomic::Ordering::Relaxed;
        self.counters.requests.fetch_add(n as u64, Relaxed);
        let mut out = first(&self.children[0]);
        let mut tried = 1;
        loop {
            let again: Vec<usize> = out
                .iter()
                .enumerate()
                .filter(|(i, r)| matches!(r, Err(e) if fails_over(*i, e)))
                .map(|(i, _)| i)
                .collect();
            if again.is_empty() {
                break;
            }
            if tried >= self.max_tries {
                self.counters
                    .failover_exhausted
                    .fetch_add(again.len() as u64, Relaxed);
                break;
            }
            self.counters
                .failovers
                .fetch_add(again.len() as u64, Relaxed);
            let results = retry(&self.children[tried], &again);
            tried += 1;
            for (p, r) in again.into_iter().zip(results) {
                out[p] = r;
            }
        }
        out
    }
}

impl Route for FailoverRoute {
    fn name(&self) -> &'static str {
        "failover"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.run(
            keys.len(),
            |c| c.get(cx, keys, opts),
            |c, pos| {
                let sub: Vec<Key<'_>> = pos.iter().map(|&p| keys[p]).collect();
                c.get(cx, &sub, opts)
            },
            |_, e| self.policy.fails_over(Op::Get, e),
        )
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.run(
            reqs.len(),
            |c| c.write(cx, reqs),
            |c, pos| {
                let sub: Vec<Write<'_>> = pos.iter().map(|&p| reqs[p]).collect();
                c.write(cx, &sub)
            },
            |i, e| self.policy.fails_over(reqs[i].op(), e),
        )
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        for c in self.children.iter().take(self.max_tries) {
            c.traverse(op, key, visit);
        }
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        self.children
            .iter()
            .enumerate()
            .map(|(i, c)| (format!(".children[{i}]"), c))
            .collect()
    }

    fn counters(&self) -> Option<&RouteCounters> {
        Some(&self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::testing::{Recorder, cx, get_keys, set_req};

    #[test]
    fn misses_do_not_fail_over_and_failures_do_per_key() {
        let a = Recorder::new("a");
        let b = Recorder::new("b");
        a.fail_keys(&[b"k2"], Reason::Timeout);
        a.miss_keys(&[b"k3"]);
        let r = FailoverRoute::new(vec![a.route(), b.route()], &FailoverOn::default(), 2);
        let out = get_keys(&r, &[b"k1", b"k2", b"k3"]);
        assert_eq!(a.saw_keys(), vec!["k1", "k2", "k3"]);
        assert_eq!(
            b.saw_keys(),
            vec!["k2"],
            "only the failed key moves on, as one batch"
        );
        assert!(out[0].as_ref().unwrap().is_some());
        assert_eq!(out[1].as_ref().unwrap().as_ref().unwrap().value, b"b:k2");
        assert!(out[2].as_ref().unwrap().is_none(), "a miss is an answer");
        assert_eq!(
            r.counters
                .failovers
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn failover_on_is_per_operation_class_and_max_tries_bounds() {
        let a = Recorder::new("a");
        let b = Recorder::new("b");
        let c = Recorder::new("c");
        a.fail_keys(&[b"k"], Reason::Timeout);
        b.fail_keys(&[b"k"], Reason::Timeout);
        let on = FailoverOn {
            gets: None,
            updates: Some(vec![]),
            deletes: None,
        };
        let r = FailoverRoute::new(vec![a.route(), b.route(), c.route()], &on, 2);
        // Updates never fail over with an empty list.
        let w = r.write(&cx(), &[set_req(b"k", b"v")]);
        assert_eq!(w[0].as_ref().unwrap_err().reason(), Reason::Timeout);
        assert!(b.saw_ops().is_empty());
        // Gets stop after max_tries = 2 and return the last error.
        let g = get_keys(&r, &[b"k"]);
        assert_eq!(g[0].as_ref().unwrap_err().reason(), Reason::Timeout);
        assert_eq!(b.saw_keys(), vec!["k"]);
        assert!(c.saw_keys().is_empty());
        // Caller errors never fail over, whatever the list says.
        let d = Recorder::new("d");
        d.fail_keys(&[b"bad"], Reason::InvalidKey);
        let r = FailoverRoute::new(vec![d.route(), c.route()], &FailoverOn::default(), 2);
        let g = get_keys(&r, &[b"bad"]);
        assert_eq!(g[0].as_ref().unwrap_err().reason(), Reason::InvalidKey);
        assert!(c.saw_keys().is_empty());
    }

    #[test]
    fn traverse_lists_every_child_tried() {
        let r = FailoverRoute::new(
            vec![Recorder::new("a").route(), Recorder::new("b").route()],
            &FailoverOn::default(),
            2,
        );
        assert_eq!(
            crate::route::builder::destinations(&r, Op::Set, b"k"),
            vec!["a/a", "b/b"]
        );
    }
}
