//! `operation`: the command chooses the route (mcrouter OperationSelectorRoute): `get`
//! (get/gets/gat/gats), `set` (set/add/replace/append/prepend/cas), `delete`, `arith`
//! (incr/decr), `touch`; commands without a route of their own go to `default`.
//!
//! A write batch that mixes commands (a `set_multi` is all sets; a route above may mix) is
//! split per route and merged back in order.

use std::sync::Arc;

use serde::Deserialize;

use crate::error::Result;
use crate::item::Item;
use crate::op::Op;
use crate::protocol::Response;

use super::schema::{Builder, RouteSpec, invalid_field};
use super::{Cx, GetOpts, Key, Route, RouteConfig, Visit, Write, merge_parts, write_parts};

/// `{"type": "operation", "get": "replicas", "default": "main"}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// get, gets, gat, gats.
    pub get: Option<Box<RouteConfig>>,
    /// set, add, replace, append, prepend, cas.
    pub set: Option<Box<RouteConfig>>,
    /// delete.
    pub delete: Option<Box<RouteConfig>>,
    /// incr, decr.
    pub arith: Option<Box<RouteConfig>>,
    /// touch.
    pub touch: Option<Box<RouteConfig>>,
    /// Operations without a route of their own.
    pub default: Option<Box<RouteConfig>>,
}

impl Config {
    /// Each operation's route with its key, `default` last.
    fn by_name(&self) -> [(&'static str, &Option<Box<RouteConfig>>); 6] {
        [
            ("get", &self.get),
            ("set", &self.set),
            ("delete", &self.delete),
            ("arith", &self.arith),
            ("touch", &self.touch),
            ("default", &self.default),
        ]
    }
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        self.by_name()
            .into_iter()
            .filter_map(|(n, r)| r.as_deref().map(|r| (format!(".{n}"), r)))
            .collect()
    }

    fn check(&self, path: &str) -> Result<(), String> {
        let all = self.by_name()[..5].iter().all(|(_, r)| r.is_some());
        if self.default.is_none() && !all {
            return invalid_field(
                path,
                "default",
                "give \"default\" unless get, set, delete, arith and touch all have a route",
            );
        }
        Ok(())
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        let [get, set, delete, arith, touch, default] = self
            .by_name()
            .map(|(n, r)| r.as_deref().map(|c| b.child(c, path, &format!(".{n}"))));
        Ok(Arc::new(OperationRoute::new(
            get.transpose()?,
            set.transpose()?,
            delete.transpose()?,
            arith.transpose()?,
            touch.transpose()?,
            default.transpose()?,
        )))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct OperationRoute {
    /// get, set, delete, arith, touch.
    by_op: [Arc<dyn Route>; 5],
    given: [bool; 5],
}

const NAMES: [&str; 5] = ["get", "set", "delete", "arith", "touch"];

fn slot(op: Op) -> usize {
    match op {
        Op::Get => 0,
        Op::Set => 1,
        Op::Delete => 2,
        Op::Arith => 3,
        Op::Touch => 4,
    }
}

impl OperationRoute {
    /// Routes per operation; `default` fills the gaps (the builder checks one exists).
    pub fn new(
        get: Option<Arc<dyn Route>>,
        set: Option<Arc<dyn Route>>,
        delete: Option<Arc<dyn Route>>,
        arith: Option<Arc<dyn Route>>,
        touch: Option<Arc<dyn Route>>,
        default: Option<Arc<dyn Route>>,
    ) -> OperationRoute {
        let given = [&get, &set, &delete, &arith, &touch].map(|r| r.is_some());
        let fallback = default
            .or_else(|| get.clone())
            .or_else(|| set.clone())
            .expect("config check: operation routes need a default or all five");
        let pick = |r: Option<Arc<dyn Route>>| r.unwrap_or_else(|| Arc::clone(&fallback));
        OperationRoute {
            by_op: [pick(get), pick(set), pick(delete), pick(arith), pick(touch)],
            given,
        }
    }
}

impl Route for OperationRoute {
    fn name(&self) -> &'static str {
        "operation"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.by_op[0].get(cx, keys, opts)
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        let first = slot(reqs.first().map(|w| w.op()).unwrap_or(Op::Set));
        if reqs.iter().all(|w| slot(w.op()) == first) {
            return self.by_op[first].write(cx, reqs);
        }
        let mut by: Vec<Vec<usize>> = vec![Vec::new(); 5];
        for (i, w) in reqs.iter().enumerate() {
            by[slot(w.op())].push(i);
        }
        let parts: Vec<(&Arc<dyn Route>, Vec<usize>)> = by
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(s, v)| (&self.by_op[s], v))
            .collect();
        let res = write_parts(cx, &parts, reqs);
        merge_parts(reqs.len(), &parts, res)
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.by_op[slot(op)].traverse(op, key, visit);
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        let mut out: Vec<(String, &Arc<dyn Route>)> = Vec::new();
        for (i, r) in self.by_op.iter().enumerate() {
            let name = if self.given[i] { NAMES[i] } else { "default" };
            if !out.iter().any(|(_, x)| Arc::ptr_eq(x, r)) {
                out.push((format!(".{name}"), r));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::testing::{Recorder, cx, delete_req, get_keys, set_req};

    #[test]
    fn each_command_goes_to_its_route() {
        let reads = Recorder::new("reads");
        let rest = Recorder::new("rest");
        let deletes = Recorder::new("deletes");
        let r = OperationRoute::new(
            Some(reads.route()),
            None,
            Some(deletes.route()),
            None,
            None,
            Some(rest.route()),
        );
        get_keys(&r, &[b"a"]);
        r.write(
            &cx(),
            &[set_req(b"b", b"v"), delete_req(b"c"), set_req(b"d", b"v")],
        );
        assert_eq!(reads.saw_keys(), ["a"]);
        assert_eq!(rest.saw_keys(), ["b", "d"]);
        assert_eq!(deletes.saw_ops(), ["delete"]);
        assert_eq!(
            crate::route::builder::destinations(&r, Op::Delete, b"k"),
            ["deletes/deletes"]
        );
    }
}
