//! The baseline: libmemcached 1.x (`libmemcached-dev`) through a minimal FFI.
//!
//! Only the functions the benchmark calls are declared; their signatures are copied from
//! `/usr/include/libmemcached-1.0/{memcached,server,behavior,storage,get,result,strerror,version}.h`
//! (libmemcached-awesome 1.1.x). C enums are passed as `c_int`.

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr::{self, NonNull};

use crate::subject::{Hits, Subject};

/// `memcached_st` (opaque here).
#[repr(C)]
struct MemcachedSt {
    _private: [u8; 0],
}

/// `memcached_result_st` (opaque here).
#[repr(C)]
struct ResultSt {
    _private: [u8; 0],
}

/// Caller-owned room for one `memcached_result_st`, as php-memcached keeps one on its stack.
///
/// It cannot be allocated by `memcached_result_create(st, NULL)`: `memcached_fetch_result`
/// frees an allocated result when the fetch loop ends. `sizeof(memcached_result_st)` is 352
/// (alignment 8) on x86-64 with libmemcached 1.1 (`struct/result.h`: a 251-byte key buffer plus
/// a handful of words); 1024 bytes leaves room for other builds.
#[repr(C, align(16))]
struct ResultStorage([u8; 1024]);

impl std::fmt::Debug for ResultStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultStorage")
    }
}

/// `memcached_instance_st` (opaque here).
#[repr(C)]
struct InstanceSt {
    _private: [u8; 0],
}

/// `memcached_return_t`.
type Return = c_int;

const MEMCACHED_SUCCESS: Return = 0;
const MEMCACHED_NOTFOUND: Return = 16;
const MEMCACHED_END: Return = 21;

/// `memcached_behavior_t` values (`types/behavior.h`, client-anchors §2).
const BEHAVIOR_NO_BLOCK: c_int = 0;
const BEHAVIOR_TCP_NODELAY: c_int = 1;
const BEHAVIOR_KETAMA_WEIGHTED: c_int = 16;
const BEHAVIOR_BINARY_PROTOCOL: c_int = 18;
const BEHAVIOR_POLL_TIMEOUT: c_int = 8;
const BEHAVIOR_CONNECT_TIMEOUT: c_int = 14;
const BEHAVIOR_RETRY_TIMEOUT: c_int = 15;
const BEHAVIOR_SND_TIMEOUT: c_int = 19;
const BEHAVIOR_RCV_TIMEOUT: c_int = 20;
const BEHAVIOR_SERVER_FAILURE_LIMIT: c_int = 21;
const BEHAVIOR_REMOVE_FAILED_SERVERS: c_int = 35;
const BEHAVIOR_DEAD_TIMEOUT: c_int = 36;

#[link(name = "memcached")]
unsafe extern "C" {
    fn memcached_create(ptr: *mut MemcachedSt) -> *mut MemcachedSt;
    fn memcached_free(ptr: *mut MemcachedSt);
    fn memcached_server_add(ptr: *mut MemcachedSt, hostname: *const c_char, port: u16) -> Return;
    fn memcached_behavior_set(ptr: *mut MemcachedSt, flag: c_int, data: u64) -> Return;
    fn memcached_set(
        ptr: *mut MemcachedSt,
        key: *const c_char,
        key_length: usize,
        value: *const c_char,
        value_length: usize,
        expiration: libc::time_t,
        flags: u32,
    ) -> Return;
    fn memcached_get(
        ptr: *mut MemcachedSt,
        key: *const c_char,
        key_length: usize,
        value_length: *mut usize,
        flags: *mut u32,
        error: *mut Return,
    ) -> *mut c_char;
    fn memcached_mget(
        ptr: *mut MemcachedSt,
        keys: *const *const c_char,
        key_length: *const usize,
        number_of_keys: usize,
    ) -> Return;
    fn memcached_fetch_result(
        ptr: *mut MemcachedSt,
        result: *mut ResultSt,
        error: *mut Return,
    ) -> *mut ResultSt;
    fn memcached_result_create(ptr: *const MemcachedSt, result: *mut ResultSt) -> *mut ResultSt;
    fn memcached_result_free(result: *mut ResultSt);
    fn memcached_result_key_value(result: *const ResultSt) -> *const c_char;
    fn memcached_result_key_length(result: *const ResultSt) -> usize;
    fn memcached_result_value(result: *const ResultSt) -> *const c_char;
    fn memcached_result_length(result: *const ResultSt) -> usize;
    fn memcached_server_by_key(
        ptr: *mut MemcachedSt,
        key: *const c_char,
        key_length: usize,
        error: *mut Return,
    ) -> *const InstanceSt;
    fn memcached_server_name(instance: *const InstanceSt) -> *const c_char;
    fn memcached_server_port(instance: *const InstanceSt) -> u16;
    fn memcached_strerror(ptr: *const MemcachedSt, rc: Return) -> *const c_char;
    fn memcached_lib_version() -> *const c_char;
}

/// libmemcached's own version string (`memcached_lib_version`).
pub fn lib_version() -> String {
    // SAFETY: takes no arguments and returns a pointer to a static NUL-terminated string.
    let p = unsafe { memcached_lib_version() };
    if p.is_null() {
        return "unknown".into();
    }
    // SAFETY: `p` is non-null and points to a static C string owned by the library.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A value `memcached_get` returned: a `malloc`ed buffer, freed with `libc::free` on drop.
#[derive(Debug)]
pub struct MallocBuf {
    ptr: NonNull<c_char>,
    len: usize,
}

impl AsRef<[u8]> for MallocBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` is the buffer memcached_get returned with `len` readable bytes, owned
        // by this value until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for MallocBuf {
    fn drop(&mut self) {
        // SAFETY: libmemcached allocates returned values with the default allocator (malloc);
        // the buffer is freed exactly once, here.
        unsafe { libc::free(self.ptr.as_ptr().cast()) };
    }
}

/// How the baseline is configured: php-memcached's default blocking mode or `NO_BLOCK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// `NO_BLOCK=0` (php-memcached's default).
    Blocking,
    /// `NO_BLOCK=1`.
    NoBlock,
}

/// One `memcached_st` configured like php-memcached with `OPT_LIBKETAMA_COMPATIBLE`:
/// KETAMA_WEIGHTED, TCP_NODELAY, ASCII protocol.
#[derive(Debug)]
pub struct Libmemcached {
    st: NonNull<MemcachedSt>,
    /// Initialised by `memcached_result_create` on `_storage`; lives as long as `st`.
    result: NonNull<ResultSt>,
    _storage: Box<ResultStorage>,
    label: String,
}

impl Libmemcached {
    /// Create a client for `addrs` (`"host:port"`).
    pub fn new(addrs: &[String], blocking: Blocking) -> Result<Self, String> {
        // SAFETY: a NULL argument asks libmemcached to allocate and initialise a new
        // memcached_st, which we own and release with memcached_free in Drop.
        let st = unsafe { memcached_create(ptr::null_mut()) };
        let st = NonNull::new(st).ok_or("memcached_create returned NULL")?;
        let mut storage = Box::new(ResultStorage([0; 1024]));
        // SAFETY: `st` is a live memcached_st; `storage` is writable, suitably aligned, larger
        // than memcached_result_st, and stays at the same address (boxed) for as long as the
        // result is used; memcached_result_free in Drop releases what the result owns.
        let result =
            unsafe { memcached_result_create(st.as_ptr(), storage.as_mut().0.as_mut_ptr().cast()) };
        let Some(result) = NonNull::new(result) else {
            // SAFETY: `st` came from memcached_create and is freed once.
            unsafe { memcached_free(st.as_ptr()) };
            return Err("memcached_result_create returned NULL".into());
        };
        let label = match blocking {
            Blocking::Blocking => "libmemcached",
            Blocking::NoBlock => "libmemcached NO_BLOCK",
        };
        let mc = Libmemcached {
            st,
            result,
            _storage: storage,
            label: label.into(),
        };
        // Order matters for ketama (client-anchors §2.4.1): set KETAMA_WEIGHTED before adding
        // servers, as php-memcached does when OPT_LIBKETAMA_COMPATIBLE is set first.
        let no_block = u64::from(blocking == Blocking::NoBlock);
        for (flag, value, name) in [
            (BEHAVIOR_BINARY_PROTOCOL, 0, "BINARY_PROTOCOL"),
            (BEHAVIOR_KETAMA_WEIGHTED, 1, "KETAMA_WEIGHTED"),
            (BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY"),
            (BEHAVIOR_NO_BLOCK, no_block, "NO_BLOCK"),
        ] {
            // SAFETY: `st` is live; the flag is a valid memcached_behavior_t value.
            let rc = unsafe { memcached_behavior_set(mc.st.as_ptr(), flag, value) };
            mc.check(rc, &format!("memcached_behavior_set({name})"))?;
        }
        for addr in addrs {
            // A Unix socket path goes in as php-memcached's addServer(path, 0) passes it.
            let (host, port) = if addr.starts_with('/') {
                (addr.as_str(), "0")
            } else {
                addr.rsplit_once(':')
                    .ok_or_else(|| format!("bad address {addr}"))?
            };
            let port: u16 = port.parse().map_err(|_| format!("bad port in {addr}"))?;
            let host = CString::new(host).map_err(|_| format!("bad host in {addr}"))?;
            // SAFETY: `st` is live and `host` is a NUL-terminated string that outlives the
            // call (libmemcached copies it).
            let rc = unsafe { memcached_server_add(mc.st.as_ptr(), host.as_ptr(), port) };
            mc.check(rc, "memcached_server_add")?;
        }
        Ok(mc)
    }

    fn strerror(&self, rc: Return) -> String {
        // SAFETY: `st` is live; memcached_strerror returns a static string for any code.
        let p = unsafe { memcached_strerror(self.st.as_ptr(), rc) };
        if p.is_null() {
            return format!("libmemcached error {rc}");
        }
        // SAFETY: non-null, static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn check(&self, rc: Return, what: &str) -> Result<(), String> {
        if rc == MEMCACHED_SUCCESS {
            Ok(())
        } else {
            Err(format!("{what}: {}", self.strerror(rc)))
        }
    }

    /// The failure settings php-memcached and pylibmc users are told to set, with every
    /// timeout at `timeout_ms`: `CONNECT_TIMEOUT` and `POLL_TIMEOUT` (ms), `RCV_TIMEOUT` and
    /// `SND_TIMEOUT` (µs), `SERVER_FAILURE_LIMIT`, `RETRY_TIMEOUT` (s),
    /// `REMOVE_FAILED_SERVERS` and `DEAD_TIMEOUT` (s; at 0, libmemcached's default, a removed
    /// server is never tried again by this `memcached_st`) — php-memcached `OPT_*`, pylibmc
    /// behaviors `remove_failed`, `retry_timeout`, `dead_timeout`.
    pub fn failure_settings(
        &mut self,
        timeout_ms: u64,
        failure_limit: u64,
        retry_s: u64,
        dead_s: u64,
    ) -> Result<(), String> {
        for (flag, value, name) in [
            (BEHAVIOR_CONNECT_TIMEOUT, timeout_ms, "CONNECT_TIMEOUT"),
            (BEHAVIOR_POLL_TIMEOUT, timeout_ms, "POLL_TIMEOUT"),
            (BEHAVIOR_RCV_TIMEOUT, timeout_ms * 1000, "RCV_TIMEOUT"),
            (BEHAVIOR_SND_TIMEOUT, timeout_ms * 1000, "SND_TIMEOUT"),
            (
                BEHAVIOR_SERVER_FAILURE_LIMIT,
                failure_limit,
                "SERVER_FAILURE_LIMIT",
            ),
            (BEHAVIOR_RETRY_TIMEOUT, retry_s, "RETRY_TIMEOUT"),
            (BEHAVIOR_REMOVE_FAILED_SERVERS, 1, "REMOVE_FAILED_SERVERS"),
            (BEHAVIOR_DEAD_TIMEOUT, dead_s, "DEAD_TIMEOUT"),
        ] {
            // SAFETY: `st` is live; the flag is a valid memcached_behavior_t value.
            let rc = unsafe { memcached_behavior_set(self.st.as_ptr(), flag, value) };
            self.check(rc, &format!("memcached_behavior_set({name})"))?;
        }
        Ok(())
    }

    /// The server (`host:port`) libmemcached's placement picks for `key`.
    pub fn server_for(&mut self, key: &[u8]) -> Result<String, String> {
        let mut rc: Return = MEMCACHED_SUCCESS;
        // SAFETY: `st` is live; `key` is valid for `key.len()` bytes; `rc` is a valid out-param.
        let inst = unsafe {
            memcached_server_by_key(self.st.as_ptr(), key.as_ptr().cast(), key.len(), &mut rc)
        };
        if inst.is_null() {
            return Err(format!("memcached_server_by_key: {}", self.strerror(rc)));
        }
        // SAFETY: `inst` is a live instance owned by `st`; the name is a NUL-terminated string
        // owned by the instance, copied before any further call.
        let (name, port) = unsafe {
            (
                CStr::from_ptr(memcached_server_name(inst))
                    .to_string_lossy()
                    .into_owned(),
                memcached_server_port(inst),
            )
        };
        if name.starts_with('/') {
            return Ok(name); // a Unix socket, named by its path as libfae names it
        }
        Ok(format!("{name}:{port}"))
    }
}

impl Drop for Libmemcached {
    fn drop(&mut self) {
        // SAFETY: both were created by libmemcached in `new` and are released exactly once;
        // the result (in our storage, so libmemcached frees only its value buffer) goes before
        // the memcached_st it was created from.
        unsafe {
            memcached_result_free(self.result.as_ptr());
            memcached_free(self.st.as_ptr());
        }
    }
}

/// Hits of one `memcached_mget` + `memcached_fetch_result` loop, copied out of the reused
/// result (the copy a binding makes when it builds its array of values).
#[derive(Debug, Default)]
pub struct MgetOut {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A borrowed C buffer as bytes; NULL or empty gives an empty slice.
///
/// # Safety
/// A non-null `p` must be valid for reads of `len` bytes for the returned lifetime.
unsafe fn bytes<'a>(p: *const c_char, len: usize) -> &'a [u8] {
    if p.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }
}

impl Subject for Libmemcached {
    type Value = MallocBuf;
    type Multi = MgetOut;

    fn label(&self) -> String {
        self.label.clone()
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<MallocBuf>, String> {
        let mut len = 0usize;
        let mut flags = 0u32;
        let mut rc: Return = MEMCACHED_SUCCESS;
        // SAFETY: `st` is live; `key` is valid for its length; the out-params are valid.
        let p = unsafe {
            memcached_get(
                self.st.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                &mut len,
                &mut flags,
                &mut rc,
            )
        };
        match NonNull::new(p) {
            Some(ptr) => Ok(Some(MallocBuf { ptr, len })),
            None if rc == MEMCACHED_NOTFOUND => Ok(None),
            None if rc == MEMCACHED_SUCCESS => Err("memcached_get: NULL on success".into()),
            None => Err(format!("memcached_get: {}", self.strerror(rc))),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        // SAFETY: `st` is live; key and value are valid for their lengths.
        let rc = unsafe {
            memcached_set(
                self.st.as_ptr(),
                key.as_ptr().cast(),
                key.len(),
                value.as_ptr().cast(),
                value.len(),
                0,
                0,
            )
        };
        self.check(rc, "memcached_set")
    }

    fn get_multi(&mut self, keys: &[&[u8]]) -> Result<MgetOut, String> {
        let ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr().cast()).collect();
        let lens: Vec<usize> = keys.iter().map(|k| k.len()).collect();
        // SAFETY: `st` is live; `ptrs` and `lens` both hold `keys.len()` entries describing
        // byte strings that stay alive for the call (libmemcached writes them out before
        // returning).
        let rc =
            unsafe { memcached_mget(self.st.as_ptr(), ptrs.as_ptr(), lens.as_ptr(), keys.len()) };
        self.check(rc, "memcached_mget")?;
        let mut out = MgetOut {
            pairs: Vec::with_capacity(keys.len()),
        };
        loop {
            let mut rc: Return = MEMCACHED_SUCCESS;
            // SAFETY: `st` is live and `result` was created from it; `rc` is a valid out-param.
            let r =
                unsafe { memcached_fetch_result(self.st.as_ptr(), self.result.as_ptr(), &mut rc) };
            if r.is_null() {
                if rc == MEMCACHED_END || rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND {
                    return Ok(out);
                }
                return Err(format!("memcached_fetch_result: {}", self.strerror(rc)));
            }
            // SAFETY: `r` is our result, just filled; its key and value buffers are valid for
            // the reported lengths until the next fetch, and we copy them out now.
            let (k, v) = unsafe {
                (
                    bytes(
                        memcached_result_key_value(r),
                        memcached_result_key_length(r),
                    ),
                    bytes(memcached_result_value(r), memcached_result_length(r)),
                )
            };
            out.pairs.push((k.to_vec(), v.to_vec()));
        }
    }

    fn multi_hits<'a>(&self, out: &'a MgetOut, _keys: &[&'a [u8]]) -> Result<Hits<'a>, String> {
        Ok(out
            .pairs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect())
    }
}
