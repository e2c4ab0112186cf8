//! `ragward_pii`: the PII scanner of `gateway/redaction.py`, compiled.
//!
//! Python keeps the patterns, the folding table and the redaction itself; this
//! module folds the text, finds and validates the entities, which is where the
//! time goes. `Scanner.detect` returns what `redaction._detect` returns.

mod scan;
mod validate;

use std::collections::HashMap;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use scan::{Folding, Hit, Kind, Patterns};

type PyHit = (usize, usize, PyObject, String);

#[pyclass(frozen, module = "ragward_pii")]
struct Scanner {
    patterns: Patterns,
    folding: Folding,
    /// The Python object standing for each `Kind`, by `Kind as usize`.
    kinds: Vec<PyObject>,
}

#[pymethods]
impl Scanner {
    /// `patterns`: regex sources by name (numeric, numeric_no00, email_domain, secret,
    /// ipv6, not_pii_label, phone_cue, version_cue, ssn_cue, card_cue), in PCRE2 syntax
    /// with `re.ASCII` meaning. `kinds`: the object to return for each entity type name.
    /// `fold`: the characters to fold before scanning, each to its ASCII compatibility form.
    #[new]
    fn new(
        py: Python<'_>,
        patterns: HashMap<String, String>,
        kinds: HashMap<String, PyObject>,
        fold: HashMap<char, String>,
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
        Ok(Scanner { patterns, folding: Folding::new(fold), kinds })
    }

    /// Entities in `text` as it is (already folded): `(start, end, kind, canonical
    /// value)`, sorted and non-overlapping, offsets in characters.
    fn scan(&self, py: Python<'_>, text: &str) -> PyResult<Vec<PyHit>> {
        let hits = self.patterns.scan(text).map_err(match_error)?;
        Ok(self.to_python(py, hits))
    }

    /// The same for `text` folded first, with offsets into `text` itself.
    fn detect(&self, py: Python<'_>, text: &str) -> PyResult<Vec<PyHit>> {
        let hits = self.patterns.detect(text, &self.folding).map_err(match_error)?;
        Ok(self.to_python(py, hits))
    }
}

impl Scanner {
    fn to_python(&self, py: Python<'_>, hits: Vec<Hit>) -> Vec<PyHit> {
        hits.into_iter()
            .map(|h| (h.start, h.end, self.kinds[h.kind as usize].clone_ref(py), h.value))
            .collect()
    }
}

fn match_error(e: pcre2::Error) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

#[pymodule]
fn ragward_pii(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Scanner>()
}
