//! Recording child routes for route unit tests (after mcrouter's `TestHandle`: which keys,
//! operations and TTLs each child saw). A recorder stores nothing by default: a get of a key
//! answers `"<name>:<key>"`, unless the key was told to miss or fail; `store_values()` makes it
//! a tiny in-memory server instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Reason, Result};
use crate::item::Item;
use crate::op::Op;
use crate::protocol::{Request, Response, Status, StoreOp};

use super::{Cx, GetOpts, Key, Route, Visit, Write, status, stored};

/// key → (value, flags, exptime).
type Store = HashMap<Vec<u8>, (Vec<u8>, u32, u32)>;

#[derive(Debug, Default)]
struct State {
    saw_keys: Vec<String>,
    saw_ops: Vec<String>,
    saw_exptimes: Vec<u32>,
    saw_opts: Vec<GetOpts>,
    fail: HashMap<Vec<u8>, Reason>,
    miss: Vec<Vec<u8>>,
    store: Option<Store>,
    delay: Option<Duration>,
}

/// A route that records what it saw. Clones share the record.
#[derive(Debug, Clone)]
pub struct Recorder {
    name: &'static str,
    state: Arc<Mutex<State>>,
}

fn text(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

impl Recorder {
    /// A recorder named `name` (also its pool and address in `traverse`).
    pub fn new(name: &'static str) -> Recorder {
        Recorder {
            name,
            state: Arc::default(),
        }
    }

    /// As a route.
    pub fn route(&self) -> Arc<dyn Route> {
        Arc::new(self.clone())
    }

    /// Requests for these keys fail with `reason`.
    pub fn fail_keys(&self, keys: &[&[u8]], reason: Reason) {
        let mut st = self.state.lock();
        for k in keys {
            st.fail.insert(k.to_vec(), reason);
        }
    }

    /// Gets of these keys miss.
    pub fn miss_keys(&self, keys: &[&[u8]]) {
        self.state
            .lock()
            .miss
            .extend(keys.iter().map(|k| k.to_vec()));
    }

    /// Keep written values and serve gets from them (misses for anything else).
    pub fn store_values(&self) -> Recorder {
        self.state.lock().store = Some(HashMap::new());
        self.clone()
    }

    /// Sleep this long in every call.
    pub fn delay(&self, d: Duration) {
        self.state.lock().delay = Some(d);
    }

    /// Keys seen, in order.
    pub fn saw_keys(&self) -> Vec<String> {
        self.state.lock().saw_keys.clone()
    }

    /// Operations seen (`get`, `set`, `add`, `delete`, `incr`, `touch` …), in order.
    pub fn saw_ops(&self) -> Vec<String> {
        self.state.lock().saw_ops.clone()
    }

    /// Expiry of each write that has one, in order.
    pub fn saw_exptimes(&self) -> Vec<u32> {
        self.state.lock().saw_exptimes.clone()
    }

    /// Options of each get call.
    pub fn saw_opts(&self) -> Vec<GetOpts> {
        self.state.lock().saw_opts.clone()
    }

    /// The stored value of `key` (with `store_values`).
    pub fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state
            .lock()
            .store
            .as_ref()
            .and_then(|s| s.get(key).map(|v| v.0.clone()))
    }

    fn pause(&self) {
        let d = self.state.lock().delay;
        if let Some(d) = d {
            std::thread::sleep(d);
        }
    }
}

impl Route for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn get(&self, _cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.pause();
        let mut st = self.state.lock();
        st.saw_opts.push(opts);
        keys.iter()
            .map(|k| {
                st.saw_keys.push(text(k.key));
                st.saw_ops.push("get".into());
                if let Some(r) = st.fail.get(k.key) {
                    return Err(Error::new(*r).at(&std::sync::Arc::from(self.name)));
                }
                if st.miss.iter().any(|m| m == k.key) {
                    return Ok(None);
                }
                if let Some(store) = &st.store {
                    return Ok(store.get(k.key).map(|(v, flags, exptime)| Item {
                        value: v.clone(),
                        flags: *flags,
                        cas: 1,
                        ttl: opts.ttl.then_some(if *exptime == 0 {
                            -1
                        } else {
                            i64::from(*exptime)
                        }),
                        ..Item::default()
                    }));
                }
                Ok(Some(Item {
                    value: format!("{}:{}", self.name, text(k.key)).into_bytes(),
                    flags: 0,
                    cas: 1,
                    ttl: opts.ttl.then_some(-1),
                    ..Item::default()
                }))
            })
            .collect()
    }

    fn write(&self, _cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.pause();
        let mut st = self.state.lock();
        reqs.iter()
            .map(|w| {
                let key = w.key();
                st.saw_keys.push(text(key));
                let op = match w.req {
                    Request::Store { op, exptime, .. } => {
                        st.saw_exptimes.push(exptime);
                        match op {
                            StoreOp::Set => "set",
                            StoreOp::Add => "add",
                            StoreOp::Replace => "replace",
                            StoreOp::Append => "append",
                            StoreOp::Prepend => "prepend",
                            StoreOp::Cas(_) => "cas",
                        }
                    }
                    Request::Delete { .. } => "delete",
                    Request::Arith { incr: true, .. } => "incr",
                    Request::Arith { .. } => "decr",
                    Request::Touch { exptime, .. } => {
                        st.saw_exptimes.push(exptime);
                        "touch"
                    }
                    _ => "other",
                };
                st.saw_ops.push(op.into());
                if let Some(r) = st.fail.get(key) {
                    return Err(Error::new(*r).at(&std::sync::Arc::from(self.name)));
                }
                let Some(store) = st.store.as_mut() else {
                    return Ok(match w.req {
                        Request::Arith { delta, .. } => Response::Number(delta),
                        _ => stored(),
                    });
                };
                Ok(match w.req {
                    Request::Store {
                        op,
                        value,
                        flags,
                        exptime,
                        ..
                    } => {
                        let exists = store.contains_key(key);
                        if (op == StoreOp::Add && exists)
                            || (matches!(op, StoreOp::Replace | StoreOp::Append | StoreOp::Prepend)
                                && !exists)
                        {
                            status(Status::NotStored)
                        } else {
                            store.insert(key.to_vec(), (value.to_vec(), flags, exptime));
                            stored()
                        }
                    }
                    Request::Delete { .. } => match store.remove(key) {
                        Some(_) => status(Status::Success),
                        None => status(Status::NotFound),
                    },
                    _ => status(Status::NotFound),
                })
            })
            .collect()
    }

    fn traverse(&self, _op: Op, _key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        visit(Visit {
            pool: self.name,
            addr: self.name,
        });
    }
}

/// The context of a test request: a deadline far enough away never to matter.
pub fn cx() -> Cx {
    Cx::within(Duration::from_secs(5))
}

/// `route.get` of plain keys.
pub fn get_keys(route: &dyn Route, keys: &[&[u8]]) -> Vec<Result<Option<Item>>> {
    let keys: Vec<Key<'_>> = keys.iter().map(|k| Key::new(k)).collect();
    route.get(&cx(), &keys, GetOpts::default())
}

/// A `set key value` write.
pub fn set_req<'a>(key: &'a [u8], value: &'a [u8]) -> Write<'a> {
    Write::new(Request::Store {
        op: StoreOp::Set,
        key,
        value,
        flags: 0,
        exptime: 0,
        noreply: false,
    })
}

/// A `delete key` write.
pub fn delete_req(key: &[u8]) -> Write<'_> {
    Write::new(Request::Delete {
        key,
        noreply: false,
        invalidate: None,
        cas: None,
    })
}

/// A store of `op` (set, add, cas …) with no flags and no expiry.
pub fn store_req<'a>(op: StoreOp, key: &'a [u8], value: &'a [u8]) -> Write<'a> {
    Write::new(Request::Store {
        op,
        key,
        value,
        flags: 0,
        exptime: 0,
        noreply: false,
    })
}

/// An `incr key delta` write.
pub fn incr_req(key: &[u8], delta: u64) -> Write<'_> {
    Write::new(Request::Arith {
        key,
        incr: true,
        delta,
        noreply: false,
    })
}

/// A `touch key exptime` write.
pub fn touch_req(key: &[u8], exptime: u32) -> Write<'_> {
    Write::new(Request::Touch {
        key,
        exptime,
        noreply: false,
    })
}
