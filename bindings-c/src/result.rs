//! `fae_result`: the code every fallible function returns, its text, and the one translation
//! from the core's [`fae_core::Error`] (`map_error`). Also the thread's last error message.

use std::cell::RefCell;
use std::ffi::c_char;
use std::fmt;

use fae_core::{Error, ErrorKind, StoreOutcome};

use crate::ffi::{try_out_param, write_text};
use crate::panic::ffi_panic_boundary_keep_error;

/// The result of a libfae call. `FAE_RESULT_OK` is 0.
///
/// - 1 to 3 are outcomes, not errors: the request was carried out and this is its answer.
/// - 1xx: the caller's error, detected before any I/O.
/// - 2xx: the server or the network failed.
/// - 3xx: the caller's own callback reported a failure.
/// - 900: a bug in libfae was caught at the boundary.
///
/// Numbers are stable and never reused; a retired code stays here as a comment. Before C23
/// the header types `fae_result` as `uint32_t` (a C enum's size is not fixed), so compare it
/// with the `FAE_RESULT_*` constants and pass it around as `uint32_t` freely.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum fae_result {
    /// Success.
    Ok = 0,
    /// Outcome: the key does not exist (get miss, delete/touch/incr/decr/cas on a missing key).
    NotFound = 1,
    /// Outcome: not stored (`add` on an existing key, `replace`/`append`/`prepend` on a missing one).
    NotStored = 2,
    /// Outcome: `cas` lost: the item changed since its CAS token was read.
    Exists = 3,
    /// A required pointer parameter was NULL.
    NullParameter = 100,
    /// The key is empty, longer than 250 bytes, or holds a space, control byte or DEL.
    InvalidKey = 101,
    /// The value is larger than the configured `max_value_size`.
    ValueTooLarge = 102,
    /// The configuration could not be read, parsed or validated.
    InvalidConfig = 103,
    /// The caller's buffer is too small; `*out_n` holds the size needed.
    InsufficientSize = 104,
    /// The client was closed with `fae_client_close`.
    ClientClosed = 105,
    /// Another argument is invalid (an unknown operation name, for example).
    InvalidArgument = 106,
    /// The request did not complete before its deadline (`timeouts.io_ms`).
    Timeout = 200,
    /// No connection to the server could be made.
    ConnectFailed = 201,
    /// The server answered `SERVER_ERROR` or `CLIENT_ERROR`.
    ServerError = 202,
    /// The server's reply could not be parsed or did not match the request.
    ProtocolError = 203,
    /// No server can take the request (its circuit breaker is open, or none is configured).
    NoServerAvailable = 204,
    /// The connection failed after it was made (reset, broken pipe, other I/O error).
    ConnectionLost = 205,
    /// The server refused the login (config `auth`), or the TLS handshake failed (certificate
    /// not trusted, expired or for another name; a server without TLS). Not retried: the
    /// settings must change; the server is not asked again for `health.probe_max_ms`.
    AuthFailed = 206,
    /// The compute callback of `fae_client_get_or_set` failed (returned non-zero, or returned 0
    /// without a value); `fae_last_error_message` gives the number it returned. Nothing was
    /// stored.
    ComputeFailed = 300,
    /// libfae panicked; the call was abandoned. Please report it.
    Panic = 900,
}

impl fae_result {
    /// Every code, in numeric order.
    pub(crate) const ALL: [fae_result; 20] = [
        Self::Ok,
        Self::NotFound,
        Self::NotStored,
        Self::Exists,
        Self::NullParameter,
        Self::InvalidKey,
        Self::ValueTooLarge,
        Self::InvalidConfig,
        Self::InsufficientSize,
        Self::ClientClosed,
        Self::InvalidArgument,
        Self::Timeout,
        Self::ConnectFailed,
        Self::ServerError,
        Self::ProtocolError,
        Self::NoServerAvailable,
        Self::ConnectionLost,
        Self::AuthFailed,
        Self::ComputeFailed,
        Self::Panic,
    ];

    /// The code for a number, if it is one.
    pub fn from_u32(n: u32) -> Option<fae_result> {
        Self::ALL.iter().copied().find(|r| *r as u32 == n)
    }

    /// True for everything except OK and the three outcomes.
    pub fn is_error(self) -> bool {
        !matches!(
            self,
            Self::Ok | Self::NotFound | Self::NotStored | Self::Exists
        )
    }

    /// One sentence per code; what `fae_result_message` writes.
    pub fn message(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::NotFound => "not found",
            Self::NotStored => "not stored",
            Self::Exists => "exists: the item changed since its CAS token was read",
            Self::NullParameter => "a required parameter was NULL",
            Self::InvalidKey => "invalid key",
            Self::ValueTooLarge => "value too large",
            Self::InvalidConfig => "invalid configuration",
            Self::InsufficientSize => "buffer too small",
            Self::ClientClosed => "client closed",
            Self::InvalidArgument => "invalid argument",
            Self::Timeout => "timeout",
            Self::ConnectFailed => "connect failed",
            Self::ServerError => "server error",
            Self::ProtocolError => "protocol error",
            Self::NoServerAvailable => "no server available",
            Self::ConnectionLost => "connection lost",
            Self::AuthFailed => "authentication or TLS handshake failed",
            Self::ComputeFailed => "the compute callback failed",
            Self::Panic => "panic in libfae (a bug; please report it)",
        }
    }
}

impl fmt::Display for fae_result {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// The one translation from a core error to a C code.
pub(crate) fn map_error(e: &Error) -> fae_result {
    match e.kind() {
        ErrorKind::InvalidKey => fae_result::InvalidKey,
        ErrorKind::ValueTooLarge => fae_result::ValueTooLarge,
        ErrorKind::InvalidConfig => fae_result::InvalidConfig,
        ErrorKind::InvalidArgument => fae_result::InvalidArgument,
        ErrorKind::ClientClosed => fae_result::ClientClosed,
        ErrorKind::Timeout => fae_result::Timeout,
        ErrorKind::ConnectFailed => fae_result::ConnectFailed,
        ErrorKind::ConnectionLost => fae_result::ConnectionLost,
        ErrorKind::ServerError => fae_result::ServerError,
        ErrorKind::Protocol => fae_result::ProtocolError,
        ErrorKind::NoServerAvailable => fae_result::NoServerAvailable,
        ErrorKind::AuthFailed => fae_result::AuthFailed,
        // ErrorKind is #[non_exhaustive]. A kind added to the core after this crate was written
        // is a server/transport failure until it gets its own code (the text still names it).
        _ => fae_result::ServerError,
    }
}

/// Map a core error and keep its full text (`reason (destination): detail`) as the thread's
/// last error message.
pub(crate) fn fail(e: &Error) -> fae_result {
    set_last_error(e.to_string());
    map_error(e)
}

/// The code of a storage outcome.
pub(crate) fn store_outcome(o: StoreOutcome) -> fae_result {
    match o {
        StoreOutcome::Stored => fae_result::Ok,
        StoreOutcome::NotStored => fae_result::NotStored,
        StoreOutcome::Exists => fae_result::Exists,
        StoreOutcome::NotFound => fae_result::NotFound,
    }
}

/// Convert `Result<T>` to `T` or return the mapped error from the enclosing FFI body.
macro_rules! try_core {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $crate::result::fail(&e),
        }
    };
}
pub(crate) use try_core;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Set this thread's last error message.
pub(crate) fn set_last_error(msg: String) {
    let _ = LAST_ERROR.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            *m = msg;
        }
    });
}

/// Clear this thread's last error message (at the start of every fallible call).
pub(crate) fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.clear();
        }
    });
}

/// After a fallible call: an error code always comes with some text.
pub(crate) fn ensure_last_error(r: fae_result) {
    if r.is_error() {
        let _ = LAST_ERROR.try_with(|m| {
            if let Ok(mut m) = m.try_borrow_mut()
                && m.is_empty()
            {
                m.push_str(r.message());
            }
        });
    }
}

fn last_error() -> String {
    LAST_ERROR
        .try_with(|m| m.try_borrow().map(|m| m.clone()).unwrap_or_default())
        .unwrap_or_default()
}

/// Write the sentence for `result` into `buf`, truncated to `len` bytes (at a UTF-8 character
/// boundary), not NUL-terminated, and the number of bytes written into `*out_n`. An unknown
/// number gets "unknown result code N". Every message fits in 64 bytes.
///
/// `result` is a `uint32_t` so that any number can be passed safely. Does nothing if `out_n` is
/// NULL, or if `buf` is NULL and `len` is not 0. Does not change the thread's last error message.
///
/// # Safety
/// `buf` must be NULL or valid for writes of `len` bytes; `out_n` must be NULL or valid for a
/// write of one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_result_message(
    result: u32,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) {
    ffi_panic_boundary_keep_error! {
        if buf.is_null() && len != 0 {
            return;
        }
        let out_n = try_out_param!(out_n);
        let unknown;
        let text = match fae_result::from_u32(result) {
            Some(r) => r.message(),
            None => {
                unknown = format!("unknown result code {result}");
                unknown.as_str()
            }
        };
        let mut n = text.len().min(len);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        if n > 0 {
            // SAFETY: buf is writable for len >= n bytes (contract) and cannot overlap `text`.
            unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n) };
        }
        *out_n = n;
    }
}

/// Is `result` an error? False for `FAE_RESULT_OK` and the outcomes `NOT_FOUND`, `NOT_STORED`
/// and `EXISTS`; true for every other number, including unknown ones.
#[unsafe(no_mangle)]
pub extern "C" fn fae_result_is_error(result: u32) -> bool {
    ffi_panic_boundary_keep_error! {
        fae_result::from_u32(result).is_none_or(fae_result::is_error)
    }
}

/// Copy the detailed text of the last error on this thread (for example
/// `invalid_config: pools.main.severs: unknown field ...` or
/// `timeout (10.0.0.1:11211)`) into `buf`, not NUL-terminated, and its length into `*out_n`.
///
/// Every fallible function clears the text when it starts and sets it when it returns an error
/// code (1xx, 2xx, 900), so read it right after the failing call, on the same thread. After
/// `FAE_RESULT_OK` or an outcome it is empty (`*out_n == 0`). Reading it does not clear it.
///
/// Returns `FAE_RESULT_INSUFFICIENT_SIZE` with `*out_n` = the size needed (and `buf`
/// untouched) when the text does not fit: call again with a larger buffer. `buf` may be NULL
/// when `len` is 0, to ask for the size. A NULL `out_n`, or a NULL `buf` with `len` > 0, gives
/// `FAE_RESULT_NULL_PARAMETER` and leaves the text alone.
///
/// # Safety
/// `buf` must be NULL or valid for writes of `len` bytes; `out_n` must be valid for a write
/// of one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> fae_result {
    ffi_panic_boundary_keep_error! {
        // NULL checks by hand: reporting them would overwrite the text being read.
        if buf.is_null() && len != 0 {
            return fae_result::NullParameter;
        }
        // SAFETY: out_n is NULL or writable per the contract.
        let Some(out_n) = (unsafe { out_n.as_mut() }) else {
            return fae_result::NullParameter;
        };
        let text = last_error();
        // SAFETY: buf is writable for len bytes (contract; NULL only with len == 0).
        unsafe { write_text(&text, buf, len, out_n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panic::ffi_panic_boundary;
    use fae_core::Reason;

    #[test]
    fn numbers_are_stable() {
        let expected = [
            0, 1, 2, 3, 100, 101, 102, 103, 104, 105, 106, 200, 201, 202, 203, 204, 205, 206, 300,
            900,
        ];
        let got: Vec<u32> = fae_result::ALL.iter().map(|r| *r as u32).collect();
        assert_eq!(got, expected);
        for r in fae_result::ALL {
            assert_eq!(fae_result::from_u32(r as u32), Some(r));
            assert!(r.message().len() < 64);
        }
        assert_eq!(fae_result::from_u32(4), None);
    }

    #[test]
    fn every_known_reason_has_its_code() {
        let cases = [
            (Reason::InvalidKey, fae_result::InvalidKey),
            (Reason::ValueTooLarge, fae_result::ValueTooLarge),
            (Reason::InvalidConfig, fae_result::InvalidConfig),
            (Reason::InvalidArgument, fae_result::InvalidArgument),
            (Reason::Closed, fae_result::ClientClosed),
            (Reason::Timeout, fae_result::Timeout),
            (Reason::PoolTimeout, fae_result::Timeout),
            (Reason::ConnectTimeout, fae_result::ConnectFailed),
            (Reason::ConnectRefused, fae_result::ConnectFailed),
            (Reason::ConnectFailed, fae_result::ConnectFailed),
            (Reason::Reset, fae_result::ConnectionLost),
            (Reason::Io, fae_result::ConnectionLost),
            (Reason::ServerError, fae_result::ServerError),
            (Reason::ClientError, fae_result::ServerError),
            (Reason::Protocol, fae_result::ProtocolError),
            (Reason::Tko, fae_result::NoServerAvailable),
            (Reason::NoServers, fae_result::NoServerAvailable),
            (Reason::Disabled, fae_result::NoServerAvailable),
            (Reason::ReadOnly, fae_result::NoServerAvailable),
            (Reason::AuthFailed, fae_result::AuthFailed),
            (Reason::TlsFailed, fae_result::AuthFailed),
        ];
        for (reason, code) in cases {
            let e = Error::new(reason);
            assert_eq!(map_error(&e), code, "{reason:?}");
            assert!(code.is_error());
        }
        // A reason added to the core must be listed here (and get a code) before this passes.
        for reason in Reason::ALL {
            assert!(
                cases.iter().any(|(r, _)| *r == reason),
                "{reason:?} has no fae_result mapping"
            );
        }
    }

    #[test]
    fn outcomes_are_not_errors() {
        for r in [
            fae_result::Ok,
            fae_result::NotFound,
            fae_result::NotStored,
            fae_result::Exists,
        ] {
            assert!(!fae_result_is_error(r as u32));
        }
        assert!(fae_result_is_error(fae_result::Timeout as u32));
        assert!(fae_result_is_error(12345));
    }

    #[test]
    fn message_truncates_at_char_boundary() {
        let mut buf = [0 as c_char; 4];
        let mut n = 99;
        // SAFETY: buf is 4 writable bytes, n is a valid usize.
        unsafe { fae_result_message(fae_result::Timeout as u32, buf.as_mut_ptr(), 4, &mut n) };
        assert_eq!(n, 4);
        let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
        assert_eq!(&bytes, b"time");
    }

    #[test]
    fn last_error_roundtrip() {
        fn failing() -> fae_result {
            ffi_panic_boundary! { fail(&Error::with_detail(Reason::InvalidKey, "empty key")) }
        }
        assert_eq!(failing(), fae_result::InvalidKey);
        let mut n = 0;
        // SAFETY: NULL buffer with len 0 asks for the size; n is valid.
        let r = unsafe { fae_last_error_message(std::ptr::null_mut(), 0, &mut n) };
        assert_eq!(r, fae_result::InsufficientSize);
        assert_eq!(n, "invalid_key: empty key".len());
        let mut buf = vec![0 as c_char; n];
        // SAFETY: buf has n writable bytes.
        let r = unsafe { fae_last_error_message(buf.as_mut_ptr(), n, &mut n) };
        assert_eq!(r, fae_result::Ok);
        let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
        assert_eq!(bytes, b"invalid_key: empty key");
    }

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        fn panicking() -> fae_result {
            ffi_panic_boundary! {
                if true {
                    panic!("boom");
                }
                fae_result::Ok
            }
        }
        assert_eq!(panicking(), fae_result::Panic);
        assert_eq!(last_error(), "panic in libfae: boom");
    }
}
