//! Virtual buckets: key → hash → bucket → server, through a versioned bucket map.
//!
//! A key's bucket is `hash(key) & (count − 1)`; the map names each bucket's server (an index
//! into the pool's server list). Moving data between servers is then editing the map one
//! bucket at a time, instead of changing a ring that moves ~1/n of all keys at once. This is
//! libmemcached's `MEMCACHED_DISTRIBUTION_VIRTUAL_BUCKET` exactly (`awesomized/libmemcached:
//! src/libmemcached/virtual_bucket.cc`, `memcached_virtual_bucket_get`: `digest & (size − 1)`
//! → `buckets[…].master`; without a map, `digest & (number_of_hosts − 1)`), which
//! php-memcached exposes as `Memcached::setBucket($host_map, $forward_map, $replicas)`: the
//! same map and hash put every key on the same server.
//!
//! A bucket may carry a move: `to` (another server) and a phase with the rules of the
//! `migrate` route (`crate::route::migrate`), applied to that bucket's keys only. The map's
//! `version` orders maps: a client never adopts a map older than one it has used.
//!
//! The config and snapshot form is [`BucketsSpec`]:
//!
//! ```json
//! {"count": 1024, "version": 7, "hash": "one_at_a_time",
//!  "map": [0, 1, 2, 0, …], "moves": [{"bucket": 17, "to": 3, "phase": "dual_write"}]}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Node, effective_weight};
use crate::hash::HashFn;

/// The largest bucket count a config may give (2^20).
pub const MAX_BUCKETS: u32 = 1 << 20;

/// Where a bucket's move stands; the rules are the `migrate` route's phases, for that bucket's
/// keys only (`from` is the bucket's server in the map, `to` the move's target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// Reads and writes on `from`; every write also deletes the key on `to`. Where a move
    /// starts, where a rollback ends, and what a finished move leaves on the old server so
    /// that its copies never go stale unseen.
    FromOnly,
    /// Writes on both, reads from `from`.
    DualWrite,
    /// Writes on both, reads from `to`; a miss there is read from `from` and copied forward.
    DualWriteReadNew,
    /// Reads from `to`; writes still reach `from`, so a rollback costs no hit rate.
    ToOnly,
}

impl MovePhase {
    /// Every phase, in the order a move goes through them.
    pub const ALL: [MovePhase; 4] = [
        MovePhase::FromOnly,
        MovePhase::DualWrite,
        MovePhase::DualWriteReadNew,
        MovePhase::ToOnly,
    ];

    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FromOnly => "from_only",
            Self::DualWrite => "dual_write",
            Self::DualWriteReadNew => "dual_write_read_new",
            Self::ToOnly => "to_only",
        }
    }

    /// Parse a config name.
    pub fn from_name(name: &str) -> Option<MovePhase> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The phase after this one (`None` after `to_only`: the move is then completed).
    pub fn next(self) -> Option<MovePhase> {
        Self::ALL.get(self as usize + 1).copied()
    }

    /// The phase before this one (`None` before `from_only`).
    pub fn prev(self) -> Option<MovePhase> {
        (self as usize).checked_sub(1).map(|i| Self::ALL[i])
    }
}

/// A bucket's move: its keys go to server `to` by the rules of `phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BucketMove {
    /// The target server (index into the pool's servers).
    pub to: u32,
    /// Where the move stands.
    pub phase: MovePhase,
}

/// One move in a [`BucketsSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveSpec {
    /// The bucket.
    pub bucket: u32,
    /// The bucket's server in the map; optional, checked when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    /// The target server.
    pub to: u32,
    /// Where the move stands.
    pub phase: MovePhase,
}

/// The config and snapshot form of a bucket map (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketsSpec {
    /// Number of buckets: a power of two, at most [`MAX_BUCKETS`].
    pub count: u32,
    /// The map's version: a client never adopts a map with a lower one than it has used.
    #[serde(default)]
    pub version: u64,
    /// The key hash ([`HashFn`] name); `one_at_a_time`, libmemcached's default, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Server index per bucket (`count` entries). Absent: the balanced map for the servers'
    /// weights ([`balanced`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub map: Vec<u32>,
    /// Buckets on the move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<MoveSpec>,
}

/// A built bucket map: see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketMap {
    version: u64,
    hash: HashFn,
    masters: Vec<u32>,
    /// libmemcached's forward map (php `setBucket`): stored, unused for placement, as there.
    forward: Option<Vec<u32>>,
    moves: BTreeMap<u32, BucketMove>,
}

impl BucketMap {
    /// Build and check a spec for `servers` servers whose weights are `weights` (for the
    /// default map). Errors name the field.
    pub fn from_spec(spec: &BucketsSpec, nodes: &[Node]) -> Result<BucketMap, String> {
        let n = nodes.len();
        if spec.count == 0 || !spec.count.is_power_of_two() || spec.count > MAX_BUCKETS {
            return Err(format!(
                "count: {} is not a power of two in 1 ..= {MAX_BUCKETS}",
                spec.count
            ));
        }
        let hash = match &spec.hash {
            None => HashFn::OneAtATime,
            Some(h) => HashFn::from_name(h).ok_or_else(|| format!("hash: unknown hash \"{h}\""))?,
        };
        let masters = if spec.map.is_empty() {
            let weights: Vec<u32> = nodes.iter().map(effective_weight).collect();
            balanced(spec.count, &weights)
        } else {
            if spec.map.len() != spec.count as usize {
                return Err(format!(
                    "map: {} entries for {} buckets",
                    spec.map.len(),
                    spec.count
                ));
            }
            spec.map.clone()
        };
        if let Some((b, s)) = masters.iter().enumerate().find(|(_, s)| **s as usize >= n) {
            return Err(format!(
                "map[{b}]: server {s} does not exist ({n} servers, numbered from 0)"
            ));
        }
        let mut moves = BTreeMap::new();
        for (i, m) in spec.moves.iter().enumerate() {
            let at = |msg: String| format!("moves[{i}]: {msg}");
            let Some(&owner) = masters.get(m.bucket as usize) else {
                return Err(at(format!(
                    "bucket {} does not exist ({} buckets)",
                    m.bucket, spec.count
                )));
            };
            if m.to as usize >= n {
                return Err(at(format!(
                    "to: server {} does not exist ({n} servers)",
                    m.to
                )));
            }
            if m.to == owner {
                return Err(at(format!(
                    "to: bucket {} is already on server {owner}",
                    m.bucket
                )));
            }
            if m.from.is_some_and(|f| f != owner) {
                return Err(at(format!(
                    "from: bucket {} is on server {owner} in the map, not {}",
                    m.bucket,
                    m.from.unwrap_or_default()
                )));
            }
            let mv = BucketMove {
                to: m.to,
                phase: m.phase,
            };
            if moves.insert(m.bucket, mv).is_some() {
                return Err(at(format!("bucket {} is listed twice", m.bucket)));
            }
        }
        Ok(BucketMap {
            version: spec.version,
            hash,
            masters,
            forward: None,
            moves,
        })
    }

    /// libmemcached's map as `memcached_bucket_set` takes it (php `setBucket`): any count
    /// (libmemcached masks with `count − 1` all the same), a forward map kept but unused.
    /// Every entry must name one of the `servers` servers.
    pub fn libmemcached(
        hash: HashFn,
        host_map: &[u32],
        forward_map: Option<&[u32]>,
        servers: usize,
    ) -> Result<BucketMap, String> {
        if host_map.is_empty() {
            return Err("the bucket map is empty".into());
        }
        if let Some((b, s)) = host_map
            .iter()
            .enumerate()
            .find(|(_, s)| **s as usize >= servers)
        {
            return Err(format!(
                "host_map[{b}] = {s}: there {} {servers} server{} (numbered from 0)",
                if servers == 1 { "is" } else { "are" },
                if servers == 1 { "" } else { "s" }
            ));
        }
        Ok(BucketMap {
            version: 0,
            hash,
            masters: host_map.to_vec(),
            forward: forward_map.map(<[u32]>::to_vec),
            moves: BTreeMap::new(),
        })
    }

    /// The spec this map was built from (the map always written out).
    pub fn to_spec(&self) -> BucketsSpec {
        BucketsSpec {
            count: self.count(),
            version: self.version,
            hash: (self.hash != HashFn::OneAtATime).then(|| self.hash.as_str().to_string()),
            map: self.masters.clone(),
            moves: self
                .moves
                .iter()
                .map(|(&bucket, m)| MoveSpec {
                    bucket,
                    from: Some(self.masters[bucket as usize]),
                    to: m.to,
                    phase: m.phase,
                })
                .collect(),
        }
    }

    /// The key's bucket: `hash(key) & (count − 1)`.
    pub fn bucket(&self, key: &[u8]) -> u32 {
        self.hash.hash(key) & (self.count() - 1)
    }

    /// The server of `bucket` in the map (its master; during a move, the `from` side).
    pub fn master(&self, bucket: u32) -> u32 {
        self.masters[(bucket & (self.count() - 1)) as usize]
    }

    /// The bucket's move, if it is on one.
    pub fn moving(&self, bucket: u32) -> Option<BucketMove> {
        self.moves.get(&bucket).copied()
    }

    /// Every move, by bucket.
    pub fn moves(&self) -> &BTreeMap<u32, BucketMove> {
        &self.moves
    }

    /// Server per bucket.
    pub fn masters(&self) -> &[u32] {
        &self.masters
    }

    /// libmemcached's forward map, when `setBucket` gave one.
    pub fn forward(&self) -> Option<&[u32]> {
        self.forward.as_deref()
    }

    /// Number of buckets.
    pub fn count(&self) -> u32 {
        self.masters.len() as u32
    }

    /// The map's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The key hash.
    pub fn hash(&self) -> HashFn {
        self.hash
    }
}

/// How many buckets each server should own: `count × weight / Σweight`, rounded so that the
/// total is `count` (largest remainder; ties to the lower index). No server is more than one
/// bucket off its exact share; a weight of 0 gets none (a server being removed). All zero:
/// an empty list.
pub fn quotas(count: u32, weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let exact: Vec<(u64, u64)> = weights
        .iter()
        .map(|&w| {
            let num = u64::from(count) * u64::from(w);
            (num / total, num % total)
        })
        .collect();
    let mut q: Vec<u32> = exact.iter().map(|&(f, _)| f as u32).collect();
    let left = count - q.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(left as usize) {
        q[i] += 1;
    }
    q
}

/// The default map: `count` buckets dealt to servers in proportion to `weights` (each server
/// gets its [`quotas`] share), interleaved (smooth weighted round robin) so that neighbouring
/// buckets land on different servers.
pub fn balanced(count: u32, weights: &[u32]) -> Vec<u32> {
    let q = quotas(count, weights);
    let total: i64 = q.iter().map(|&x| i64::from(x)).sum();
    let mut current = vec![0i64; q.len()];
    let mut left = q.clone();
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut best = None;
        for i in 0..q.len() {
            if left[i] == 0 {
                continue;
            }
            current[i] += i64::from(q[i]);
            if best.is_none_or(|b: usize| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        current[b] -= total;
        left[b] -= 1;
        out.push(b as u32);
    }
    out
}

/// The fewest bucket moves that bring `masters` (server per bucket) to the [`quotas`] of
/// `weights` (per server index; 0 for a server to empty, and any new server appended at the
/// end): every server over its quota gives up exactly its excess (its highest-numbered
/// buckets), and each freed bucket goes to the server furthest under its quota. Returns
/// `(bucket, to)` in bucket order; no bucket moves twice, none moves between two servers
/// that are both within quota. Errors when every weight is 0 or a bucket names a server
/// `weights` does not cover.
pub fn plan_moves(masters: &[u32], weights: &[u32]) -> Result<Vec<(u32, u32)>, String> {
    let count = u32::try_from(masters.len()).map_err(|_| "too many buckets".to_string())?;
    if let Some(s) = masters.iter().find(|&&s| s as usize >= weights.len()) {
        return Err(format!(
            "the map names server {s}; {} servers are weighted",
            weights.len()
        ));
    }
    let q = quotas(count, weights);
    if q.is_empty() {
        return Err("every server has weight 0: nowhere to put the buckets".into());
    }
    let mut owned: Vec<Vec<u32>> = vec![Vec::new(); weights.len()];
    for (b, &s) in masters.iter().enumerate() {
        owned[s as usize].push(b as u32);
    }
    let mut freed: Vec<u32> = Vec::new();
    for (s, bs) in owned.iter_mut().enumerate() {
        while bs.len() > q[s] as usize {
            freed.extend(bs.pop());
        }
    }
    freed.sort_unstable();
    let mut deficit: Vec<i64> = (0..weights.len())
        .map(|s| i64::from(q[s]) - owned[s].len() as i64)
        .collect();
    let mut moves = Vec::with_capacity(freed.len());
    for b in freed {
        let Some(to) = (0..deficit.len())
            .filter(|&s| deficit[s] > 0)
            .max_by(|&a, &c| deficit[a].cmp(&deficit[c]).then(c.cmp(&a)))
        else {
            break;
        };
        deficit[to] -= 1;
        moves.push((b, to as u32));
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u16) -> Vec<Node> {
        (0..n).map(|i| Node::new("127.0.0.1", 21211 + i)).collect()
    }

    fn spec(count: u32) -> BucketsSpec {
        BucketsSpec {
            count,
            version: 1,
            hash: None,
            map: Vec::new(),
            moves: Vec::new(),
        }
    }

    #[test]
    fn bucket_is_hash_masked() {
        let m = BucketMap::from_spec(&spec(1024), &nodes(3)).unwrap();
        for k in ["a", "apple", "key:17"] {
            let h = HashFn::OneAtATime.hash(k.as_bytes());
            assert_eq!(m.bucket(k.as_bytes()), h & 1023);
            assert_eq!(
                m.master(m.bucket(k.as_bytes())),
                m.masters()[(h & 1023) as usize]
            );
        }
    }

    #[test]
    fn balanced_map_follows_weights() {
        let q = quotas(1024, &[1, 1, 2]);
        assert_eq!(q, [256, 256, 512]);
        let q = quotas(1024, &[1; 11]);
        assert_eq!(q.iter().sum::<u32>(), 1024);
        assert!(q.iter().all(|&x| x == 93 || x == 94), "{q:?}");
        let map = balanced(1024, &[1, 1, 2]);
        assert_eq!(map.len(), 1024);
        for (i, want) in [256, 256, 512].into_iter().enumerate() {
            assert_eq!(map.iter().filter(|&&s| s == i as u32).count(), want);
        }
        // Interleaved, not in runs.
        assert_ne!(map[0], map[1]);
    }

    #[test]
    fn bad_specs_are_clear_errors() {
        let n = nodes(2);
        let bad = |s: BucketsSpec, want: &str| {
            let e = BucketMap::from_spec(&s, &n).unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        bad(spec(0), "power of two");
        bad(spec(1000), "power of two");
        bad(spec(MAX_BUCKETS * 2), "power of two");
        bad(
            BucketsSpec {
                hash: Some("nope".into()),
                ..spec(4)
            },
            "unknown hash",
        );
        bad(
            BucketsSpec {
                map: vec![0, 1],
                ..spec(4)
            },
            "2 entries for 4",
        );
        bad(
            BucketsSpec {
                map: vec![0, 1, 2, 0],
                ..spec(4)
            },
            "map[2]: server 2",
        );
        let mv = |bucket, from, to| MoveSpec {
            bucket,
            from,
            to,
            phase: MovePhase::DualWrite,
        };
        let with = |moves| BucketsSpec {
            map: vec![0, 1, 0, 1],
            moves,
            ..spec(4)
        };
        bad(with(vec![mv(9, None, 1)]), "bucket 9 does not exist");
        bad(with(vec![mv(0, None, 5)]), "server 5 does not exist");
        bad(with(vec![mv(0, None, 0)]), "already on server 0");
        bad(with(vec![mv(0, Some(1), 1)]), "on server 0 in the map");
        bad(with(vec![mv(0, None, 1), mv(0, None, 1)]), "listed twice");
        let ok = BucketMap::from_spec(&with(vec![mv(2, Some(0), 1)]), &n).unwrap();
        assert_eq!(
            ok.moving(2),
            Some(BucketMove {
                to: 1,
                phase: MovePhase::DualWrite
            })
        );
        assert_eq!(ok.moving(0), None);
        // The spec round-trips.
        assert_eq!(BucketMap::from_spec(&ok.to_spec(), &n).unwrap(), ok);
    }

    #[test]
    fn libmemcached_map_accepts_any_count() {
        let m = BucketMap::libmemcached(HashFn::OneAtATime, &[1, 0, 1], None, 2).unwrap();
        // size 3 masks with 2, as libmemcached does: buckets 0 and 2 only.
        for k in ["a", "b", "c", "d"] {
            let b = m.bucket(k.as_bytes());
            assert!(b == 0 || b == 2, "{b}");
        }
        let e = BucketMap::libmemcached(HashFn::OneAtATime, &[0, 3], None, 2).unwrap_err();
        assert!(e.contains("host_map[1] = 3"), "{e}");
        assert!(BucketMap::libmemcached(HashFn::OneAtATime, &[], None, 2).is_err());
    }

    #[test]
    fn plans_move_the_fewest_buckets() {
        let ten = balanced(1024, &[1; 10]);
        // Add an eleventh server: only its share moves, and only onto it.
        let mut w = vec![1; 11];
        let moves = plan_moves(&ten, &w).unwrap();
        let q = quotas(1024, &w);
        assert_eq!(moves.len(), q[10] as usize);
        assert!(moves.iter().all(|&(_, to)| to == 10));
        let mut after = ten.clone();
        for &(b, to) in &moves {
            after[b as usize] = to;
        }
        for (s, &want) in q.iter().enumerate() {
            assert_eq!(
                after.iter().filter(|&&x| x == s as u32).count(),
                want as usize
            );
        }
        // A plan of a balanced map is empty.
        assert!(plan_moves(&after, &w).unwrap().is_empty());
        // Remove server 3: exactly its buckets move, spread over the others.
        w[3] = 0;
        let moves = plan_moves(&after, &w).unwrap();
        let on3 = after.iter().filter(|&&s| s == 3).count();
        assert_eq!(moves.len(), on3);
        assert!(
            moves
                .iter()
                .all(|&(b, to)| after[b as usize] == 3 && to != 3)
        );
        // Reweight: server 0 to weight 3.
        let w = [3, 1, 1, 1];
        let four = balanced(64, &[1; 4]);
        let moves = plan_moves(&four, &w).unwrap();
        assert_eq!(moves.len(), 32 - 16);
        assert!(plan_moves(&four, &[0, 0, 0, 0]).is_err());
        assert!(plan_moves(&four, &[1, 1]).is_err());
    }

    #[test]
    fn phases_step_in_order() {
        assert_eq!(MovePhase::FromOnly.prev(), None);
        assert_eq!(MovePhase::FromOnly.next(), Some(MovePhase::DualWrite));
        assert_eq!(MovePhase::ToOnly.next(), None);
        assert_eq!(MovePhase::ToOnly.prev(), Some(MovePhase::DualWriteReadNew));
        for p in MovePhase::ALL {
            assert_eq!(MovePhase::from_name(p.as_str()), Some(p));
        }
    }
}
