//! The scanner of `gateway/pii/reference.py` (`scan`), over the same patterns.
//!
//! The patterns and the tables come from Python at construction, so there is one
//! copy of them;
//! PCRE2 reads them as Python's `re` does with `re.ASCII` (same backtracking,
//! lookbehind and possessive semantics). What Python does between matches is
//! ported here line for line, and `tests/unit/test_redaction_native.py` holds
//! the two to the same output. Offsets are bytes inside; the caller gets
//! characters.

use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};

use crate::fold::Folding;
use crate::shapes::{shape_of, Shape};
use crate::tables::Tables;
use crate::validate::ipv6_value;

/// Entity types, in the order Python sorts their names (ties at one span go to the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    CnId,
    CreditCard,
    Email,
    Iban,
    Ipv4,
    Ipv6,
    Phone,
    Secret,
    UsSsn,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::CnId,
        Kind::CreditCard,
        Kind::Email,
        Kind::Iban,
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Phone,
        Kind::Secret,
        Kind::UsSsn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::CnId => "CN_ID",
            Kind::CreditCard => "CREDIT_CARD",
            Kind::Email => "EMAIL",
            Kind::Iban => "IBAN",
            Kind::Ipv4 => "IPV4",
            Kind::Ipv6 => "IPV6",
            Kind::Phone => "PHONE",
            Kind::Secret => "SECRET",
            Kind::UsSsn => "US_SSN",
        }
    }
}

/// One detection: `start..end` of the scanned text, its type and canonical value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    pub value: String,
}

/// A numeric pattern with the shape of each of its groups (index 0: the whole match).
struct Numeric {
    regex: Regex,
    shapes: Vec<Option<Shape>>,
}

impl Numeric {
    fn new(source: &str) -> Result<Self, String> {
        let regex = compile(source)?;
        let shapes = regex
            .capture_names()
            .iter()
            .map(|name| name.as_deref().map(shape_of).transpose())
            .collect::<Result<_, _>>()?;
        Ok(Numeric { regex, shapes })
    }

    /// The shape of the group that took part in the last match in `locs`.
    fn shape(&self, locs: &CaptureLocations) -> Option<(usize, Shape)> {
        (1..self.shapes.len())
            .find(|&i| locs.get(i).is_some())
            .and_then(|i| Some((i, self.shapes[i]?)))
    }
}

/// Entity patterns are ASCII (every class, every literal), so they run on bytes: in
/// UTF mode PCRE2 would check the whole subject's UTF-8 on every call, and a scan
/// makes one call per candidate. A multi-byte character is then a few bytes no
/// ASCII class matches, as the character itself matches none.
fn compile(source: &str) -> Result<Regex, String> {
    build(source, false)
}

/// `re.match` semantics: anchored where the search starts.
fn compile_anchored(source: &str) -> Result<Regex, String> {
    build(&format!(r"\G(?:{source})"), false)
}

/// Cues hold Chinese words and count characters, so they run in UTF mode, on the
/// few characters of left context only.
fn compile_cue(source: &str) -> Result<Regex, String> {
    build(&format!(r"\A(?:{source})"), true)
}

fn build(source: &str, utf: bool) -> Result<Regex, String> {
    RegexBuilder::new()
        .utf(utf)
        .jit(true)
        .build(source)
        .map_err(|e| format!("{e} in pattern {:.80}", source))
}

/// The patterns, by the names Python gives them.
pub struct Patterns {
    numeric: Numeric,
    /// The numeric pattern without the "00" + country code branch, anchored.
    numeric_no00: Numeric,
    intl_00_group: usize,
    email_domain: Regex,
    secret: Regex,
    ipv6: Regex,
    pub(crate) not_pii_label: Regex,
    pub(crate) phone_cue: Regex,
    pub(crate) version_cue: Regex,
    pub(crate) ssn_cue: Regex,
    pub(crate) card_cue: Regex,
}

impl Patterns {
    pub fn new(get: impl Fn(&str) -> Result<String, String>) -> Result<Self, String> {
        let numeric = Numeric::new(&get("numeric")?)?;
        let intl_00_group = numeric
            .regex
            .capture_names()
            .iter()
            .position(|n| n.as_deref() == Some("intl_0"))
            .ok_or("the numeric pattern has no intl_0 group")?;
        Ok(Patterns {
            numeric,
            numeric_no00: Numeric::new(&format!(r"\G(?:{})", get("numeric_no00")?))?,
            intl_00_group,
            email_domain: compile_anchored(&get("email_domain")?)?,
            secret: compile(&get("secret")?)?,
            ipv6: compile(&get("ipv6")?)?,
            not_pii_label: compile_cue(&get("not_pii_label")?)?,
            phone_cue: compile_cue(&get("phone_cue")?)?,
            version_cue: compile_cue(&get("version_cue")?)?,
            ssn_cue: compile_cue(&get("ssn_cue")?)?,
            card_cue: compile_cue(&get("card_cue")?)?,
        })
    }

    /// Entities in the (normalised) `text`: sorted, non-overlapping, character offsets.
    pub fn scan(&self, tables: &Tables, text: &str) -> Result<Vec<Hit>, pcre2::Error> {
        let mut hits = Scan { p: self, tables, t: text.as_bytes() }.run()?;
        if !text.is_ascii() {
            to_char_offsets(text.as_bytes(), &mut hits);
        }
        Ok(hits)
    }

    /// Entities in `text` after folding it (`fold`), with character offsets into `text`.
    pub fn detect(
        &self,
        tables: &Tables,
        text: &str,
        fold: &Folding,
    ) -> Result<Vec<Hit>, pcre2::Error> {
        let Some(folded) = fold.apply(text) else {
            return self.scan(tables, text);
        };
        let mut hits = Scan { p: self, tables, t: folded.text.as_bytes() }.run()?;
        for h in &mut hits {
            h.start = folded.start[h.start] as usize;
            h.end = folded.end[h.end] as usize;
        }
        Ok(hits)
    }
}

/// Byte offsets -> character offsets, in one pass (hits are sorted and apart).
fn to_char_offsets(t: &[u8], hits: &mut [Hit]) {
    let (mut byte, mut chars) = (0usize, 0usize);
    let mut advance = |to: usize| {
        chars += t[byte..to].iter().filter(|&&b| b & 0xC0 != 0x80).count();
        byte = to;
        chars
    };
    for h in hits {
        h.start = advance(h.start);
        h.end = advance(h.end);
    }
}

pub(crate) fn is_alnum_(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_token(b: u8) -> bool {
    is_alnum_(b) || b == b'-'
}

fn is_email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_before_ipv6(b: u8) -> bool {
    is_alnum_(b) || b == b':' || b == b'.'
}

pub(crate) fn ascii(parts: &[&[u8]]) -> String {
    String::from_utf8_lossy(&parts.concat()).into_owned()
}

/// One scan of one text; the numeric shapes are validated in `shapes.rs`.
pub(crate) struct Scan<'a> {
    pub(crate) p: &'a Patterns,
    pub(crate) tables: &'a Tables,
    pub(crate) t: &'a [u8],
}

impl Scan<'_> {
    fn numeric(&self, hits: &mut Vec<Hit>) -> Result<(), pcre2::Error> {
        // Scanning resumes at the end of the entity, which can be short of the match
        // (an IBAN's length, a phone's trailing group), or at the end of a rejected
        // candidate: the left-boundary rules stop anything starting inside it.
        let p = self.p;
        let mut locs = p.numeric.regex.capture_locations();
        let mut at = 0;
        while let Some(m) = p.numeric.regex.captures_read_at(&mut locs, self.t, at)? {
            let (s, e) = (m.start(), m.end());
            at = e;
            let Some((group, shape)) = p.numeric.shape(&locs) else { continue };
            let mut hit = self.check(shape, s, e);
            if hit.is_none() && group == p.intl_00_group {
                // "00..." was no phone: try the other shapes ("009-60-2850")
                let mut locs_no00 = p.numeric_no00.regex.capture_locations();
                if let Some(m2) =
                    p.numeric_no00.regex.captures_read_at(&mut locs_no00, self.t, s)?
                {
                    if let Some((_, shape2)) = p.numeric_no00.shape(&locs_no00) {
                        hit = self.check(shape2, s, m2.end());
                    }
                }
            }
            if let Some(h) = hit {
                at = h.end;
                hits.push(h);
            }
        }
        Ok(())
    }

    /// Start of the local part before the `@` at `at`: the whole run of local-part
    /// characters, at most 64, not starting or ending with a dot.
    fn email_local_start(&self, at: usize) -> Option<usize> {
        let t = self.t;
        let lo = at.saturating_sub(64);
        let n = t[lo..at].iter().rev().take_while(|&&b| is_email_local(b)).count();
        let s = at - n;
        if n == 0 || (s == lo && s > 0 && is_email_local(t[s - 1])) {
            return None; // no local part, or a run longer than 64
        }
        if t[s] == b'.' || t[at - 1] == b'.' {
            return None;
        }
        Some(s)
    }

    fn emails(&self, hits: &mut Vec<Hit>) -> Result<(), pcre2::Error> {
        let t = self.t;
        let find_at = |from: usize| t[from..].iter().position(|&b| b == b'@').map(|i| from + i);
        let mut next = find_at(0);
        while let Some(at) = next {
            next = find_at(at + 1);
            if let Some(domain) = self.p.email_domain.find_at(t, at + 1)? {
                if let Some(s) = self.email_local_start(at) {
                    let e = domain.end();
                    let value = t[s..e].to_ascii_lowercase();
                    hits.push(Hit { start: s, end: e, kind: Kind::Email, value: ascii(&[&value]) });
                    next = find_at(e);
                }
            }
        }
        Ok(())
    }

    fn secrets(&self, hits: &mut Vec<Hit>) -> Result<(), pcre2::Error> {
        let t = self.t;
        let mut at = 0;
        while let Some(m) = self.p.secret.find_at(t, at)? {
            let (mut s, e) = (m.start(), m.end());
            while s > 0 && is_token(t[s - 1]) {
                s -= 1; // back to the prefix the lookbehind saw
            }
            hits.push(Hit { start: s, end: e, kind: Kind::Secret, value: ascii(&[&t[s..e]]) });
            at = e;
        }
        Ok(())
    }

    fn ipv6(&self, hits: &mut Vec<Hit>) -> Result<(), pcre2::Error> {
        let t = self.t;
        let after_v6 = |i: usize| i >= 2 && matches!(&t[i - 2..i], b"v6" | b"V6");
        let mut at = 0;
        while let Some(m) = self.p.ipv6.find_at(t, at)? {
            let (c, e) = (m.start(), m.end()); // c: the candidate's first colon
            at = e;
            let mut s = c;
            while s > 0 && t[s - 1].is_ascii_hexdigit() {
                s -= 1; // the first group, before that colon
            }
            if (s == c && e - c > 1 && t[c + 1] != b':') || (s < c && after_v6(c)) {
                s = c + 1; // a label's colon: "地址:fe80::1", "IPv6:fe80::1"
                if s == e || (c > 0 && is_before_ipv6(t[c - 1]) && !after_v6(c)) {
                    continue;
                }
            } else if s > 0 && is_before_ipv6(t[s - 1]) {
                continue; // inside a longer token
            }
            let v = &t[s..e];
            if v.iter().any(|&b| b != b':') {
                if let Some(value) = ipv6_value(&String::from_utf8_lossy(v)) {
                    hits.push(Hit { start: s, end: e, kind: Kind::Ipv6, value });
                }
            }
        }
        Ok(())
    }

    fn run(&self) -> Result<Vec<Hit>, pcre2::Error> {
        let t = self.t;
        let mut hits = Vec::new();
        self.numeric(&mut hits)?;
        let numeric = hits.len(); // numeric hits come out in order
        if t.contains(&b'@') {
            self.emails(&mut hits)?;
        }
        self.secrets(&mut hits)?;
        // An IPv6 address has at least two colons ("::1").
        if t.iter().filter(|&&b| b == b':').count() >= 2 {
            self.ipv6(&mut hits)?;
        }
        if hits.len() == numeric {
            return Ok(hits);
        }
        // Earliest first; at the same start the longest wins; anything overlapping is dropped.
        hits.sort();
        let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
        for h in hits {
            match kept.last_mut() {
                Some(last) if h.start < last.end => {
                    if h.start == last.start && h.end > last.end {
                        *last = h; // e.g. an e-mail address whose local part is a phone number
                    }
                }
                _ => kept.push(h),
            }
        }
        Ok(kept)
    }
}
