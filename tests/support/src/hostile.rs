//! A scripted hostile memcached: a fake server on `127.0.0.1` that speaks enough of the text
//! and meta protocols to serve a client honestly, and answers chosen requests with a
//! [`Misbehave`]: duplicate blocks, another key, a wrong opaque, impossible lengths, garbage,
//! truncation, bytes after the terminator, a slow drip, a close mid-value, silence.
//!
//! It exists to test what a client does with replies that do not match what it asked — there
//! is no way to make a real memcached send them. Data it serves honestly is always what a
//! client stored (or [`HostileServer::put`]); every misbehaving block carries [`EVIL`] in its
//! data, so "a hit whose value contains `EVIL`" is exactly "a wrong value returned as a hit".
//!
//! Each key command (`mg`/`ms`/`md`/`ma`, `get`/`gets`/`gat`/`gats`, storage commands,
//! `delete`, `incr`/`decr`, `touch`) takes the next behaviour from the script
//! ([`HostileServer::script`]), else a random one when [`HostileServer::randomize`] was
//! called, else [`Misbehave::Honest`]. `mn`, `version` and `flush_all` are always answered
//! honestly (so new connections validate), but carry the trailer a misbehaving `mg` left.
//!
//! Every connection has its own thread; reads tick every 50 ms to notice a stop, writes time
//! out after 2 s. Dropping the server stops the listener and every connection thread.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::child::lock;

/// The marker in the data of every block the server makes up.
pub const EVIL: &[u8] = b"EVIL";

const TICK: Duration = Duration::from_millis(50);

/// How the server answers one key command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// The true answer.
    Honest,
    /// The answer and then made-up blocks for the same key, one more than the request asked
    /// for it (a second status line for a command answered by status).
    Duplicate,
    /// A made-up block for a key that was not asked (same opaque).
    OtherKey,
    /// A made-up block for the asked key with an opaque that was not sent.
    WrongOpaque,
    /// A value header declaring 99 999 999 999 bytes.
    HugeLength,
    /// A value header declaring −5 bytes.
    NegativeLength,
    /// Bytes that are no reply at all.
    Garbage,
    /// The first half of the answer (or of a made-up block), then the connection closes.
    Truncate,
    /// The answer, and a made-up block right after the reply's terminator, in the same write.
    Trailing,
    /// The answer, then 20 ms after the terminator a made-up block, unasked, and 5 ms of
    /// silence after it.
    Late,
    /// The answer one byte every 5 ms.
    SlowDrip,
    /// A value header and half of its data, then the connection closes.
    CloseMidValue,
    /// No answer, ever, on this connection.
    Stall,
    /// A reply of the wrong kind (a value for a store, a status for a read).
    WrongKind,
}

impl Misbehave {
    /// Every behaviour.
    pub const ALL: [Misbehave; 14] = [
        Misbehave::Honest,
        Misbehave::Duplicate,
        Misbehave::OtherKey,
        Misbehave::WrongOpaque,
        Misbehave::HugeLength,
        Misbehave::NegativeLength,
        Misbehave::Garbage,
        Misbehave::Truncate,
        Misbehave::Trailing,
        Misbehave::Late,
        Misbehave::SlowDrip,
        Misbehave::CloseMidValue,
        Misbehave::Stall,
        Misbehave::WrongKind,
    ];
}

#[derive(Default)]
struct State {
    items: HashMap<Vec<u8>, (u32, Vec<u8>, u64)>,
    script: VecDeque<Misbehave>,
    /// `(seed, choices)` once randomized.
    random: Option<(u64, Vec<Misbehave>)>,
    next_cas: u64,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    accepted: AtomicUsize,
    commands: AtomicU64,
    /// Milliseconds every key command waits before its reply.
    delay_ms: AtomicU64,
    /// `Late` blocks written so far.
    late: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn next(&self) -> Misbehave {
        let mut st = lock(&self.state);
        if let Some(m) = st.script.pop_front() {
            return m;
        }
        match &mut st.random {
            Some((seed, choices)) if !choices.is_empty() => {
                // xorshift64*: a tiny deterministic generator, no dependency.
                *seed ^= *seed >> 12;
                *seed ^= *seed << 25;
                *seed ^= *seed >> 27;
                let r = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
                choices[(r >> 33) as usize % choices.len()]
            }
            _ => Misbehave::Honest,
        }
    }
}

/// The fake server. See the module docs.
pub struct HostileServer {
    addr: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl HostileServer {
    /// Listen on a free `127.0.0.1` port.
    pub fn start() -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr").to_string();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_cas: 1,
                ..State::default()
            }),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            commands: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            late: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let sh = Arc::clone(&shared);
        let accept = thread::spawn(move || accept_loop(&listener, &sh));
        HostileServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Queue behaviours for the next key commands, in order (after those still queued).
    pub fn script(&self, behaviours: impl IntoIterator<Item = Misbehave>) {
        lock(&self.shared.state).script.extend(behaviours);
    }

    /// Once the script is used up, pick each behaviour at random from `choices` (repeat a
    /// choice to weight it), deterministically from `seed`.
    pub fn randomize(&self, seed: u64, choices: &[Misbehave]) {
        lock(&self.shared.state).random = Some((seed | 1, choices.to_vec()));
    }

    /// Wait this long before answering each key command (a slow server; 0: none).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Store an item, as if a client had set it.
    pub fn put(&self, key: &[u8], flags: u32, data: &[u8]) {
        let mut st = lock(&self.shared.state);
        let cas = st.next_cas;
        st.next_cas += 1;
        st.items.insert(key.to_vec(), (flags, data.to_vec(), cas));
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many [`Misbehave::Late`] blocks were written so far (to wait for one).
    pub fn late_written(&self) -> u64 {
        self.shared.late.load(Ordering::SeqCst)
    }

    /// How many key commands were answered (or not) so far.
    pub fn commands(&self) -> u64 {
        self.shared.commands.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in lock(&self.shared.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, sh: &Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !sh.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                sh.accepted.fetch_add(1, Ordering::SeqCst);
                let _ = s.set_nonblocking(false);
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(TICK));
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                if let Ok(c) = s.try_clone() {
                    lock(&sh.conns).push(c);
                }
                let sh2 = Arc::clone(sh);
                workers.push(thread::spawn(move || serve(s, &sh2)));
                workers.retain(|w| !w.is_finished());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

/// What to do with the connection after a reply.
enum After {
    Continue,
    Close,
    Mute,
}

struct Session<'a> {
    sh: &'a Shared,
    s: TcpStream,
    meta: bool,
    batched: bool,
    /// Bytes to write after the next terminator (`MN`/`END`), and whether 20 ms later.
    trailer: Option<(Vec<u8>, bool)>,
}

fn serve(s: TcpStream, sh: &Shared) {
    let mut sess = Session {
        sh,
        s,
        meta: false,
        batched: false,
        trailer: None,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut mute = false;
    while !sh.stop.load(Ordering::SeqCst) {
        match sess.s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        if mute {
            buf.clear();
            continue;
        }
        while let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf[..eol].to_vec();
            let tokens: Vec<Vec<u8>> = line
                .split(|&b| b == b' ')
                .filter(|t| !t.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            // Storage commands carry a data block: wait for all of it.
            let data_len = data_len(&tokens);
            let need = eol + 2 + data_len.map_or(0, |n| n + 2);
            if buf.len() < need {
                break;
            }
            let data = data_len.map(|n| buf[eol + 2..eol + 2 + n].to_vec());
            buf.drain(..need);
            match sess.command(&tokens, data.as_deref()) {
                After::Continue => {}
                After::Close => {
                    let _ = sess.s.shutdown(Shutdown::Both);
                    return;
                }
                After::Mute => {
                    mute = true;
                    buf.clear();
                    break;
                }
            }
        }
    }
}

fn data_len(t: &[Vec<u8>]) -> Option<usize> {
    let num = |i: usize| -> Option<usize> { std::str::from_utf8(t.get(i)?).ok()?.parse().ok() };
    match t.first().map(Vec::as_slice)? {
        b"ms" => num(2),
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => num(4),
        _ => None,
    }
}

fn flag(t: &[Vec<u8>], c: u8) -> Option<&[u8]> {
    t.iter()
        .skip(2)
        .find(|f| f.first() == Some(&c))
        .map(|f| &f[1..])
}

fn num<T: std::str::FromStr>(b: Option<&[u8]>) -> Option<T> {
    std::str::from_utf8(b?).ok()?.parse().ok()
}

fn block_text(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut o = b"VALUE ".to_vec();
    o.extend_from_slice(key);
    o.extend_from_slice(format!(" 0 {}\r\n", data.len()).as_bytes());
    o.extend_from_slice(data);
    o.extend_from_slice(b"\r\n");
    o
}

fn block_meta(key: Option<&[u8]>, opaque: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let mut o = format!("VA {} f0", data.len()).into_bytes();
    if let Some(k) = key {
        o.extend_from_slice(b" k");
        o.extend_from_slice(k);
    }
    if let Some(op) = opaque {
        o.extend_from_slice(b" O");
        o.extend_from_slice(op);
    }
    o.extend_from_slice(b" c1\r\n");
    o.extend_from_slice(data);
    o.extend_from_slice(b"\r\n");
    o
}

impl Session<'_> {
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    /// A made-up block for `key` as this connection's protocol frames it.
    fn evil(&self, key: &[u8], opaque: Option<&[u8]>) -> Vec<u8> {
        if self.meta {
            block_meta(Some(key), opaque, EVIL)
        } else {
            block_text(key, EVIL)
        }
    }

    fn command(&mut self, t: &[Vec<u8>], data: Option<&[u8]>) -> After {
        let Some(cmd) = t.first().cloned() else {
            return After::Continue;
        };
        match cmd.as_slice() {
            b"mn" => return self.terminator(b"MN\r\n"),
            b"version" => return self.terminator(b"VERSION 1.6.99-hostile\r\n"),
            b"flush_all" => {
                lock(&self.sh.state).items.clear();
                return self.terminator(b"OK\r\n");
            }
            _ => {}
        }
        self.sh.commands.fetch_add(1, Ordering::SeqCst);
        // Made-up blocks are framed as the command's own protocol would frame a value.
        self.meta = cmd.first() == Some(&b'm');
        // A quiet `mg` is part of a batch that `mn` ends: its trailer waits for `MN`.
        self.batched = cmd == b"mg" && t.iter().skip(2).any(|f| f == b"q");
        let how = self.sh.next();
        let delay = self.sh.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            thread::sleep(Duration::from_millis(delay));
        }
        let key = t.get(1).cloned().unwrap_or_default();
        let opaque = flag(t, b'O').map(<[u8]>::to_vec);
        let (honest, is_read) = self.apply(t, data);
        // The answer for a quiet miss is empty; a read's made-up block needs the key.
        let evil = self.evil(&key, opaque.as_deref());
        match how {
            Misbehave::Honest => self.reply(&honest, is_read),
            Misbehave::Duplicate => {
                let o = if !is_read {
                    // A second status line (or a made-up one where quiet mode sent none).
                    let second = if honest.is_empty() { &evil } else { &honest };
                    [&honest[..], &second[..]].concat()
                } else {
                    // Before the terminator: one made-up block more than the key was asked
                    // for (a text `get` may name a key twice; fewer blocks could be a
                    // well-formed answer no client can tell from the truth).
                    let (body, end) = match honest.strip_suffix(b"END\r\n") {
                        Some(body) => (body, &b"END\r\n"[..]),
                        None => (&honest[..], &b""[..]),
                    };
                    let asked = t.iter().skip(1).filter(|k| **k == key).count().max(1);
                    [body, &evil.repeat(asked + 1)[..], end].concat()
                };
                self.reply(&o, is_read)
            }
            Misbehave::OtherKey => {
                let other = self.evil(b"hostile-other-key", opaque.as_deref());
                self.reply(&other, is_read)
            }
            Misbehave::WrongOpaque => {
                let o = if self.meta {
                    // Half the number space away from the one sent: no batch's opaques reach it.
                    let sent: u32 = num(opaque.as_deref()).unwrap_or(0);
                    let wrong = sent.wrapping_add(1 << 31).to_string();
                    block_meta(Some(&key), Some(wrong.as_bytes()), EVIL)
                } else {
                    self.evil(b"hostile-other-key", None)
                };
                self.reply(&o, is_read)
            }
            Misbehave::HugeLength | Misbehave::NegativeLength => {
                let n = if how == Misbehave::HugeLength {
                    "99999999999"
                } else {
                    "-5"
                };
                let mut o = if self.meta {
                    format!("VA {n} f0").into_bytes()
                } else {
                    let mut o = b"VALUE ".to_vec();
                    o.extend_from_slice(&key);
                    o.extend_from_slice(format!(" 0 {n}").as_bytes());
                    o
                };
                o.extend_from_slice(b"\r\nEVIL\r\n");
                self.reply(&o, is_read)
            }
            Misbehave::Garbage => self.reply(b"\x00\xff\xfeGARBAGE EVIL\r\n", is_read),
            Misbehave::Truncate => {
                let src = if honest.is_empty() { &evil } else { &honest };
                let half = src[..src.len() / 2].to_vec();
                self.write(&half);
                After::Close
            }
            Misbehave::CloseMidValue => {
                let mut o = format!("VA 10 f0 O0\r\n{}", "EVI").into_bytes();
                if !self.meta {
                    o = b"VALUE ".to_vec();
                    o.extend_from_slice(&key);
                    o.extend_from_slice(b" 0 10\r\nEVI");
                }
                self.write(&o);
                After::Close
            }
            Misbehave::Trailing | Misbehave::Late => {
                self.trailer = Some((evil, how == Misbehave::Late));
                self.reply(&honest, is_read)
            }
            Misbehave::SlowDrip => {
                for b in &honest {
                    thread::sleep(Duration::from_millis(5));
                    if !self.write(std::slice::from_ref(b)) {
                        return After::Close;
                    }
                }
                After::Continue
            }
            Misbehave::Stall => After::Mute,
            Misbehave::WrongKind => {
                // A meta `mg` without `v` (touch) is answered by status: give it a value.
                let value_read = is_read && (!self.meta || t.iter().any(|f| f == b"v"));
                let o: Vec<u8> = if value_read {
                    if self.meta {
                        b"HD\r\n".to_vec()
                    } else {
                        b"STORED\r\n".to_vec()
                    }
                } else if self.meta {
                    b"VA 4\r\nEVIL\r\n".to_vec()
                } else {
                    let mut o = block_text(&key, EVIL);
                    o.extend_from_slice(b"END\r\n");
                    o
                };
                self.reply(&o, is_read)
            }
        }
    }

    /// Write a key command's reply; a text read's reply ends with its own terminator, so a
    /// trailer left by this command goes right after it; a meta read's waits for `mn`.
    fn reply(&mut self, bytes: &[u8], is_read: bool) -> After {
        let _ = is_read;
        if !self.batched {
            return self.terminator(bytes);
        }
        if !self.write(bytes) {
            return After::Close;
        }
        After::Continue
    }

    /// Write `end` (a terminator, or a reply that ends with one), then any trailer.
    fn terminator(&mut self, end: &[u8]) -> After {
        let mut now = end.to_vec();
        let mut later = None;
        match self.trailer.take() {
            Some((bytes, true)) => later = Some(bytes),
            Some((bytes, false)) => now.extend_from_slice(&bytes), // one write: one segment
            None => {}
        }
        if !now.is_empty() && !self.write(&now) {
            return After::Close;
        }
        if let Some(bytes) = later {
            thread::sleep(Duration::from_millis(20));
            let written = self.write(&bytes);
            self.sh.late.fetch_add(1, Ordering::SeqCst);
            if !written {
                return After::Close;
            }
            // Alone on the wire for a while: a client with a request in flight reads the late
            // block by itself, before that request's answer (not glued to it in one read).
            thread::sleep(Duration::from_millis(5));
        }
        After::Continue
    }

    /// Run the command on the store; return the honest reply and whether it is a read (its
    /// reply may be a made-up value block).
    fn apply(&mut self, t: &[Vec<u8>], data: Option<&[u8]>) -> (Vec<u8>, bool) {
        let mut st = lock(&self.sh.state);
        let key = t.get(1).cloned().unwrap_or_default();
        let cmd = t[0].as_slice();
        let quiet = t.iter().skip(2).any(|f| f == b"q");
        match cmd {
            b"mg" => {
                let item = st.items.get(&key).cloned();
                let has = |c: u8| t.iter().skip(2).any(|f| f.as_slice() == [c]);
                let opaque = flag(t, b'O');
                // The key and the opaque, when asked: on a hit and (memcached 1.6.18) a miss.
                let echo = |o: &mut Vec<u8>| {
                    if has(b'k') {
                        o.extend_from_slice(b" k");
                        o.extend_from_slice(&key);
                    }
                    if let Some(op) = opaque {
                        o.extend_from_slice(b" O");
                        o.extend_from_slice(op);
                    }
                };
                let Some((flags, value, cas)) = item else {
                    if quiet {
                        return (Vec::new(), true);
                    }
                    let mut o = b"EN".to_vec();
                    echo(&mut o);
                    o.extend_from_slice(b"\r\n");
                    return (o, true);
                };
                let mut o = if has(b'v') {
                    format!("VA {}", value.len()).into_bytes()
                } else {
                    b"HD".to_vec()
                };
                if has(b'f') {
                    o.extend_from_slice(format!(" f{flags}").as_bytes());
                }
                echo(&mut o);
                if has(b'c') {
                    o.extend_from_slice(format!(" c{cas}").as_bytes());
                }
                if has(b't') {
                    o.extend_from_slice(b" t-1");
                }
                o.extend_from_slice(b"\r\n");
                if has(b'v') {
                    o.extend_from_slice(&value);
                    o.extend_from_slice(b"\r\n");
                }
                (o, true)
            }
            b"ms" => {
                let mode = flag(t, b'M')
                    .and_then(|m| m.first().copied())
                    .unwrap_or(b'S');
                let cas: Option<u64> = num(flag(t, b'C'));
                let flags: u32 = num(flag(t, b'F')).unwrap_or(0);
                let code = store(&mut st, &key, mode, cas, flags, data.unwrap_or_default());
                let line = match code {
                    Stored::Yes if quiet => "",
                    Stored::Yes => "HD\r\n",
                    Stored::No => "NS\r\n",
                    Stored::Exists => "EX\r\n",
                    Stored::NotFound => "NF\r\n",
                };
                (line.as_bytes().to_vec(), false)
            }
            b"md" => {
                let hit = st.items.remove(&key).is_some();
                let line = match (hit, quiet) {
                    (true, true) => "",
                    (true, false) => "HD\r\n",
                    (false, _) => "NF\r\n",
                };
                (line.as_bytes().to_vec(), false)
            }
            b"ma" => {
                let incr = flag(t, b'M') != Some(b"D");
                let delta: u64 = num(flag(t, b'D')).unwrap_or(1);
                match arith(&mut st, &key, incr, delta) {
                    None => (b"NF\r\n".to_vec(), false),
                    Some(n) if quiet => {
                        let _ = n;
                        (Vec::new(), false)
                    }
                    Some(n) => {
                        let s = n.to_string();
                        (format!("VA {}\r\n{s}\r\n", s.len()).into_bytes(), false)
                    }
                }
            }
            b"get" | b"gets" | b"gat" | b"gats" => {
                let skip = if cmd.starts_with(b"gat") { 2 } else { 1 };
                let with_cas = cmd.ends_with(b"s");
                let mut o = Vec::new();
                for k in t.iter().skip(skip) {
                    if let Some((flags, value, cas)) = st.items.get(k) {
                        o.extend_from_slice(b"VALUE ");
                        o.extend_from_slice(k);
                        o.extend_from_slice(format!(" {flags} {}", value.len()).as_bytes());
                        if with_cas {
                            o.extend_from_slice(format!(" {cas}").as_bytes());
                        }
                        o.extend_from_slice(b"\r\n");
                        o.extend_from_slice(value);
                        o.extend_from_slice(b"\r\n");
                    }
                }
                o.extend_from_slice(b"END\r\n");
                (o, true)
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
                let mode = match cmd {
                    b"add" => b'E',
                    b"replace" => b'R',
                    b"append" => b'A',
                    b"prepend" => b'P',
                    _ => b'S',
                };
                let cas: Option<u64> = if cmd == b"cas" {
                    num(t.get(5).map(Vec::as_slice))
                } else {
                    None
                };
                let flags: u32 = num(t.get(2).map(Vec::as_slice)).unwrap_or(0);
                let code = store(&mut st, &key, mode, cas, flags, data.unwrap_or_default());
                let line = match code {
                    Stored::Yes => "STORED\r\n",
                    Stored::No => "NOT_STORED\r\n",
                    Stored::Exists => "EXISTS\r\n",
                    Stored::NotFound => "NOT_FOUND\r\n",
                };
                (line.as_bytes().to_vec(), false)
            }
            b"delete" => {
                let hit = st.items.remove(&key).is_some();
                let line = if hit { "DELETED\r\n" } else { "NOT_FOUND\r\n" };
                (line.as_bytes().to_vec(), false)
            }
            b"incr" | b"decr" => {
                let delta: u64 = num(t.get(2).map(Vec::as_slice)).unwrap_or(1);
                match arith(&mut st, &key, cmd == b"incr", delta) {
                    None => (b"NOT_FOUND\r\n".to_vec(), false),
                    Some(n) => (format!("{n}\r\n").into_bytes(), false),
                }
            }
            b"touch" => {
                let line = if st.items.contains_key(&key) {
                    "TOUCHED\r\n"
                } else {
                    "NOT_FOUND\r\n"
                };
                (line.as_bytes().to_vec(), false)
            }
            _ => (b"ERROR\r\n".to_vec(), false),
        }
    }
}

enum Stored {
    Yes,
    No,
    Exists,
    NotFound,
}

fn store(
    st: &mut State,
    key: &[u8],
    mode: u8,
    cas: Option<u64>,
    flags: u32,
    data: &[u8],
) -> Stored {
    let cur = st.items.get(key).cloned();
    if let Some(want) = cas {
        match &cur {
            None => return Stored::NotFound,
            Some((_, _, c)) if *c != want => return Stored::Exists,
            _ => {}
        }
    }
    let new = match (mode, cur) {
        (b'E', Some(_)) | (b'R' | b'A' | b'P', None) => return Stored::No,
        (b'A', Some((f, mut v, _))) => {
            v.extend_from_slice(data);
            (f, v)
        }
        (b'P', Some((f, v, _))) => {
            let mut n = data.to_vec();
            n.extend_from_slice(&v);
            (f, n)
        }
        _ => (flags, data.to_vec()),
    };
    let c = st.next_cas;
    st.next_cas += 1;
    st.items.insert(key.to_vec(), (new.0, new.1, c));
    Stored::Yes
}

fn arith(st: &mut State, key: &[u8], incr: bool, delta: u64) -> Option<u64> {
    let c = st.next_cas;
    let (f, v, cas) = st.items.get_mut(key)?;
    let cur: u64 = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
    let n = if incr {
        cur.wrapping_add(delta)
    } else {
        cur.saturating_sub(delta)
    };
    let _ = f;
    *v = n.to_string().into_bytes();
    *cas = c;
    st.next_cas += 1;
    Some(n)
}
