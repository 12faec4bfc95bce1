//! `migrate`: move keys from one topology to another (4 → 6 servers, a new mode, a new
//! cluster) without a cold cache, reversibly. The phase is config: moving forward or back is
//! a reload.
//!
//! | phase | get | set/add/replace/append/prepend/cas, incr/decr, touch | delete |
//! |---|---|---|---|
//! | `from_only` | from | from; a delete on to | both, from's reply |
//! | `dual_write` | from | both, from's reply | both, from's reply |
//! | `dual_write_read_new` | to; a miss is read from `from`, copied forward (`add`) | both, to's reply | both, to's reply |
//! | `to_only` | to | both, to's reply | both, to's reply |
//!
//! Every write reaches both topologies, so no phase, forward or back, reads a value older than
//! the last write: `from_only` invalidates the key on `to` (which may hold copies from a
//! dual-write phase an operator rolled back from); the other phases mirror the write (below).
//! `to_only` differs from `dual_write_read_new` only in its reads (no fallback to `from`): it
//! keeps `from` current so that rolling back a cut-over costs no hit rate. When the migration
//! is over, replace the `migrate` route by the new pool and the old topology gets nothing. Writes to both run in one `poll(2)`
//! loop when both sides are pools; the other side's failures are counted
//! (`replica_failures`), not returned. Copies forward keep the old item's remaining TTL (meta
//! `t`; `exptime` when the old side speaks text).
//!
//! "Both" means the same command on both sides only for set, touch and delete, whose effect
//! cannot depend on what a side holds. The side that does not answer gets a **delete** in
//! place of add/replace/append/prepend/cas and incr/decr: a CAS token is one server's, and
//! mid-migration a key often exists on one side only, so repeating them would leave that side
//! with a value the caller was told was not stored (an `add` the old side refused), or keep
//! the value the caller just replaced (a `cas` whose token the new side does not know).
//! Invalidated instead, the key is read from the answering side or copied forward again.
//!
//! Both topologies often share servers (a pool grown in place keeps its servers). A server
//! that both sides place a key on gets the answering side's command only; see `Overlap`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde::Deserialize;

use crate::error::Result;
use crate::item::Item;
use crate::op::Op;
use crate::placement::vbucket::MovePhase;
use crate::protocol::{Request, Response, StoreOp};
use crate::stats::RouteCounters;

use super::schema::{Builder, RouteSpec};
use super::warm_up::Fill;
use super::{Cx, GetOpts, Key, Route, RouteConfig, Visit, Write, write_parts};

/// `{"type": "migrate", "from": "old", "to": "new", "phase": "dual_write", "exptime": 0}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The current topology.
    pub from: Box<RouteConfig>,
    /// The new topology.
    pub to: Box<RouteConfig>,
    /// Where the migration stands.
    pub phase: MigratePhase,
    /// TTL of copies forward when `from` cannot say (text protocol), seconds (0: none).
    #[serde(default)]
    pub exptime: u32,
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        vec![
            (".from".to_string(), &self.from),
            (".to".to_string(), &self.to),
        ]
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        Ok(Arc::new(MigrateRoute::new(
            b.child(&self.from, path, ".from")?,
            b.child(&self.to, path, ".to")?,
            self.phase,
            self.exptime,
            b.inline,
        )))
    }
}

/// Where a migration stands. Deletes go to both topologies in every phase, so moving back
/// one phase (a config change) never exposes a value that was invalidated meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigratePhase {
    /// Reads and writes on `from` (deletes on both).
    FromOnly,
    /// Writes on both, reads from `from`.
    DualWrite,
    /// Writes on both, reads from `to`; a miss there is read from `from` and copied forward.
    DualWriteReadNew,
    /// Reads and writes on `to` (deletes on both).
    ToOnly,
}

impl MigratePhase {
    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FromOnly => "from_only",
            Self::DualWrite => "dual_write",
            Self::DualWriteReadNew => "dual_write_read_new",
            Self::ToOnly => "to_only",
        }
    }
}

/// A bucket move's route (see [`super::pool::MoveRoute`]): the phase with the bucket phase's
/// rules, copies without a known TTL kept forever (0), as a `migrate` route's default.
pub(crate) fn bucket_move(
    from: Arc<dyn Route>,
    to: Arc<dyn Route>,
    phase: MovePhase,
    inline: bool,
) -> Arc<dyn Route> {
    let phase = match phase {
        MovePhase::FromOnly => MigratePhase::FromOnly,
        MovePhase::DualWrite => MigratePhase::DualWrite,
        MovePhase::DualWriteReadNew => MigratePhase::DualWriteReadNew,
        MovePhase::ToOnly => MigratePhase::ToOnly,
    };
    Arc::new(MigrateRoute::new(from, to, phase, 0, inline))
}

/// What the side that does not answer gets for `w` in a phase that writes both (see the module
/// docs): the same set, touch or delete; a delete for every write whose outcome depends on
/// that side's state.
fn mirror<'a>(w: &Write<'a>) -> Write<'a> {
    match w.req {
        Request::Store {
            op: StoreOp::Set, ..
        }
        | Request::Touch { .. }
        | Request::Delete { .. } => *w,
        _ => Write {
            place: w.place,
            req: Request::Delete {
                key: w.key(),
                noreply: false,
                invalidate: None,
                cas: None,
            },
        },
    }
}

/// A delete of `w`'s key: what the other side gets in a single-side phase.
fn invalidate<'a>(w: &Write<'a>) -> Write<'a> {
    Write {
        place: w.place,
        req: Request::Delete {
            key: w.key(),
            noreply: false,
            invalidate: None,
            cas: None,
        },
    }
}

/// Where the other side's command for a key lands, beside the answering side's, and so when
/// it is sent. A pool grown in place (4 → 6 servers, the 4 kept) places most keys on the same
/// server in both topologies. Sent together on two connections, the answering side's write
/// and the other side's delete raced there, and the delete, landing second, removed the
/// write: a `from_only` set was lost for about 15 % of the keys in `fae-bench routes` (b).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overlap {
    /// No server in common: both go out together.
    Disjoint,
    /// Both sides are single servers, the same one: the answering side's command is all that
    /// server needs (a mirror would repeat it, an invalidation would undo it). Not sent.
    Covered,
    /// A server in common in a tree, whose children the route cannot address one by one, and
    /// a plain set: the other side's command goes first, so the set lands last.
    Before,
    /// A server in common in a tree, any other command: the other side's goes after, so the
    /// answering side's reply is its own (an invalidation first would make an `add` succeed or
    /// an `incr` miss). A shared server may then lose the write: a later miss, never a stale
    /// value.
    After,
}

impl Overlap {
    /// Each write's overlap: `reqs` go to `answering`, `others` (aligned) to `other`.
    fn of_all(
        answering: &Arc<dyn Route>,
        reqs: &[Write<'_>],
        other: &Arc<dyn Route>,
        others: &[Write<'_>],
    ) -> Vec<Overlap> {
        if let (Some(a), Some(b)) = (answering.leaf(), other.leaf()) {
            // Single servers on both sides: hash every key once per side, all together.
            let (da, db) = (
                a.dests(reqs.iter().map(|w| w.place)),
                b.dests(others.iter().map(|o| o.place)),
            );
            return da
                .iter()
                .zip(&db)
                .map(|(&x, &y)| {
                    if a.addr_of(x) == b.addr_of(y) {
                        Overlap::Covered
                    } else {
                        Overlap::Disjoint
                    }
                })
                .collect();
        }
        reqs.iter()
            .zip(others)
            .map(|(w, o)| Overlap::in_trees(answering, w, other, o))
            .collect()
    }

    fn in_trees(
        answering: &Arc<dyn Route>,
        w: &Write<'_>,
        other: &Arc<dyn Route>,
        o: &Write<'_>,
    ) -> Overlap {
        let mut mine: Vec<String> = Vec::new();
        answering.traverse(w.op(), w.place, &mut |v| mine.push(v.addr.to_string()));
        let mut shared = false;
        other.traverse(o.op(), o.place, &mut |v| {
            shared |= mine.iter().any(|m| m == v.addr);
        });
        let plain_set = matches!(
            w.req,
            Request::Store {
                op: StoreOp::Set,
                ..
            }
        );
        match (shared, plain_set) {
            (false, _) => Overlap::Disjoint,
            (true, true) => Overlap::Before,
            (true, false) => Overlap::After,
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct MigrateRoute {
    from: Arc<dyn Route>,
    to: Arc<dyn Route>,
    phase: MigratePhase,
    exptime: u32,
    inline: bool,
    /// [from, to] and [to, from]: the answering side first.
    from_first: [Arc<dyn Route>; 2],
    to_first: [Arc<dyn Route>; 2],
    /// Whether the sides may place a key on one server: false only for two pools without a
    /// server in common (two clusters), whose writes then skip [`Overlap`] altogether.
    may_share: bool,
    counters: RouteCounters,
}

impl MigrateRoute {
    /// Migrate from `from` to `to`, now in `phase`; `exptime` for copies whose TTL the old side
    /// cannot tell.
    pub fn new(
        from: Arc<dyn Route>,
        to: Arc<dyn Route>,
        phase: MigratePhase,
        exptime: u32,
        inline: bool,
    ) -> MigrateRoute {
        let may_share = match (from.leaf(), to.leaf()) {
            (Some(a), Some(b)) => {
                let theirs = b.pool.destinations();
                a.pool
                    .destinations()
                    .iter()
                    .any(|d| theirs.iter().any(|e| d.addr() == e.addr()))
            }
            _ => true,
        };
        MigrateRoute {
            may_share,
            from_first: [Arc::clone(&from), Arc::clone(&to)],
            to_first: [Arc::clone(&to), Arc::clone(&from)],
            from,
            to,
            phase,
            exptime,
            inline,
            counters: RouteCounters::default(),
        }
    }

    /// The side that answers in this phase.
    fn answers_from_new(&self) -> bool {
        matches!(
            self.phase,
            MigratePhase::DualWriteReadNew | MigratePhase::ToOnly
        )
    }
}

impl Route for MigrateRoute {
    fn name(&self) -> &'static str {
        "migrate"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.counters.requests.fetch_add(keys.len() as u64, Relaxed);
        match self.phase {
            MigratePhase::FromOnly | MigratePhase::DualWrite => self.from.get(cx, keys, opts),
            MigratePhase::ToOnly => self.to.get(cx, keys, opts),
            MigratePhase::DualWriteReadNew => {
                let mut out = self.to.get(cx, keys, opts);
                Fill {
                    source: &self.from,
                    target: &self.to,
                    exptime: self.exptime,
                    inline: self.inline,
                    found: &self.counters.read_fallbacks,
                    copied: &self.counters.copied_forward,
                    dropped: &self.counters.background_dropped,
                }
                .misses(cx, &mut out, keys, opts);
                out
            }
        }
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.counters.requests.fetch_add(reqs.len() as u64, Relaxed);
        let pair = if self.answers_from_new() {
            &self.to_first
        } else {
            &self.from_first
        };
        // The answering side gets the commands; the other one a mirror, or an invalidation in
        // from_only, so that no phase, forward or back, can read a value older than the last
        // write. Sending the same commands to both left a dual-write `cas`'s replaced value and
        // a refused `add` on the other side, served after the next phase switch (found by
        // core/tests/e2e_routes.rs); to_only's sets reaching only `to` made a rollback of the
        // cut-over read stale values from `from`.
        let n = reqs.len();
        let both = self.phase != MigratePhase::FromOnly;
        let others: Vec<Write<'_>> = reqs
            .iter()
            .map(|w| if both { mirror(w) } else { invalidate(w) })
            .collect();
        // Where both sides share a server, the other side's command must not race the
        // answering one's on another connection (see `Overlap`).
        let overlaps = if self.may_share {
            Overlap::of_all(&pair[0], reqs, &pair[1], &others)
        } else {
            vec![Overlap::Disjoint; n]
        };
        let (mut along, mut before, mut after) = (Vec::with_capacity(n), Vec::new(), Vec::new());
        for (i, how) in overlaps.into_iter().enumerate() {
            match how {
                Overlap::Disjoint => along.push(i),
                Overlap::Covered => {}
                Overlap::Before => before.push(i),
                Overlap::After => after.push(i),
            }
        }
        let failures = |rs: Vec<Result<Response>>| rs.iter().filter(|r| r.is_err()).count();
        let alone = |pos: &[usize]| -> usize {
            if pos.is_empty() {
                return 0;
            }
            let sub: Vec<Write<'_>> = pos.iter().map(|&i| others[i]).collect();
            failures(pair[1].write(cx, &sub))
        };
        let mut failed = alone(&before);
        let out = if along.is_empty() {
            pair[0].write(cx, reqs)
        } else {
            let all: Vec<Write<'_>> = reqs
                .iter()
                .copied()
                .chain(along.iter().map(|&i| others[i]))
                .collect();
            let parts = [
                (&pair[0], (0..n).collect()),
                (&pair[1], (n..all.len()).collect()),
            ];
            let mut per = write_parts(cx, &parts, &all);
            failed += failures(per.pop().unwrap_or_default());
            per.pop().unwrap_or_default()
        };
        failed += alone(&after);
        self.counters
            .replica_failures
            .fetch_add(failed as u64, Relaxed);
        out
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        let new_first = self.answers_from_new();
        let (first, second) = if new_first {
            (&self.to, &self.from)
        } else {
            (&self.from, &self.to)
        };
        first.traverse(op, key, visit);
        // Every write reaches the other side (as itself, a mirror or an invalidation).
        let also = op != Op::Get || self.phase == MigratePhase::DualWriteReadNew;
        if also {
            second.traverse(op, key, visit);
        }
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        vec![
            (".from".to_string(), &self.from),
            (".to".to_string(), &self.to),
        ]
    }

    fn counters(&self) -> Option<&RouteCounters> {
        Some(&self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::builder::destinations;
    use crate::route::testing::{Recorder, cx, delete_req, get_keys, set_req};

    fn route(phase: MigratePhase) -> (Recorder, Recorder, MigrateRoute) {
        let from = Recorder::new("old").store_values();
        let to = Recorder::new("new").store_values();
        let r = MigrateRoute::new(from.route(), to.route(), phase, 0, true);
        (from, to, r)
    }

    #[test]
    fn every_phase_routes_as_the_table_says() {
        use MigratePhase::*;
        let (old_new, new_old) = (vec!["old/old", "new/new"], vec!["new/new", "old/old"]);
        // (phase, get, set and delete destinations, sets seen by old and new).
        for (phase, get, writes, sets_seen) in [
            (FromOnly, vec!["old/old"], &old_new, (1, 0)),
            (DualWrite, vec!["old/old"], &old_new, (1, 1)),
            (DualWriteReadNew, new_old.clone(), &new_old, (1, 1)),
            (ToOnly, vec!["new/new"], &new_old, (1, 1)),
        ] {
            let (old, new, r) = route(phase);
            assert_eq!(destinations(&r, Op::Get, b"k"), get, "{phase:?}");
            assert_eq!(&destinations(&r, Op::Set, b"k"), writes, "{phase:?}");
            assert_eq!(&destinations(&r, Op::Delete, b"k"), writes, "{phase:?}");
            r.write(&cx(), &[set_req(b"k", b"v")]);
            r.write(&cx(), &[delete_req(b"k")]);
            let sets = |rec: &Recorder| rec.saw_ops().iter().filter(|o| *o == "set").count();
            assert_eq!((sets(&old), sets(&new)), sets_seen, "{phase:?}");
            // from_only invalidates the new side: a delete for the set, and the delete.
            let dels = |rec: &Recorder| rec.saw_ops().iter().filter(|o| *o == "delete").count();
            let expect_new_dels = if phase == FromOnly { 2 } else { 1 };
            assert_eq!(dels(&new), expect_new_dels, "{phase:?}");
            assert_eq!(dels(&old), 1, "{phase:?}");
        }
    }

    #[test]
    fn dual_writes_invalidate_instead_of_repeating_conditional_writes() {
        let store = |op: StoreOp| {
            Write::new(Request::Store {
                op,
                key: b"k",
                value: b"v",
                flags: 0,
                exptime: 0,
                noreply: false,
            })
        };
        let arith = Write::new(Request::Arith {
            key: b"k",
            incr: true,
            delta: 1,
            noreply: false,
        });
        let touch = Write::new(Request::Touch {
            key: b"k",
            exptime: 9,
            noreply: false,
        });
        for (phase, answers_new) in [
            (MigratePhase::DualWrite, false),
            (MigratePhase::DualWriteReadNew, true),
        ] {
            let (old, new) = (Recorder::new("old"), Recorder::new("new"));
            let r = MigrateRoute::new(old.route(), new.route(), phase, 0, true);
            r.write(
                &cx(),
                &[
                    store(StoreOp::Set),
                    store(StoreOp::Add),
                    store(StoreOp::Cas(7)),
                    store(StoreOp::Replace),
                    store(StoreOp::Append),
                    arith,
                    touch,
                    delete_req(b"k"),
                ],
            );
            let (answering, other) = if answers_new { (new, old) } else { (old, new) };
            assert_eq!(
                answering.saw_ops(),
                [
                    "set", "add", "cas", "replace", "append", "incr", "touch", "delete"
                ],
                "{phase:?}"
            );
            assert_eq!(
                other.saw_ops(),
                [
                    "set", "delete", "delete", "delete", "delete", "delete", "touch", "delete"
                ],
                "{phase:?}"
            );
        }
    }

    #[test]
    fn read_new_falls_back_to_old_and_copies_forward() {
        let (old, new, r) = route(MigratePhase::DualWriteReadNew);
        old.route().write(&cx(), &[set_req(b"k", b"old-value")]);
        let out = get_keys(&r, &[b"k"]);
        assert_eq!(
            out[0].as_ref().unwrap().as_ref().unwrap().value,
            b"old-value"
        );
        assert_eq!(new.value(b"k").unwrap(), b"old-value", "copied forward");
        assert_eq!(new.saw_ops(), ["get", "add"]);
        assert_eq!(r.counters.copied_forward.load(Relaxed), 1);
    }
}
