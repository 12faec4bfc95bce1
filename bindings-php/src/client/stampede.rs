//! Stampede protection on `Fae\Client`: `getOrLease`, `setWithLease`, `invalidate`,
//! `getOrSet`, and php-memcached's read-through cache callback (`get($key, $cache_cb)`) on top
//! of the core's `get_or_set`. Leases, waiting and coalescing are the core's
//! ([`fae_core::lease`]); this file converts PHP values and calls PHP callables.
//!
//! A PHP callable runs inside the core's compute closure, so what it does must come back out
//! through [`GetOrSetError::Compute`] without leaving the core half way:
//! - it **throws**: the exception stays pending in the engine ([`Compute::Thrown`]) and
//!   propagates, the very same object, when the method returns;
//! - it hits a **fatal error** (a bailout: `E_ERROR`, `max_execution_time`, `memory_limit`):
//!   caught with `zend_try` ([`Compute::Bailout`]), the core unwinds normally (its
//!   coalescing entry for the key is released), then the bailout is raised again. Without
//!   this, the engine's `longjmp` would skip the core's frames and leave the key's in-process
//!   flight registered for the rest of a php-fpm worker's life.

use std::alloc::Layout;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::ffi::zend_reference;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendCallable, ZendHashTable, Zval};
use ext_php_rs::zend::{CatchError, ExecutorGlobals, bailout, try_catch};
use fae_core::lease::{Computed, GetOrSetError, Lease};
use fae_core::protocol::StoreOp;
use fae_core::{Item, Op};

use super::{Ctx, FaeClient, exptime, guard};
use crate::codes::*;
use crate::convert::*;
use crate::values::{self, Fail, ValueOpts};

/// How a PHP callable run as the core's compute failed.
#[derive(Debug)]
pub(super) enum Compute {
    /// It threw; the exception is pending in the engine.
    Thrown,
    /// A fatal error; to raise again once the core has returned.
    Bailout,
    /// The read-through callback returned false: store nothing, `get` returns false.
    Declined,
    /// Its value could not be encoded (or it could not be called).
    Fail(Fail),
}

/// A method's result, or a bailout to raise again after every Rust frame has returned.
#[derive(Debug)]
pub(super) enum Done {
    Value(Zval),
    Bailout,
}

impl Done {
    /// The value; a bailout is raised again here (call it once every other Rust value of
    /// the method is gone: the engine's longjmp skips destructors).
    pub(super) fn into_value(self) -> Zval {
        match self {
            Done::Value(v) => v,
            // SAFETY: only the caller's frame remains between here and ext-php-rs' handler,
            // which catches the bailout and raises it to the engine; nothing with a
            // destructor that matters is alive in it.
            Done::Bailout => unsafe { bailout() },
        }
    }
}

/// Why the stampede calls cannot use a key.
enum KeyErr {
    Fail(Fail),
    /// The stored key and the routing key (a prefix that is not hashed, a server key) map to
    /// different servers: a lease taken on one would not guard the other (the message).
    Placement(String),
}

/// Call `f`, catching a bailout (`zend_try`).
fn call(f: &ZendCallable<'_>, args: Vec<&dyn IntoZvalDyn>) -> Result<Zval, Compute> {
    match try_catch(AssertUnwindSafe(|| f.try_call(args))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) if ExecutorGlobals::has_exception() => Err(Compute::Thrown),
        Ok(Err(e)) => Err(Compute::Fail((
            RES_FAILURE,
            format!("could not call the callable: {e}"),
        ))),
        Err(CatchError::Bailout) => Err(Compute::Bailout),
        Err(e) => Err(Compute::Fail((RES_FAILURE, format!("callable: {e}")))),
    }
}

/// Encode like `set`; an exception a serializer threw stays pending.
fn encode(v: &Zval, o: &ValueOpts) -> Result<Computed, Compute> {
    values::encode(v, o).map_err(|f| {
        if ExecutorGlobals::has_exception() {
            Compute::Thrown
        } else {
            Compute::Fail(f)
        }
    })
}

/// A new PHP reference (what `&$x` makes) holding `v`, for a callback's by-reference
/// parameters: the callee binds to it, and what it assigns is read back through
/// [`Zval::dereference`]. Freed by the engine when the last holder drops it.
fn new_reference(v: Zval) -> Zval {
    const IS_REFERENCE: u32 = 10;
    // GC_REFERENCE = IS_REFERENCE | GC_NOT_COLLECTABLE (1 << 4) << GC_FLAGS_SHIFT (0).
    const GC_REFERENCE: u32 = IS_REFERENCE | (1 << 4);
    // IS_REFERENCE_EX = IS_REFERENCE | IS_TYPE_REFCOUNTED (1) << Z_TYPE_FLAGS_SHIFT (8).
    const IS_REFERENCE_EX: u32 = IS_REFERENCE | (1 << 8);
    let r = ext_php_rs::alloc::emalloc(Layout::new::<zend_reference>()).cast::<zend_reference>();
    // emalloc bails out instead of returning null, except for an alignment it cannot give,
    // which a zend_reference never asks for.
    assert!(!r.is_null(), "emalloc(zend_reference) returned null");
    let v = std::mem::ManuallyDrop::new(v);
    let mut z = Zval::new();
    // SAFETY: `r` is a fresh, suitably aligned allocation of a zend_reference from the
    // request heap (the engine frees references with efree). Every field is written before
    // the reference is published, as ZVAL_NEW_REF does: refcount 1 (the zval below), type
    // GC_REFERENCE, the value moved in (`v` is not dropped), no typed-property sources.
    unsafe {
        (*r).gc.refcount = 1;
        (*r).gc.u.type_info = GC_REFERENCE;
        std::ptr::write(&raw mut (*r).val, std::ptr::read(&raw const *v));
        (*r).sources.ptr = std::ptr::null_mut();
        z.value.ref_ = r;
        z.u1.type_info = IS_REFERENCE_EX;
    }
    z
}

/// The key the lease calls use: the stored key, when it is placed where php-memcached's
/// routing key is (no prefix, a hashed prefix, or the same destinations either way). The core's
/// lease calls route by the key they are given, so a lease on the stored key elsewhere would
/// guard another server than the one `get`/`set` use.
fn lease_key(ctx: &Ctx, key: &[u8], server_key: Option<&[u8]>) -> Result<Vec<u8>, KeyErr> {
    let (stored, routing) = ctx.keys(key, server_key);
    let Some(routing) = routing else {
        return Ok(stored);
    };
    for op in [Op::Get, Op::Set] {
        match (
            ctx.core.route_for_pools(op, &stored),
            ctx.core.route_for_pools(op, &routing),
        ) {
            (Ok(a), Ok(b)) if a == b => {}
            (Err(e), _) | (_, Err(e)) => return Err(KeyErr::Fail(map(&e))),
            _ => {
                return Err(KeyErr::Placement(
                    "this key is placed by its unprefixed name (OPT_PREFIX_KEY without \
                     OPT_HASH_WITH_PREFIX_KEY) on another server than the prefixed name the lease \
                     would be taken on; set OPT_HASH_WITH_PREFIX_KEY (or use one server) for \
                     stampede protection"
                        .into(),
                ));
            }
        }
    }
    Ok(stored)
}

impl FaeClient {
    /// [`lease_key`] for the methods that exist only for stampede protection: a
    /// placement they cannot honour throws (it is this client's configuration, not the
    /// request, that is wrong; a false would read as a cached value in `getOrSet`).
    fn lease_key_or_throw(&mut self, ctx: &Ctx, key: &[u8]) -> PhpResult<Result<Vec<u8>, Zval>> {
        match lease_key(ctx, key, None) {
            Ok(k) => Ok(Ok(k)),
            Err(KeyErr::Fail(f)) => Ok(Err(self.fail(f))),
            Err(KeyErr::Placement(m)) => {
                self.fail((RES_NOT_SUPPORTED, m.clone()));
                Err(PhpException::new(
                    format!("{}: {m}", text(RES_NOT_SUPPORTED)),
                    RES_NOT_SUPPORTED as i32,
                    crate::convert::exception_ce(),
                ))
            }
        }
    }

    fn decoded(&mut self, ctx: &Ctx, item: Option<&Item>) -> Result<Zval, Zval> {
        match item {
            None => Ok(Zval::null()),
            Some(i) => values::decode(&i.value, i.flags, &ctx.values).map_err(|f| self.fail(f)),
        }
    }

    pub(super) fn do_get_or_lease(&mut self, key: &Zval) -> PhpResult<Zval> {
        let key = key_bytes(key)?;
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            let lk = match self.lease_key_or_throw(&ctx, &key)? {
                Ok(k) => k,
                Err(z) => return Ok(z),
            };
            let lease = match ctx.core.get_or_lease(&lk) {
                Ok(l) => l,
                Err(e) => return Ok(self.core_err(&e)),
            };
            let value = match self.decoded(&ctx, lease.item()) {
                Ok(v) => v,
                Err(z) => return Ok(z),
            };
            let mut ht = ZendHashTable::new();
            let _ = ht.insert("status", str_zval(lease.status()));
            let _ = ht.insert("value", value);
            let token = match lease {
                Lease::Miss { token } | Lease::Refresh { token, .. } => long_zval(token as i64),
                _ => Zval::null(),
            };
            let _ = ht.insert("token", token);
            self.ok();
            Ok(array_zval(ht))
        })
    }

    pub(super) fn do_set_with_lease(
        &mut self,
        key: &Zval,
        value: &Zval,
        token: i64,
        exp: i64,
    ) -> PhpResult<bool> {
        let key = key_bytes(key)?;
        let token = u64::try_from(token).map_err(|_| {
            value_error("setWithLease(): $token must be >= 0 (a token from getOrLease())")
        })?;
        let vopts = self.shared.lock().values.clone();
        let (payload, flags) = match values::encode(value, &vopts) {
            Ok(p) => p,
            Err(f) => return Ok(self.fail(f).is_true()),
        };
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f).is_true()),
            };
            let lk = match self.lease_key_or_throw(&ctx, &key)? {
                Ok(k) => k,
                Err(_) => return Ok(false),
            };
            Ok(
                match ctx
                    .core
                    .set_with_lease(&lk, &payload, flags, exptime(exp), token)
                {
                    Ok(true) => {
                        self.ok();
                        true
                    }
                    Ok(false) => {
                        self.fail((
                            RES_NOTSTORED,
                            "the lease was lost: the key was written, deleted or invalidated since getOrLease()".into(),
                        ));
                        false
                    }
                    Err(e) => self.core_err(&e).is_true(),
                },
            )
        })
    }

    pub(super) fn do_invalidate(&mut self, key: &Zval, stale_ttl: i64) -> PhpResult<bool> {
        let key = key_bytes(key)?;
        let ttl = u32::try_from(stale_ttl)
            .map_err(|_| value_error("invalidate(): $stale_ttl must be 0 .. 4294967295 seconds"))?;
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f).is_true()),
            };
            let lk = match self.lease_key_or_throw(&ctx, &key)? {
                Ok(k) => k,
                Err(_) => return Ok(false),
            };
            Ok(match ctx.core.invalidate(&lk, ttl) {
                Ok(true) => {
                    self.ok();
                    true
                }
                Ok(false) => {
                    self.set_code(RES_NOTFOUND);
                    false
                }
                Err(e) => self.core_err(&e).is_true(),
            })
        })
    }

    /// `getOrSet($key, $compute, $expiration)`: the core's `get_or_set`, `$compute($key)`
    /// as its compute function.
    pub(super) fn do_get_or_set(
        &mut self,
        key: &Zval,
        compute: &Zval,
        exp: i64,
    ) -> PhpResult<Done> {
        let key = key_bytes(key)?;
        let callable = callable(
            compute,
            "getOrSet(): Argument #2 ($compute) must be a valid callback",
        )?;
        let vopts = self.shared.lock().values.clone();
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(Done::Value(self.fail(f))),
            };
            let lk = match self.lease_key_or_throw(&ctx, &key)? {
                Ok(k) => k,
                Err(z) => return Ok(Done::Value(z)),
            };
            let arg = values::bytes_zval(&key);
            let r = ctx.core.get_or_set(&lk, exptime(exp), || {
                let v = call(&callable, vec![&arg])?;
                encode(&v, &vopts)
            });
            Ok(match r {
                Ok(item) => Done::Value(self.hit(&ctx, item.borrowed(), 0)),
                Err(GetOrSetError::Cache(e)) => Done::Value(self.core_err(&e)),
                Err(GetOrSetError::Compute(c)) => {
                    self.compute_failed(c, "getOrSet(): $compute", RES_FAILURE)
                }
            })
        })
    }

    /// The result of a failed compute. `thrown_code`: the result code an exception leaves
    /// (php-memcached's read-through keeps its get's `RES_NOTFOUND`).
    fn compute_failed(&mut self, c: Compute, what: &str, thrown_code: i64) -> Done {
        match c {
            Compute::Thrown => {
                self.fail((thrown_code, format!("{what} threw")));
                Done::Value(Zval::null())
            }
            Compute::Bailout => Done::Bailout,
            Compute::Declined => {
                self.set_code(RES_NOTFOUND);
                Done::Value(bool_zval(false))
            }
            Compute::Fail(f) => Done::Value(self.fail(f)),
        }
    }

    /// php-memcached's read-through cache callback: `get($key, $cache_cb)` /
    /// `getByKey($server_key, $key, $cache_cb)`. On a miss,
    /// `$cache_cb($memc, $key, &$value, &$expiration)` runs (`($memc, $key, &$value)` with
    /// `GET_EXTENDED`, where `$value` must become `['value' => …]`); if it returns true,
    /// `$value` is stored with `$expiration` and returned, else get returns false with
    /// `RES_NOTFOUND`. Here the miss, the call and the store are the core's `get_or_set`, so
    /// concurrent missers run the callback once. (php_memcached.c `s_invoke_cache_callback`.)
    pub(super) fn do_read_through(
        &mut self,
        this: Zval,
        server_key: Option<&Zval>,
        key: &Zval,
        cb: &Zval,
        flags: i64,
    ) -> PhpResult<Done> {
        let key = key_bytes(key)?;
        let skey = server_key_bytes(server_key)?;
        let callable = callable(
            cb,
            "get(): Argument #2 ($cache_cb) must be a valid callback or null",
        )?;
        let extended = flags & crate::GET_EXTENDED != 0;
        let vopts = self.shared.lock().values.clone();
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(Done::Value(self.fail(f))),
            };
            let key_arg = values::bytes_zval(&key);
            // The $expiration the callback set (php-memcached stores with it; 0 if untouched).
            let expiration = Cell::new(0i64);
            let compute = || -> Result<Computed, Compute> {
                let value = new_reference(Zval::null());
                let ok = if extended {
                    call(&callable, vec![&this, &key_arg, &value])?
                } else {
                    let exp = new_reference(Zval::null());
                    let ok = call(&callable, vec![&this, &key_arg, &value, &exp])?;
                    expiration.set(exp.dereference().coerce_to_long().unwrap_or(0));
                    ok
                };
                if !ok.coerce_to_bool() {
                    return Err(Compute::Declined);
                }
                let v = value.dereference();
                let v = if extended {
                    // php-memcached: an array with a "value" entry, else nothing is stored.
                    match v.array().and_then(|a| a.get("value")) {
                        Some(inner) => inner,
                        None => return Err(Compute::Declined),
                    }
                } else {
                    v
                };
                encode(v, &vopts)
            };
            let lk = match lease_key(&ctx, &key, skey.as_deref()) {
                Ok(k) => k,
                Err(KeyErr::Fail(f)) => return Ok(Done::Value(self.fail(f))),
                Err(KeyErr::Placement(_)) => {
                    // No lease can guard this key's server: php-memcached's own sequence (get,
                    // callback on a miss, set), unprotected but placed like every other call.
                    return Ok(self.read_through_unleased(
                        &ctx,
                        &key,
                        skey.as_deref(),
                        flags,
                        compute,
                        &expiration,
                    ));
                }
            };
            let mut called = false;
            let r = ctx.core.get_or_set(&lk, 0, || {
                called = true;
                compute()
            });
            Ok(match r {
                Ok(item) => {
                    let exp = expiration.get();
                    if called && exp != 0 {
                        // The core stores before the callback's $expiration is known: apply it.
                        let _ = ctx.core.touch(&lk, exptime(exp));
                    }
                    Done::Value(self.hit(&ctx, item.borrowed(), flags))
                }
                Err(GetOrSetError::Cache(e)) => Done::Value(self.core_err(&e)),
                Err(GetOrSetError::Compute(c)) => {
                    if matches!(c, Compute::Declined) {
                        // Nothing to cache: release the lease (its empty stub) now, or other
                        // readers of the key would wait up to stampede.wait_ms for a fill that
                        // never comes, for stampede.lease_ttl_s.
                        let _ = ctx.core.delete(&lk);
                    }
                    self.compute_failed(c, "get(): $cache_cb", RES_NOTFOUND)
                }
            })
        })
    }

    fn read_through_unleased(
        &mut self,
        ctx: &Ctx,
        key: &[u8],
        server_key: Option<&[u8]>,
        flags: i64,
        compute: impl FnOnce() -> Result<Computed, Compute>,
        expiration: &Cell<i64>,
    ) -> Done {
        let (stored, routing) = ctx.keys(key, server_key);
        let routing = routing.unwrap_or_else(|| stored.clone());
        let cas = flags & crate::GET_EXTENDED != 0;
        match ctx.core.get_routed(&routing, &stored, cas) {
            Ok(Some(item)) => return Done::Value(self.hit(ctx, item.borrowed(), flags)),
            Ok(None) => {}
            Err(e) => return Done::Value(self.core_err(&e)),
        }
        let (value, vflags) = match compute() {
            Ok(c) => c,
            Err(c) => return self.compute_failed(c, "get(): $cache_cb", RES_NOTFOUND),
        };
        let exp = exptime(expiration.get());
        // As the core's get_or_set: the value is returned even if it could not be stored.
        let _ = ctx
            .core
            .store_routed(&routing, StoreOp::Set, &stored, &value, vflags, exp);
        let item = Item {
            value,
            flags: vflags,
            ..Item::default()
        };
        Done::Value(self.hit(ctx, item.borrowed(), flags))
    }
}

/// `z` as a callable, or PHP's `TypeError` ("`what`, <type> given").
fn callable<'a>(z: &'a Zval, what: &str) -> PhpResult<ZendCallable<'a>> {
    ZendCallable::new(z)
        .map_err(|_| type_error(format!("{what}, {} given", z.dereference().get_type())))
}
