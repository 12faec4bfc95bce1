//! Key → server placement: a pure function of (mode, server list, key).
//!
//! Hash ([`crate::hash`], key → u32) and distribution (u32 → server index) are separate axes, as
//! in twemproxy's hashkit; a [`Mode`] names the combination a migrating user already runs, so
//! that every key lands on the same server as with their old client. Every mode with a golden
//! vector set in `tests/placement/` matches it 100 % (`core/tests/placement.rs`).
//!
//! One file per distribution: [`ketama`] (libmemcached continuum), [`modula`] (plain and
//! weighted), [`pecl_consistent`] (PHP `memcache`'s ring), [`rendezvous`] (pymemcache),
//! [`furc`] (mcrouter Ch3), [`jump`] and [`vbucket`] (a versioned bucket map, libmemcached's
//! `VIRTUAL_BUCKET`; built from the map, not from a [`Mode`]). This module wires each [`Mode`] to a hash and a
//! distribution; the table is on [`Mode`].
//!
//! Every mode returns index 0 for a single server without hashing the key (libmemcached skips
//! the hash when `server_count == 1`; every other client also has only one choice).

use std::fmt;
use std::sync::Arc;

pub use crate::addr::Node;
use crate::hash::HashFn;
use crate::hash::crc32::{crc32, crc32_pecl_standard};

pub mod furc;
pub mod jump;
pub mod ketama;
pub mod modula;
pub mod pecl_consistent;
pub mod rendezvous;
pub mod vbucket;

use vbucket::BucketMap;

/// The weight placement uses: `weight`, with 0 read as 1 (libmemcached stores `weight ? weight :
/// 1`; pecl `memcache` rejects weights < 1).
pub(crate) fn effective_weight(node: &Node) -> u32 {
    node.weight.max(1)
}

/// A placement compatibility mode (see DESIGN.md "Placement: compatibility modes").
///
/// | mode | key hash | distribution | weights |
/// |---|---|---|---|
/// | `libmemcached` | MD5 | weighted ketama, MD5 points | used |
/// | `libmemcached-ketama` | one-at-a-time | 100-point ketama, one-at-a-time points | ignored |
/// | `php-memcached-default` | one-at-a-time | modula | ignored |
/// | `pecl-memcache-standard` | 15-bit CRC-32, 0 → 1 | weighted modula | used |
/// | `pecl-memcache-consistent` | CRC-32 | 160 points per weight, 1024 buckets | used |
/// | `pymemcache` | murmur3 of `host:port-key` | rendezvous | ignored |
/// | `mcrouter` | MurmurHash64A bits | Ch3 (`furc_hash`) | ignored |
/// | `mcrouter-crc32` | CRC-32 & 0x7fffffff | modula | ignored |
/// | `jump` | SipHash-1-3, zero key | jump consistent hash | ignored |
///
/// "Ignored" means the anchor client has no weights in that mode, so a weighted config places
/// keys exactly as the unweighted one would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Weighted ketama over MD5 (php-memcached `OPT_LIBKETAMA_COMPATIBLE`, twemproxy ketama+md5,
    /// pylibmc `ketama_weighted`, libmemcached `KETAMA_WEIGHTED`). The default. Points are
    /// `MD5("host-j")`, or `MD5("host:port-j")` when the port is not 11211; see
    /// [`ketama::Continuum::weighted`].
    #[default]
    Libmemcached,
    /// Unweighted ketama, 100 points per server hashed with one-at-a-time (pylibmc
    /// `{"ketama": True}`, libmemcached `DISTRIBUTION_CONSISTENT_KETAMA`). Weights are ignored.
    LibmemcachedKetama,
    /// Modula over one-at-a-time (php-memcached without options): `hash % n`. Weights are
    /// ignored.
    PhpMemcachedDefault,
    /// PHP `memcache` extension, `hash_strategy=standard`, crc32: `((crc32(key) >> 16) &
    /// 0x7fff)`, 0 → 1, over `weight` buckets per server.
    PeclMemcacheStandard,
    /// PHP `memcache` extension, `hash_strategy=consistent`, crc32: a ring of `160 * weight`
    /// points per server sampled into 1024 buckets ([`pecl_consistent`]).
    PeclMemcacheConsistent,
    /// pymemcache `HashClient`: rendezvous over murmur3 ([`rendezvous`]). Weights are ignored.
    Pymemcache,
    /// mcrouter PoolRoute `hash: Ch3` (its default): `furc_hash(key, n)` indexes the server list
    /// in config order ([`furc`]). Weights are ignored (mcrouter's `WeightedCh3` is a different
    /// function). At most 2^23 servers.
    Mcrouter,
    /// mcrouter PoolRoute `hash: Crc32`: `(crc32(key) & 0x7fffffff) % n`, config order. Weights
    /// are ignored.
    McrouterCrc32,
    /// Lamping–Veach jump consistent hash, returning a list index; for new deployments. The key
    /// hash is SipHash-1-3 with keys `(0, 0)` over the raw key bytes (see
    /// [`jump::jump_key_hash`]), stable across Rust releases and platforms. Weights are ignored.
    Jump,
}

impl Mode {
    /// Every mode, in documentation order.
    pub const ALL: [Mode; 9] = [
        Mode::Libmemcached,
        Mode::LibmemcachedKetama,
        Mode::PhpMemcachedDefault,
        Mode::PeclMemcacheStandard,
        Mode::PeclMemcacheConsistent,
        Mode::Pymemcache,
        Mode::Mcrouter,
        Mode::McrouterCrc32,
        Mode::Jump,
    ];

    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Libmemcached => "libmemcached",
            Mode::LibmemcachedKetama => "libmemcached-ketama",
            Mode::PhpMemcachedDefault => "php-memcached-default",
            Mode::PeclMemcacheStandard => "pecl-memcache-standard",
            Mode::PeclMemcacheConsistent => "pecl-memcache-consistent",
            Mode::Pymemcache => "pymemcache",
            Mode::Mcrouter => "mcrouter",
            Mode::McrouterCrc32 => "mcrouter-crc32",
            Mode::Jump => "jump",
        }
    }

    /// Parse a config name.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A built placement: maps a key to an index into the node list it was built from.
///
/// Build once per server list (building a ketama continuum hashes thousands of strings), then
/// call [`Placement::pick`] per key; `pick` allocates nothing.
#[derive(Clone, Debug)]
pub struct Placement {
    mode: Mode,
    len: usize,
    strategy: Strategy,
}

/// The prepared state of each distribution.
#[derive(Clone, Debug)]
enum Strategy {
    /// A ketama continuum and the key hash looked up on it.
    Ketama(ketama::Continuum, HashFn),
    /// `hash(key) % n`.
    Modula(HashFn),
    /// pecl standard: weighted modula over the pecl 15-bit CRC.
    PeclStandard(modula::WeightedModula),
    /// pecl consistent: 1024 precomputed buckets.
    PeclConsistent(pecl_consistent::PeclConsistent),
    /// pymemcache rendezvous.
    Rendezvous(rendezvous::Rendezvous),
    /// mcrouter Ch3 over `n` servers.
    Furc(u32),
    /// mcrouter Crc32.
    McrouterCrc32,
    /// Jump hash over `n` buckets.
    Jump(u32),
    /// A bucket map: `map[hash & (count − 1)]`.
    Buckets(Arc<BucketMap>),
    /// libmemcached `VIRTUAL_BUCKET` without a map: `hash & (n − 1)`.
    BucketMask(HashFn),
}

impl Placement {
    /// Build the placement for `nodes` (in config order). Errors on an empty list, on more than
    /// `u32::MAX` nodes, and for `Mode::Mcrouter` on more than 2^23 nodes (mcrouter's limit).
    pub fn new(mode: Mode, nodes: &[Node]) -> Result<Self, String> {
        if nodes.is_empty() {
            return Err(format!("placement {mode}: the server list is empty"));
        }
        let n = u32::try_from(nodes.len())
            .map_err(|_| format!("placement {mode}: {} servers is too many", nodes.len()))?;
        let strategy = match mode {
            Mode::Libmemcached => Strategy::Ketama(ketama::Continuum::weighted(nodes), HashFn::Md5),
            Mode::LibmemcachedKetama => Strategy::Ketama(
                ketama::Continuum::unweighted(nodes, HashFn::OneAtATime),
                HashFn::OneAtATime,
            ),
            Mode::PhpMemcachedDefault => Strategy::Modula(HashFn::OneAtATime),
            Mode::PeclMemcacheStandard => {
                Strategy::PeclStandard(modula::WeightedModula::new(nodes))
            }
            Mode::PeclMemcacheConsistent => {
                Strategy::PeclConsistent(pecl_consistent::PeclConsistent::new(nodes))
            }
            Mode::Pymemcache => Strategy::Rendezvous(rendezvous::Rendezvous::new(nodes)),
            Mode::Mcrouter => {
                if n > furc::MAX_POOL_SIZE {
                    return Err(format!(
                        "placement {mode}: {n} servers exceed mcrouter Ch3's maximum of {}",
                        furc::MAX_POOL_SIZE
                    ));
                }
                Strategy::Furc(n)
            }
            Mode::McrouterCrc32 => Strategy::McrouterCrc32,
            Mode::Jump => Strategy::Jump(n),
        };
        Ok(Placement {
            mode,
            len: nodes.len(),
            strategy,
        })
    }

    /// The placement libmemcached computes from its behavior state (php-memcached's
    /// `OPT_DISTRIBUTION`, `OPT_LIBKETAMA_COMPATIBLE` and `OPT_HASH`), for the combinations no
    /// [`Mode`] preset names (notes/client-anchors.md §2.4.1):
    ///
    /// - `distribution` 0 (MODULA): `hash(key) % n`; weights are ignored.
    /// - `distribution` 1, 2 or 5 (CONSISTENT, CONSISTENT_KETAMA, CONSISTENT_WEIGHTED): a ketama
    ///   continuum. With `weighted` (libmemcached's hidden flag, set by KETAMA_WEIGHTED,
    ///   DISTRIBUTION 5 or a server weight > 1) it is the weighted MD5 continuum of
    ///   [`Mode::Libmemcached`]; otherwise 100 points per server hashed with `hash`, as
    ///   [`Mode::LibmemcachedKetama`] does with one-at-a-time. Keys are hashed with `hash`.
    ///
    /// - `distribution` 6 (VIRTUAL_BUCKET) without a map (`setBucket` not called):
    ///   `hash(key) & (n − 1)`, as `memcached_virtual_bucket_get` does; with a map, see
    ///   [`Placement::buckets`].
    ///
    /// Other distributions (RANDOM, KETAMA_SPY) are an error. [`Placement::mode`]
    /// reports the preset with the same distribution family (`libmemcached` for continuums,
    /// `php-memcached-default` for modula).
    pub fn libmemcached_behavior(
        distribution: u32,
        weighted: bool,
        hash: HashFn,
        nodes: &[Node],
    ) -> Result<Self, String> {
        if nodes.is_empty() {
            return Err("placement: the server list is empty".to_string());
        }
        let (mode, strategy) = match distribution {
            0 => (Mode::PhpMemcachedDefault, Strategy::Modula(hash)),
            1 | 2 | 5 if weighted => (
                Mode::Libmemcached,
                Strategy::Ketama(ketama::Continuum::weighted(nodes), hash),
            ),
            1 | 2 | 5 => (
                Mode::Libmemcached,
                Strategy::Ketama(ketama::Continuum::unweighted(nodes, hash), hash),
            ),
            6 => (Mode::PhpMemcachedDefault, Strategy::BucketMask(hash)),
            d => {
                return Err(format!(
                    "placement: libmemcached distribution {d} is not supported (0 modula, 1/2 consistent, 5 weighted consistent, 6 virtual bucket are)"
                ));
            }
        };
        Ok(Placement {
            mode,
            len: nodes.len(),
            strategy,
        })
    }

    /// Placement by a bucket map over `nodes` (whose count the map was checked against):
    /// a key goes to its bucket's server in the map; during a move, to the `from` side (the
    /// pool route applies the move). [`Placement::mode`] reports the default mode.
    pub fn buckets(map: Arc<BucketMap>, nodes: &[Node]) -> Result<Self, String> {
        if nodes.is_empty() {
            return Err("placement: the server list is empty".to_string());
        }
        if let Some(s) = map.masters().iter().find(|&&s| s as usize >= nodes.len()) {
            return Err(format!(
                "placement: the bucket map names server {s}; there are {} servers",
                nodes.len()
            ));
        }
        Ok(Placement {
            mode: Mode::default(),
            len: nodes.len(),
            strategy: Strategy::Buckets(map),
        })
    }

    /// The bucket map, when placement is by bucket map.
    pub fn bucket_map(&self) -> Option<&Arc<BucketMap>> {
        match &self.strategy {
            Strategy::Buckets(m) => Some(m),
            _ => None,
        }
    }

    /// The key's bucket, when placement is by bucket map.
    pub fn bucket(&self, key: &[u8]) -> Option<u32> {
        self.bucket_map().map(|m| m.bucket(key))
    }

    /// The index (into the node list) of the server that owns `key`. Any byte string is
    /// accepted; nothing here validates memcached key syntax.
    pub fn pick(&self, key: &[u8]) -> usize {
        if self.len <= 1 {
            return 0;
        }
        match &self.strategy {
            Strategy::Ketama(continuum, hash) => continuum.lookup(hash.hash(key)),
            Strategy::Modula(hash) => modula::modula(hash.hash(key), self.len),
            Strategy::PeclStandard(w) => w.pick(crc32_pecl_standard(key)),
            Strategy::PeclConsistent(p) => p.pick(key),
            Strategy::Rendezvous(r) => r.pick(key),
            Strategy::Furc(n) => furc::furc_hash(key, *n) as usize,
            Strategy::McrouterCrc32 => modula::modula(crc32(key) & 0x7fff_ffff, self.len),
            Strategy::Jump(n) => jump::jump_consistent_hash(jump::jump_key_hash(key), *n) as usize,
            Strategy::Buckets(map) => map.master(map.bucket(key)) as usize,
            // `len` ≥ 2 here, and `h & (len − 1)` ≤ `len − 1` for any len.
            Strategy::BucketMask(hash) => (hash.hash(key) & (self.len as u32 - 1)) as usize,
        }
    }

    /// [`Placement::pick`] of every key, in order, into `out` (cleared first): the keys of a
    /// multi-key request are hashed together ([`HashFn::hash_many`], several MD5 keys per
    /// pass) for ketama, modula and bucket-mask placement; other strategies pick key by key.
    /// Allocates nothing beyond `out`.
    pub fn pick_many(&self, keys: &[&[u8]], out: &mut Vec<usize>) {
        out.clear();
        out.reserve(keys.len());
        let hash = match &self.strategy {
            _ if self.len <= 1 => {
                out.resize(keys.len(), 0);
                return;
            }
            Strategy::Ketama(_, hash) | Strategy::Modula(hash) | Strategy::BucketMask(hash) => {
                *hash
            }
            _ => {
                out.extend(keys.iter().map(|k| self.pick(k)));
                return;
            }
        };
        // Hashes in stack-sized pieces, so no buffer per call.
        let mut hashes = [0u32; 64];
        for chunk in keys.chunks(hashes.len()) {
            let hashes = &mut hashes[..chunk.len()];
            hash.hash_many(chunk, hashes);
            out.extend(
                chunk
                    .iter()
                    .zip(&*hashes)
                    .map(|(key, &h)| match &self.strategy {
                        Strategy::Ketama(continuum, _) => continuum.lookup(h),
                        Strategy::Modula(_) => modula::modula(h, self.len),
                        Strategy::BucketMask(_) => (h & (self.len as u32 - 1)) as usize,
                        _ => self.pick(key),
                    }),
            );
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a placement has at least one node.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn nodes(n: u16) -> Vec<Node> {
        (0..n).map(|i| Node::new("127.0.0.1", 21211 + i)).collect()
    }

    #[test]
    fn empty_list_is_an_error() {
        for mode in Mode::ALL {
            let err = Placement::new(mode, &[]).unwrap_err();
            assert!(err.contains("empty"), "{err}");
        }
    }

    #[test]
    fn single_server_is_index_zero() {
        for mode in Mode::ALL {
            let p = Placement::new(mode, &nodes(1)).unwrap();
            for key in [&b""[..], b"a", b"\xff\x00 key"] {
                assert_eq!(p.pick(key), 0, "{mode}");
            }
        }
    }

    #[test]
    fn every_mode_stays_in_range_on_odd_keys() {
        let long = vec![0xffu8; 100_000];
        for mode in Mode::ALL {
            for n in [2u16, 3, 7] {
                let p = Placement::new(mode, &nodes(n)).unwrap();
                assert_eq!(p.len(), n as usize);
                assert!(!p.is_empty());
                assert_eq!(p.mode(), mode);
                for key in [&b""[..], b"\x80", b"\xff\xfe\xfd", &long] {
                    assert!(p.pick(key) < n as usize, "{mode}");
                }
            }
        }
    }

    #[test]
    fn weights_change_only_weighted_modes() {
        let plain = nodes(4);
        let mut weighted = plain.clone();
        for (i, n) in weighted.iter_mut().enumerate() {
            n.weight = i as u32 + 1;
        }
        let keys: Vec<String> = (0..2000).map(|i| format!("key:{i}")).collect();
        for mode in Mode::ALL {
            let a = Placement::new(mode, &plain).unwrap();
            let b = Placement::new(mode, &weighted).unwrap();
            let same = keys
                .iter()
                .all(|k| a.pick(k.as_bytes()) == b.pick(k.as_bytes()));
            let uses_weights = matches!(
                mode,
                Mode::Libmemcached | Mode::PeclMemcacheStandard | Mode::PeclMemcacheConsistent
            );
            assert_eq!(same, !uses_weights, "{mode}");
        }
    }

    #[test]
    fn weight_zero_is_weight_one() {
        let ones = nodes(3);
        let mut zeros = ones.clone();
        zeros[1].weight = 0;
        for mode in Mode::ALL {
            let a = Placement::new(mode, &ones).unwrap();
            let b = Placement::new(mode, &zeros).unwrap();
            for i in 0..500 {
                let k = format!("k{i}");
                assert_eq!(a.pick(k.as_bytes()), b.pick(k.as_bytes()), "{mode}");
            }
        }
    }

    #[test]
    fn libmemcached_behavior_equals_the_presets() {
        let mut weighted = nodes(4);
        weighted[2].weight = 3;
        let cases = [
            (
                0,
                false,
                HashFn::OneAtATime,
                Mode::PhpMemcachedDefault,
                nodes(4),
            ),
            (
                2,
                false,
                HashFn::OneAtATime,
                Mode::LibmemcachedKetama,
                nodes(4),
            ),
            (
                1,
                false,
                HashFn::OneAtATime,
                Mode::LibmemcachedKetama,
                nodes(4),
            ),
            (5, true, HashFn::Md5, Mode::Libmemcached, weighted.clone()),
            (2, true, HashFn::Md5, Mode::Libmemcached, weighted),
        ];
        for (dist, w, hash, mode, ns) in cases {
            let a = Placement::libmemcached_behavior(dist, w, hash, &ns).unwrap();
            let b = Placement::new(mode, &ns).unwrap();
            for i in 0..2000 {
                let k = format!("key:{i}");
                assert_eq!(a.pick(k.as_bytes()), b.pick(k.as_bytes()), "{dist} {mode}");
            }
        }
        assert!(Placement::libmemcached_behavior(3, false, HashFn::Md5, &nodes(2)).is_err());
        // VIRTUAL_BUCKET without a map: hash & (n - 1), also for a count that is no power of 2.
        let v = Placement::libmemcached_behavior(6, false, HashFn::OneAtATime, &nodes(3)).unwrap();
        for k in ["apple", "beat", "carrot", "x"] {
            let h = HashFn::OneAtATime.hash(k.as_bytes());
            assert_eq!(v.pick(k.as_bytes()), (h & 2) as usize);
        }
        assert!(Placement::libmemcached_behavior(0, false, HashFn::Md5, &[]).is_err());
        // A combination no preset has: modula over MD5.
        let m = Placement::libmemcached_behavior(0, false, HashFn::Md5, &nodes(3)).unwrap();
        assert_eq!(m.pick(b"apple"), (HashFn::Md5.hash(b"apple") % 3) as usize);
    }

    #[test]
    fn bucket_placement_uses_the_map() {
        use vbucket::{BucketsSpec, balanced};
        let ns = nodes(4);
        let spec = BucketsSpec {
            count: 16,
            version: 3,
            hash: Some("crc".into()),
            map: balanced(16, &[1, 1, 1, 1]),
            moves: Vec::new(),
        };
        let map = Arc::new(BucketMap::from_spec(&spec, &ns).unwrap());
        let p = Placement::buckets(Arc::clone(&map), &ns).unwrap();
        for i in 0..500 {
            let k = format!("key:{i}");
            let b = HashFn::Crc.hash(k.as_bytes()) & 15;
            assert_eq!(p.bucket(k.as_bytes()), Some(b));
            assert_eq!(p.pick(k.as_bytes()), spec.map[b as usize] as usize);
        }
        assert!(
            Placement::buckets(map, &nodes(2)).is_err(),
            "map names server 3"
        );
        assert_eq!(Placement::new(Mode::Jump, &ns).unwrap().bucket(b"k"), None);
    }

    /// Every kind of strategy `pick_many` treats apart: hashed in batches (ketama with MD5
    /// weighted and unweighted, ketama with one-at-a-time, modula over MD5 and one-at-a-time,
    /// the bucket mask) and picked key by key (the other modes).
    fn batch_cases(ns: &[Node]) -> Vec<(String, Placement)> {
        let mut out: Vec<(String, Placement)> = Mode::ALL
            .into_iter()
            .map(|m| (m.to_string(), Placement::new(m, ns).unwrap()))
            .collect();
        for (dist, weighted, hash) in [
            (0, false, HashFn::Md5),
            (2, false, HashFn::Md5),
            (5, true, HashFn::Md5),
            (6, false, HashFn::Md5),
            (6, false, HashFn::Crc),
        ] {
            let p = Placement::libmemcached_behavior(dist, weighted, hash, ns).unwrap();
            out.push((format!("distribution {dist} {hash}"), p));
        }
        out
    }

    proptest! {
        #[test]
        fn pick_many_equals_pick(
            keys in vec(vec(any::<u8>(), 0..80), 0..70),
            weights in vec(0u32..5, 1..9),
        ) {
            let ns: Vec<Node> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Node { weight: w, ..Node::new("127.0.0.1", 21211 + i as u16) })
                .collect();
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let mut got = vec![usize::MAX; 3];
            for (name, p) in batch_cases(&ns) {
                p.pick_many(&refs, &mut got);
                let want: Vec<usize> = refs.iter().map(|k| p.pick(k)).collect();
                prop_assert_eq!(&got, &want, "{}", name);
            }
        }
    }

    #[test]
    fn pick_many_equals_pick_on_many_keys() {
        // More keys than one hash chunk (64), memcached-like, over weighted servers.
        let mut ns = nodes(5);
        for (i, n) in ns.iter_mut().enumerate() {
            n.weight = i as u32 % 3 + 1;
        }
        let keys: Vec<String> = (0..1000).map(|i| format!("user:{i}:profile")).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let mut got = Vec::new();
        for (name, p) in batch_cases(&ns).into_iter().chain(batch_cases(&ns[..1])) {
            p.pick_many(&refs, &mut got);
            let want: Vec<usize> = refs.iter().map(|k| p.pick(k)).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(Mode::from_name(mode.as_str()), Some(mode));
        }
        assert_eq!(Mode::default(), Mode::Libmemcached);
    }
}
