//! Leases, `get_or_set`, invalidation and request coalescing against real memcached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use fae_core::lease::Lease;
use fae_core::{Client, Config};
use fae_testkit::Memcached;

fn client(server: &Memcached, extra: &str) -> Client {
    let cfg = format!(
        r#"{{"servers": ["{}"], "timeouts": {{"connect_ms": 200, "io_ms": 500}}{extra}}}"#,
        server.addr()
    );
    Client::new(&Config::from_json(&cfg).unwrap()).unwrap()
}

#[test]
fn lease_miss_wait_fill_hit() {
    let mc = Memcached::start();
    let c = client(&mc, "");
    let Lease::Miss { token } = c.get_or_lease(b"k").unwrap() else {
        panic!("first reader wins the lease")
    };
    assert_ne!(token, 0);
    assert_eq!(c.get_or_lease(b"k").unwrap(), Lease::Wait);
    // Plain reads see the stub as a miss.
    assert_eq!(c.get(b"k").unwrap(), None);
    assert_eq!(c.get_multi(&[b"k", b"other"]).unwrap()[0], Ok(None));
    assert!(c.set_with_lease(b"k", b"v", 3, 60, token).unwrap());
    let Lease::Hit(item) = c.get_or_lease(b"k").unwrap() else {
        panic!()
    };
    assert_eq!((item.value.as_slice(), item.flags), (&b"v"[..], 3));
    // A second fill with the used token loses.
    assert!(!c.set_with_lease(b"k", b"w", 0, 60, token).unwrap());
}

#[test]
fn a_delete_between_lease_and_fill_wins() {
    let mc = Memcached::start();
    let c = client(&mc, "");
    let Lease::Miss { token } = c.get_or_lease(b"k").unwrap() else {
        panic!()
    };
    assert!(c.delete(b"k").unwrap());
    assert!(!c.set_with_lease(b"k", b"late", 0, 60, token).unwrap());
    assert_eq!(c.get(b"k").unwrap(), None);
    // Invalidate between lease and fill: the fill loses too.
    c.set(b"j", b"v1", 0, 60).unwrap();
    assert!(c.invalidate(b"j", 30).unwrap());
    let Lease::Refresh { item, token } = c.get_or_lease(b"j").unwrap() else {
        panic!()
    };
    assert!(item.stale);
    assert_eq!(item.value, b"v1");
    let Lease::Stale(item) = c.get_or_lease(b"j").unwrap() else {
        panic!()
    };
    assert_eq!(item.value, b"v1");
    // Plain reads see an invalidated key as a miss.
    assert_eq!(c.get(b"j").unwrap(), None);
    assert!(c.invalidate(b"j", 30).unwrap());
    assert!(!c.set_with_lease(b"j", b"v2", 0, 60, token).unwrap());
}

#[test]
fn get_or_set_computes_once_for_64_threads() {
    let mc = Memcached::start();
    let c = Arc::new(client(&mc, ""));
    let computes = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let (c, computes, barrier) = (c.clone(), computes.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.get_or_set(b"hot", 60, || {
                    computes.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    Ok::<_, ()>((b"value".to_vec(), 0))
                })
                .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().value, b"value");
    }
    assert_eq!(computes.load(Ordering::SeqCst), 1);
    println!("{}", c.stats()["stampede"]);
}

#[test]
fn coalesced_gets_share_one_request() {
    let mc = Memcached::start();
    let c = Arc::new(client(&mc, ""));
    c.set(b"k", b"v", 0, 0).unwrap();
    let t = Instant::now();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!("{:?} {}", t.elapsed(), c.stats()["stampede"]);
}
