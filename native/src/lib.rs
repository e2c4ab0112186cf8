//! `ragward_pii`: the PII scanner of `gateway/redaction.py`, compiled.
//!
//! Python keeps the patterns, the folding of compatibility characters and the
//! redaction itself; this module finds and validates the entities, which is
//! where the time goes. `Scanner.scan` returns what `redaction._scan` returns.

mod scan;
mod validate;

use std::collections::HashMap;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use scan::{Kind, Patterns};

#[pyclass(frozen, module = "ragward_pii")]
struct Scanner {
    patterns: Patterns,
    /// The Python object standing for each `Kind`, by `Kind as usize`.
    kinds: Vec<PyObject>,
}

#[pymethods]
impl Scanner {
    /// `patterns`: regex sources by name (numeric, numeric_no00, email_domain, secret,
    /// ipv6, not_pii_label, phone_cue, version_cue), in PCRE2 syntax with `re.ASCII`
    /// meaning. `kinds`: the object to return for each entity type name.
    #[new]
    fn new(
        py: Python<'_>,
        patterns: HashMap<String, String>,
        kinds: HashMap<String, PyObject>,
    ) -> PyResult<Self> {
        let get = |name: &str| patterns.get(name).cloned().ok_or(format!("no {name:?} pattern"));
        let patterns = Patterns::new(get).map_err(PyValueError::new_err)?;
        let kinds = Kind::ALL
            .iter()
            .map(|k| {
                kinds.get(k.name()).map(|o| o.clone_ref(py)).ok_or_else(|| {
                    PyValueError::new_err(format!("no object for entity type {}", k.name()))
                })
            })
            .collect::<PyResult<_>>()?;
        Ok(Scanner { patterns, kinds })
    }

    /// Entities in `text`: `(start, end, kind, canonical value)`, sorted and
    /// non-overlapping, offsets in characters.
    fn scan(&self, py: Python<'_>, text: &str) -> PyResult<Vec<(usize, usize, PyObject, String)>> {
        let hits = self.patterns.scan(text).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(hits
            .into_iter()
            .map(|h| (h.start, h.end, self.kinds[h.kind as usize].clone_ref(py), h.value))
            .collect())
    }
}

#[pymodule]
fn ragward_pii(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Scanner>()
}
