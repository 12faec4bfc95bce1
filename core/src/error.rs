//! One error type for the whole library.
//!
//! An [`Error`] carries a [`Reason`] (a stable string such as `"timeout"`, used in errors, stats
//! and logs), the destination it concerns, and an optional detail message. The coarse
//! [`ErrorKind`] is derived from the reason and is what the bindings map to their own codes
//! (C `fae_result`, Python exception classes, PHP result codes). Retry and failover are decided
//! here, in one total `match` each, never at call sites. A connection that saw any error
//! mid-reply is discarded by the exchange whatever the reason (a reply may be half read).
//!
//! Outcomes such as "not found", "not stored" or "exists" are not errors: the client returns them
//! as values.

use std::fmt;
use std::sync::Arc;

/// The coarse class of an error: what a caller (or a binding) branches on.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The key is empty, too long, or holds bytes the protocol cannot carry.
    InvalidKey,
    /// The value is larger than `max_value_size`.
    ValueTooLarge,
    /// The configuration is malformed or inconsistent.
    InvalidConfig,
    /// Another argument is out of range (for example a zero-length multi-key call where one is required).
    InvalidArgument,
    /// The client was closed.
    ClientClosed,
    /// The request did not complete before its deadline.
    Timeout,
    /// No connection to the server could be made.
    ConnectFailed,
    /// The connection failed after it was made (reset, broken pipe, other I/O error).
    ConnectionLost,
    /// The server answered `SERVER_ERROR` or `CLIENT_ERROR`.
    ServerError,
    /// The server's reply could not be parsed or did not match the request.
    Protocol,
    /// No server can take the request: its breaker is open, or none is configured.
    NoServerAvailable,
    /// The server refused our login (`auth`), or the TLS handshake failed (certificate not
    /// trusted, expired or for another name; the server does not speak TLS, or demands it).
    /// Not retried: the settings must change. The server is not asked again for a while.
    AuthFailed,
}

/// Why a request failed. The `as_str()` names are public API: stats keys and log fields.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Caller: the key is invalid.
    InvalidKey,
    /// Caller: the value exceeds `max_value_size`.
    ValueTooLarge,
    /// Caller: the configuration is invalid.
    InvalidConfig,
    /// Caller: an argument is out of range.
    InvalidArgument,
    /// Caller: the client is closed.
    Closed,
    /// Transport: the deadline passed while sending or waiting for a reply.
    Timeout,
    /// Library: every one of `max_connections` connections to the server stayed busy until
    /// the deadline (local saturation, not a server failure).
    PoolTimeout,
    /// Transport: the TCP connect did not finish within `connect_ms`.
    ConnectTimeout,
    /// Transport: the server refused the connection.
    ConnectRefused,
    /// Transport: the connect failed otherwise (unreachable, address resolution, validation).
    ConnectFailed,
    /// Transport: the peer reset or closed the connection.
    Reset,
    /// Transport: another I/O error.
    Io,
    /// Server: `SERVER_ERROR …`.
    ServerError,
    /// Server: `CLIENT_ERROR …` or `ERROR` (the server rejected what we sent).
    ClientError,
    /// Server: a reply we cannot parse, or one that does not belong to the request.
    Protocol,
    /// Library: the destination's breaker is open (technical knock-out).
    Tko,
    /// Library: no server is configured for the request.
    NoServers,
    /// Library: the pool is switched off (`disabled: true`), failing fast without I/O.
    Disabled,
    /// Library: the pool is `read_only`; a `set` was dropped (other writes report "not stored").
    ReadOnly,
    /// Server: the login (`auth`) was rejected.
    AuthFailed,
    /// Transport: the TLS handshake failed (certificate, name, protocol mismatch).
    TlsFailed,
}

impl Reason {
    /// Every reason, so that bindings can test their mapping is total (the enum is
    /// `#[non_exhaustive]`, so their `match` needs a wildcard arm that a test must keep unused).
    pub const ALL: [Reason; 21] = [
        Self::InvalidKey,
        Self::ValueTooLarge,
        Self::InvalidConfig,
        Self::InvalidArgument,
        Self::Closed,
        Self::Timeout,
        Self::PoolTimeout,
        Self::ConnectTimeout,
        Self::ConnectRefused,
        Self::ConnectFailed,
        Self::Reset,
        Self::Io,
        Self::ServerError,
        Self::ClientError,
        Self::Protocol,
        Self::Tko,
        Self::NoServers,
        Self::Disabled,
        Self::ReadOnly,
        Self::AuthFailed,
        Self::TlsFailed,
    ];

    /// Stable name of the reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidKey => "invalid_key",
            Self::ValueTooLarge => "value_too_large",
            Self::InvalidConfig => "invalid_config",
            Self::InvalidArgument => "invalid_argument",
            Self::Closed => "closed",
            Self::Timeout => "timeout",
            Self::PoolTimeout => "pool_timeout",
            Self::ConnectTimeout => "connect_timeout",
            Self::ConnectRefused => "connect_refused",
            Self::ConnectFailed => "connect_failed",
            Self::Reset => "reset",
            Self::Io => "io",
            Self::ServerError => "server_error",
            Self::ClientError => "client_error",
            Self::Protocol => "protocol",
            Self::Tko => "tko",
            Self::NoServers => "no_servers",
            Self::Disabled => "disabled",
            Self::ReadOnly => "read_only",
            Self::AuthFailed => "auth_failed",
            Self::TlsFailed => "tls_failed",
        }
    }

    /// The coarse kind this reason belongs to.
    pub const fn kind(self) -> ErrorKind {
        match self {
            Self::InvalidKey => ErrorKind::InvalidKey,
            Self::ValueTooLarge => ErrorKind::ValueTooLarge,
            Self::InvalidConfig => ErrorKind::InvalidConfig,
            Self::InvalidArgument => ErrorKind::InvalidArgument,
            Self::Closed => ErrorKind::ClientClosed,
            Self::Timeout | Self::PoolTimeout => ErrorKind::Timeout,
            Self::ConnectTimeout | Self::ConnectRefused | Self::ConnectFailed => {
                ErrorKind::ConnectFailed
            }
            Self::Reset | Self::Io => ErrorKind::ConnectionLost,
            Self::ServerError | Self::ClientError => ErrorKind::ServerError,
            Self::Protocol => ErrorKind::Protocol,
            Self::Tko | Self::NoServers | Self::Disabled | Self::ReadOnly => {
                ErrorKind::NoServerAvailable
            }
            Self::AuthFailed | Self::TlsFailed => ErrorKind::AuthFailed,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A libfae error: a reason, the destination it concerns (if any) and a detail message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    reason: Reason,
    destination: Option<Arc<str>>,
    detail: Option<Box<str>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a reason and no detail.
    ///
    /// Cold, as [`Error::with_detail`]: a call marks its branch unlikely.
    #[cold]
    pub fn new(reason: Reason) -> Self {
        Self {
            reason,
            destination: None,
            detail: None,
        }
    }

    /// An error with a reason and a detail message.
    ///
    /// Cold and out of line: the code building the message (an allocation and a copy per
    /// call site) leaves the hot functions, which then span fewer instruction-cache lines
    /// (a Python get touched ~260 lines of libfae code per call against ~40 of
    /// libmemcached's, cachegrind, docs/BENCHMARKS.md).
    #[cold]
    #[inline(never)]
    pub fn with_detail(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            destination: None,
            detail: Some(detail.into().into_boxed_str()),
        }
    }

    /// Attach the destination (`host:port`) the error concerns.
    #[must_use]
    pub fn at(mut self, destination: &Arc<str>) -> Self {
        self.destination = Some(Arc::clone(destination));
        self
    }

    /// Attach `destination` unless the error already names one (a reply mapped after the
    /// exchange, for example, does not).
    #[must_use]
    pub fn or_at(self, destination: &Arc<str>) -> Self {
        if self.destination.is_some() {
            self
        } else {
            self.at(destination)
        }
    }

    /// Why the request failed.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The coarse kind of the error.
    pub fn kind(&self) -> ErrorKind {
        self.reason.kind()
    }

    /// The destination (`host:port`) the error concerns, if any.
    pub fn destination(&self) -> Option<&str> {
        self.destination.as_deref()
    }

    /// The detail message, if any (for example the text of a `SERVER_ERROR` reply).
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// Would the same request, sent again on a fresh connection, plausibly succeed?
    pub fn is_retryable(&self) -> bool {
        match self.reason {
            Reason::Timeout
            | Reason::PoolTimeout
            | Reason::ConnectTimeout
            | Reason::ConnectRefused
            | Reason::ConnectFailed
            | Reason::Reset
            | Reason::Io => true,
            Reason::InvalidKey
            | Reason::ValueTooLarge
            | Reason::InvalidConfig
            | Reason::InvalidArgument
            | Reason::Closed
            | Reason::ServerError
            | Reason::ClientError
            | Reason::Protocol
            | Reason::Tko
            | Reason::NoServers
            | Reason::Disabled
            | Reason::ReadOnly
            | Reason::AuthFailed
            | Reason::TlsFailed => false,
        }
    }

    /// Is this the caller's fault (bad input, a closed client) rather than a cache failure?
    /// `get_or_set` reports these; around cache failures it computes the value anyway.
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self.reason.kind(),
            ErrorKind::InvalidKey
                | ErrorKind::ValueTooLarge
                | ErrorKind::InvalidConfig
                | ErrorKind::InvalidArgument
                | ErrorKind::ClientClosed
        )
    }

    /// Should a failover route try its next child? Caller errors never fail over: the next
    /// server would reject the request the same way.
    pub fn should_failover(&self) -> bool {
        match self.reason {
            Reason::Timeout
            | Reason::ConnectTimeout
            | Reason::ConnectRefused
            | Reason::ConnectFailed
            | Reason::Reset
            | Reason::Io
            | Reason::ServerError
            | Reason::Protocol
            | Reason::Tko
            | Reason::NoServers
            | Reason::Disabled
            | Reason::ReadOnly
            | Reason::AuthFailed
            | Reason::TlsFailed => true,
            Reason::InvalidKey
            | Reason::ValueTooLarge
            | Reason::InvalidConfig
            | Reason::InvalidArgument
            | Reason::Closed
            | Reason::PoolTimeout
            | Reason::ClientError => false,
        }
    }

    /// Is this a transport or server failure that counts against the destination's health?
    /// A refused login or TLS handshake does not: the server is up, the settings are wrong
    /// (the destination fails fast with it instead, see `pool::Destination`).
    pub fn is_destination_failure(&self) -> bool {
        matches!(
            self.reason,
            Reason::Timeout
                | Reason::ConnectTimeout
                | Reason::ConnectRefused
                | Reason::ConnectFailed
                | Reason::Reset
                | Reason::Io
                | Reason::Protocol
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason.as_str())?;
        if let Some(d) = &self.destination {
            write!(f, " ({d})")?;
        }
        if let Some(m) = &self.detail {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_reason_destination_and_detail() {
        let d: Arc<str> = Arc::from("127.0.0.1:11211");
        let e = Error::with_detail(Reason::ServerError, "out of memory").at(&d);
        assert_eq!(
            e.to_string(),
            "server_error (127.0.0.1:11211): out of memory"
        );
        assert_eq!(e.kind(), ErrorKind::ServerError);
        assert!(e.should_failover());
    }

    #[test]
    fn caller_errors_neither_retry_nor_fail_over() {
        for r in [
            Reason::InvalidKey,
            Reason::ValueTooLarge,
            Reason::InvalidArgument,
        ] {
            let e = Error::new(r);
            assert!(!e.is_retryable() && !e.should_failover());
        }
    }

    #[test]
    fn reason_names_are_unique() {
        let names: std::collections::HashSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn security_failures_are_final_but_fail_over() {
        for r in [Reason::AuthFailed, Reason::TlsFailed] {
            let e = Error::new(r);
            assert_eq!(e.kind(), ErrorKind::AuthFailed);
            assert!(!e.is_retryable() && !e.is_destination_failure() && !e.is_caller_error());
            assert!(e.should_failover(), "another server may accept us");
        }
    }

    #[test]
    fn a_timeout_is_retried_and_fails_over() {
        let e = Error::new(Reason::Timeout);
        assert!(e.is_retryable() && e.should_failover());
    }
}
