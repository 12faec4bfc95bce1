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
//! The key here is the byte string pymemcache formats into `f"{node}-{key}"`. For a Python `str`
//! key that is its characters with each code point masked to 8 bits (pymemcache's murmur3 reads
//! `ord(c) & 0xff`), which equals the UTF-8 bytes only for ASCII; a Python `bytes` key formats as
//! `b'...'`. Those conversions belong to the binding that receives Python objects.

use super::Node;
use crate::hash::murmur::murmur3_32_parts;

/// Per-node `"host:port-"` prefixes; lookups hash prefix and key without concatenating them.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    prefixes: Vec<Vec<u8>>,
}

impl Rendezvous {
    /// Build for `nodes` in configuration order.
    pub fn new(nodes: &[Node]) -> Rendezvous {
        let prefixes = nodes
            .iter()
            // pymemcache names a socket server by its bare path (`_make_client_key`).
            .map(|n| format!("{}-", n.addr()).into_bytes())
            .collect();
        Rendezvous { prefixes }
    }

    /// The node name pymemcache compares on ties: the prefix without its trailing `-`.
    fn name(&self, i: usize) -> &[u8] {
        let prefix = &self.prefixes[i];
        prefix.strip_suffix(b"-").unwrap_or(prefix)
    }

    /// The winning node for `key` (0 for an empty list). No allocation.
    pub fn pick(&self, key: &[u8]) -> usize {
        let mut winner = 0;
        let mut high = None;
        for (i, prefix) in self.prefixes.iter().enumerate() {
            let score = murmur3_32_parts(&[prefix, key], 0);
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
    fn empty_does_not_panic() {
        assert_eq!(Rendezvous::new(&[]).pick(b"k"), 0);
    }
}
