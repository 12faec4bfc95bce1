//! Tests for the memcached process handle, the cluster and the raw helpers.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use fae_testkit::{Cluster, Memcached, raw, wait_until};

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn start_answers_and_raw_helpers_work() {
    let mc = Memcached::builder().start();
    let addr = mc.addr();
    assert_eq!(addr, format!("127.0.0.1:{}", mc.port()));
    assert!(mc.is_running());
    assert!(!mc.is_external());
    assert_eq!(
        raw::try_version(&addr, raw::DEFAULT_TIMEOUT).unwrap(),
        "1.6.18"
    );

    let pid = mc.pid().expect("local server has a pid");
    assert_eq!(raw::stats(&addr)["pid"], pid.to_string());

    assert_eq!(raw::get(&addr, "missing"), None);
    raw::set(&addr, "k1", 42, b"hello");
    raw::set(&addr, b"bin\xc3\xbc:/%", 0, b"");
    raw::set(&addr, "big", 1, &vec![b'x'; 100_000]);
    assert_eq!(raw::get(&addr, "k1"), Some((42, b"hello".to_vec())));
    assert_eq!(raw::get(&addr, b"bin\xc3\xbc:/%"), Some((0, Vec::new())));
    assert_eq!(raw::get(&addr, "big").unwrap().1.len(), 100_000);
    assert_eq!(raw::stats(&addr)["curr_items"], "3");

    // metadump keys come back URL-decoded and sorted.
    assert_eq!(
        raw::keys(&addr),
        vec![b"big".to_vec(), b"bin\xc3\xbc:/%".to_vec(), b"k1".to_vec()]
    );

    assert!(raw::delete(&addr, "big"));
    assert!(!raw::delete(&addr, "big"));
    let reply = raw::command(&addr, b"get k1 nope\r\n", b"END\r\n");
    assert_eq!(reply, b"VALUE k1 42 5\r\nhello\r\nEND\r\n");

    raw::flush(&addr);
    assert!(raw::keys(&addr).is_empty());
    assert_eq!(raw::get(&addr, "k1"), None);
}

#[test]
fn builder_options_reach_the_server() {
    let mc = Memcached::builder()
        .memory_mb(32)
        .max_item_size("2m")
        .extra_args(&["-R", "7"])
        .start();
    let settings = raw::stats_group(&mc.addr(), "settings");
    assert_eq!(settings["maxbytes"], (32u64 << 20).to_string());
    assert_eq!(settings["item_size_max"], (2u64 << 20).to_string());
    assert_eq!(settings["reqs_per_event"], "7");
    assert_eq!(settings["num_threads"], "2");
    assert_eq!(settings["udpport"], "0");
    assert_eq!(settings["maxconns"], "1024");
    assert_eq!(settings["lru_crawler"], "yes");
    // A 1.5 MiB item fits with -I 2m.
    raw::set(&mc.addr(), "large", 0, &vec![b'y'; 1_500_000]);
    assert_eq!(raw::get(&mc.addr(), "large").unwrap().1.len(), 1_500_000);
}

#[test]
fn bad_arguments_report_stderr() {
    let err = Memcached::builder()
        .extra_args(&["--no-such-option"])
        .start_timeout(Duration::from_secs(2))
        .try_start()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("exited"), "{msg}");
    assert!(msg.contains("no-such-option"), "{msg}");
}

#[test]
fn pause_makes_requests_time_out_and_resume_answers() {
    let mc = Memcached::builder().start();
    raw::set(&mc.addr(), "k", 1, b"v");
    mc.pause().unwrap();
    assert!(mc.is_paused());
    assert!(mc.is_running());

    let t = Instant::now();
    let err = raw::try_command(
        &mc.addr(),
        b"get k\r\n",
        b"END\r\n",
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(300));

    // A request sent while paused is answered after resume.
    let mut conn = raw::Conn::connect(&mc.addr()).unwrap();
    conn.send(b"get k\r\n").unwrap();
    mc.resume().unwrap();
    assert!(!mc.is_paused());
    assert_eq!(
        conn.read_until(b"END\r\n").unwrap(),
        b"VALUE k 1 1\r\nv\r\nEND\r\n"
    );
    assert_eq!(raw::get(&mc.addr(), "k"), Some((1, b"v".to_vec())));
}

#[test]
fn kill_refuses_connections() {
    let mc = Memcached::builder().start();
    let pid = mc.pid().unwrap();
    mc.kill().unwrap();
    assert!(!mc.is_running());
    assert_eq!(mc.pid(), None);
    assert!(!alive(pid), "killed process must be reaped");
    let err = raw::try_command(
        &mc.addr(),
        b"version\r\n",
        b"\r\n",
        Duration::from_millis(500),
    )
    .unwrap_err();
    assert!(err.is_refused(), "{err}");
    assert!(mc.pause().is_err());
    // Killing twice is fine.
    mc.kill().unwrap();
}

#[test]
fn restart_is_empty_on_the_same_port() {
    let mc = Memcached::builder().memory_mb(16).start();
    let (port, pid) = (mc.port(), mc.pid().unwrap());
    raw::set(&mc.addr(), "k", 0, b"v");
    mc.restart().unwrap();
    assert_eq!(mc.port(), port);
    assert_ne!(mc.pid().unwrap(), pid);
    assert!(!alive(pid));
    assert_eq!(raw::get(&mc.addr(), "k"), None);
    assert!(raw::keys(&mc.addr()).is_empty());
    // Options survive the restart.
    assert_eq!(
        raw::stats_group(&mc.addr(), "settings")["maxbytes"],
        (16u64 << 20).to_string()
    );

    // Restart after kill, and restart while paused.
    mc.kill().unwrap();
    mc.restart().unwrap();
    assert!(mc.is_running());
    mc.pause().unwrap();
    mc.restart().unwrap();
    assert!(!mc.is_paused());
    raw::set(&mc.addr(), "k", 0, b"v");
}

#[test]
fn drop_kills_and_reaps_even_when_paused() {
    let mc = Memcached::builder().start();
    let pid = mc.pid().unwrap();
    let addr = mc.addr();
    mc.pause().unwrap();
    drop(mc);
    assert!(!alive(pid));
    let err =
        raw::try_command(&addr, b"version\r\n", b"\r\n", Duration::from_millis(500)).unwrap_err();
    assert!(err.is_refused(), "{err}");
}

#[test]
fn external_server_cannot_be_controlled() {
    let local = Memcached::builder().start();
    let ext = Memcached::external(&local.addr());
    assert!(ext.is_external());
    assert_eq!(ext.addr(), local.addr());
    assert_eq!(ext.port(), local.port());
    assert_eq!(ext.pid(), None);
    assert!(ext.is_running());
    for err in [ext.kill(), ext.pause(), ext.resume(), ext.restart()] {
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("FAE_TEST_SERVER"), "{err}");
    }
    drop(ext);
    // Dropping the external handle left the server alone.
    assert!(local.is_running());
    raw::set(&local.addr(), "still", 0, b"here");
}

#[test]
fn cluster_of_three() {
    let c = Cluster::start(3);
    assert_eq!(c.len(), 3);
    let addrs = c.addrs();
    assert_eq!(c.servers_csv(), addrs.join(","));
    let mut ports: Vec<u16> = c.iter().map(Memcached::port).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(&c[i].addr(), addr);
        raw::set(addr, format!("k{i}"), i as u32, b"x");
    }
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(raw::keys(addr), vec![format!("k{i}").into_bytes()]);
    }
    c[1].kill().unwrap();
    assert!(c[0].is_running() && !c[1].is_running() && c[2].is_running());
    c[1].restart().unwrap();
    assert_eq!(c[1].addr(), addrs[1]);
    assert!(wait_until(Duration::from_secs(1), || c[1].is_running()));
}

#[test]
fn a_unix_socket_server_starts_restarts_and_cleans_up() {
    let mc = Memcached::builder().unix_socket().start();
    let path = mc.socket_path().expect("a socket server has a path");
    assert_eq!(mc.addr(), path.to_string_lossy());
    assert_eq!(mc.port(), 0);
    assert!(path.exists());
    let pid = mc.pid().unwrap();
    assert_eq!(raw::stats(&mc.addr())["pid"], pid.to_string());
    raw::set(&mc.addr(), "k", 0, b"v");
    assert_eq!(raw::get(&mc.addr(), "k"), Some((0, b"v".to_vec())));

    mc.kill().unwrap();
    let e = raw::try_version(&mc.addr(), Duration::from_millis(200)).unwrap_err();
    assert!(e.is_refused(), "{e}");
    // Removed socket file: memcached creates it again on restart.
    std::fs::remove_file(&path).unwrap();
    mc.restart().unwrap();
    assert!(path.exists());
    assert_ne!(mc.pid(), Some(pid));
    assert_eq!(raw::get(&mc.addr(), "k"), None);
    let dir = path.parent().unwrap().to_path_buf();
    drop(mc);
    assert!(!dir.exists(), "the socket's directory is removed on drop");
}
