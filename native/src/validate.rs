//! Checksums and numbering plans: the validators of `gateway/pii/validators.py`,
//! byte for byte. Every input here is ASCII (the patterns only match ASCII).
//!
//! The registries they read (IBAN lengths, E.164 national plans, two-digit country
//! codes, CN provinces) are Python's (`gateway/pii/tables.py`), handed over when the
//! scanner is built and converted once into arrays indexed by the code (`tables.rs`).

use crate::tables::Tables;

/// Luhn mod 10.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &c) in digits.iter().rev().enumerate() {
        let d = u32::from(c.wrapping_sub(b'0'));
        sum += if i % 2 == 1 { [0, 2, 4, 6, 8, 1, 3, 5, 7, 9][d as usize % 10] } else { d };
    }
    sum.is_multiple_of(10)
}

fn between(x: &[u8], lo: &[u8], hi: &[u8]) -> bool {
    lo <= x && x <= hi
}

/// Known issuer prefix (IIN) with a length that issuer uses.
pub fn card_brand_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p2 = &d[..2];
    let p3 = &d[..3];
    let p4 = &d[..4];
    match d[0] {
        b'4' => matches!(n, 13 | 16 | 19), // Visa
        b'5' => {
            if between(p2, b"51", b"55") {
                n == 16 // Mastercard
            } else {
                matches!(p2, b"50" | b"56" | b"57" | b"58") && (13..=19).contains(&n)
                // Maestro
            }
        }
        // Mastercard 2-series, Mir
        b'2' => (between(p4, b"2221", b"2720") || between(p4, b"2200", b"2204")) && n == 16,
        b'3' => {
            if matches!(p2, b"34" | b"37") {
                n == 15 // Amex
            } else if between(p4, b"3528", b"3589") {
                (16..=19).contains(&n) // JCB
            } else if between(p3, b"300", b"305") || matches!(p2, b"36" | b"38" | b"39") {
                (14..=19).contains(&n) // Diners
            } else {
                false
            }
        }
        // Discover, UnionPay (62), Maestro (6x), RuPay (60, 65)
        b'6' => (16..=19).contains(&n) || (matches!(p2, b"63" | b"67") && n >= 13),
        b'8' => matches!(p2, b"81" | b"82") && (16..=19).contains(&n), // UnionPay 81, RuPay 82
        _ => false,
    }
}

fn two(s: &[u8]) -> u32 {
    u32::from(s[0] - b'0') * 10 + u32::from(s[1] - b'0')
}

/// The first 17 characters look like a CN resident ID: province code, birth date.
pub fn cn_id_shaped(tables: &Tables, s: &[u8]) -> bool {
    if !tables.cn_province(&s[..2]) {
        return false;
    }
    let year = two(&s[6..8]) * 100 + two(&s[8..10]);
    let (month, day) = (two(&s[10..12]), two(&s[12..14]));
    let last = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => return false,
    };
    (1900..=2100).contains(&year) && (1..=last).contains(&day)
}

/// The ISO 7064 MOD 11-2 check character of an 18-character CN ID.
pub fn cn_id_check_ok(s: &[u8]) -> bool {
    // Digit i (from the left) weighs 2**(17-i) mod 11; as 13 = 2 (mod 11), reading the
    // 17 digits in base 13 gives that sum / 2, modulo 11.
    let acc = s[..17].iter().fold(0u32, |acc, &c| (acc * 13 + u32::from(c - b'0')) % 11);
    b"10X98765432"[(2 * acc % 11) as usize] == s[17]
}

pub fn cn_id_ok(tables: &Tables, s: &[u8]) -> bool {
    cn_id_shaped(tables, s) && cn_id_check_ok(s)
}

pub fn ssn_ok(d: &[u8]) -> bool {
    let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// Mod-97 of the IBAN rearranged (country and check digits moved to the end,
/// letters read as 10..35) is 1.
pub fn iban_ok(s: &[u8]) -> bool {
    if !s[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut rem = 0u32;
    for &c in s[4..].iter().chain(&s[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

/// Octets 0-255 without leading zeros.
fn ipv4_ok(s: &str) -> bool {
    s.split('.').all(|o| {
        !o.is_empty()
            && o.len() <= 3
            && !(o.len() > 1 && o.starts_with('0'))
            && o.bytes().all(|b| b.is_ascii_digit())
            && o.parse::<u32>().is_ok_and(|v| v <= 255)
    })
}

/// The address as eight hex groups without leading zeros if `v` (hex digits, colons,
/// an optional dotted-quad tail) is a valid IPv6 address.
pub fn ipv6_value(v: &str) -> Option<String> {
    let v = v.to_ascii_lowercase();
    let mut v = v.as_str();
    let mut tail: Vec<String> = Vec::new();
    if v.contains('.') {
        let i = v.rfind(':')?;
        let quad = &v[i + 1..];
        if quad.matches('.').count() != 3 || !ipv4_ok(quad) {
            return None;
        }
        let o: Vec<u32> = quad.split('.').map(|x| x.parse().unwrap()).collect();
        tail = vec![format!("{:x}", (o[0] << 8) | o[1]), format!("{:x}", (o[2] << 8) | o[3])];
        v = if v[..=i].ends_with("::") { &v[..=i] } else { &v[..i] };
    }
    let groups: Vec<&str> = if let Some((left, right)) = v.split_once("::") {
        if right.contains("::") {
            return None;
        }
        let head: Vec<&str> = if left.is_empty() { vec![] } else { left.split(':').collect() };
        let rest: Vec<&str> = if right.is_empty() { vec![] } else { right.split(':').collect() };
        let used = head.len() + rest.len() + tail.len();
        if used >= 8 {
            return None;
        }
        let mut groups = head;
        groups.extend(std::iter::repeat_n("0", 8 - used));
        groups.extend(rest);
        groups
    } else {
        let groups: Vec<&str> = v.split(':').collect();
        if groups.len() + tail.len() != 8 {
            return None;
        }
        groups
    };
    if groups.iter().any(|g| g.is_empty() || g.len() > 4) {
        return None;
    }
    let canonical: Vec<&str> = groups
        .iter()
        .map(|g| {
            let t = g.trim_start_matches('0');
            if t.is_empty() {
                "0"
            } else {
                t
            }
        })
        .chain(tail.iter().map(String::as_str))
        .collect();
    Some(canonical.join(":"))
}

/// Splits `digits` into country code and national number: 1 and 7 stand alone, the
/// two-digit codes are listed, the rest of the 2x-9x space is three digits.
pub fn split_country_code<'a>(tables: &Tables, digits: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let n = if matches!(digits[0], b'1' | b'7') {
        1
    } else if digits.len() >= 2 && tables.two_digit_country_code(&digits[..2]) {
        2
    } else {
        3
    };
    digits.split_at(n.min(digits.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::tests::sample;

    #[test]
    fn checksums() {
        assert!(luhn_ok(b"4111111111111111"));
        assert!(!luhn_ok(b"4111111111111112"));
        assert!(card_brand_ok(b"4111111111111111"));
        assert!(!card_brand_ok(b"9111111111111111"));
        let t = sample();
        assert!(cn_id_ok(&t, b"11010519491231002X"));
        assert!(!cn_id_ok(&t, b"110105194912310021"));
        assert!(!cn_id_shaped(&t, b"110105194902300021")); // 30 February
        assert!(!cn_id_shaped(&t, b"99010519491231002X")); // no such province
        assert!(iban_ok(b"DE89370400440532013000"));
        assert!(!iban_ok(b"DE89370400440532013001"));
        assert!(ssn_ok(b"123456789") && !ssn_ok(b"666456789") && !ssn_ok(b"123006789"));
    }

    #[test]
    fn country_codes() {
        let t = sample();
        assert_eq!(split_country_code(&t, b"14155550132"), (&b"1"[..], &b"4155550132"[..]));
        assert_eq!(split_country_code(&t, b"442079460958"), (&b"44"[..], &b"2079460958"[..]));
        assert_eq!(split_country_code(&t, b"3531234567"), (&b"353"[..], &b"1234567"[..]));
    }

    #[test]
    fn ipv6() {
        assert_eq!(ipv6_value("2001:0DB8::0001").as_deref(), Some("2001:db8:0:0:0:0:0:1"));
        assert_eq!(ipv6_value("::ffff:192.0.2.1").as_deref(), Some("0:0:0:0:0:ffff:c000:201"));
        assert_eq!(ipv6_value("1::2::3"), None);
        assert_eq!(ipv6_value("1:2:3:4:5:6:7"), None);
    }
}
