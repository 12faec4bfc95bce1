//! `fae_config`: a parsed, validated configuration. Immutable and reference-counted: build one,
//! make any number of clients from it, free it whenever you like (a client keeps what it needs).

use std::ffi::{CStr, c_char};

use fae_core::{Config, Error, Reason};

use crate::ffi::{OwnershipArc, arc_into_out, free_arc, opaque_handle, try_out_param, try_slice};
use crate::panic::{ffi_panic_boundary, ffi_panic_boundary_keep_error};
use crate::result::{fae_result, try_core};

/// A validated configuration (the JSON/TOML schema of DESIGN.md). Immutable; safe to share
/// between threads. Free with `fae_config_free`.
#[allow(non_camel_case_types)]
pub struct fae_config {
    _private: [u8; 0],
}

opaque_handle!(fae_config => Config, OwnershipArc);

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Error> {
    std::str::from_utf8(bytes)
        .map_err(|e| Error::with_detail(Reason::InvalidConfig, format!("{what} is not UTF-8: {e}")))
}

/// Parse a JSON configuration (`json_len` bytes, UTF-8, no NUL needed), for example
/// `{"servers": ["127.0.0.1:11211", "127.0.0.1:11212"]}`. A config may carry a route tree
/// over named pools, nested freely (failover, gutter, replicated, shadow, warm_up, prefix,
/// operation, migrate, local, negative), and a `stampede` section (leases, `get_or_set`):
/// `{"pools": {"main": {"servers": ["10.0.0.1:11211"]}, "gutter": {"servers": ["10.0.0.9:11211"]}},
///   "route": {"type": "failover", "children": ["main", {"type": "gutter", "pool": "gutter", "max_ttl": 10}]}}`.
/// A config with no servers and no pools (`{}`) is the embedded in-process cache (a `local`
/// route): every command answered from this process's memory, no server needed.
///
/// On success `*config_out` receives a new `fae_config` that the caller frees with
/// `fae_config_free`. On failure (`FAE_RESULT_INVALID_CONFIG`) `*config_out` is untouched and
/// `fae_last_error_message` names the offending key's path (`pools.main.severs: unknown field`).
///
/// # Safety
/// `json` must be valid for reads of `json_len` bytes; `config_out` must be valid for a write
/// of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_config_from_json(
    json: *const u8,
    json_len: usize,
    config_out: *mut *mut fae_config,
) -> fae_result {
    ffi_panic_boundary! {
        let json = try_slice!(json, json_len);
        let config_out = try_out_param!(config_out);
        let text = try_core!(utf8(json, "the JSON text"));
        let config = try_core!(Config::from_json(text));
        arc_into_out(config_out, config);
        fae_result::Ok
    }
}

/// Parse a TOML configuration; otherwise as `fae_config_from_json`.
///
/// # Safety
/// `toml` must be valid for reads of `toml_len` bytes; `config_out` must be valid for a write
/// of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_config_from_toml(
    toml: *const u8,
    toml_len: usize,
    config_out: *mut *mut fae_config,
) -> fae_result {
    ffi_panic_boundary! {
        let toml = try_slice!(toml, toml_len);
        let config_out = try_out_param!(config_out);
        let text = try_core!(utf8(toml, "the TOML text"));
        let config = try_core!(Config::from_toml(text));
        arc_into_out(config_out, config);
        fae_result::Ok
    }
}

/// Read a configuration file: TOML if the name ends in `.toml`, JSON otherwise. `path` is a
/// NUL-terminated file name (any bytes the OS accepts).
///
/// On success `*config_out` receives a new `fae_config` (free it with `fae_config_free`). An
/// unreadable or invalid file gives `FAE_RESULT_INVALID_CONFIG`, `*config_out` untouched, and
/// `fae_last_error_message` says why.
///
/// # Safety
/// `path` must be a valid NUL-terminated string; `config_out` must be valid for a write of one
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_config_from_file(
    path: *const c_char,
    config_out: *mut *mut fae_config,
) -> fae_result {
    ffi_panic_boundary! {
        if path.is_null() {
            return crate::ffi::null_parameter("path");
        }
        let config_out = try_out_param!(config_out);
        // SAFETY: non-NULL and NUL-terminated per the contract.
        let path = unsafe { CStr::from_ptr(path) };
        let path = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            path.to_bytes(),
        ));
        let config = try_core!(Config::from_file(path));
        arc_into_out(config_out, config);
        fae_result::Ok
    }
}

/// Free a configuration. Clients built from it are not affected. NULL is accepted. Must not be
/// called twice with the same pointer.
///
/// # Safety
/// `config` must be NULL or a pointer from `fae_config_from_*` that has not been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_config_free(config: *const fae_config) {
    ffi_panic_boundary_keep_error! {
        // SAFETY: forwarded contract.
        unsafe { free_arc(config) }
    }
}
