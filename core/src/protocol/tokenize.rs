//! Splits one reply line into space-separated tokens.
//!
//! Like memcached's `vendor/mcmc` client, the tokenizer stores **offsets** into the line, not
//! copies, in a fixed array: tokenizing never allocates. Lines are at most
//! [`decode::MAX_LINE`](super::decode::MAX_LINE) bytes, so `u16` offsets are enough.
//!
//! memcached separates tokens with single spaces; runs of spaces are tolerated (protocol.txt on
//! `incr`/`decr`: "The number MAY be space-padded at the end"). Any other byte, tabs included, is
//! token content, so a stray control byte makes the token invalid where it is checked.

/// Most tokens one reply line may hold. A `VA` line carries one token per flag the request asked
/// for; libfae asks for at most seven, and memcached's own client (mcmc) stops at 24.
pub(crate) const MAX_TOKENS: usize = 24;

/// Offsets of the tokens of one line.
#[derive(Debug)]
pub(crate) struct Tokens<'a> {
    line: &'a [u8],
    /// `(start, end)` of each token, `end` exclusive.
    spans: [(u16, u16); MAX_TOKENS],
    len: usize,
}

/// The line holds more than [`MAX_TOKENS`] tokens or is longer than `u16` offsets can address.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooManyTokens;

impl<'a> Tokens<'a> {
    /// Tokenize `line` (without its `\r\n`).
    pub(crate) fn new(line: &'a [u8]) -> Result<Self, TooManyTokens> {
        if line.len() > usize::from(u16::MAX) {
            return Err(TooManyTokens);
        }
        let mut spans = [(0u16, 0u16); MAX_TOKENS];
        let mut len = 0;
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < line.len() && line[i] != b' ' {
                i += 1;
            }
            if len == MAX_TOKENS {
                return Err(TooManyTokens);
            }
            // Both fit: the line length was checked against u16::MAX above.
            spans[len] = (start as u16, i as u16);
            len += 1;
        }
        Ok(Self { line, spans, len })
    }

    /// Number of tokens.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Token `i`, if there is one.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.len {
            return None;
        }
        let (s, e) = self.spans[i];
        self.line.get(usize::from(s)..usize::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(line: &[u8]) -> Vec<&[u8]> {
        let t = Tokens::new(line).unwrap();
        (0..t.len()).filter_map(|i| t.get(i)).collect()
    }

    #[test]
    fn splits_on_spaces() {
        assert_eq!(all(b"VA 3 f5 kfoo"), [&b"VA"[..], b"3", b"f5", b"kfoo"]);
        assert_eq!(all(b""), Vec::<&[u8]>::new());
        assert_eq!(all(b"   "), Vec::<&[u8]>::new());
        assert_eq!(all(b" 5  "), [&b"5"[..]]);
        assert_eq!(all(b"a\tb c"), [&b"a\tb"[..], b"c"]);
        let t = Tokens::new(b"x y").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(1), Some(&b"y"[..]));
        assert_eq!(t.get(2), None);
    }

    #[test]
    fn caps_the_token_count() {
        let ok = b"a ".repeat(MAX_TOKENS);
        assert_eq!(Tokens::new(&ok).unwrap().len(), MAX_TOKENS);
        let too_many = b"a ".repeat(MAX_TOKENS + 1);
        assert_eq!(Tokens::new(&too_many).unwrap_err(), TooManyTokens);
        let too_long = vec![b'a'; usize::from(u16::MAX) + 1];
        assert_eq!(Tokens::new(&too_long).unwrap_err(), TooManyTokens);
    }
}
