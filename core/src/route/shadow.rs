//! `shadow`: mirror a fraction of keys to another route (mcrouter ShadowRoute), for testing a
//! new cluster with production traffic. The key decides, not the request: a key is shadowed
//! when `SipHash-1-3(key) / 2^64 < fraction`, so the shadow sees the complete life of the
//! keys it gets (their sets, gets and deletes), the same keys in every process.
//!
//! - Every operation (get, set/add/replace/cas, delete, incr/decr, touch) is answered by
//!   `route`; for shadowed keys a copy goes to `shadow` **after** the reply was computed, on
//!   the background worker, and its reply is dropped. The shadow can never change a reply or
//!   add latency: a full background queue drops the copy (`background_dropped`).
//! - Leases: a lease read is copied as a plain read (a stub on the shadow would never be
//!   filled), and a `cas` (a lease fill included) that `route` stored is copied as a `set`: the
//!   token belongs to `route`'s server, and the shadow must end up with the same value. A
//!   `cas` that `route` refused is not copied.

use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde::Deserialize;
use siphasher::sip::SipHasher13;

use crate::error::Result;
use crate::item::Item;
use crate::op::Op;
use crate::protocol::{Request, Response, Status, StoreOp};
use crate::stats::RouteCounters;

use super::schema::{Builder, RouteSpec, invalid_field};
use super::{Cx, GetOpts, Key, OwnedWrites, Route, RouteConfig, Visit, Write};
use crate::process::background;

/// `{"type": "shadow", "route": "main", "shadow": "new", "fraction": 0.1}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The route that answers.
    pub route: Box<RouteConfig>,
    /// The route that receives the copies.
    pub shadow: Box<RouteConfig>,
    /// Fraction of keys (by a SipHash of the key) that are mirrored, 0..=1.
    #[serde(default = "all")]
    pub fraction: f64,
}

fn all() -> f64 {
    1.0
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        vec![
            (".route".to_string(), &self.route),
            (".shadow".to_string(), &self.shadow),
        ]
    }

    fn check(&self, path: &str) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fraction) {
            return invalid_field(path, "fraction", "must be between 0 and 1");
        }
        Ok(())
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        Ok(Arc::new(ShadowRoute::new(
            b.child(&self.route, path, ".route")?,
            b.child(&self.shadow, path, ".shadow")?,
            self.fraction,
            b.inline,
        )))
    }
}

/// Is `key` in the shadowed fraction? (`threshold` = fraction × 2^64.)
fn chosen(key: &[u8], threshold: u64, all: bool) -> bool {
    if all {
        return true;
    }
    let mut h = SipHasher13::new_with_keys(0x6661_652d_7368_6164, 0x6f77_2d6b_6579_7300);
    h.write(key);
    h.finish() < threshold
}

/// See the module docs.
#[derive(Debug)]
pub struct ShadowRoute {
    route: Arc<dyn Route>,
    shadow: Arc<dyn Route>,
    threshold: u64,
    all: bool,
    inline: bool,
    counters: Arc<RouteCounters>,
}

impl ShadowRoute {
    /// Answer from `route`; mirror `fraction` of keys to `shadow`. `inline`: run the copies on
    /// the caller's thread (after its reply), for processes without a background thread.
    pub fn new(
        route: Arc<dyn Route>,
        shadow: Arc<dyn Route>,
        fraction: f64,
        inline: bool,
    ) -> ShadowRoute {
        ShadowRoute {
            route,
            shadow,
            threshold: (fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            all: fraction >= 1.0,
            inline,
            counters: Arc::default(),
        }
    }

    fn send(&self, n: usize, job: background::Job) {
        self.counters.shadowed.fetch_add(n as u64, Relaxed);
        if !background::spawn(job, self.inline) {
            self.counters.background_dropped.fetch_add(1, Relaxed);
        }
    }
}

impl Route for ShadowRoute {
    fn name(&self) -> &'static str {
        "shadow"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.counters.requests.fetch_add(keys.len() as u64, Relaxed);
        let out = self.route.get(cx, keys, opts);
        let copies: Vec<(Vec<u8>, Vec<u8>)> = keys
            .iter()
            .filter(|k| chosen(k.key, self.threshold, self.all))
            .map(|k| (k.key.to_vec(), k.place.to_vec()))
            .collect();
        if !copies.is_empty() {
            let shadow = Arc::clone(&self.shadow);
            let n = copies.len();
            let cx = *cx;
            self.send(
                n,
                Box::new(move || {
                    let keys: Vec<Key<'_>> = copies
                        .iter()
                        .map(|(k, p)| Key { key: k, place: p })
                        .collect();
                    let plain = GetOpts {
                        lease: None,
                        recache: None,
                        ..opts
                    };
                    let _ = shadow.get(&cx.renewed(), &keys, plain);
                }),
            );
        }
        out
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.counters.requests.fetch_add(reqs.len() as u64, Relaxed);
        let out = self.route.write(cx, reqs);
        let chosen: Vec<Write<'_>> = reqs
            .iter()
            .zip(&out)
            .filter(|(w, _)| chosen(w.key(), self.threshold, self.all))
            .filter_map(|(w, r)| match w.req {
                Request::Store {
                    op: StoreOp::Cas(_),
                    key,
                    value,
                    flags,
                    exptime,
                    noreply,
                } => matches!(
                    r,
                    Ok(Response::Status {
                        status: Status::Success,
                        ..
                    })
                )
                .then_some(Write {
                    place: w.place,
                    req: Request::Store {
                        op: StoreOp::Set,
                        key,
                        value,
                        flags,
                        exptime,
                        noreply,
                    },
                }),
                _ => Some(*w),
            })
            .collect();
        if !chosen.is_empty() {
            let owned = OwnedWrites::copy(&chosen);
            let shadow = Arc::clone(&self.shadow);
            let cx = *cx;
            self.send(
                owned.len(),
                Box::new(move || {
                    let _ = shadow.write(&cx.renewed(), &owned.writes());
                }),
            );
        }
        out
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.route.traverse(op, key, visit);
        if chosen(key, self.threshold, self.all) {
            self.shadow.traverse(op, key, visit);
        }
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        vec![
            (".route".to_string(), &self.route),
            (".shadow".to_string(), &self.shadow),
        ]
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
    fn a_stable_fraction_of_keys_is_mirrored_after_the_reply() {
        let main = Recorder::new("main");
        let shadow = Recorder::new("shadow");
        let r = ShadowRoute::new(main.route(), shadow.route(), 0.25, true);
        let keys: Vec<Vec<u8>> = (0..4000).map(|i| format!("key:{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let out = get_keys(&r, &refs);
        assert!(out.iter().all(|r| {
            r.as_ref()
                .unwrap()
                .as_ref()
                .unwrap()
                .value
                .starts_with(b"main:")
        }));
        let mirrored = shadow.saw_keys();
        let share = mirrored.len() as f64 / keys.len() as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
        // The same keys again, and for writes too: the choice is by key.
        for k in &refs {
            r.write(&cx(), &[set_req(k, b"v")]);
        }
        let sets: Vec<String> = shadow.saw_keys()[mirrored.len()..].to_vec();
        assert_eq!(sets, mirrored);
        // A failing shadow changes nothing.
        shadow.fail_keys(&[b"key:1"], crate::Reason::Timeout);
        assert!(get_keys(&r, &[b"key:1"])[0].is_ok());
        // traverse lists the shadow only for chosen keys.
        let listed = crate::route::builder::destinations(&r, Op::Get, mirrored[0].as_bytes());
        assert_eq!(listed, ["main/main", "shadow/shadow"]);
    }

    #[test]
    fn copies_run_in_the_background() {
        let main = Recorder::new("main");
        let shadow = Recorder::new("shadow");
        shadow.delay(std::time::Duration::from_millis(200));
        let r = ShadowRoute::new(main.route(), shadow.route(), 1.0, false);
        let t = std::time::Instant::now();
        get_keys(&r, &[b"k"]);
        assert!(
            t.elapsed() < std::time::Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert!(background::drain(std::time::Duration::from_secs(5)));
        assert_eq!(shadow.saw_keys(), ["k"]);
    }

    #[test]
    fn lease_reads_and_fills_reach_the_shadow_as_plain_ones() {
        let main = Recorder::new("main");
        let shadow = Recorder::new("shadow");
        let r = ShadowRoute::new(main.route(), shadow.route(), 1.0, true);
        let lease = GetOpts {
            cas: true,
            lease: Some(10),
            ..GetOpts::default()
        };
        r.get(&cx(), &[Key::new(b"k")], lease);
        assert_eq!(main.saw_opts(), [lease]);
        assert!(!shadow.saw_opts()[0].leased());
        main.fail_keys(&[b"lost"], crate::error::Reason::Timeout);
        let cas = |key: &'static [u8]| {
            Write::new(Request::Store {
                op: StoreOp::Cas(7),
                key,
                value: b"v",
                flags: 0,
                exptime: 60,
                noreply: false,
            })
        };
        r.write(&cx(), &[cas(b"won"), cas(b"lost")]);
        // The stored fill arrives as a set; the refused one not at all.
        assert_eq!(shadow.saw_ops(), ["get", "set"]);
        assert_eq!(shadow.saw_keys(), ["k", "won"]);
    }
}
