//! The registries the validators read, handed over by Python (`gateway/pii/tables.py`)
//! when the scanner is built: one copy of the data, converted here once into arrays
//! indexed by the code itself, so a lookup is an index, not a search or a hash.

use std::collections::HashMap;

/// The tables as Python hands them over (see `gateway.pii.native.tables`).
pub struct TableArgs {
    pub iban_lengths: HashMap<String, usize>,
    pub national_lengths: HashMap<String, (usize, usize)>,
    pub two_digit_country_codes: Vec<String>,
    pub cn_provinces: Vec<String>,
    pub cue_window: usize,
}

pub struct Tables {
    /// IBAN length by country code, at `26 * letter + letter`; 0: no such country.
    iban: [u8; 26 * 26],
    /// (min, max) national significant number length by country code (1-3 digits, no
    /// leading zero, so the number itself is the index); `None`: no plan known.
    national: Vec<Option<(u8, u8)>>,
    /// The two-digit country codes, by their value.
    two_digit_cc: [bool; 100],
    /// CN province-level region codes, by their value.
    cn_provinces: [bool; 100],
    /// Characters of left context a cue may span.
    pub cue_window: usize,
}

fn digits(code: &str, len: std::ops::RangeInclusive<usize>, what: &str) -> Result<usize, String> {
    let ok = len.contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(format!("{what} {code:?} is not {len:?} ASCII digits"));
    }
    Ok(code.parse().unwrap_or_default())
}

fn two_digits(codes: &[String], what: &str) -> Result<[bool; 100], String> {
    let mut table = [false; 100];
    for code in codes {
        table[digits(code, 2..=2, what)?] = true;
    }
    Ok(table)
}

fn letter(b: u8) -> usize {
    usize::from(b - b'A')
}

impl Tables {
    pub fn new(args: TableArgs) -> Result<Self, String> {
        let mut iban = [0u8; 26 * 26];
        for (cc, &length) in &args.iban_lengths {
            let b = cc.as_bytes();
            if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) || !(5..=34).contains(&length)
            {
                return Err(format!("IBAN length {cc:?}: {length} is not a country's IBAN length"));
            }
            iban[26 * letter(b[0]) + letter(b[1])] = length as u8;
        }
        let mut national = vec![None; 1000];
        for (cc, &(lo, hi)) in &args.national_lengths {
            if cc.starts_with('0') || lo > hi || hi > 15 {
                return Err(format!("national plan {cc:?}: ({lo}, {hi}) is not a plan"));
            }
            national[digits(cc, 1..=3, "country code")?] = Some((lo as u8, hi as u8));
        }
        Ok(Tables {
            iban,
            national,
            two_digit_cc: two_digits(&args.two_digit_country_codes, "two-digit country code")?,
            cn_provinces: two_digits(&args.cn_provinces, "CN province code")?,
            cue_window: args.cue_window,
        })
    }

    /// IBAN length of the country `cc` (two capitals), if it has IBANs.
    pub fn iban_length(&self, cc: &[u8]) -> Option<usize> {
        match cc {
            [a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
                Some(usize::from(self.iban[26 * letter(*a) + letter(*b)])).filter(|&n| n > 0)
            }
            _ => None,
        }
    }

    /// National significant number lengths of the country code `cc` (ASCII digits).
    pub fn national_lengths(&self, cc: &[u8]) -> Option<(usize, usize)> {
        if cc.is_empty() || cc.len() > 3 || cc[0] == b'0' {
            return None; // (no code of the table is spelt so)
        }
        let index = cc.iter().fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        self.national[index].map(|(lo, hi)| (usize::from(lo), usize::from(hi)))
    }

    /// `code` (two ASCII digits) is a two-digit country code.
    pub fn two_digit_country_code(&self, code: &[u8]) -> bool {
        self.two_digit_cc[two(code)]
    }

    /// `code` (two ASCII digits) is a CN province-level region code.
    pub fn cn_province(&self, code: &[u8]) -> bool {
        self.cn_provinces[two(code)]
    }
}

fn two(code: &[u8]) -> usize {
    usize::from(code[0] - b'0') * 10 + usize::from(code[1] - b'0')
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A few entries of each table, as Python would hand them over.
    pub fn sample() -> Tables {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Tables::new(TableArgs {
            iban_lengths: [("DE".to_string(), 22), ("NO".to_string(), 15)].into(),
            national_lengths: [("1".to_string(), (10, 10)), ("44".to_string(), (9, 10))].into(),
            two_digit_country_codes: s(&["44", "86"]),
            cn_provinces: s(&["11", "44"]),
            cue_window: 28,
        })
        .unwrap()
    }

    #[test]
    fn lookups() {
        let t = sample();
        assert_eq!(t.iban_length(b"DE"), Some(22));
        assert_eq!(t.iban_length(b"NO"), Some(15));
        assert_eq!(t.iban_length(b"XX"), None);
        assert_eq!(t.iban_length(b"de"), None);
        assert_eq!(t.national_lengths(b"1"), Some((10, 10)));
        assert_eq!(t.national_lengths(b"44"), Some((9, 10)));
        assert_eq!(t.national_lengths(b"01"), None);
        assert_eq!(t.national_lengths(b"444"), None);
        assert!(t.two_digit_country_code(b"86") && !t.two_digit_country_code(b"21"));
        assert!(t.cn_province(b"11") && !t.cn_province(b"99"));
    }

    #[test]
    fn bad_tables_are_refused() {
        let args = |cc: &str, plan: (usize, usize)| TableArgs {
            iban_lengths: HashMap::new(),
            national_lengths: [(cc.to_string(), plan)].into(),
            two_digit_country_codes: vec![],
            cn_provinces: vec![],
            cue_window: 28,
        };
        assert!(Tables::new(args("1", (10, 10))).is_ok());
        assert!(Tables::new(args("01", (10, 10))).is_err());
        assert!(Tables::new(args("1234", (10, 10))).is_err());
        assert!(Tables::new(args("1", (11, 10))).is_err());
    }
}
