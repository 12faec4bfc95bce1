//! `fae_client`: every memcached command, single and multi-key. Thread-safe: share one client
//! per process between all threads.

use std::ffi::{CStr, c_char, c_void};

use fae_core::{Client, Error, Item, Op, Reason, SetItem, StoreOutcome, protocol::StoreOp};

use crate::config::fae_config;
use crate::ffi::{
    OwnershipArc, arc_into_out, box_into_out, free_arc, opaque_handle, try_callback, try_out_param,
    try_ref_from_ptr, try_slice, try_slice_nonnull, write_text_reporting,
};
use crate::item::fae_item;
use crate::panic::{ffi_panic_boundary, ffi_panic_boundary_keep_error};
use crate::result::{fae_result, fail, store_outcome, try_core};

/// A memcached client: placement, pooled connections, health. Thread-safe: every function
/// taking a `const fae_client *` may be called from many threads at once. Free with
/// `fae_client_free` once no thread uses it.
#[allow(non_camel_case_types)]
pub struct fae_client {
    _private: [u8; 0],
}

opaque_handle!(fae_client => Client, OwnershipArc);

/// Called by `fae_client_get_multi` once per hit, in key order, on the calling thread.
///
/// `index` is the key's position in the caller's arrays; `key` is the caller's own key
/// pointer. `value` is borrowed from libfae and valid only until the callback returns: copy
/// what you keep. The callback must not call `fae_client_free` on the client in use, and must
/// not unwind (C++ exceptions, `longjmp`) through libfae.
#[allow(non_camel_case_types)]
pub type fae_hit_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        index: usize,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        flags: u32,
        cas: u64,
    ),
>;

/// One item of `fae_client_set_multi`. `value` may be NULL when `value_len` is 0.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fae_set_item {
    /// The key (`key_len` bytes).
    pub key: *const u8,
    /// Length of the key.
    pub key_len: usize,
    /// The value (`value_len` bytes).
    pub value: *const u8,
    /// Length of the value.
    pub value_len: usize,
    /// Client flags stored with the value.
    pub flags: u32,
    /// Expiry: 0 = never, up to 30 days = seconds from now, larger = unix time.
    pub exptime: u32,
}

/// Build a client from a configuration. Dials nothing: connections are made on first use.
/// `config` may be freed right after this call.
///
/// On success `*client_out` receives a new client; free it with `fae_client_free`.
///
/// # Safety
/// `config` must be NULL or a live `fae_config`; `client_out` must be valid for a write of one
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_new(
    config: *const fae_config,
    client_out: *mut *mut fae_client,
) -> fae_result {
    ffi_panic_boundary! {
        let config = try_ref_from_ptr!(config);
        let client_out = try_out_param!(client_out);
        let client = try_core!(Client::new(config));
        arc_into_out(client_out, client);
        fae_result::Ok
    }
}

/// Replace the client's configuration atomically: requests in flight finish on the old one;
/// servers whose address and settings are unchanged keep their warm connections and breaker
/// state. A config that cannot be applied returns its error (detail in
/// `fae_last_error_message`) and the old configuration stays in force. The client does not
/// keep `config`; free it as usual. Thread-safe.
///
/// # Safety
/// `client` and `config` must be NULL or live handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_reload(
    client: *const fae_client,
    config: *const fae_config,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let config = try_ref_from_ptr!(config);
        try_core!(client.reload(config));
        fae_result::Ok
    }
}

/// Close the client gracefully: later calls fail with `FAE_RESULT_CLIENT_CLOSED` at once;
/// requests already running may finish (for at most twice the io timeout), then every
/// connection is closed. The handle stays valid until `fae_client_free`.
///
/// # Safety
/// `client` must be NULL or a live `fae_client`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_close(client: *const fae_client) -> fae_result {
    ffi_panic_boundary! {
        try_ref_from_ptr!(client).close();
        fae_result::Ok
    }
}

/// Free a client and close its connections. NULL is accepted. Call it once, after every
/// thread is done with the client; must not be called twice with the same pointer.
///
/// # Safety
/// `client` must be NULL or a pointer from `fae_client_new` that has not been freed, and no
/// other thread may be using it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_free(client: *const fae_client) {
    ffi_panic_boundary_keep_error! {
        // SAFETY: forwarded contract.
        unsafe { free_arc(client) }
    }
}

/// Shared body of get/gets/gat/gats.
///
/// # Safety
/// As the exported get functions.
unsafe fn fetch(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    item_out: *mut *mut fae_item,
    f: impl FnOnce(&Client, &[u8]) -> fae_core::Result<Option<Item>>,
) -> fae_result {
    let client = try_ref_from_ptr!(client);
    let key = try_slice_nonnull!(key, key_len);
    let item_out = try_out_param!(item_out);
    match try_core!(f(client, key)) {
        Some(item) => {
            box_into_out(item_out, item);
            fae_result::Ok
        }
        None => fae_result::NotFound,
    }
}

/// Get a key. A hit gives `FAE_RESULT_OK` and a new `fae_item` in `*item_out` (free it with
/// `fae_item_free`); a miss gives `FAE_RESULT_NOT_FOUND` and leaves `*item_out` untouched.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes;
/// `item_out` must be valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_get(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    item_out: *mut *mut fae_item,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { fetch(client, key, key_len, item_out, |c, k| c.get(k)) }
    }
}

/// As `fae_client_get`, and the item's CAS token is filled (`fae_item_cas`).
///
/// # Safety
/// As `fae_client_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_gets(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    item_out: *mut *mut fae_item,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { fetch(client, key, key_len, item_out, |c, k| c.gets(k)) }
    }
}

/// Get and touch: as `fae_client_get`, and a hit's expiry becomes `exptime`.
///
/// # Safety
/// As `fae_client_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_gat(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    exptime: u32,
    item_out: *mut *mut fae_item,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { fetch(client, key, key_len, item_out, |c, k| c.gat(k, exptime)) }
    }
}

/// As `fae_client_gat`, and the item's CAS token is filled.
///
/// # Safety
/// As `fae_client_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_gats(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    exptime: u32,
    item_out: *mut *mut fae_item,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { fetch(client, key, key_len, item_out, |c, k| c.gats(k, exptime)) }
    }
}

/// Shared body of the storage commands.
///
/// # Safety
/// As the exported storage functions.
#[allow(clippy::too_many_arguments)]
unsafe fn store(
    client: *const fae_client,
    op: StoreOp,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    flags: u32,
    exptime: u32,
) -> fae_result {
    let client = try_ref_from_ptr!(client);
    let key = try_slice_nonnull!(key, key_len);
    let value = try_slice!(value, value_len);
    store_outcome(try_core!(client.store(op, key, value, flags, exptime)))
}

/// Store a value unconditionally. `exptime`: 0 = never, up to 30 days = seconds from now,
/// larger = unix time. `value` may be NULL when `value_len` is 0.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes and
/// `value` for `value_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_set(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    flags: u32,
    exptime: u32,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { store(client, StoreOp::Set, key, key_len, value, value_len, flags, exptime) }
    }
}

/// Store only if the key is absent: `FAE_RESULT_OK`, or `FAE_RESULT_NOT_STORED` if it exists.
///
/// # Safety
/// As `fae_client_set`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_add(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    flags: u32,
    exptime: u32,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { store(client, StoreOp::Add, key, key_len, value, value_len, flags, exptime) }
    }
}

/// Store only if the key exists: `FAE_RESULT_OK`, or `FAE_RESULT_NOT_STORED` if it is missing.
///
/// # Safety
/// As `fae_client_set`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_replace(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    flags: u32,
    exptime: u32,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { store(client, StoreOp::Replace, key, key_len, value, value_len, flags, exptime) }
    }
}

/// Append bytes to an existing value (its flags and expiry are kept): `FAE_RESULT_OK`, or
/// `FAE_RESULT_NOT_STORED` if the key is missing.
///
/// # Safety
/// As `fae_client_set`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_append(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { store(client, StoreOp::Append, key, key_len, value, value_len, 0, 0) }
    }
}

/// Prepend bytes to an existing value: `FAE_RESULT_OK`, or `FAE_RESULT_NOT_STORED` if the key
/// is missing.
///
/// # Safety
/// As `fae_client_set`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_prepend(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { store(client, StoreOp::Prepend, key, key_len, value, value_len, 0, 0) }
    }
}

/// Compare and swap: store only if the item's CAS token is still `cas` (from `fae_item_cas`
/// after `fae_client_gets`). `FAE_RESULT_OK` stored; `FAE_RESULT_EXISTS` the item changed
/// since; `FAE_RESULT_NOT_FOUND` it is gone; `FAE_RESULT_NOT_STORED` if the server refused.
///
/// # Safety
/// As `fae_client_set`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn fae_client_cas(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    flags: u32,
    exptime: u32,
    cas: u64,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { store(client, StoreOp::Cas(cas), key, key_len, value, value_len, flags, exptime) }
    }
}

/// Delete a key: `FAE_RESULT_OK`, or `FAE_RESULT_NOT_FOUND` if it was not there.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_delete(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let key = try_slice_nonnull!(key, key_len);
        if try_core!(client.delete(key)) {
            fae_result::Ok
        } else {
            fae_result::NotFound
        }
    }
}

/// Set a key's expiry: `FAE_RESULT_OK`, or `FAE_RESULT_NOT_FOUND` if the key is missing.
///
/// # Safety
/// As `fae_client_delete`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_touch(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    exptime: u32,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let key = try_slice_nonnull!(key, key_len);
        if try_core!(client.touch(key, exptime)) {
            fae_result::Ok
        } else {
            fae_result::NotFound
        }
    }
}

/// Shared body of incr/decr.
///
/// # Safety
/// As the exported functions.
unsafe fn arith(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    value_out: *mut u64,
    f: impl FnOnce(&Client, &[u8]) -> fae_core::Result<Option<u64>>,
) -> fae_result {
    let client = try_ref_from_ptr!(client);
    let key = try_slice_nonnull!(key, key_len);
    let value_out = try_out_param!(value_out);
    match try_core!(f(client, key)) {
        Some(v) => {
            *value_out = v;
            fae_result::Ok
        }
        None => fae_result::NotFound,
    }
}

/// Increment a decimal value by `delta` (wrapping at 2^64); the new value goes to
/// `*value_out`. `FAE_RESULT_NOT_FOUND` (and `*value_out` untouched) if the key is missing;
/// memcached does not create it. A value that is not a decimal number gives
/// `FAE_RESULT_SERVER_ERROR`.
///
/// # Safety
/// `client` must be NULL or a live client; `key` must be readable for `key_len` bytes;
/// `value_out` must be valid for a write of one `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_incr(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    delta: u64,
    value_out: *mut u64,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { arith(client, key, key_len, value_out, |c, k| c.incr(k, delta)) }
    }
}

/// Decrement a decimal value by `delta` (stopping at 0); otherwise as `fae_client_incr`.
///
/// # Safety
/// As `fae_client_incr`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_decr(
    client: *const fae_client,
    key: *const u8,
    key_len: usize,
    delta: u64,
    value_out: *mut u64,
) -> fae_result {
    ffi_panic_boundary! {
        // SAFETY: forwarded contract.
        unsafe { arith(client, key, key_len, value_out, |c, k| c.decr(k, delta)) }
    }
}

/// `flush_all` on every server, taking effect after `delay` seconds (0 = now). Every server is
/// asked; the first failure is returned.
///
/// # Safety
/// `client` must be NULL or a live client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_flush_all(client: *const fae_client, delay: u32) -> fae_result {
    ffi_panic_boundary! {
        try_core!(try_ref_from_ptr!(client).flush_all(delay));
        fae_result::Ok
    }
}

/// Borrow `n` keys from C's parallel arrays.
///
/// # Safety
/// `keys` and `key_lens` must be NULL or readable for `n` elements, and each `keys[i]` NULL or
/// readable for `key_lens[i]` bytes.
unsafe fn borrow_keys<'a>(
    keys: *const *const u8,
    key_lens: *const usize,
    n: usize,
) -> Result<Vec<&'a [u8]>, fae_result> {
    // SAFETY: forwarded contract.
    let ptrs = unsafe { crate::ffi::slice_from(keys, n) }
        .ok_or_else(|| crate::ffi::null_parameter::<fae_result>("keys"))?;
    // SAFETY: forwarded contract.
    let lens = unsafe { crate::ffi::slice_from(key_lens, n) }
        .ok_or_else(|| crate::ffi::null_parameter::<fae_result>("key_lens"))?;
    ptrs.iter()
        .zip(lens)
        .enumerate()
        .map(|(i, (&p, &len))| {
            // SAFETY: forwarded contract.
            unsafe { crate::ffi::slice_from_nonnull(p, len) }.ok_or_else(|| {
                crate::result::set_last_error(format!("keys[{i}] is NULL"));
                fae_result::NullParameter
            })
        })
        .collect()
}

/// Borrow the optional `results_out` array.
///
/// # Safety
/// `results_out` must be NULL or valid for writes of `n` elements.
unsafe fn results_array<'a>(
    results_out: *mut fae_result,
    n: usize,
) -> Option<&'a mut [fae_result]> {
    if results_out.is_null() {
        return None;
    }
    // SAFETY: non-NULL and writable for n elements per the contract.
    Some(unsafe { std::slice::from_raw_parts_mut(results_out, n) })
}

/// Turn per-key results into codes; return the first error code (or OK) and keep its text as
/// the last error message.
fn per_key_codes<T>(
    results: &[fae_core::Result<T>],
    code: impl Fn(&T) -> fae_result,
    out: Option<&mut [fae_result]>,
) -> fae_result {
    let mut first: Option<&Error> = None;
    let codes = results.iter().map(|r| match r {
        Ok(v) => code(v),
        Err(e) => {
            first.get_or_insert(e);
            crate::result::map_error(e)
        }
    });
    match out {
        Some(out) => out.iter_mut().zip(codes).for_each(|(o, c)| *o = c),
        None => codes.for_each(drop),
    }
    first.map_or(fae_result::Ok, fail)
}

/// Get `n` keys at once: keys are grouped by server and every server is asked in parallel,
/// under one deadline. `keys[i]` holds `key_lens[i]` bytes.
///
/// `callback` is called once per hit, in key order, on this thread, with `userdata` and
/// borrowed pointers valid only during the call (see `fae_hit_callback`); CAS tokens are always
/// filled. Misses are not reported through the callback.
///
/// `results_out` is optional (NULL to ignore): an array of `n` codes, filled once the servers
/// were asked: `FAE_RESULT_OK` hit, `FAE_RESULT_NOT_FOUND` miss, or the error of that key's
/// server (a slow or dead server fails only its own keys).
///
/// Returns `FAE_RESULT_OK` if every key was answered (hit or miss), or the code of the first
/// key (in key order) whose server failed, with its text in `fae_last_error_message`; hits from
/// the other servers were still delivered. A caller error (NULL pointer, invalid key, closed
/// client) returns before any I/O: no callback, `results_out` untouched. `n == 0` is OK.
///
/// # Safety
/// `client` must be NULL or a live client; `keys` and `key_lens` must be readable for `n`
/// elements (NULL is fine when `n` is 0), each `keys[i]` readable for `key_lens[i]` bytes;
/// `results_out` must be NULL or writable for `n` elements; `callback` must be safe to call
/// with `userdata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_get_multi(
    client: *const fae_client,
    keys: *const *const u8,
    key_lens: *const usize,
    n: usize,
    callback: fae_hit_callback,
    userdata: *mut c_void,
    results_out: *mut fae_result,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let callback = try_callback!(callback);
        // SAFETY: forwarded contract.
        let keys = match unsafe { borrow_keys(keys, key_lens, n) } {
            Ok(k) => k,
            Err(code) => return code,
        };
        // SAFETY: forwarded contract.
        let out = unsafe { results_array(results_out, n) };
        let results = try_core!(client.get_multi_opts(&keys, true, None));
        let ret = per_key_codes(
            &results,
            |hit| if hit.is_some() { fae_result::Ok } else { fae_result::NotFound },
            out,
        );
        for (i, (key, r)) in keys.iter().zip(&results).enumerate() {
            if let Ok(Some(item)) = r {
                // SAFETY: the callback is the caller's; it gets the caller's own key pointer
                // and a pointer into `item`, which lives until after the call returns.
                unsafe {
                    callback(
                        userdata,
                        i,
                        key.as_ptr(),
                        key.len(),
                        item.value.as_ptr(),
                        item.value.len(),
                        item.flags,
                        item.cas,
                    );
                }
            }
        }
        ret
    }
}

/// Store `n` items at once (`set`), pipelined per server, all servers in parallel.
///
/// `results_out` is optional (NULL to ignore): `n` codes, `FAE_RESULT_OK` when stored, else
/// the outcome or that item's server error. Returns `FAE_RESULT_OK` if no item failed with an
/// error, else the first item's error code (its text in `fae_last_error_message`). Caller
/// errors (NULL, invalid key, value too large, closed client) are found before any I/O: nothing
/// is stored and `results_out` is untouched.
///
/// # Safety
/// `client` must be NULL or a live client; `items` must be readable for `n` elements (NULL is
/// fine when `n` is 0), each with readable `key`/`value` bytes; `results_out` must be NULL or
/// writable for `n` elements.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_set_multi(
    client: *const fae_client,
    items: *const fae_set_item,
    n: usize,
    results_out: *mut fae_result,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let raw = try_slice!(items, n);
        let mut items = Vec::with_capacity(n);
        for (i, it) in raw.iter().enumerate() {
            // SAFETY: forwarded contract.
            let key = unsafe { crate::ffi::slice_from_nonnull(it.key, it.key_len) };
            // SAFETY: forwarded contract.
            let value = unsafe { crate::ffi::slice_from(it.value, it.value_len) };
            let (Some(key), Some(value)) = (key, value) else {
                let which = if key.is_none() { "key" } else { "value" };
                crate::result::set_last_error(format!("items[{i}].{which} is NULL"));
                return fae_result::NullParameter;
            };
            items.push(SetItem { key, value, flags: it.flags, exptime: it.exptime });
        }
        // SAFETY: forwarded contract.
        let out = unsafe { results_array(results_out, n) };
        let results = try_core!(client.set_multi(&items));
        per_key_codes(&results, |o: &StoreOutcome| store_outcome(*o), out)
    }
}

/// Delete `n` keys at once, pipelined per server, all servers in parallel.
///
/// `results_out` is optional: `n` codes, `FAE_RESULT_OK` deleted, `FAE_RESULT_NOT_FOUND` was
/// not there, or that key's server error. Return value and caller errors as in
/// `fae_client_set_multi`.
///
/// # Safety
/// As `fae_client_get_multi` (without the callback).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_delete_multi(
    client: *const fae_client,
    keys: *const *const u8,
    key_lens: *const usize,
    n: usize,
    results_out: *mut fae_result,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        // SAFETY: forwarded contract.
        let keys = match unsafe { borrow_keys(keys, key_lens, n) } {
            Ok(k) => k,
            Err(code) => return code,
        };
        // SAFETY: forwarded contract.
        let out = unsafe { results_array(results_out, n) };
        let results = try_core!(client.delete_multi(&keys));
        per_key_codes(
            &results,
            |&deleted| if deleted { fae_result::Ok } else { fae_result::NotFound },
            out,
        )
    }
}

/// Check and borrow a text output buffer: `buf` may be NULL only when `len` is 0.
macro_rules! text_out {
    ($buf:ident, $len:ident, $out_n:ident) => {{
        if $buf.is_null() && $len != 0 {
            return $crate::ffi::null_parameter(stringify!($buf));
        }
        try_out_param!($out_n)
    }};
}

/// Write every destination a request `op` (`"get"`, `"set"`, `"delete"`, `"incr"`, `"touch"`,
/// ...) for `key` could touch, without any I/O: comma-separated, each once, in route order, not
/// NUL-terminated; `host:port` per server and `local` for an in-process cache. With a route
/// tree in the config there may be several: every child of a failover
/// (`10.0.0.1:11211,10.0.0.9:11211` for a pool with a gutter), the shadow of a shadowed key,
/// every replica, `local` then the servers for a near cache. `*out_n` receives the length.
///
/// If `len` is too small: `FAE_RESULT_INSUFFICIENT_SIZE`, `buf` untouched and `*out_n` = the
/// length needed (pass `NULL, 0` to ask). An unknown `op` gives `FAE_RESULT_INVALID_ARGUMENT`.
///
/// # Safety
/// `client` must be NULL or a live client; `op` a NUL-terminated string; `key` readable for
/// `key_len` bytes; `buf` NULL (with `len` 0) or writable for `len` bytes; `out_n` writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn fae_client_route_for(
    client: *const fae_client,
    op: *const c_char,
    key: *const u8,
    key_len: usize,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> fae_result {
    // SAFETY: forwarded contract.
    unsafe {
        op_key_text(client, op, key, key_len, buf, len, out_n, |c, op, key| {
            Ok(c.route_for(op, key)?.join(","))
        })
    }
}

/// The body of `fae_client_route_for` and `fae_client_bucket_for`: check the handles, parse
/// `op`, and write what `text` says of the key under the buffer rules.
///
/// # Safety
/// As `fae_client_route_for`.
#[allow(clippy::too_many_arguments)]
unsafe fn op_key_text(
    client: *const fae_client,
    op: *const c_char,
    key: *const u8,
    key_len: usize,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    text: impl FnOnce(&Client, Op, &[u8]) -> fae_core::Result<String>,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        if op.is_null() {
            return crate::ffi::null_parameter("op");
        }
        let key = try_slice_nonnull!(key, key_len);
        let out_n = text_out!(buf, len, out_n);
        // SAFETY: non-NULL and NUL-terminated per the contract.
        let op = match parse_op(unsafe { CStr::from_ptr(op) }) {
            Ok(op) => op,
            Err(rc) => return rc,
        };
        let text = try_core!(text(client, op, key));
        // SAFETY: buf is writable for len bytes (checked non-NULL unless len == 0).
        unsafe { write_text_reporting(&text, buf, len, out_n) }
    }
}

/// An operation's name (`get`, `set`, …) as an [`Op`], or the failure already recorded.
fn parse_op(op: &CStr) -> Result<Op, fae_result> {
    let op_bytes = op.to_bytes();
    std::str::from_utf8(op_bytes)
        .ok()
        .and_then(Op::from_name)
        .ok_or_else(|| {
            fail(&Error::with_detail(
                Reason::InvalidArgument,
                format!(
                    "unknown operation \"{}\"; expected get, gets, gat, gats, set, add, \
                     replace, append, prepend, cas, delete, incr, decr or touch",
                    String::from_utf8_lossy(op_bytes)
                ),
            ))
        })
}

/// Write where a request of `op` for `key` goes in every pool placed by virtual buckets
/// (config `buckets`): `pool/bucket@version`, `;`-joined, a bucket on the move followed by
/// ` phase:from->to` (server indexes), e.g. `main/17@7 dual_write:0->2`; nothing (`*out_n` =
/// 0) when the request reaches no such pool. Not NUL-terminated; buffer rules and `op` names
/// as `fae_client_route_for`.
///
/// # Safety
/// As `fae_client_route_for`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn fae_client_bucket_for(
    client: *const fae_client,
    op: *const c_char,
    key: *const u8,
    key_len: usize,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> fae_result {
    // SAFETY: forwarded contract.
    unsafe {
        op_key_text(client, op, key, key_len, buf, len, out_n, |c, op, key| {
            c.bucket_text(op, key)
        })
    }
}

/// Write every server's address (`host:port`, comma-separated, config order, not
/// NUL-terminated). Buffer rules as `fae_client_route_for`.
///
/// # Safety
/// `client` must be NULL or a live client; `buf` NULL (with `len` 0) or writable for `len`
/// bytes; `out_n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_servers(
    client: *const fae_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let out_n = text_out!(buf, len, out_n);
        let text = client.servers().join(",");
        // SAFETY: buf is writable for len bytes (checked non-NULL unless len == 0).
        unsafe { write_text_reporting(&text, buf, len, out_n) }
    }
}

/// Ask every server for its version and write `host:port=version` entries (comma-separated,
/// config order, not NUL-terminated). If any server fails, its error is returned and nothing
/// is written. Buffer rules as `fae_client_route_for`.
///
/// # Safety
/// As `fae_client_servers`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_version(
    client: *const fae_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let out_n = text_out!(buf, len, out_n);
        let mut parts = Vec::new();
        for (addr, v) in try_core!(client.version()) {
            parts.push(format!("{addr}={}", try_core!(v)));
        }
        // SAFETY: buf is writable for len bytes (checked non-NULL unless len == 0).
        unsafe { write_text_reporting(&parts.join(","), buf, len, out_n) }
    }
}

/// Write a JSON snapshot of the client's health and counters (not NUL-terminated): per
/// destination its breaker `state` (`closed`/`open`/`half_open`), `requests`, `errors` by
/// reason, breaker transitions, probes, heartbeats and connection counts; per pool the number
/// of breakers not closed; under `routes` the route tree's counters by config path
/// (`{"route": {"type": "failover", "failovers": n, ...}, "route.children[1]": ...}`); whether
/// the supervisor runs. The snapshot grows with the number of servers, so ask for its size
/// first (`NULL, 0`). Buffer rules as `fae_client_route_for`.
///
/// # Safety
/// As `fae_client_servers`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_client_stats_json(
    client: *const fae_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> fae_result {
    ffi_panic_boundary! {
        let client = try_ref_from_ptr!(client);
        let out_n = text_out!(buf, len, out_n);
        let text = client.stats().to_string();
        // SAFETY: buf is writable for len bytes (checked non-NULL unless len == 0).
        unsafe { write_text_reporting(&text, buf, len, out_n) }
    }
}
