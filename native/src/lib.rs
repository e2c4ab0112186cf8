//! `ragward_pii`: the PII scanner of `gateway/pii/`, compiled.
//!
//! Python keeps the patterns, the folding table, the registries the validators read
//! and the redaction itself, and hands the data over when a `Scanner` is built; this
//! module folds the text, finds and validates the entities, which is where the
//! time goes. `Scanner.detect` returns what `gateway.pii.reference.detect` returns.

mod fold;
mod scan;
mod shapes;
mod tables;
mod validate;

use std::collections::HashMap;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use fold::Folding;
use scan::{Hit, Kind, Patterns};
use tables::{TableArgs, Tables};

type PyHit = (usize, usize, PyObject, String);

#[pyclass(frozen, module = "ragward_pii")]
struct Scanner {
    patterns: Patterns,
    tables: Tables,
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
    /// `tables`: the registries (`gateway.pii.native.tables()`), converted here once.
    #[new]
    fn new(
        py: Python<'_>,
        patterns: HashMap<String, String>,
        kinds: HashMap<String, PyObject>,
        fold: HashMap<char, String>,
        tables: TablesFromPython,
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
        let tables = Tables::new(tables.0).map_err(PyValueError::new_err)?;
        Ok(Scanner { patterns, tables, folding: Folding::new(fold), kinds })
    }

    /// Entities in `text` as it is (already folded): `(start, end, kind, canonical
    /// value)`, sorted and non-overlapping, offsets in characters.
    fn scan(&self, py: Python<'_>, text: &str) -> PyResult<Vec<PyHit>> {
        let hits = self.patterns.scan(&self.tables, text).map_err(match_error)?;
        Ok(self.to_python(py, hits))
    }

    /// The same for `text` folded first, with offsets into `text` itself.
    fn detect(&self, py: Python<'_>, text: &str) -> PyResult<Vec<PyHit>> {
        let hits = self.patterns.detect(&self.tables, text, &self.folding).map_err(match_error)?;
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

/// The `tables` dict: every key is required, so a table Python forgot to hand over
/// stops construction with its name instead of a scanner that finds less.
struct TablesFromPython(TableArgs);

impl<'py> FromPyObject<'py> for TablesFromPython {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let item = |key: &str| {
            ob.get_item(key).map_err(|_| PyValueError::new_err(format!("tables: no {key:?} table")))
        };
        Ok(TablesFromPython(TableArgs {
            iban_lengths: item("iban_lengths")?.extract()?,
            national_lengths: item("national_lengths")?.extract()?,
            two_digit_country_codes: item("two_digit_country_codes")?.extract()?,
            cn_provinces: item("cn_provinces")?.extract()?,
            cue_window: item("cue_window")?.extract()?,
        }))
    }
}

fn match_error(e: pcre2::Error) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

#[pymodule]
fn ragward_pii(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Scanner>()
}
