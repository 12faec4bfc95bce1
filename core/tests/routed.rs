//! The additive routing API for bindings: commands placed by a server key other than the
//! stored key (`*_routed`), a placement from libmemcached's behavior state
//! (`Client::with_placement`). Real memcached.

use fae_core::hash::HashFn;
use fae_core::placement::{Node, Placement};
use fae_core::protocol::StoreOp;
use fae_core::{Client, Config, SetItem, StoreOutcome};
use fae_testkit::Cluster;

fn client(servers: &[String], protocol: &str) -> Client {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "protocol": "{protocol}"}}"#,
        list.join(",")
    );
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

#[test]
fn routed_commands_land_on_the_server_key_server() {
    let cluster = Cluster::start(3);
    let addrs = cluster.addrs();
    for proto in ["meta", "text"] {
        let c = client(&addrs, proto);
        c.flush_all(0).unwrap();
        // Find a server key whose server differs from the stored key's.
        let key = b"stored:key";
        let home = c.route_for(fae_core::Op::Get, key).unwrap();
        let skey = (0..100)
            .map(|i| format!("group:{i}"))
            .find(|s| c.route_for(fae_core::Op::Get, s.as_bytes()).unwrap() != home)
            .unwrap();
        let skey = skey.as_bytes();
        let out = c
            .store_routed(skey, StoreOp::Set, key, b"v1", 7, 0)
            .unwrap();
        assert_eq!(out, StoreOutcome::Stored);
        // Not on the key's own server …
        assert_eq!(c.get(key).unwrap(), None, "{proto}");
        // … but on the server key's.
        let it = c.get_routed(skey, key, true).unwrap().unwrap();
        assert_eq!((it.value.as_slice(), it.flags), (&b"v1"[..], 7));
        assert!(it.cas > 0);
        let multi = c
            .get_multi_routed(&[key, b"absent"], &[skey, skey], false)
            .unwrap();
        assert_eq!(multi[0].as_ref().unwrap().as_ref().unwrap().value, b"v1");
        assert_eq!(multi[1].as_ref().unwrap(), &None);
        assert!(c.touch_routed(skey, key, 100).unwrap());
        c.store_routed(skey, StoreOp::Set, b"n", b"5", 0, 0)
            .unwrap();
        assert_eq!(c.arith_routed(skey, b"n", true, 3).unwrap(), Some(8));
        assert_eq!(c.arith_routed(skey, b"n", false, 10).unwrap(), Some(0));
        assert!(c.delete_routed(skey, key).unwrap());
        assert!(!c.delete_routed(skey, key).unwrap());
        assert!(c.get_multi_routed(&[key], &[], false).is_err());
        assert!(
            c.get_routed(b"", key, false).is_err(),
            "an empty server key"
        );
        // A server key is only hashed, never sent: any bytes (php-memcached's `*ByKey`).
        assert_eq!(
            c.get_routed(b"server key \xff\n", key, false).unwrap(),
            None
        );
        assert!(
            c.get_routed(&[b'x'; 251], key, false).is_err(),
            "longer than a key"
        );

        // The multi-key writes and get-and-touch, placed by server keys.
        let items = [
            SetItem {
                key: b"m1",
                value: b"a",
                flags: 0,
                exptime: 0,
            },
            SetItem {
                key: b"m2",
                value: b"b",
                flags: 0,
                exptime: 0,
            },
        ];
        let stored = c.set_multi_routed(&items, &[skey, skey]).unwrap();
        assert!(
            stored
                .iter()
                .all(|r| *r.as_ref().unwrap() == StoreOutcome::Stored)
        );
        let there = c.route_for(fae_core::Op::Get, skey).unwrap();
        for k in [&b"m1"[..], b"m2"] {
            if c.route_for(fae_core::Op::Get, k).unwrap() != there {
                assert_eq!(c.get(k).unwrap(), None, "{proto}: not on its own server");
            }
        }
        let touched = c
            .get_multi_routed_opts(&[b"m1", b"m2"], &[skey, skey], true, Some(100))
            .unwrap();
        assert!(touched.iter().all(|r| r.as_ref().unwrap().is_some()));
        let deleted = c
            .delete_multi_routed(&[b"m1", b"m2", b"m3"], &[skey, skey, skey])
            .unwrap();
        let deleted: Vec<bool> = deleted.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(deleted, [true, true, false]);
        assert!(c.set_multi_routed(&items, &[skey]).is_err());
        assert!(c.delete_multi_routed(&[b"m1"], &[]).is_err());
    }
}

#[test]
fn with_placement_replaces_the_mode() {
    let cluster = Cluster::start(3);
    let addrs = cluster.addrs();
    let json = format!(
        r#"{{"servers": ["{}", "{}", "{}"]}}"#,
        addrs[0], addrs[1], addrs[2]
    );
    let cfg = Config::from_json(&json).unwrap();
    let nodes: Vec<Node> = addrs
        .iter()
        .map(|a| {
            let (h, p) = a.rsplit_once(':').unwrap();
            Node::new(h, p.parse().unwrap())
        })
        .collect();
    let p = Placement::libmemcached_behavior(0, false, HashFn::Md5, &nodes).unwrap();
    let c = Client::with_placement(&cfg, p.clone()).unwrap();
    for i in 0..50 {
        let k = format!("k{i}");
        let want = &addrs[p.pick(k.as_bytes())];
        assert_eq!(
            &c.route_for(fae_core::Op::Get, k.as_bytes()).unwrap()[0],
            want
        );
        c.set(k.as_bytes(), b"x", 0, 0).unwrap();
        assert!(c.get(k.as_bytes()).unwrap().is_some());
    }
    let short = Placement::libmemcached_behavior(0, false, HashFn::Md5, &nodes[..2]).unwrap();
    assert!(Client::with_placement(&cfg, short).is_err());
}
