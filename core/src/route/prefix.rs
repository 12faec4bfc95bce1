//! `prefix`: the longest matching key prefix chooses the route (mcrouter
//! PrefixSelectorRoute); keys matching none go to `default`. The prefix stays in the key.
//!
//! Every operation (get, set/add/replace/cas, delete, incr/decr, touch) goes to the route of
//! its key. A multi-key call is split by route and each part is sent as one batch (parts
//! whose routes are plain pools share one `poll(2)` loop); results come back in the caller's
//! order.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::Result;
use crate::item::Item;
use crate::op::Op;
use crate::protocol::Response;

use super::schema::{Builder, RouteSpec, invalid_field};
use super::{
    Cx, GetOpts, Key, Route, RouteConfig, Visit, Write, get_parts, merge_parts, write_parts,
};

/// `{"type": "prefix", "routes": {"user:": "users"}, "default": "main"}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Prefix → route.
    pub routes: BTreeMap<String, RouteConfig>,
    /// Keys matching no prefix.
    pub default: Box<RouteConfig>,
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        self.routes
            .iter()
            .map(|(p, r)| (format!(".routes.{p}"), r))
            .chain(std::iter::once((".default".to_string(), &*self.default)))
            .collect()
    }

    fn check(&self, path: &str) -> Result<(), String> {
        if self.routes.keys().any(|p| p.is_empty()) {
            return invalid_field(
                path,
                "routes",
                "an empty prefix matches everything; use \"default\"",
            );
        }
        Ok(())
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        let mut table = Vec::with_capacity(self.routes.len());
        for (prefix, r) in &self.routes {
            table.push((
                prefix.clone(),
                b.child(r, path, &format!(".routes.{prefix}"))?,
            ));
        }
        Ok(Arc::new(PrefixRoute::new(
            table,
            b.child(&self.default, path, ".default")?,
        )))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct PrefixRoute {
    /// Longest prefix first, so the first match is the longest.
    table: Vec<(Vec<u8>, Arc<dyn Route>)>,
    default: Arc<dyn Route>,
    names: Vec<String>,
}

impl PrefixRoute {
    /// Route keys starting with each prefix of `table`, the rest to `default`.
    pub fn new(table: Vec<(String, Arc<dyn Route>)>, default: Arc<dyn Route>) -> PrefixRoute {
        let names = table.iter().map(|(p, _)| p.clone()).collect();
        let mut table: Vec<(Vec<u8>, Arc<dyn Route>)> = table
            .into_iter()
            .map(|(p, r)| (p.into_bytes(), r))
            .collect();
        table.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        PrefixRoute {
            table,
            default,
            names,
        }
    }

    /// Index of the route for `key`: into `table`, or `table.len()` for the default.
    fn pick(&self, key: &[u8]) -> usize {
        self.table
            .iter()
            .position(|(p, _)| key.starts_with(p))
            .unwrap_or(self.table.len())
    }

    fn route_at(&self, i: usize) -> &Arc<dyn Route> {
        self.table.get(i).map(|(_, r)| r).unwrap_or(&self.default)
    }

    /// `(route, positions)` for each route that gets keys.
    fn split(&self, keys: impl Iterator<Item = usize>) -> Vec<(&Arc<dyn Route>, Vec<usize>)> {
        let mut by: Vec<Vec<usize>> = vec![Vec::new(); self.table.len() + 1];
        for (pos, i) in keys.enumerate() {
            by[i].push(pos);
        }
        by.into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| (self.route_at(i), v))
            .collect()
    }
}

impl Route for PrefixRoute {
    fn name(&self) -> &'static str {
        "prefix"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        if let [k] = keys {
            return self.route_at(self.pick(k.key)).get(cx, keys, opts);
        }
        let parts = self.split(keys.iter().map(|k| self.pick(k.key)));
        let res = get_parts(cx, &parts, keys, opts);
        merge_parts(keys.len(), &parts, res)
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        if let [w] = reqs {
            return self.route_at(self.pick(w.key())).write(cx, reqs);
        }
        let parts = self.split(reqs.iter().map(|w| self.pick(w.key())));
        let res = write_parts(cx, &parts, reqs);
        merge_parts(reqs.len(), &parts, res)
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.route_at(self.pick(key)).traverse(op, key, visit);
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        let mut out: Vec<(String, &Arc<dyn Route>)> = Vec::new();
        for name in &self.names {
            if let Some((_, r)) = self.table.iter().find(|(p, _)| p == name.as_bytes()) {
                out.push((format!(".routes.{name}"), r));
            }
        }
        out.push((".default".to_string(), &self.default));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::testing::{Recorder, cx, get_keys, set_req};

    #[test]
    fn longest_prefix_wins_and_batches_split_in_order() {
        let user = Recorder::new("user");
        let user_big = Recorder::new("user_big");
        let other = Recorder::new("other");
        let r = PrefixRoute::new(
            vec![
                ("user:".into(), user.route()),
                ("user:big:".into(), user_big.route()),
            ],
            other.route(),
        );
        let out = get_keys(&r, &[b"user:1", b"x", b"user:big:2", b"user:3"]);
        let vals: Vec<String> = out
            .iter()
            .map(|r| {
                String::from_utf8(r.as_ref().unwrap().as_ref().unwrap().value.clone()).unwrap()
            })
            .collect();
        assert_eq!(
            vals,
            [
                "user:user:1",
                "other:x",
                "user_big:user:big:2",
                "user:user:3"
            ]
        );
        assert_eq!(user.saw_keys(), ["user:1", "user:3"], "one batch per route");
        r.write(&cx(), &[set_req(b"user:big:9", b"v")]);
        assert_eq!(user_big.saw_ops(), ["get", "set"]);
        assert_eq!(
            crate::route::builder::destinations(&r, Op::Delete, b"zzz"),
            ["other/other"]
        );
    }
}
