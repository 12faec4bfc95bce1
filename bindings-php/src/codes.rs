//! php-memcached's result codes (`Memcached::RES_*` = libmemcached's `memcached_return_t`),
//! and the one mapping from a core [`fae_core::Error`] to a code and a message.

use fae_core::{Error, ErrorKind, Reason};

pub const RES_SUCCESS: i64 = 0;
pub const RES_FAILURE: i64 = 1;
pub const RES_HOST_LOOKUP_FAILURE: i64 = 2;
pub const RES_CONNECTION_FAILURE: i64 = 3;
pub const RES_WRITE_FAILURE: i64 = 5;
pub const RES_UNKNOWN_READ_FAILURE: i64 = 7;
pub const RES_PROTOCOL_ERROR: i64 = 8;
pub const RES_CLIENT_ERROR: i64 = 9;
pub const RES_SERVER_ERROR: i64 = 10;
pub const RES_DATA_EXISTS: i64 = 12;
pub const RES_NOTSTORED: i64 = 14;
pub const RES_STORED: i64 = 15;
pub const RES_NOTFOUND: i64 = 16;
pub const RES_PARTIAL_READ: i64 = 18;
pub const RES_SOME_ERRORS: i64 = 19;
pub const RES_NO_SERVERS: i64 = 20;
pub const RES_END: i64 = 21;
pub const RES_ERRNO: i64 = 26;
pub const RES_NOT_SUPPORTED: i64 = 28;
pub const RES_TIMEOUT: i64 = 31;
pub const RES_BUFFERED: i64 = 32;
pub const RES_BAD_KEY_PROVIDED: i64 = 33;
pub const RES_SERVER_MARKED_DEAD: i64 = 35;
pub const RES_E2BIG: i64 = 37;
pub const RES_INVALID_ARGUMENTS: i64 = 38;
pub const RES_KEY_TOO_BIG: i64 = 39;
pub const RES_AUTH_PROBLEM: i64 = 40;
pub const RES_AUTH_FAILURE: i64 = 41;
pub const RES_AUTH_CONTINUE: i64 = 42;
pub const RES_CONNECTION_SOCKET_CREATE_FAILURE: i64 = 11;
pub const RES_SERVER_TEMPORARILY_DISABLED: i64 = 47;
pub const RES_SERVER_MEMORY_ALLOCATION_FAILURE: i64 = 48;
/// php-memcached's own: the value could not be (un)serialized or (de)compressed.
pub const RES_PAYLOAD_FAILURE: i64 = -1001;

/// libmemcached's `memcached_strerror` text for the codes libfae produces.
pub fn text(code: i64) -> &'static str {
    match code {
        RES_SUCCESS => "SUCCESS",
        RES_FAILURE => "FAILURE",
        RES_CONNECTION_FAILURE => "CONNECTION FAILURE",
        RES_UNKNOWN_READ_FAILURE => "UNKNOWN READ FAILURE",
        RES_PROTOCOL_ERROR => "PROTOCOL ERROR",
        RES_CLIENT_ERROR => "CLIENT ERROR",
        RES_SERVER_ERROR => "SERVER ERROR",
        RES_DATA_EXISTS => "CONNECTION DATA EXISTS",
        RES_NOTSTORED => "NOT STORED",
        RES_NOTFOUND => "NOT FOUND",
        RES_SOME_ERRORS => "SOME ERRORS WERE REPORTED",
        RES_NO_SERVERS => "NO SERVERS DEFINED",
        RES_NOT_SUPPORTED => "ACTION NOT SUPPORTED",
        RES_TIMEOUT => "A TIMEOUT OCCURRED",
        RES_BAD_KEY_PROVIDED => "A BAD KEY WAS PROVIDED/CHARACTERS OUT OF RANGE",
        RES_E2BIG => "ITEM TOO BIG",
        RES_INVALID_ARGUMENTS => "INVALID ARGUMENTS",
        RES_SERVER_TEMPORARILY_DISABLED => "SERVER HAS FAILED AND IS DISABLED UNTIL TIMED RETRY",
        RES_AUTH_FAILURE => "AUTHENTICATION FAILURE",
        RES_PAYLOAD_FAILURE => "PAYLOAD FAILURE",
        _ => "UNKNOWN",
    }
}

/// The result code for a core error: the single place Reason/ErrorKind become `RES_*`.
pub fn code_of(e: &Error) -> i64 {
    match e.reason() {
        Reason::ConnectTimeout | Reason::Timeout => RES_TIMEOUT,
        Reason::ClientError => RES_CLIENT_ERROR,
        Reason::Tko => RES_SERVER_TEMPORARILY_DISABLED,
        Reason::NoServers => RES_NO_SERVERS,
        _ => match e.kind() {
            ErrorKind::InvalidKey => RES_BAD_KEY_PROVIDED,
            ErrorKind::ValueTooLarge => RES_E2BIG,
            ErrorKind::InvalidConfig | ErrorKind::InvalidArgument => RES_INVALID_ARGUMENTS,
            ErrorKind::ClientClosed => RES_NO_SERVERS,
            ErrorKind::Timeout => RES_TIMEOUT,
            ErrorKind::ConnectFailed => RES_CONNECTION_FAILURE,
            ErrorKind::ConnectionLost => RES_UNKNOWN_READ_FAILURE,
            ErrorKind::ServerError => RES_SERVER_ERROR,
            ErrorKind::Protocol => RES_PROTOCOL_ERROR,
            ErrorKind::NoServerAvailable => RES_SERVER_TEMPORARILY_DISABLED,
            // A refused login or TLS handshake (libmemcached has no TLS: its SASL code).
            ErrorKind::AuthFailed => RES_AUTH_FAILURE,
            _ => RES_FAILURE,
        },
    }
}

/// `(code, message)`: libmemcached's text, then libfae's reason and detail.
pub fn map(e: &Error) -> (i64, String) {
    let code = code_of(e);
    (code, format!("{}: {e}", text(code)))
}
