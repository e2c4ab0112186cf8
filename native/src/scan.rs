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

use crate::tables::Tables;
use crate::validate::{
    card_brand_ok, cn_id_check_ok, cn_id_ok, cn_id_shaped, iban_ok, ipv6_value, luhn_ok,
    split_country_code, ssn_ok,
};

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

/// What a numeric candidate looks like; each has its validator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Ssn,
    SsnRun,
    Mobile,
    MobilePrefixed,
    Us,
    Land,
    Card,
    CardRun,
    CnId,
    Ipv4,
    Run18,
    UsBare,
    Intl,
    Iban,
}

/// The shape a named group of the numeric pattern stands for (`ssn_d` -> Ssn ...).
fn shape_of(group: &str) -> Result<Shape, String> {
    if group == "mobile_p" {
        return Ok(Shape::MobilePrefixed);
    }
    Ok(match group.split('_').next().unwrap_or_default() {
        "ssn" => Shape::Ssn,
        "ssnrun" => Shape::SsnRun,
        "mobile" => Shape::Mobile,
        "us" | "us1" => Shape::Us,
        "land" | "land4" => Shape::Land,
        "card" => Shape::Card,
        "cardrun" => Shape::CardRun,
        "cnid" => Shape::CnId,
        "ipv4" => Shape::Ipv4,
        "run18" => Shape::Run18,
        "usbare" => Shape::UsBare,
        "intl" => Shape::Intl,
        "iban" => Shape::Iban,
        _ => return Err(format!("numeric pattern group {group:?} names no known shape")),
    })
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
    not_pii_label: Regex,
    phone_cue: Regex,
    version_cue: Regex,
    ssn_cue: Regex,
    card_cue: Regex,
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

/// Per-character NFKC for the characters whose compatibility form is ASCII (the
/// table is `gateway.pii.folding.Folding`'s, handed over by Python).
pub struct Folding {
    table: std::collections::HashMap<char, Box<str>>,
    /// One bit per BMP code point: in `table`? (Most text is all BMP, and a bit test per
    /// character is far cheaper than a hash lookup.)
    bmp: Vec<u64>,
}

/// A folded text and, for each byte offset into it, the character offset into the
/// original where an entity starting (`start`) or ending (`end`) there begins or ends.
/// Inside a character that folded to several (`⑩` -> `10`) both take the whole one.
pub struct Folded {
    text: String,
    start: Vec<u32>,
    end: Vec<u32>,
}

impl Folding {
    pub fn new(table: std::collections::HashMap<char, String>) -> Self {
        let mut bmp = vec![0u64; 0x10000 / 64];
        for &c in table.keys().filter(|&&c| (c as u32) < 0x10000) {
            bmp[c as usize / 64] |= 1 << (c as u32 % 64);
        }
        Folding { table: table.into_iter().map(|(c, s)| (c, s.into_boxed_str())).collect(), bmp }
    }

    fn folds(&self, c: char) -> bool {
        let cp = c as u32;
        if cp < 0x10000 {
            self.bmp[cp as usize / 64] & (1 << (cp % 64)) != 0
        } else {
            self.table.contains_key(&c)
        }
    }

    /// None when nothing in `text` folds (ASCII text never does).
    pub fn apply(&self, text: &str) -> Option<Folded> {
        if text.is_ascii() || !text.chars().any(|c| self.folds(c)) {
            return None;
        }
        let mut folded =
            Folded { text: String::with_capacity(text.len()), start: vec![], end: vec![] };
        for (index, c) in text.chars().enumerate() {
            let index = index as u32;
            let before = folded.text.len();
            let folds = self.folds(c);
            match folds.then(|| &self.table[&c]) {
                Some(ascii) => folded.text.push_str(ascii),
                None => folded.text.push(c),
            }
            for byte in before..folded.text.len() {
                let inside = byte > before && folds;
                folded.start.push(index);
                folded.end.push(if inside { index + 1 } else { index });
            }
        }
        let chars = text.chars().count() as u32;
        folded.start.push(chars);
        folded.end.push(chars);
        Some(folded)
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

fn is_alnum_(b: u8) -> bool {
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

/// `_digits_of`: the text without its separators.
fn digits_of(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|b| !matches!(b, b' ' | b'-' | b'.' | b'(' | b')')).collect()
}

fn last(s: &[u8], n: usize) -> &[u8] {
    &s[s.len().saturating_sub(n)..]
}

fn ascii(parts: &[&[u8]]) -> String {
    String::from_utf8_lossy(&parts.concat()).into_owned()
}

struct Scan<'a> {
    p: &'a Patterns,
    tables: &'a Tables,
    t: &'a [u8],
}

impl Scan<'_> {
    fn hit(&self, start: usize, end: usize, kind: Kind, value: &[&[u8]]) -> Option<Hit> {
        Some(Hit { start, end, kind, value: ascii(value) })
    }

    /// Up to the cue window's characters before `s`, reversed and lower-cased (cues
    /// are matched on it anchored at the candidate).
    fn left(&self, s: usize) -> String {
        let window = self.tables.cue_window;
        // `s` is a match start (an ASCII character); at most 4 bytes a character.
        let mut lo = s.saturating_sub(4 * window);
        while lo < s && self.t[lo] & 0xC0 == 0x80 {
            lo += 1; // to a character boundary
        }
        let before = std::str::from_utf8(&self.t[lo..s]).unwrap_or_default();
        before.chars().rev().take(window).flat_map(char::to_lowercase).collect()
    }

    /// An order / invoice / tracking ... label ends right before `s`.
    fn labelled(&self, s: usize) -> bool {
        self.p.not_pii_label.is_match(self.left(s).as_bytes()).unwrap_or(false)
    }

    fn check(&self, shape: Shape, s: usize, e: usize) -> Option<Hit> {
        let t = self.t;
        let v = &t[s..e];
        match shape {
            Shape::Card => {
                let d: Vec<u8> = v.iter().copied().filter(|b| !matches!(b, b' ' | b'-')).collect();
                self.card(s, e, &d)
            }
            Shape::CardRun => self.card(s, e, v),
            Shape::Run18 => {
                if cn_id_shaped(self.tables, v) {
                    // a CN ID, or one with a typo in it: never a card
                    return if cn_id_check_ok(v) { self.hit(s, e, Kind::CnId, &[v]) } else { None };
                }
                self.card(s, e, v)
            }
            Shape::CnId => {
                let id: Vec<u8> =
                    v.iter().filter(|&&b| b != b' ').map(u8::to_ascii_uppercase).collect();
                if id.len() == 18 && cn_id_ok(self.tables, &id) {
                    self.hit(s, e, Kind::CnId, &[&id])
                } else {
                    None
                }
            }
            Shape::Ipv4 => {
                let version = self.p.version_cue.is_match(self.left(s).as_bytes()).unwrap_or(false);
                if version {
                    None
                } else {
                    self.hit(s, e, Kind::Ipv4, &[v])
                }
            }
            Shape::Ssn => {
                let d = [&t[s..s + 3], &t[s + 4..s + 6], &t[s + 7..e]].concat();
                if ssn_ok(&d) {
                    self.hit(s, e, Kind::UsSsn, &[&d])
                } else {
                    None
                }
            }
            Shape::SsnRun => {
                // nine digits without separators: an SSN only right after an SSN cue
                if !ssn_ok(v) {
                    return None;
                }
                let left = self.left(s);
                let cue = self.p.ssn_cue.is_match(left.as_bytes()).unwrap_or(false);
                if !cue || self.p.not_pii_label.is_match(left.as_bytes()).unwrap_or(true) {
                    return None;
                }
                self.hit(s, e, Kind::UsSsn, &[v])
            }
            Shape::Mobile if self.labelled(s) => None, // after "order no.": the order's
            Shape::Mobile | Shape::MobilePrefixed => {
                self.hit(s, e, Kind::Phone, &[b"+86", last(&digits_of(v), 11)])
            }
            Shape::Land => self.land(s, e),
            Shape::Us => {
                let x =
                    v.iter().position(|&b| b == b'x').or_else(|| v.iter().position(|&b| b == b'e'));
                if self.labelled(s) {
                    return None;
                }
                let number = digits_of(&v[..x.unwrap_or(v.len())]);
                self.hit(s, e, Kind::Phone, &[b"+1", last(&number, 10)])
            }
            Shape::UsBare => {
                let left = self.left(s);
                let cue = self.p.phone_cue.is_match(left.as_bytes()).unwrap_or(false);
                if !cue || self.p.not_pii_label.is_match(left.as_bytes()).unwrap_or(true) {
                    return None;
                }
                self.hit(s, e, Kind::Phone, &[b"+1", v])
            }
            Shape::Intl => self.intl(s, e),
            Shape::Iban => self.iban(s - 2), // the match starts at the first check digit
        }
    }

    /// Luhn, and a known issuer prefix or a card cue before it, and no order label.
    fn card(&self, s: usize, e: usize, d: &[u8]) -> Option<Hit> {
        if !luhn_ok(d) {
            return None;
        }
        let left = self.left(s);
        let cue = || self.p.card_cue.is_match(left.as_bytes()).unwrap_or(false);
        if !card_brand_ok(d) && !cue() {
            return None;
        }
        if self.p.not_pii_label.is_match(left.as_bytes()).unwrap_or(true) {
            return None;
        }
        self.hit(s, e, Kind::CreditCard, &[d])
    }

    /// CN landline: 010 / 02x with 8-digit numbers, 0[3-9]xx with 7 or 8 digits.
    fn land(&self, s: usize, e: usize) -> Option<Hit> {
        let d = digits_of(&self.t[s..e]);
        if d.len() < 3 || d[1] == b'0' || (d[1] == b'1' && d[2] != b'0') {
            return None; // 010 is the only 01x area code
        }
        let short_area = matches!(d[1], b'1' | b'2');
        let subscriber = d.len() as isize - if short_area { 3 } else { 4 };
        let fits = if short_area { subscriber == 8 } else { (7..=8).contains(&subscriber) };
        if !fits || self.labelled(s) {
            return None;
        }
        self.hit(s, e, Kind::Phone, &[b"+86", &d[1..]])
    }

    /// `+CC ...` / `00CC ...`: keep the groups whose national length fits the plan.
    fn intl(&self, s: usize, e: usize) -> Option<Hit> {
        let t = self.t;
        let x = t[s..e].iter().position(|&b| b == b'x');
        let end_body = x.map_or(e, |x| s + x);
        // Digit groups with their end offsets; "(0)" is a trunk prefix and not counted.
        let mut groups: Vec<(&[u8], usize)> = Vec::new();
        let mut i = s;
        while i < end_body {
            let close = (i + 2..end_body.min(i + 6)).find(|&j| t[j] == b')');
            if t[i] == b'(' && close.is_some_and(|j| t[i + 1..j].iter().all(u8::is_ascii_digit)) {
                let j = close.unwrap();
                if &t[i..=j] != b"(0)" {
                    groups.push((&t[i + 1..j], j + 1));
                }
                i = j + 1;
            } else if t[i].is_ascii_digit() {
                let j = (i..end_body).find(|&j| !t[j].is_ascii_digit()).unwrap_or(end_body);
                groups.push((&t[i..j], j));
                i = j;
            } else {
                i += 1;
            }
        }
        let mut first = groups.first()?.0;
        let prefixed_00 = t[s] == b'0';
        if prefixed_00 {
            first = first.get(2..).unwrap_or_default(); // the "00" international prefix
            if first.is_empty() {
                return None;
            }
        }
        let (cc, national) = split_country_code(self.tables, first);
        let plan = self.tables.national_lengths(cc);
        if plan.is_none() && prefixed_00 {
            return None; // "00" + unknown code: too easily an ordinary number
        }
        let (lo, hi) = plan.unwrap_or((6, 15usize.saturating_sub(cc.len())));
        // The longest run of whole groups whose national number fits the plan.
        let mut national = national.to_vec();
        let mut best = (lo..=hi).contains(&national.len()).then(|| (0, national.clone()));
        for (i, (g, _)) in groups.iter().enumerate().skip(1) {
            national.extend_from_slice(g);
            if national.len() > hi {
                break;
            }
            if national.len() >= lo {
                best = Some((i, national.clone()));
            }
        }
        let (best, number) = best?;
        if cc == b"1" && !(b'2'..=b'9').contains(&number[0]) {
            return None;
        }
        let mut end = groups[best].1;
        if best == groups.len() - 1 && x.is_some() {
            end = e; // the whole number is valid: keep its extension
        } else if end < t.len() && is_alnum_(t[end]) {
            return None;
        }
        self.hit(s, end, Kind::Phone, &[b"+", cc, &number])
    }

    fn iban(&self, s: usize) -> Option<Hit> {
        let t = self.t;
        let length = self.tables.iban_length(&t[s..s + 2])?;
        // [A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){length-4}, anchored at s
        if !t.get(s + 2..s + 4)?.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let body = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
        let mut value = t[s..s + 4].to_vec();
        let mut end = s + 4;
        for _ in 4..length {
            if t.get(end) == Some(&b' ') && t.get(end + 1).is_some_and(|&b| body(b)) {
                end += 1;
            }
            let c = *t.get(end).filter(|&&b| body(b))?;
            value.push(c);
            end += 1;
        }
        // The IBAN ends after its length-th character; what follows must not continue it.
        if t.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            return None;
        }
        if iban_ok(&value) {
            self.hit(s, end, Kind::Iban, &[&value])
        } else {
            None
        }
    }

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
