//! Numeric arguments whose bad values raise `fae.ClientError` (reason `invalid_argument`), not
//! the `OverflowError`/`TypeError` of a plain `u32`/`usize`/`f64` parameter: every failure of a
//! `fae` call is an `fae.Error`.

use pyo3::prelude::*;

use crate::error::client_error;

/// A number argument of type `T`, checked on extraction.
#[derive(Clone, Copy, Debug)]
pub struct Num<T>(pub T);

/// `Option<Num<T>>` → `Option<T>`.
pub fn opt<T>(v: Option<Num<T>>) -> Option<T> {
    v.map(|n| n.0)
}

macro_rules! num_arg {
    ($($t:ty => $what:expr),* $(,)?) => {$(
        impl<'a, 'py> FromPyObject<'a, 'py> for Num<$t> {
            type Error = PyErr;

            fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
                obj.extract::<$t>().map(Num).map_err(|_| {
                    let shown = obj
                        .repr()
                        .map(|r| r.to_string())
                        .unwrap_or_else(|_| "?".into());
                    let shown: String = shown.chars().take(40).collect();
                    client_error(obj.py(), "invalid_argument", format!("expected {}, not {shown}", $what))
                })
            }
        }
    )*};
}

num_arg! {
    u32 => "an int in 0..2**32",
    i32 => "an int in -2**31..2**31",
    usize => "a non-negative int",
    f64 => "a number",
}
