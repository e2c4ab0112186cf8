//! Numeric shapes, validated: each candidate of the numeric pattern becomes a hit or
//! nothing (`gateway/pii/shapes.py`, line for line): the validators, the cues to the
//! left, and for international numbers the national plan, which may end the hit short
//! of the match.

use crate::scan::{ascii, is_alnum_, Hit, Kind, Scan};
use crate::validate::{
    card_brand_ok, cn_id_check_ok, cn_id_ok, cn_id_shaped, iban_ok, luhn_ok, split_country_code,
    ssn_ok,
};

/// What a numeric candidate looks like; each has its validator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
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
pub(crate) fn shape_of(group: &str) -> Result<Shape, String> {
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

/// `_digits_of`: the text without its separators.
fn digits_of(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|b| !matches!(b, b' ' | b'-' | b'.' | b'(' | b')')).collect()
}

fn last(s: &[u8], n: usize) -> &[u8] {
    &s[s.len().saturating_sub(n)..]
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

    pub(crate) fn check(&self, shape: Shape, s: usize, e: usize) -> Option<Hit> {
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
}
