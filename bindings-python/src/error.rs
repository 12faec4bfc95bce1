//! The one mapping from the core's errors to Python exceptions.
//!
//! The classes live in `fae/_errors.py` (so they can also derive from the builtin
//! `ValueError`, `TimeoutError` and `ConnectionError`); this module looks them up once.
//! Every exception carries `reason` (the core's stable reason name), `destination` and
//! `detail`.

use fae_core::{Error, ErrorKind, Reason};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The exception class (a name in `fae._errors`) for each kind of core error.
pub fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidKey
        | ErrorKind::ValueTooLarge
        | ErrorKind::InvalidConfig
        | ErrorKind::InvalidArgument
        | ErrorKind::ClientClosed => "ClientError",
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::ConnectFailed | ErrorKind::ConnectionLost => "ConnectionError",
        ErrorKind::ServerError | ErrorKind::Protocol => "ServerError",
        ErrorKind::NoServerAvailable => "NoServerAvailable",
        ErrorKind::AuthFailed => "AuthenticationError",
        // A kind added to the core later: still an `fae.Error`, with its reason.
        _ => "Error",
    }
}

fn raise(
    py: Python<'_>,
    class: &str,
    message: String,
    reason: &str,
    destination: Option<&str>,
    detail: Option<&str>,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let m = ERRORS.get_or_try_init(py, || PyResult::Ok(py.import("fae._errors")?.unbind()))?;
        let cls = m.bind(py).getattr(class)?;
        let exc = cls.call1((message.as_str(), reason, destination, detail))?;
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|e| PyRuntimeError::new_err(format!("{message} (and {e})")))
}

/// The class for one error: by kind, except that memcached's `CLIENT_ERROR` reply (the server
/// saying the request was wrong, e.g. `incr` of a non-number) is a `fae.ClientError`, as
/// pymemcache reports it as `MemcacheClientError`.
pub fn class_of(e: &Error) -> &'static str {
    if e.reason() == Reason::ClientError {
        return "ClientError";
    }
    class_name(e.kind())
}

/// A core error as the matching `fae.*` exception. Cold: a call marks its branch unlikely,
/// which keeps the mapping out of the hot code of every method.
#[cold]
#[inline(never)]
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    raise(
        py,
        class_of(e),
        e.to_string(),
        e.reason().as_str(),
        e.destination(),
        e.detail(),
    )
}

/// A `fae.ClientError` raised by the binding itself (bad argument type, unknown serde, …).
pub fn client_error(py: Python<'_>, reason: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    let text = format!("{reason}: {message}");
    raise(py, "ClientError", text, reason, None, Some(&message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_named_class() {
        for r in Reason::ALL {
            assert_ne!(
                class_name(r.kind()),
                "Error",
                "{r} falls to the wildcard arm"
            );
        }
    }

    #[test]
    fn client_error_reply_is_a_client_error() {
        let e = Error::with_detail(
            Reason::ClientError,
            "cannot increment or decrement non-numeric value",
        );
        assert_eq!(class_of(&e), "ClientError");
        let e = Error::with_detail(Reason::ServerError, "out of memory");
        assert_eq!(class_of(&e), "ServerError");
    }
}
