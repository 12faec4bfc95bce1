//! Stampede protection: `fae_lease` (a lease read's answer), `fae_client_get_or_lease`,
//! `fae_client_set_with_lease`, `fae_client_invalidate`, and `fae_client_get_or_set` with its
//! compute callback and `fae_value_sink`. Every body converts types and calls the core
//! (`fae_core::lease`); the lease, wait and coalescing logic lives there.

use std::ffi::{c_int, c_void};

use fae_core::Item;
use fae_core::lease::{GetOrSetError, Lease};

use crate::client::fae_client;
use crate::ffi::{
    OwnershipBox, OwnershipRef, box_into_out, free_box, lend_mut, opaque_handle, try_callback,
    try_mut_from_ptr, try_out_param, try_ref_from_ptr, try_slice, try_slice_nonnull,
};
use crate::item::fae_item;
use crate::panic::{
    NullParameterOrDefault, PanicOrDefault, ffi_panic_boundary, ffi_panic_boundary_keep_error,
};
use crate::result::{clear_last_error, fae_result, fail, set_last_error, try_core};

/// The answer of a lease read (`fae_client_get_or_lease`): its status (`fae_lease_status`), the
/// value to serve (`fae_lease_item`) and the token to fill with (`fae_lease_token`). Owned by
/// the caller, freed with `fae_lease_free`.
#[allow(non_camel_case_types)]
pub struct fae_lease {
    _private: [u8; 0],
}

opaque_handle!(fae_lease => Lease, OwnershipBox);

/// What a lease read found; `fae_lease_status` returns it. Before C23 the header types it as
/// `uint32_t`, like `fae_result`.
///
/// | status | `fae_lease_item` | `fae_lease_token` | what to do |
/// |---|---|---|---|
/// | `FAE_LEASE_HIT` | the value | 0 | serve it |
/// | `FAE_LEASE_REFRESH` | a stale or nearly expired value | the token | serve it, compute, `fae_client_set_with_lease` |
/// | `FAE_LEASE_STALE` | a stale value | 0 | serve it (another client refreshes it) |
/// | `FAE_LEASE_MISS` | NULL | the token, or 0 | compute, `fae_client_set_with_lease` |
/// | `FAE_LEASE_WAIT` | NULL | 0 | another client is filling: read again shortly |
///
/// cbindgen:prefix-with-name=false
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum fae_lease_kind {
    /// A current value: serve it.
    FaeLeaseHit = 0,
    /// A value to serve that needs refreshing, and this caller won the refresh: it was
    /// invalidated (`fae_client_invalidate`), or has less than `stampede.recache_below_s`
    /// seconds left. Serve it meanwhile, compute the new value and fill with
    /// `fae_client_set_with_lease` and the token.
    FaeLeaseRefresh = 1,
    /// An invalidated value that another client is refreshing: serve it.
    FaeLeaseStale = 2,
    /// A miss, and this caller holds the lease: compute the value and fill with
    /// `fae_client_set_with_lease` and the token. Token 0 means no lease could be had (a
    /// `text`-protocol pool, the in-process `local` cache): the fill is then an `add`.
    FaeLeaseMiss = 3,
    /// A miss that another client is filling: nothing to serve and nothing to fill; read again
    /// in a few milliseconds (or let `fae_client_get_or_set` do the waiting).
    FaeLeaseWait = 4,
}

impl fae_lease_kind {
    fn of(lease: &Lease) -> fae_lease_kind {
        match lease {
            Lease::Hit(_) => Self::FaeLeaseHit,
            Lease::Refresh { .. } => Self::FaeLeaseRefresh,
            Lease::Stale(_) => Self::FaeLeaseStale,
            Lease::Miss { .. } => Self::FaeLeaseMiss,
            Lease::Wait => Self::FaeLeaseWait,
        }
    }
}

// A NULL lease reads as WAIT: nothing to serve, nothing to fill.
impl PanicOrDefault for fae_lease_kind {
    fn value() -> Self {
        Self::FaeLeaseWait
    }
}

impl NullParameterOrDefault for fae_lease_kind {
    fn value() -> Self {
        Self::FaeLeaseWait
    }
}

impl PanicOrDefault for *const fae_item {
    fn value() -> Self {
        std::ptr::null()
    }
}

impl NullParameterOrDefault for *const fae_item {
    fn value() -> Self {
        std::ptr::null()
    }
}

/// Where a compute callback puts its value: `fae_value_sink_set`. Lent by libfae for the
/// duration of the callback only; never freed by the caller.
#[allow(non_camel_case_types)]
pub struct fae_value_sink {
    _private: [u8; 0],
}

/// The value a compute callback gave, if it gave one.
#[derive(Debug, Default)]
pub(crate) struct ValueSink {
    value: Option<(Vec<u8>, u32)>,
}

opaque_handle!(fae_value_sink => ValueSink, OwnershipRef);

/// The compute function of `fae_client_get_or_set`: produce the value of `key` (from the
/// database, say), hand it over with `fae_value_sink_set(sink, data, len, flags)` and return 0;
/// return any other number to report a failure (nothing is stored, and `fae_client_get_or_set`
/// returns `FAE_RESULT_COMPUTE_FAILED` with that number in `fae_last_error_message`). Returning
/// 0 without calling `fae_value_sink_set` is a failure too.
///
/// It runs on the thread that called `fae_client_get_or_set`, before that call returns, and at
/// most once per call. `userdata` is the caller's pointer, passed through untouched; `key` is
/// the caller's own key pointer; `sink` is valid only until the callback returns.
///
/// The callback may call other libfae functions, on the same client too, except
/// `fae_client_free` of that client and `fae_client_get_or_set` of the same key (which would
/// wait for itself). It must return normally: it is called from Rust frames, so it must not
/// `longjmp` out of the callback or let a C++ exception escape it (undefined behaviour). A
/// panic inside a libfae function it calls is caught inside that function (which returns
/// `FAE_RESULT_PANIC`) and never unwinds through the callback.
#[allow(non_camel_case_types)]
pub type fae_compute_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        key: *const u8,
        key_len: usize,
        sink: *mut fae_value_sink,
    ) -> c_int,
>;

/// Read `key` with a lease (meta `mg <key> v f c t N<lease_ttl_s> [R<recache_below_s>]`).
/// On `FAE_RESULT_OK`, `*lease_out` receives a new `fae_lease` whatever was found (all five
/// statuses are answers, not errors): read it with `fae_lease_status`, `fae_lease_item` and
/// `fae_lease_token`, and free it with `fae_lease_free`.
///
/// The first reader of a missing key gets `FAE_LEASE_MISS` and a token: an empty stub is
/// created on the server and lives `stampede.lease_ttl_s` (default 10 s), and later readers
/// get `FAE_LEASE_WAIT` until the holder fills the key with `fae_client_set_with_lease` (or
/// the stub expires). Plain gets see the stub as a miss. After `fae_client_invalidate`, the
/// first reader gets `FAE_LEASE_REFRESH` and the others `FAE_LEASE_STALE`, both with the old
/// value to serve. Lease reads are never coalesced (each caller learns its own role), and
/// leases work across every process and host that shares the servers.
///
/// `fae_client_get_or_set` does this whole dance (including the waiting) for you.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes;
/// `lease_out` must be valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_get_or_lease(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    lease_out: *mut *mut fae_lease,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let key = try_slice_nonnull!(key, key_len);
        let lease_out = try_out_param!(lease_out);
        let lease = try_core!(client.get_or_lease(key));
        box_into_out(lease_out, lease);
        fae_result::Ok
    }
}

/// What the lease read found (`FAE_LEASE_HIT` ... `FAE_LEASE_WAIT`, see `fae_lease_kind`);
/// `FAE_LEASE_WAIT` if `lease` is NULL (nothing to serve, nothing to fill).
///
/// # Safety
/// `lease` must be NULL or a live lease from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_lease_status(lease: *const fae_lease) -> fae_lease_kind {
    ffi_panic_boundary_keep_error! {
        fae_lease_kind::of(try_ref_from_ptr!(lease))
    }
}

/// The value to serve: for `FAE_LEASE_HIT`, `FAE_LEASE_REFRESH` and `FAE_LEASE_STALE` an item
/// read with the `fae_item_*` accessors; NULL for `FAE_LEASE_MISS`, `FAE_LEASE_WAIT` and a NULL
/// `lease`. The item is borrowed from `lease`: valid until `fae_lease_free(lease)`, and never
/// passed to `fae_item_free`.
///
/// # Safety
/// `lease` must be NULL or a live lease from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_lease_item(lease: *const fae_lease) -> *const fae_item {
    ffi_panic_boundary_keep_error! {
        match try_ref_from_ptr!(lease).item() {
            Some(item) => std::ptr::from_ref::<Item>(item).cast::<fae_item>(),
            None => std::ptr::null(),
        }
    }
}

/// The token to pass to `fae_client_set_with_lease`: set for `FAE_LEASE_MISS` and
/// `FAE_LEASE_REFRESH`, 0 for the other statuses and a NULL `lease`. A `FAE_LEASE_MISS` with
/// token 0 means no lease could be had (a `text`-protocol pool, the in-process `local` cache):
/// fill anyway, the fill is then an `add`. Decide whether to fill by the status, not the token.
///
/// # Safety
/// `lease` must be NULL or a live lease from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_lease_token(lease: *const fae_lease) -> u64 {
    ffi_panic_boundary_keep_error! {
        try_ref_from_ptr!(lease).token().unwrap_or(0)
    }
}

/// Free a lease and the item it holds. NULL is accepted. Must not be called twice with the same
/// pointer. Freeing a lease does not release the lease on the server: a `FAE_LEASE_MISS`
/// holder that never fills leaves the stub until `stampede.lease_ttl_s` runs out.
///
/// # Safety
/// `lease` must be NULL or a pointer from `fae_client_get_or_lease` that has not been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_lease_free(lease: *mut fae_lease) {
    ffi_panic_boundary_keep_error! {
        // SAFETY: forwarded contract.
        unsafe { free_box(lease) }
    }
}

/// Fill `key` with the token of `fae_client_get_or_lease` (`fae_lease_token`). The value is
/// stored only if nothing was written to, deleted or invalidated since the lease (meta
/// `ms <key> ... C<token>`); otherwise the newer state wins and nothing is stored. Token 0 ("no
/// lease could be had") stores with `add`, which never overwrites a newer value either.
///
/// On `FAE_RESULT_OK`, `*stored` says whether the value was stored: `false` is an answer, not
/// an error. `value` may be NULL when `value_len` is 0; `exptime` as in `fae_client_set`.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes and
/// `value` for `value_len` bytes; `stored` must be valid for a write of one `bool`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn fae_client_set_with_lease(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    flags: u32,
    exptime: u32,
    token: u64,
    stored: *mut bool,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let key = try_slice_nonnull!(key, key_len);
        let value = try_slice!(value, value_len);
        let stored = try_out_param!(stored);
        *stored = try_core!(client.set_with_lease(key, value, flags, exptime, token));
        fae_result::Ok
    }
}

/// Invalidate `key` instead of deleting it (meta `md <key> I T<stale_ttl>`): the value stays on
/// the server, marked stale, for `stale_ttl` more seconds (0: its current TTL). The next lease
/// reader gets `FAE_LEASE_REFRESH` (serve the old value, refresh it), every other lease reader
/// `FAE_LEASE_STALE` (serve it) until the refresh lands; plain gets see a miss; fills of leases
/// taken before fail. On a `text`-protocol pool this is a plain delete.
///
/// On `FAE_RESULT_OK`, `*found` says whether the key was there.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes; `found`
/// must be valid for a write of one `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_invalidate(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    stale_ttl: u32,
    found: *mut bool,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let key = try_slice_nonnull!(key, key_len);
        let found = try_out_param!(found);
        *found = try_core!(client.invalidate(key, stale_ttl));
        fae_result::Ok
    }
}

/// Hand the computed value to libfae from inside a `fae_compute_callback`: `len` bytes at
/// `data` (copied; NULL is fine when `len` is 0) and the client flags to store with them. A
/// second call replaces the first.
///
/// # Safety
/// `sink` must be NULL or the pointer the running callback received, used before the callback
/// returns; `data` must be readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_value_sink_set(
    sink: *mut fae_value_sink,
    data: *const u8,
    len: usize,
    flags: u32,
) -> fae_result {
    ffi_panic_boundary! {
        let sink = try_mut_from_ptr!(sink);
        let data = try_slice!(data, len);
        #[cfg(test)]
        tests::maybe_panic();
        sink.value = Some((data.to_vec(), flags));
        fae_result::Ok
    }
}

/// Why the callback gave no value (the `E` of the core's `GetOrSetError::Compute`).
#[derive(Debug)]
enum ComputeFailure {
    /// It returned this non-zero number.
    Returned(c_int),
    /// It returned 0 without calling `fae_value_sink_set`.
    NoValue,
}

impl std::fmt::Display for ComputeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Returned(n) => write!(f, "compute_failed: the compute callback returned {n}"),
            Self::NoValue => f.write_str(
                "compute_failed: the compute callback returned 0 without calling \
                 fae_value_sink_set",
            ),
        }
    }
}

/// Read-through with stampede protection: the value of `key`, or the one `compute` makes,
/// stored with `exptime` (as in `fae_client_set`). The value is computed once per expiry
/// across every thread and process that shares the servers:
///
/// - In this process, concurrent callers for the same key share one call: one leads (its
///   `compute` runs), the others block until its value arrives (or, while it refreshes an
///   invalidated value, are served the stale value at once). If the leader's `compute` fails,
///   each of them runs its own.
/// - Across processes, the first to miss wins the lease (`fae_client_get_or_lease`); the
///   others poll (1, 2, 4 ... 50 ms, jittered) until the value lands, for at most
///   `stampede.wait_ms` (default 2000); then they run their own `compute` and return its value
///   without storing it (the lease holder's fill stays authoritative).
/// - A failing cache (a server down) does not fail the call: `compute` runs and its value is
///   returned, not stored.
/// - A delete, set or invalidate between the lease and the fill wins: the fill is refused and
///   the caller still gets its computed value.
///
/// `compute` (see `fae_compute_callback`) runs on this thread only, at most once per call,
/// with `userdata`; it must not `longjmp` or throw.
///
/// On `FAE_RESULT_OK`, `*item_out` receives a new `fae_item` (the cached or the computed value
/// and flags; free it with `fae_item_free`). `FAE_RESULT_COMPUTE_FAILED`: `compute` returned
/// non-zero (or 0 without a value); nothing was stored, `*item_out` is untouched and
/// `fae_last_error_message` gives the number (`compute_failed: the compute callback returned
/// 7`). Caller errors (NULL, invalid key, closed client) are found before any I/O, without
/// calling `compute`.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes;
/// `compute` must be safe to call with `userdata`; `item_out` must be valid for a write of one
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_get_or_set(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    exptime: u32,
    compute: fae_compute_callback,
    userdata: *mut c_void,
    item_out: *mut *mut fae_item,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let key = try_slice_nonnull!(key, key_len);
        let compute = try_callback!(compute);
        let item_out = try_out_param!(item_out);
        // The core calls this closure on this thread, inside this function's panic boundary.
        // The C frames it adds return before any Rust code of ours runs again, so a panic can
        // only meet them if it starts in a libfae function the callback calls, and every one
        // of those catches its own panics.
        let run = || {
            let mut sink = ValueSink::default();
            // SAFETY: the callback is the caller's, called with the caller's `userdata` and key
            // pointer (valid for this whole call) and a sink that outlives the call.
            let rc = unsafe { compute(userdata, key.as_ptr(), key.len(), lend_mut(&mut sink)) };
            match (rc, sink.value) {
                (0, Some(value)) => Ok(value),
                (0, None) => Err(ComputeFailure::NoValue),
                (n, _) => Err(ComputeFailure::Returned(n)),
            }
        };
        match client.get_or_set(key, exptime, run) {
            Ok(item) => {
                // The callback's own libfae calls may have left an error text behind.
                clear_last_error();
                box_into_out(item_out, item);
                fae_result::Ok
            }
            Err(GetOrSetError::Cache(e)) => fail(&e),
            Err(GetOrSetError::Compute(e)) => {
                set_last_error(e.to_string());
                fae_result::ComputeFailed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::ptr;

    use super::*;
    use crate::client::{fae_client_free, fae_client_get, fae_client_new};
    use crate::config::{fae_config_free, fae_config_from_json};
    use crate::item::{fae_item_free, fae_item_value};
    use crate::result::fae_last_error_message;

    thread_local! {
        static PANIC_IN_SINK: Cell<bool> = const { Cell::new(false) };
    }

    /// Lets a test make `fae_value_sink_set` panic while a compute callback is on the stack.
    pub(super) fn maybe_panic() {
        if PANIC_IN_SINK.with(Cell::get) {
            panic!("test panic in fae_value_sink_set");
        }
    }

    /// The embedded in-process cache: no server needed.
    fn embedded() -> *mut fae_client {
        let json = b"{}";
        let mut config = ptr::null_mut();
        let mut client = ptr::null_mut();
        // SAFETY: valid buffers and out-params.
        unsafe {
            assert_eq!(
                fae_config_from_json(json.as_ptr(), json.len(), &mut config),
                fae_result::Ok
            );
            assert_eq!(fae_client_new(config, &mut client), fae_result::Ok);
            fae_config_free(config);
        }
        client
    }

    fn last_error() -> String {
        let mut buf = [0u8; 256];
        let mut n = 0;
        // SAFETY: buf is writable for its length.
        let r = unsafe { fae_last_error_message(buf.as_mut_ptr().cast(), buf.len(), &mut n) };
        assert_eq!(r, fae_result::Ok);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// What a test callback does, and what it saw.
    #[derive(Default)]
    struct Ctx {
        calls: u32,
        ret: c_int,
        value: &'static [u8],
        set: bool,
        sink_result: Option<fae_result>,
    }

    unsafe extern "C" fn compute(
        userdata: *mut c_void,
        _key: *const u8,
        _key_len: usize,
        sink: *mut fae_value_sink,
    ) -> c_int {
        // SAFETY: the tests pass a live `Ctx`.
        let ctx = unsafe { &mut *userdata.cast::<Ctx>() };
        ctx.calls += 1;
        if ctx.set {
            // SAFETY: the sink is live during the callback; value is a static slice.
            let r = unsafe { fae_value_sink_set(sink, ctx.value.as_ptr(), ctx.value.len(), 5) };
            ctx.sink_result = Some(r);
            if r != fae_result::Ok {
                return 99;
            }
        }
        ctx.ret
    }

    fn get_or_set(client: *mut fae_client, key: &[u8], ctx: &mut Ctx) -> (fae_result, Vec<u8>) {
        let mut item = ptr::null_mut();
        // SAFETY: live client, key slice, callback and context; item is an out-param.
        let r = unsafe {
            fae_client_get_or_set(
                client,
                key.as_ptr(),
                key.len(),
                0,
                Some(compute),
                ptr::from_mut(ctx).cast(),
                &mut item,
            )
        };
        let mut value = Vec::new();
        if r == fae_result::Ok {
            let mut n = 0;
            // SAFETY: item is live until freed below.
            unsafe {
                let p = fae_item_value(item, &mut n);
                value.extend_from_slice(std::slice::from_raw_parts(p, n));
                fae_item_free(item);
            }
        } else {
            assert!(item.is_null(), "out-param written on {r:?}");
        }
        (r, value)
    }

    #[test]
    fn get_or_set_computes_once_then_hits() {
        let c = embedded();
        let mut ctx = Ctx {
            value: b"computed",
            set: true,
            ..Ctx::default()
        };
        assert_eq!(
            get_or_set(c, b"k", &mut ctx),
            (fae_result::Ok, b"computed".to_vec())
        );
        assert_eq!(
            get_or_set(c, b"k", &mut ctx),
            (fae_result::Ok, b"computed".to_vec())
        );
        assert_eq!(ctx.calls, 1);
        assert_eq!(last_error(), "");
        // SAFETY: from fae_client_new, freed once.
        unsafe { fae_client_free(c) };
    }

    #[test]
    fn a_failing_callback_stores_nothing() {
        let c = embedded();
        let mut ctx = Ctx {
            ret: -7,
            value: b"no",
            set: true,
            ..Ctx::default()
        };
        assert_eq!(get_or_set(c, b"k", &mut ctx).0, fae_result::ComputeFailed);
        assert_eq!(
            last_error(),
            "compute_failed: the compute callback returned -7"
        );
        let mut ctx = Ctx::default();
        assert_eq!(get_or_set(c, b"k", &mut ctx).0, fae_result::ComputeFailed);
        assert!(last_error().contains("without calling fae_value_sink_set"));
        let mut item = ptr::null_mut();
        // SAFETY: live client and key.
        let r = unsafe { fae_client_get(c, b"k".as_ptr(), 1, &mut item) };
        assert_eq!(r, fae_result::NotFound);
        // SAFETY: from fae_client_new, freed once.
        unsafe { fae_client_free(c) };
    }

    #[test]
    fn a_panic_under_the_callback_is_caught_before_it_reaches_c() {
        let c = embedded();
        let mut ctx = Ctx {
            value: b"v",
            set: true,
            ..Ctx::default()
        };
        PANIC_IN_SINK.with(|p| p.set(true));
        let (r, _) = get_or_set(c, b"k", &mut ctx);
        PANIC_IN_SINK.with(|p| p.set(false));
        assert_eq!(ctx.sink_result, Some(fae_result::Panic));
        assert_eq!(r, fae_result::ComputeFailed);
        assert_eq!(
            last_error(),
            "compute_failed: the compute callback returned 99"
        );
        // The client still works.
        assert_eq!(
            get_or_set(c, b"k", &mut ctx),
            (fae_result::Ok, b"v".to_vec())
        );
        // SAFETY: from fae_client_new, freed once.
        unsafe { fae_client_free(c) };
    }

    #[test]
    fn leases_on_the_embedded_cache_fill_with_add() {
        let c = embedded();
        let key = b"lk";
        let mut lease = ptr::null_mut();
        let mut stored = false;
        // SAFETY: live client, key and out-params; every lease is freed once.
        unsafe {
            assert_eq!(
                fae_client_get_or_lease(c, key.as_ptr(), key.len(), &mut lease),
                fae_result::Ok
            );
            assert_eq!(fae_lease_status(lease), fae_lease_kind::FaeLeaseMiss);
            assert_eq!(fae_lease_token(lease), 0);
            assert!(fae_lease_item(lease).is_null());
            fae_lease_free(lease);
            let r = fae_client_set_with_lease(
                c,
                key.as_ptr(),
                key.len(),
                b"v".as_ptr(),
                1,
                3,
                0,
                0,
                &mut stored,
            );
            assert_eq!(r, fae_result::Ok);
            assert!(stored);
            assert_eq!(
                fae_client_get_or_lease(c, key.as_ptr(), key.len(), &mut lease),
                fae_result::Ok
            );
            assert_eq!(fae_lease_status(lease), fae_lease_kind::FaeLeaseHit);
            let item = fae_lease_item(lease);
            let mut n = 0;
            let p = fae_item_value(item, &mut n);
            assert_eq!(std::slice::from_raw_parts(p, n), b"v");
            fae_lease_free(lease);
            // A second token-0 fill is an add: not stored over the value.
            let r = fae_client_set_with_lease(
                c,
                key.as_ptr(),
                key.len(),
                b"w".as_ptr(),
                1,
                3,
                0,
                0,
                &mut stored,
            );
            assert_eq!(r, fae_result::Ok);
            assert!(!stored);
            // NULL handles.
            assert_eq!(fae_lease_status(ptr::null()), fae_lease_kind::FaeLeaseWait);
            assert!(fae_lease_item(ptr::null()).is_null());
            assert_eq!(fae_lease_token(ptr::null()), 0);
            fae_lease_free(ptr::null_mut());
            assert_eq!(
                fae_value_sink_set(ptr::null_mut(), ptr::null(), 0, 0),
                fae_result::NullParameter
            );
            fae_client_free(c);
        }
    }
}
