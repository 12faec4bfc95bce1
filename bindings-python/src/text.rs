//! A `str`'s UTF-8 bytes without a copy.
//!
//! pyo3's abi3-py39 build has no borrowed UTF-8 view of a `str` (`PyUnicode_AsUTF8AndSize`
//! joined the limited API in 3.10), so `encode_utf8` makes a new `bytes` per key: an allocation,
//! a copy and a free on every call, 100 of each per 100-key `get_many`. The function itself is
//! exported with the same signature by every CPython 3 (3.3 on, 3.9 included), so it is declared
//! here. For an ASCII `str` (almost every key) it returns the str's own buffer; otherwise CPython
//! caches the UTF-8 form in the object on the first call. Either way the bytes live, unchanged,
//! as long as the `str`, which [`Utf8`] holds.

use std::os::raw::c_char;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

unsafe extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut ffi::PyObject,
        size: *mut ffi::Py_ssize_t,
    ) -> *const c_char;
}

/// The UTF-8 bytes of a `str` it keeps alive.
#[derive(Debug)]
pub struct Utf8<'py> {
    _owner: Bound<'py, PyString>,
    ptr: *const u8,
    len: usize,
}

impl<'py> Utf8<'py> {
    /// The UTF-8 view of `s`; None for a str UTF-8 cannot carry (a lone surrogate), with no
    /// Python exception left set.
    pub fn new(s: &Bound<'py, PyString>) -> Option<Self> {
        let mut size: ffi::Py_ssize_t = 0;
        // SAFETY: `s` is a live str (the GIL is held: we have a `Bound`); the function reads it
        // and writes `size` only.
        let ptr = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
        if ptr.is_null() {
            // The UnicodeEncodeError it raised: the caller reports its own error.
            drop(PyErr::take(s.py()));
            return None;
        }
        Some(Utf8 {
            _owner: s.clone(),
            ptr: ptr.cast(),
            len: usize::try_from(size).ok()?,
        })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` are the UTF-8 buffer of `_owner`, which this value keeps alive; a
        // str is immutable and CPython frees that buffer only with the str. Reading it needs no
        // GIL (the callers read key bytes inside `py.detach`, as they do a `bytes` object's).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}
