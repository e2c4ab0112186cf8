//! Folding: the characters whose NFKC form is ASCII, to that form, one character at a
//! time, with the map from offsets in the folded text back to the original (the table
//! is `gateway/pii/folding.py`'s, handed over by Python).

use std::collections::HashMap;

/// Per-character NFKC for the characters whose compatibility form is ASCII (the
/// table is `gateway.pii.folding.Folding`'s, handed over by Python).
pub struct Folding {
    table: HashMap<char, Box<str>>,
    /// One bit per BMP code point: in `table`? (Most text is all BMP, and a bit test per
    /// character is far cheaper than a hash lookup.)
    bmp: Vec<u64>,
}

/// A folded text and, for each byte offset into it, the character offset into the
/// original where an entity starting (`start`) or ending (`end`) there begins or ends.
/// Inside a character that folded to several (`⑩` -> `10`) both take the whole one.
pub struct Folded {
    pub(crate) text: String,
    pub(crate) start: Vec<u32>,
    pub(crate) end: Vec<u32>,
}

impl Folding {
    pub fn new(table: HashMap<char, String>) -> Self {
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
