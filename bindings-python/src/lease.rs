//! `fae.Lease`: what `Client.get_or_lease` found — the core's [`fae_core::lease::Lease`] with
//! its value decoded by the client's serde. A plain, immutable record: the lease dance itself
//! (who fills, who waits) is the core's and memcached's.

use pyo3::prelude::*;

/// Longest value repr `Lease.__repr__` shows before it cuts it short.
const REPR_VALUE_MAX: usize = 80;

/// The outcome of one lease read. See `fae/_fae.pyi`.
#[derive(Debug)]
#[pyclass(frozen, module = "fae._fae", name = "Lease")]
pub struct Lease {
    status: &'static str,
    value: Py<PyAny>,
    token: Option<u64>,
    stale: bool,
}

impl Lease {
    /// A lease from the core's status name, the decoded value (None when there is none), the
    /// token (for `miss` and `refresh`) and the item's stale mark.
    pub fn new(status: &'static str, value: Py<PyAny>, token: Option<u64>, stale: bool) -> Self {
        Lease {
            status,
            value,
            token,
            stale,
        }
    }
}

#[pymethods]
impl Lease {
    /// `"hit"`, `"refresh"`, `"stale"`, `"miss"` or `"wait"`.
    #[getter]
    fn status(&self) -> &'static str {
        self.status
    }

    /// The value to serve (decoded like `get`): for `hit`, `refresh` and `stale`; else None.
    #[getter]
    fn value(&self, py: Python<'_>) -> Py<PyAny> {
        self.value.clone_ref(py)
    }

    /// The token to pass to `set_with_lease`: for `miss` and `refresh`; else None.
    #[getter]
    fn token(&self) -> Option<u64> {
        self.token
    }

    /// True when the value was invalidated (`invalidate`) and is served stale.
    #[getter]
    fn stale(&self) -> bool {
        self.stale
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut value = self.value.bind(py).repr()?.to_string();
        if let Some((cut, _)) = value.char_indices().nth(REPR_VALUE_MAX) {
            value.truncate(cut);
            value.push_str("...");
        }
        let token = self
            .token
            .map_or_else(|| "None".to_string(), |t| t.to_string());
        let stale = if self.stale { "True" } else { "False" };
        Ok(format!(
            "fae.Lease(status='{}', value={value}, token={token}, stale={stale})",
            self.status
        ))
    }
}
