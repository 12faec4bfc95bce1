//! libmemcached's ketama continuum, weighted (MD5, 4 points per digest) and unweighted (100
//! points hashed with the key hash).
//!
//! Anchor: `awesomized/libmemcached:src/libmemcached/hosts.cc` (`update_continuum`,
//! `ketama_server_hash`, `continuum_item_cmp`) and `src/libmemcached/hash.cc` (`dispatch_host`);
//! pseudocode in `notes/client-anchors.md` §2.4. twemproxy's `distribution: ketama`
//! (`src/hashkit/nc_ketama.c`) builds the same weighted continuum.

use std::fmt::Write as _;

use super::{Node, effective_weight};
use crate::hash::HashFn;
use crate::hash::md5::{digest_word, md5_digest};

/// libmemcached's default port: the point string leaves the port out when it is this one.
pub const DEFAULT_PORT: u16 = 11211;

/// `MEMCACHED_POINTS_PER_SERVER_KETAMA`: the nominal weighted points per server.
const POINTS_PER_SERVER_KETAMA: u32 = 160;

/// `MEMCACHED_POINTS_PER_SERVER`: points per server in the unweighted continuum.
pub const POINTS_PER_SERVER: u32 = 100;

/// One continuum point. Ordered by `(value, index)`: libmemcached ≥ 1.1 sorts with that
/// comparator (`continuum_item_cmp`), so equal values resolve to the lowest server index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    value: u32,
    index: u32,
}

/// A built, sorted ketama continuum. Lookups are a binary search; no allocation.
#[derive(Clone, Debug)]
pub struct Continuum {
    points: Vec<Point>,
}

/// Digests per server in the weighted continuum: `floor(((pct * 160) / 4) * live + 1e-10)` with
/// every operation in IEEE single precision, in this order, as libmemcached computes it
/// (`pct = (float) weight / (float) total`). Each digest gives 4 points.
///
/// The f32 arithmetic matters: with 25 equal servers `pct = 0.04f`, and the product rounds to
/// 39.999996, so each server gets 39 digests (156 points), not 40. Double precision or a
/// reordered `pct * 40 * live` (libketama) gives 160 and a different continuum.
pub fn weighted_digests_per_server(weight: u32, total_weight: u64, live_servers: u32) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let t = ((pct * POINTS_PER_SERVER_KETAMA as f32) / 4.0) * live_servers as f32 + 1e-10_f32;
    // `as` saturates (NaN → 0), so a zero total cannot panic; callers never pass one.
    t.floor() as u32
}

/// The string whose hash gives a server's points: `host-j` when the port is 11211, else
/// `host:port-j` (`update_continuum`; twemproxy copies the rule). Returns the prefix up to and
/// including the `-`; the caller appends `j`.
fn point_prefix(node: &Node) -> String {
    if node.port == DEFAULT_PORT {
        format!("{}-", node.host)
    } else {
        format!("{}:{}-", node.host, node.port)
    }
}

impl Continuum {
    /// libmemcached `KETAMA_WEIGHTED` (php-memcached `OPT_LIBKETAMA_COMPATIBLE`, twemproxy
    /// ketama): each server gets [`weighted_digests_per_server`] MD5 digests of `host[:port]-j`
    /// (j from 0), each digest 4 little-endian points. Weights of 0 count as 1.
    pub fn weighted(nodes: &[Node]) -> Continuum {
        let live = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
        let total: u64 = nodes.iter().map(|n| u64::from(effective_weight(n))).sum();
        let mut points = Vec::new();
        let mut name = String::new();
        for (index, node) in (0u32..).zip(nodes) {
            let digests = weighted_digests_per_server(effective_weight(node), total, live);
            let prefix = point_prefix(node);
            for j in 0..digests {
                name.clear();
                name.push_str(&prefix);
                // Writing to a String cannot fail.
                let _ = write!(name, "{j}");
                let digest = md5_digest(name.as_bytes());
                points.extend((0..4).map(|x| Point {
                    value: digest_word(&digest, x),
                    index,
                }));
            }
        }
        Continuum::sorted(points)
    }

    /// libmemcached `DISTRIBUTION_CONSISTENT` / `CONSISTENT_KETAMA` without the weighted flag:
    /// 100 points per server, point `j` = `hash("host[:port]-j")` with the **key** hash (not
    /// `KETAMA_HASH`, which libmemcached ignores since 0.51). Weights are ignored.
    pub fn unweighted(nodes: &[Node], hash: HashFn) -> Continuum {
        let mut points = Vec::with_capacity(nodes.len().saturating_mul(100));
        let mut name = String::new();
        for (index, node) in (0u32..).zip(nodes) {
            let prefix = point_prefix(node);
            for j in 0..POINTS_PER_SERVER {
                name.clear();
                name.push_str(&prefix);
                let _ = write!(name, "{j}");
                points.push(Point {
                    value: hash.hash(name.as_bytes()),
                    index,
                });
            }
        }
        Continuum::sorted(points)
    }

    fn sorted(mut points: Vec<Point>) -> Continuum {
        points.sort_unstable();
        Continuum { points }
    }

    /// Number of points on the continuum.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True if the continuum has no points (only possible for an empty node list).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The point that owns `hash`: the first with `value >= hash`, wrapping to the first point
    /// past the end (`dispatch_host`). `None` on an empty continuum.
    fn point_for(&self, hash: u32) -> Option<Point> {
        let i = self.points.partition_point(|p| p.value < hash);
        self.points.get(i).or(self.points.first()).copied()
    }

    /// The server index that owns key hash `hash` (0 on an empty continuum).
    pub fn lookup(&self, hash: u32) -> usize {
        self.point_for(hash).map_or(0, |p| p.index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `awesomized/libmemcached:test/fixtures/ketama.hpp` `ketama_test_cases`: key, MD5 key
    /// hash, value of the owning continuum point, server (last octet of `10.0.1.x`).
    const KETAMA_CASES: [(&str, u32, u32, usize); 99] = [
        ("SVa_]_V41)", 443691461, 445379617, 7),
        ("*/Z;?V(.\\8", 1422915503, 1428303028, 1),
        ("30C1*Z*S/_", 1473165754, 1480075959, 2),
        ("ERR:EC58G>", 2148406511, 2168579133, 7),
        ("1I=cTMNTKF", 2882686667, 2885206587, 5),
        ("]VG<`I*Z8)", 1103544263, 1104827657, 5),
        ("UUTC`-V159", 3716288206, 3727224240, 5),
        ("@7RU6C6T+Z", 3862737685, 3871917949, 5),
        ("/XLN0@+36;", 1623269830, 1627683651, 1),
        ("4(`X;\\V.^c", 373546328, 383925769, 1),
        ("726bW=9*a4", 4213440020, 4213950705, 7),
        ("\\`)<B)UE,c", 951096736, 955226069, 1),
        ("P1[Ma3=K1/", 1989324036, 1994028240, 8),
        ("C89I.-V?cT", 1604239957, 1606398093, 8),
        ("D[HE+cFXDK", 2117036136, 2117124014, 3),
        ("P1L?NAB[)K", 2129972569, 2132542634, 1),
        ("cDT0)Z5P6,", 176485284, 178675413, 5),
        ("@JW`+[WAO8", 2720940826, 2743975456, 5),
        ("\\39DKW^)N_", 3548879868, 3550704865, 3),
        ("EM75N0+[X1", 1558531507, 1559308507, 4),
        ("`,SS]NBP,b", 1883545960, 1884847278, 1),
        ("XX1a9LT+F?", 653487707, 656410408, 5),
        ("Zc\\-,F-c6V", 1160802451, 1171575728, 5),
        ("1*RTMC7,03", 1602398012, 1606398093, 8),
        ("*Xc+V0P>32", 536016577, 539988520, 7),
        ("U))Fb-(`,.", 4128682289, 4136854163, 7),
        ("R-08RNTaRT", 3718170086, 3727224240, 5),
        ("(LHcO203I3", 1007779411, 1014643570, 5),
        ("=256P+;Qc8", 3976201210, 3976304873, 5),
        ("OI5XZ_BBT(", 2155922164, 2168579133, 7),
        ("2TLRL/UL;:", 1086800909, 1095659802, 7),
        ("WHD\\O1`ZRW", 3087923411, 3095471560, 5),
        (".=54)_c;=T", 2497691631, 2502731301, 1),
        (";G<W-XWZ@b", 2888169733, 2888728739, 5),
        ("(,>E`)FT\\4", 580747448, 581063326, 2),
        ("HZAU*;P*N]", 2564670474, 2565697267, 7),
        ("NZ@ZE=O84_", 533335275, 539988520, 7),
        ("6,cEI`F_P>", 3972869246, 3974773167, 6),
        ("c,5AQ/T5)6", 2835605783, 2847870057, 8),
        (".O,>>BT)RX", 3857978174, 3871917949, 5),
        ("XY\\X::LX50", 1749241099, 1752196488, 6),
        ("+550F^/.01", 3781824099, 3783248219, 6),
        ("<.X9E2S5+9", 3232479481, 3234387706, 7),
        ("]\\.UH8_0a1", 2419699252, 2423002920, 4),
        ("8(6=(T0/Z0", 728266737, 729026070, 7),
        ("8*6a;Sc*X+", 4223431086, 4230156966, 2),
        ("<QW:;3K6;H", 2731158143, 2743975456, 5),
        ("7C@EY@-Y?_", 760770733, 761576669, 5),
        ("aPb3E1WD4K", 2500489218, 2502731301, 1),
        ("?@12R<=1BH", 1494795329, 1502505505, 8),
        ("QR(a+Q=1FU", 3238535074, 3238996435, 6),
        ("`C9^FV,960", 2628553463, 2628733766, 6),
        ("UNHVP..^8H", 977096483, 977319837, 4),
        (":Y.2W2[(35", 2777083668, 2784182515, 7),
        ("M/HV^_HZ4O", 3623390946, 3624445007, 7),
        ("ZY16KQ<ICD", 1831153193, 1838563516, 4),
        ("bV2,`a.PY9", 1962228869, 1962648654, 1),
        ("U;9:-+5N]9", 269504649, 277560877, 1),
        ("1S/:aJ[1(;", 578069729, 581063326, 2),
        ("Nb-X^]M)I:", 330865696, 331009896, 6),
        ("2;M;ES>J5/", 2776949824, 2784182515, 7),
        ("[>RZHG97Q9", 71954686, 72034069, 6),
        ("J3/G[)9<^Z", 2799896459, 2805183696, 7),
        ("N-)88>[O`,", 50404102, 51792557, 5),
        ("NP:=FR\\OaA", 3837333776, 3837792034, 7),
        ("`@L+W;a,O[", 1512157148, 1522285852, 6),
        ("W2`P:-+1T[", 2945171975, 2946196424, 5),
        ("-6G7K^YDIN", 3168617340, 3170513015, 7),
        ("U>*>9ZI6V5", 668514946, 674097631, 6),
        (".I?^6Ic9RK", 938419020, 942832691, 6),
        ("0OZH^9BKM[", 3682518606, 3686781297, 8),
        ("5?50UGZ:ML", 868610882, 869425986, 5),
        ("?K2NF@3=IU", 381218851, 383925769, 1),
        ("YI@G-2X?UB", 3688706179, 3693197681, 5),
        ("7cY</BSaL=", 3976870223, 3978903843, 6),
        ("A(`KF:[RH8", 3292979676, 3294849139, 6),
        (";=ZT\\W^P+H", 1401102653, 1416290674, 4),
        ("b2?WFF56;R", 480494704, 486971192, 4),
        ("CTR74,J+N.", 137446045, 146633907, 8),
        ("<b;*R+QDST", 1304985302, 1308223778, 5),
        ("\\R^7=9UCG`", 126218373, 129199837, 5),
        ("1bQS5]WOXB", 1853470245, 1855329369, 4),
        ("M(@X^b[L:K", 3019630308, 3022260113, 1),
        ("431cBF8,YO", 1679726993, 1685224295, 7),
        ("(bEIQJ:E./", 2922607787, 2925521819, 6),
        ("WS/3H*)7F;", 419488232, 422140585, 5),
        ("ZJF[Ia6Q)+", 3960568056, 3962489998, 7),
        ("<]*QCK8U,>", 2590140172, 2598117636, 7),
        ("\\[a\\^=V_M0", 689410119, 698690782, 6),
        ("7;RM+8J9YC", 1530175299, 1531107082, 7),
        ("4*=.SPR[AV", 3928582722, 3928853792, 1),
        ("-2F+^88P4U", 3023552752, 3025823613, 7),
        ("X;-F`(N?9D", 570465234, 572485994, 7),
        ("R=F_D-K2a]", 1287750228, 1290935562, 7),
        ("X*+2aaC.EG", 3200948713, 3201088518, 5),
        ("[1ZXONX2]a", 4108881567, 4109865744, 4),
        ("FL;\\GWacaV", 458449508, 467374054, 4),
        ("\\MQ_XNT7L-", 1259349383, 1259509450, 7),
        ("VD6D0]ba_\\", 3842502950, 3842588691, 1),
    ];

    /// The servers of `test/tests/memcached/ketama.cpp`, with their weights.
    fn fixture_nodes() -> Vec<Node> {
        [600, 300, 200, 350, 1000, 800, 950, 100]
            .into_iter()
            .enumerate()
            .map(|(i, weight)| Node {
                host: format!("10.0.1.{}", i + 1),
                port: 11211,
                weight,
            })
            .collect()
    }

    #[test]
    fn libmemcached_weighted_fixture() {
        let c = Continuum::weighted(&fixture_nodes());
        // The libmemcached test checks the point counter too (1264, not 8 * 160).
        assert_eq!(c.len(), 1264);
        for (key, key_hash, point_value, server) in KETAMA_CASES {
            let h = HashFn::Md5.hash(key.as_bytes());
            assert_eq!(h, key_hash, "{key}");
            let p = c.point_for(h).unwrap();
            assert_eq!(p.value, point_value, "{key}");
            assert_eq!(c.lookup(h), server - 1, "{key}");
        }
    }

    #[test]
    fn wraps_past_the_last_point() {
        // ketama.cpp: "VDEAAAAA hashes to fffcd1b5, after the last continuum point".
        let c = Continuum::weighted(&fixture_nodes());
        let h = HashFn::Md5.hash(b"VDEAAAAA");
        assert_eq!(h, 0xfffc_d1b5);
        assert!(c.points.last().unwrap().value < h);
        assert_eq!(c.lookup(h), c.points[0].index as usize);
        assert_eq!(c.lookup(u32::MAX), c.points[0].index as usize);
    }

    #[test]
    fn f32_pitfall_25_equal_servers() {
        // notes/client-anchors.md §2.4.4: 25 equal servers get 39 digests (156 points) each.
        assert_eq!(weighted_digests_per_server(1, 25, 25), 39);
        assert_eq!(weighted_digests_per_server(1, 24, 24), 40);
        assert_eq!(weighted_digests_per_server(1, 4, 4), 40);
        for n in [47, 50, 55, 61, 71, 94, 100] {
            assert_eq!(weighted_digests_per_server(1, n, n as u32), 39, "{n}");
        }
        let nodes: Vec<Node> = (0..25).map(|i| Node::new("10.0.0.1", 20000 + i)).collect();
        assert_eq!(Continuum::weighted(&nodes).len(), 25 * 156);
    }

    #[test]
    fn port_omitted_only_for_11211() {
        assert_eq!(point_prefix(&Node::new("h", 11211)), "h-");
        assert_eq!(point_prefix(&Node::new("h", 21211)), "h:21211-");
    }

    #[test]
    fn equal_values_resolve_to_lowest_index() {
        // Two identical nodes produce identical points; the first index must own them.
        let nodes = [Node::new("a", 1), Node::new("a", 1)];
        for c in [
            Continuum::weighted(&nodes),
            Continuum::unweighted(&nodes, HashFn::OneAtATime),
        ] {
            for h in [0, 1 << 31, u32::MAX] {
                assert_eq!(c.lookup(h), 0);
            }
        }
    }

    #[test]
    fn unweighted_has_100_points_per_server_and_ignores_weights() {
        let mut nodes = vec![Node::new("a", 11211), Node::new("b", 21211)];
        let c = Continuum::unweighted(&nodes, HashFn::OneAtATime);
        assert_eq!(c.len(), 200);
        let first = c.points[0];
        assert_eq!(first.value, c.points.iter().map(|p| p.value).min().unwrap());
        nodes[1].weight = 7;
        assert_eq!(
            Continuum::unweighted(&nodes, HashFn::OneAtATime).points,
            c.points
        );
    }

    #[test]
    fn unweighted_points_use_the_key_hash() {
        let nodes = [Node::new("a", 11211), Node::new("b", 11211)];
        let c = Continuum::unweighted(&nodes, HashFn::Md5);
        assert!(
            c.points
                .iter()
                .any(|p| p.value == HashFn::Md5.hash(b"a-0") && p.index == 0)
        );
        assert!(
            c.points
                .iter()
                .any(|p| p.value == HashFn::Md5.hash(b"b-99") && p.index == 1)
        );
    }

    #[test]
    fn empty_continuum_does_not_panic() {
        let c = Continuum::weighted(&[]);
        assert!(c.is_empty());
        assert_eq!(c.lookup(42), 0);
    }
}
