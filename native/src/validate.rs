//! Checksums and numbering plans: the validators of `gateway/redaction.py`,
//! byte for byte. Every input here is ASCII (the patterns only match ASCII).

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

/// Province-level region codes (GB/T 2260): the first two digits of a CN resident ID.
const CN_PROVINCES: &[&[u8; 2]] = &[
    b"11", b"12", b"13", b"14", b"15", b"21", b"22", b"23", b"31", b"32", b"33", b"34", b"35",
    b"36", b"37", b"41", b"42", b"43", b"44", b"45", b"46", b"50", b"51", b"52", b"53", b"54",
    b"61", b"62", b"63", b"64", b"65", b"71", b"81", b"82", b"83",
];

fn two(s: &[u8]) -> u32 {
    u32::from(s[0] - b'0') * 10 + u32::from(s[1] - b'0')
}

/// The first 17 characters look like a CN resident ID: province code, birth date.
pub fn cn_id_shaped(s: &[u8]) -> bool {
    if !CN_PROVINCES.iter().any(|p| &s[..2] == *p) {
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

pub fn cn_id_ok(s: &[u8]) -> bool {
    cn_id_shaped(s) && cn_id_check_ok(s)
}

pub fn ssn_ok(d: &[u8]) -> bool {
    let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

/// IBAN length by country (SWIFT IBAN registry).
pub fn iban_length(cc: &[u8]) -> Option<usize> {
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BI", 27),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DJ", 27),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FK", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"LY", 25),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MN", 20),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NI", 28),
        (b"NL", 18),
        (b"NO", 15),
        (b"OM", 23),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"RU", 33),
        (b"SA", 24),
        (b"SC", 31),
        (b"SD", 18),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"SO", 23),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
        (b"YE", 30),
    ];
    LENGTHS.iter().find(|(c, _)| *c == cc).map(|&(_, n)| n)
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

/// National significant number lengths for the country codes we know well
/// (ITU-T E.164 national plans, trunk prefix excluded).
pub fn national_lengths(cc: &[u8]) -> Option<(usize, usize)> {
    const PLANS: &[(&[u8], usize, usize)] = &[
        (b"1", 10, 10),
        (b"7", 10, 10),
        (b"20", 8, 10),
        (b"27", 9, 9),
        (b"30", 10, 10),
        (b"31", 9, 9),
        (b"32", 8, 9),
        (b"33", 9, 9),
        (b"34", 9, 9),
        (b"36", 8, 9),
        (b"39", 6, 11),
        (b"40", 9, 9),
        (b"41", 9, 9),
        (b"43", 7, 13),
        (b"44", 9, 10),
        (b"45", 8, 8),
        (b"46", 7, 10),
        (b"47", 8, 8),
        (b"48", 9, 9),
        (b"49", 6, 12),
        (b"51", 8, 9),
        (b"52", 10, 10),
        (b"53", 8, 8),
        (b"54", 10, 11),
        (b"55", 10, 11),
        (b"56", 9, 9),
        (b"57", 10, 10),
        (b"58", 10, 10),
        (b"60", 8, 10),
        (b"61", 9, 9),
        (b"62", 9, 12),
        (b"63", 10, 10),
        (b"64", 8, 10),
        (b"65", 8, 8),
        (b"66", 8, 9),
        (b"81", 9, 10),
        (b"82", 8, 10),
        (b"84", 9, 10),
        (b"86", 10, 11),
        (b"90", 10, 10),
        (b"91", 10, 10),
        (b"92", 9, 10),
        (b"93", 9, 9),
        (b"94", 9, 9),
        (b"95", 8, 10),
        (b"98", 10, 10),
        (b"212", 9, 9),
        (b"234", 8, 10),
        (b"254", 9, 9),
        (b"351", 9, 9),
        (b"353", 7, 9),
        (b"358", 6, 10),
        (b"380", 9, 9),
        (b"420", 9, 9),
        (b"852", 8, 8),
        (b"853", 8, 8),
        (b"886", 8, 9),
        (b"966", 9, 9),
        (b"971", 8, 9),
        (b"972", 8, 9),
    ];
    PLANS.iter().find(|(c, _, _)| *c == cc).map(|&(_, lo, hi)| (lo, hi))
}

/// Splits `digits` into country code and national number: 1 and 7 stand alone, the
/// two-digit codes are listed, the rest of the 2x-9x space is three digits.
pub fn split_country_code(digits: &[u8]) -> (&[u8], &[u8]) {
    const CC2: &[&[u8; 2]] = &[
        b"20", b"27", b"30", b"31", b"32", b"33", b"34", b"36", b"39", b"40", b"41", b"43", b"44",
        b"45", b"46", b"47", b"48", b"49", b"51", b"52", b"53", b"54", b"55", b"56", b"57", b"58",
        b"60", b"61", b"62", b"63", b"64", b"65", b"66", b"81", b"82", b"84", b"86", b"90", b"91",
        b"92", b"93", b"94", b"95", b"98",
    ];
    let n = if matches!(digits[0], b'1' | b'7') {
        1
    } else if digits.len() >= 2 && CC2.iter().any(|c| &digits[..2] == *c) {
        2
    } else {
        3
    };
    digits.split_at(n.min(digits.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(luhn_ok(b"4111111111111111"));
        assert!(!luhn_ok(b"4111111111111112"));
        assert!(card_brand_ok(b"4111111111111111"));
        assert!(!card_brand_ok(b"9111111111111111"));
        assert!(cn_id_ok(b"11010519491231002X"));
        assert!(!cn_id_ok(b"110105194912310021"));
        assert!(!cn_id_shaped(b"110105194902300021")); // 30 February
        assert!(iban_ok(b"DE89370400440532013000"));
        assert!(!iban_ok(b"DE89370400440532013001"));
        assert!(ssn_ok(b"123456789") && !ssn_ok(b"666456789") && !ssn_ok(b"123006789"));
    }

    #[test]
    fn ipv6() {
        assert_eq!(ipv6_value("2001:0DB8::0001").as_deref(), Some("2001:db8:0:0:0:0:0:1"));
        assert_eq!(ipv6_value("::ffff:192.0.2.1").as_deref(), Some("0:0:0:0:0:ffff:c000:201"));
        assert_eq!(ipv6_value("1::2::3"), None);
        assert_eq!(ipv6_value("1:2:3:4:5:6:7"), None);
    }
}
