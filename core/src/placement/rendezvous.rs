//! Rendezvous (highest random weight) hashing as pymemcache's `HashClient` does it.
//!
//! Anchor: `pinterest/pymemcache:pymemcache/client/rendezvous.py` (`RendezvousHash.get_node`)
//! with `murmur3.py` (MurmurHash3_x86_32, seed 0) and `hash.py` (`_make_client_key`: the node
//! name is `"%s:%s" % (host, port)`); `notes/client-anchors.md` §5.2.
//!
//! For every node, `score = murmur3_32(f"{node}-{key}", seed=0)`; the highest score wins, and a
//! tie goes to the lexicographically larger node name (`max(str(node), str(winner))`). Weights
//! are ignored: pymemcache has none.
//!
//! pymemcache formats the key into a Python `str` and its murmur3 reads one "byte" per
//! character: `ord(c) & 0xff` (the fourth byte of a block is unmasked, but only the low 32 bits
//! of the result count, so it is masked too). [`Rendezvous::pick`] therefore takes the key as
//! UTF-8 (what a `str` key travels as), decodes it and hashes each code point's low byte; for
//! ASCII that is the key itself. A byte that is not part of valid UTF-8 is hashed as itself.
//! A Python `bytes` key is formatted as its `repr`, `b'...'`: a binding places such a key by
//! [`python_bytes_repr`] of it. pymemcache hashes the key without `key_prefix`.

use super::Node;
use crate::hash::murmur::Murmur3;

/// Per-node `"host:port-"` prefixes, and the hash state after each: a lookup continues from
/// it with the key (no concatenation, and the prefix is not hashed again per key).
#[derive(Clone, Debug)]
pub struct Rendezvous {
    prefixes: Vec<Vec<u8>>,
    midstates: Vec<Murmur3>,
}

impl Rendezvous {
    /// Build for `nodes` in configuration order.
    pub fn new(nodes: &[Node]) -> Rendezvous {
        let prefixes = nodes
            .iter()
            // pymemcache names a socket server by its bare path (`_make_client_key`).
            .map(|n| format!("{}-", n.addr()).into_bytes())
            .collect::<Vec<Vec<u8>>>();
        let midstates = prefixes
            .iter()
            .map(|p| {
                let mut m = Murmur3::new(0);
                m.feed(p);
                m
            })
            .collect();
        Rendezvous {
            prefixes,
            midstates,
        }
    }

    /// The node name pymemcache compares on ties: the prefix without its trailing `-`.
    fn name(&self, i: usize) -> &[u8] {
        let prefix = &self.prefixes[i];
        prefix.strip_suffix(b"-").unwrap_or(prefix)
    }

    /// The winning node for `key` (0 for an empty list). No allocation for an ASCII key.
    pub fn pick(&self, key: &[u8]) -> usize {
        let masked;
        let key = if key.is_ascii() {
            key
        } else {
            masked = code_point_low_bytes(key);
            &masked[..]
        };
        let mut winner = 0;
        let mut high = None;
        for (i, mid) in self.midstates.iter().enumerate() {
            let mut m = *mid;
            m.feed(key);
            let score = m.finish();
            // pymemcache starts from `high_score = -1`, so the first node always wins round one.
            let wins = match high {
                None => true,
                Some(h) => beats(score, self.name(i), h, self.name(winner)),
            };
            if wins {
                winner = i;
                high = Some(score);
            }
        }
        winner
    }
}

/// What pymemcache's murmur3 reads from the `str` whose UTF-8 form is `key`: the low byte of
/// every code point. Bytes that are not valid UTF-8 stay as they are (as Python's
/// `surrogateescape` decoding would give them, masked).
fn code_point_low_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    for chunk in key.utf8_chunks() {
        out.extend(chunk.valid().chars().map(|c| (u32::from(c) & 0xff) as u8));
        out.extend_from_slice(chunk.invalid());
    }
    out
}

/// Python's `repr()` of a `bytes` object, which is how pymemcache's `f"{node}-{key}"` formats a
/// `bytes` key: `b'...'` (or `b"..."` when the bytes hold `'` and no `"`), with `\\`, `\t`,
/// `\n`, `\r`, the quote escaped and other bytes outside `0x20..0x7f` as `\xhh`.
pub fn python_bytes_repr(key: &[u8]) -> Vec<u8> {
    let quote = if key.contains(&b'\'') && !key.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = Vec::with_capacity(key.len() + 3);
    out.extend_from_slice(&[b'b', quote]);
    for &c in key {
        match c {
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            c if c == quote => out.extend_from_slice(&[b'\\', c]),
            c if !(0x20..0x7f).contains(&c) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// pymemcache's comparison: a higher score wins; an equal score wins if its node name is larger
/// (`max(str(node), str(winner))`; names are ASCII `host:port`, so byte order is Python's code
/// point order). Equal names (a node listed twice, which pymemcache's `add_node` skips) keep the
/// earlier one.
fn beats(score: u32, name: &[u8], high: u32, winner_name: &[u8]) -> bool {
    score > high || (score == high && name > winner_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::murmur::murmur3_32;

    #[test]
    fn scores_node_dash_key() {
        let nodes = [Node::new("127.0.0.1", 21211), Node::new("127.0.0.1", 21212)];
        let r = Rendezvous::new(&nodes);
        for key in [&b"key:0"[..], b"", b"x"] {
            let s: Vec<u32> = ["127.0.0.1:21211-", "127.0.0.1:21212-"]
                .iter()
                .map(|p| murmur3_32(&[p.as_bytes(), key].concat(), 0))
                .collect();
            let want = if s[1] > s[0] { 1 } else { 0 };
            assert_eq!(r.pick(key), want);
        }
    }

    #[test]
    fn tie_goes_to_larger_name() {
        assert!(beats(5, b"b:1", 5, b"a:1"));
        assert!(!beats(5, b"a:1", 5, b"b:1"));
        assert!(beats(5, b"a:10", 5, b"a:1"));
        assert!(!beats(5, b"a:1", 5, b"a:1"));
        assert!(beats(6, b"a:1", 5, b"z:1"));
        assert!(!beats(4, b"z:1", 5, b"a:1"));
        let r = Rendezvous::new(&[Node::new("a", 1), Node::new("a", 1)]);
        assert_eq!(r.pick(b"k"), 0, "a duplicate node keeps the first index");
    }

    #[test]
    fn non_ascii_hashes_code_point_low_bytes() {
        let nodes = [Node::new("127.0.0.1", 21211), Node::new("127.0.0.1", 21212)];
        let r = Rendezvous::new(&nodes);
        // "é" is U+00E9: pymemcache hashes the one byte 0xe9, not UTF-8's c3 a9.
        assert_eq!(code_point_low_bytes("é€x".as_bytes()), [0xe9, 0xac, b'x']);
        assert_eq!(code_point_low_bytes(b"a\xffb"), b"a\xffb");
        let s: Vec<u32> = ["127.0.0.1:21211-", "127.0.0.1:21212-"]
            .iter()
            .map(|p| murmur3_32(&[p.as_bytes(), &[0xe9, 0xac, b'x']].concat(), 0))
            .collect();
        let want = if s[1] > s[0] { 1 } else { 0 };
        assert_eq!(r.pick("é€x".as_bytes()), want);
    }

    #[test]
    fn bytes_repr_is_pythons() {
        assert_eq!(python_bytes_repr(b"foo"), b"b'foo'");
        assert_eq!(python_bytes_repr(b""), b"b''");
        assert_eq!(python_bytes_repr(b"it's"), b"b\"it's\"");
        assert_eq!(python_bytes_repr(b"'\""), b"b'\\'\"'");
        assert_eq!(
            python_bytes_repr(b"a\\b\t\n\r\x00\x7f\xe9"),
            b"b'a\\\\b\\t\\n\\r\\x00\\x7f\\xe9'"
        );
    }

    #[test]
    fn empty_does_not_panic() {
        assert_eq!(Rendezvous::new(&[]).pick(b"k"), 0);
    }
}
