//! Property tests for the wire codec, in the manner of redis-rs `tests/parser.rs`: arbitrary
//! replies are written as a server would write them (a test-only reply encoder, both
//! protocols), then decoded through arbitrary split points and must come back equal. Garbage
//! must never panic.
//!
//! Two `#[ignore]`d tests need more than the crate: `live_server_*` talks to a real memcached
//! (`FAE_TEST_MEMCACHED=127.0.0.1:22411 cargo test -p fae-core --test codec_props -- --ignored`),
//! and `decode_speed` is meant for `--release`. The live tests end with `flush_all`: point them
//! at a throwaway server.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fae_core::protocol::{
    Decoder, Protocol, Request, Response, ServerErrorKind, Status, StoreOp, Value, encode,
};
use proptest::prelude::*;

const MAX_VALUE: usize = 1 << 20;
const DECODER: Decoder = Decoder {
    max_value_size: MAX_VALUE,
};

// ===== test-only reply encoder =====

/// A reply as memcached would send it.
#[derive(Clone, Debug)]
struct Reply {
    expected: Response,
    bytes: Vec<u8>,
}

fn line(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = parts.join(&b' ');
    v.extend_from_slice(b"\r\n");
    v
}

fn reply(expected: Response, bytes: Vec<u8>) -> Reply {
    Reply { expected, bytes }
}

/// Printable, space-free key bytes, as [`fae_core::key::check`] lets through.
fn text_key() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff];
    prop_oneof![
        4 => prop::collection::vec(byte.clone(), 1..16),
        1 => prop::collection::vec(byte, 1..=250),
    ]
}

/// Any bytes, sent base64-encoded with `b`.
fn binary_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..=186)
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        // Data full of line endings must be skipped by length, not scanned.
        1 => prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..3000),
    ]
}

/// A message or version string: no line ending inside.
fn message() -> impl Strategy<Value = String> {
    "[^\r\n]{0,40}"
}

fn error_reply() -> impl Strategy<Value = Reply> {
    let kind = prop_oneof![
        Just(ServerErrorKind::Error),
        Just(ServerErrorKind::ClientError),
        Just(ServerErrorKind::ServerError),
    ];
    (kind, message()).prop_map(|(kind, message)| {
        let word: &[u8] = match kind {
            ServerErrorKind::Error => b"ERROR",
            ServerErrorKind::ClientError => b"CLIENT_ERROR",
            ServerErrorKind::ServerError => b"SERVER_ERROR",
        };
        let bytes = if message.is_empty() {
            line(&[word])
        } else {
            line(&[word, message.as_bytes()])
        };
        reply(Response::Error { kind, message }, bytes)
    })
}

fn version_reply() -> impl Strategy<Value = Reply> {
    message().prop_map(|v| {
        let bytes = if v.is_empty() {
            line(&[b"VERSION"])
        } else {
            line(&[b"VERSION", v.as_bytes()])
        };
        reply(Response::Version(v), bytes)
    })
}

fn status(status: Status, cas: Option<u64>, opaque: Option<u32>) -> Response {
    Response::Status {
        status,
        cas,
        opaque,
    }
}

fn text_reply() -> impl Strategy<Value = Reply> {
    let value = (text_key(), any::<u32>(), any::<Option<u64>>(), data()).prop_map(
        |(key, flags, cas, data)| {
            let (f, n) = (flags.to_string(), data.len().to_string());
            let cas_s = cas.map(|c| c.to_string());
            let mut parts: Vec<&[u8]> = vec![b"VALUE", &key, f.as_bytes(), n.as_bytes()];
            if let Some(c) = &cas_s {
                parts.push(c.as_bytes());
            }
            let mut bytes = line(&parts);
            bytes.extend_from_slice(&data);
            bytes.extend_from_slice(b"\r\n");
            let mut v = Value::default();
            v.key = Some(key.into());
            v.flags = flags;
            v.cas = cas;
            v.data = data;
            reply(Response::Value(v), bytes)
        },
    );
    let word_status = prop_oneof![
        Just((&b"STORED"[..], Status::Success)),
        Just((&b"DELETED"[..], Status::Success)),
        Just((&b"TOUCHED"[..], Status::Success)),
        Just((&b"OK"[..], Status::Success)),
        Just((&b"NOT_STORED"[..], Status::NotStored)),
        Just((&b"EXISTS"[..], Status::Exists)),
        Just((&b"NOT_FOUND"[..], Status::NotFound)),
    ]
    .prop_map(|(w, s)| reply(status(s, None, None), line(&[w])));
    // "The number MAY be space-padded at the end".
    let number = (any::<u64>(), 0usize..3).prop_map(|(n, pad)| {
        let mut bytes = n.to_string().into_bytes();
        bytes.resize(bytes.len() + pad, b' ');
        bytes.extend_from_slice(b"\r\n");
        reply(Response::Number(n), bytes)
    });
    prop_oneof![
        4 => value,
        1 => Just(reply(Response::End, b"END\r\n".to_vec())),
        2 => word_status,
        1 => number,
        1 => version_reply(),
        1 => error_reply(),
    ]
}

/// Return flags libfae does not read; the decoder must skip them.
fn ignored_meta_flags() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let flag = prop_oneof![
        any::<u32>().prop_map(|n| format!("s{n}").into_bytes()),
        (0u8..2).prop_map(|n| format!("h{n}").into_bytes()),
        any::<u32>().prop_map(|n| format!("l{n}").into_bytes()),
    ];
    prop::collection::vec(flag, 0..3)
}

#[derive(Clone, Debug)]
enum MetaKey {
    None,
    Text(Vec<u8>),
    Binary(Vec<u8>),
}

fn meta_key() -> impl Strategy<Value = MetaKey> {
    prop_oneof![
        Just(MetaKey::None),
        text_key().prop_map(MetaKey::Text),
        binary_key().prop_map(MetaKey::Binary),
    ]
}

/// `k…` and `b` tokens for a key; returns the decoded key.
fn push_key_flags(key: MetaKey, flags: &mut Vec<Vec<u8>>) -> Option<Vec<u8>> {
    match key {
        MetaKey::None => None,
        MetaKey::Text(k) => {
            flags.push([&b"k"[..], &k].concat());
            Some(k)
        }
        MetaKey::Binary(k) => {
            flags.push([b"k", STANDARD.encode(&k).as_bytes()].concat());
            // memcached sends `b` wherever the request had it, not always after `k`; the
            // shuffle below puts it anywhere.
            flags.push(b"b".to_vec());
            Some(k)
        }
    }
}

#[derive(Clone, Debug)]
struct MetaValueParts {
    key: MetaKey,
    opaque: Option<u32>,
    flags: Option<u32>,
    cas: Option<u64>,
    ttl: Option<i64>,
    wxz: (bool, bool, bool),
    extra: Vec<Vec<u8>>,
    data: Vec<u8>,
}

fn meta_value_parts() -> impl Strategy<Value = MetaValueParts> {
    (
        meta_key(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<Option<u64>>(),
        prop_oneof![Just(None), Just(Some(-1i64)), any::<i64>().prop_map(Some)],
        any::<(bool, bool, bool)>(),
        ignored_meta_flags(),
        data(),
    )
        .prop_map(
            |(key, opaque, flags, cas, ttl, wxz, extra, data)| MetaValueParts {
                key,
                opaque,
                flags,
                cas,
                ttl,
                wxz,
                extra,
                data,
            },
        )
}

fn meta_value() -> impl Strategy<Value = Reply> {
    meta_value_parts()
        .prop_flat_map(|p| {
            let mut flags = p.extra.clone();
            let mut v = Value::default();
            v.key = push_key_flags(p.key.clone(), &mut flags).map(Into::into);
            match p.opaque {
                Some(o) => flags.push(format!("O{o}").into_bytes()),
                // Not a number: not one of ours, decoded as no opaque.
                None if p.wxz.0 => flags.push(b"Oopaque-string".to_vec()),
                None => {}
            }
            v.opaque = p.opaque;
            // An absent `f` means flags 0.
            if let Some(f) = p.flags {
                flags.push(format!("f{f}").into_bytes());
                v.flags = f;
            }
            if let Some(c) = p.cas {
                flags.push(format!("c{c}").into_bytes());
                v.cas = Some(c);
            }
            if let Some(t) = p.ttl {
                flags.push(format!("t{t}").into_bytes());
                v.ttl = Some(t);
            }
            let (w, x, z) = p.wxz;
            for (on, tok) in [(w, b"W"), (x, b"X"), (z, b"Z")] {
                if on {
                    flags.push(tok.to_vec());
                }
            }
            v.win = w;
            v.stale = x;
            v.win_taken = z;
            v.data = p.data.clone();
            (Just(v), Just(flags).prop_shuffle())
        })
        .prop_map(|(v, flags)| {
            let n = v.data.len().to_string();
            let mut parts: Vec<&[u8]> = vec![b"VA", n.as_bytes()];
            parts.extend(flags.iter().map(Vec::as_slice));
            let mut bytes = line(&parts);
            bytes.extend_from_slice(&v.data);
            bytes.extend_from_slice(b"\r\n");
            reply(Response::Value(v), bytes)
        })
}

fn meta_status() -> impl Strategy<Value = Reply> {
    let code = prop_oneof![
        Just((&b"HD"[..], Status::Success)),
        Just((&b"NS"[..], Status::NotStored)),
        Just((&b"EX"[..], Status::Exists)),
        Just((&b"NF"[..], Status::NotFound)),
        Just((&b"EN"[..], Status::Miss)),
    ];
    (
        code,
        any::<Option<u64>>(),
        any::<Option<u32>>(),
        meta_key(),
        ignored_meta_flags(),
    )
        .prop_flat_map(|((word, s), cas, opaque, key, extra)| {
            let mut flags = extra;
            push_key_flags(key, &mut flags);
            if let Some(c) = cas {
                flags.push(format!("c{c}").into_bytes());
            }
            match opaque {
                Some(o) => flags.push(format!("O{o}").into_bytes()),
                None if cas.is_none() => flags.push(b"O4294967296".to_vec()),
                None => {}
            }
            (
                Just(word),
                Just(status(s, cas, opaque)),
                Just(flags).prop_shuffle(),
            )
        })
        .prop_map(|(word, expected, flags)| {
            let mut parts: Vec<&[u8]> = vec![word];
            parts.extend(flags.iter().map(Vec::as_slice));
            reply(expected, line(&parts))
        })
}

fn meta_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => meta_value(),
        1 => Just(reply(Response::End, b"MN\r\n".to_vec())),
        3 => meta_status(),
        1 => version_reply(),
        1 => error_reply(),
    ]
}

fn any_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![text_reply(), meta_reply()]
}

// ===== decoding helpers =====

/// Decode every reply in `buf`; panics on an error or leftover bytes.
fn decode_all(buf: &[u8]) -> Vec<Response> {
    let mut at = 0;
    let mut out = Vec::new();
    while let Some((r, used)) = DECODER.decode(&buf[at..]).unwrap() {
        assert!(used > 0 && at + used <= buf.len());
        out.push(r);
        at += used;
    }
    assert_eq!(at, buf.len(), "leftover bytes");
    out
}

/// Feed `stream` to a reader that receives it in chunks ending at `cuts`, decoding whatever is
/// complete after each read, as a connection does.
fn decode_chunked(stream: &[u8], cuts: &[usize]) -> Vec<Response> {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut out = Vec::new();
    for end in ends {
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        while let Some((r, used)) = DECODER.decode(&buf).unwrap() {
            out.push(r);
            buf.drain(..used);
        }
    }
    assert!(buf.is_empty(), "leftover bytes");
    out
}

/// Decoding must not panic, must make progress and must stay inside the buffer.
fn decode_garbage(d: Decoder, buf: &[u8]) {
    let mut at = 0;
    while let Ok(Some((_, used))) = d.decode(&buf[at..]) {
        assert!(used > 0, "no progress");
        at += used;
        assert!(at <= buf.len());
    }
}

/// The replies decoded from `buf` fed in chunks cut at `cuts` (each modulo the length), and
/// how decoding ended: `Some(true)` an error, `Some(false)` bytes left waiting for more, `None`
/// everything consumed.
fn outcomes(d: Decoder, buf: &[u8], cuts: &[usize]) -> (Vec<Response>, Option<bool>) {
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c % (buf.len() + 1)).collect();
    ends.push(buf.len());
    ends.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for end in ends {
        loop {
            match d.decode(&buf[at..end]) {
                Ok(Some((r, used))) => {
                    assert!(used > 0 && at + used <= end);
                    out.push(r);
                    at += used;
                }
                Ok(None) => break,
                Err(_) => return (out, Some(true)),
            }
        }
    }
    let waiting = at < buf.len();
    (out, waiting.then_some(false))
}

// ===== properties =====

proptest! {
    // 512 cases by default; `PROPTEST_CASES=20000` for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Every proper prefix of a reply is incomplete; the whole decodes to the original.
    #[test]
    fn reply_round_trips_through_every_prefix(r in any_reply()) {
        for n in 0..r.bytes.len() {
            prop_assert_eq!(DECODER.decode(&r.bytes[..n]), Ok(None), "prefix {}", n);
        }
        let (got, used) = DECODER.decode(&r.bytes).unwrap().unwrap();
        prop_assert_eq!(used, r.bytes.len());
        prop_assert_eq!(got, r.expected);
    }

    /// A stream of replies of both protocols, read in random chunks, decodes in order.
    #[test]
    fn stream_round_trips_through_random_splits(
        replies in prop::collection::vec(any_reply(), 1..24),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let stream: Vec<u8> = replies.iter().flat_map(|r| r.bytes.iter().copied()).collect();
        let expected: Vec<Response> = replies.into_iter().map(|r| r.expected).collect();
        prop_assert_eq!(&decode_chunked(&stream, &cuts), &expected);
        prop_assert_eq!(&decode_all(&stream), &expected);
    }

    /// Arbitrary bytes never panic.
    #[test]
    fn garbage_never_panics(buf in prop::collection::vec(any::<u8>(), 0..4096), small in any::<bool>()) {
        let d = Decoder { max_value_size: if small { 16 } else { MAX_VALUE } };
        decode_garbage(d, &buf);
    }

    /// Arbitrary bytes read in arbitrary chunks decode exactly as read whole: the same replies,
    /// then the same end (an error, or waiting for more). What a reply means never depends on
    /// how the network split it.
    #[test]
    fn garbage_decodes_the_same_split_or_whole(
        buf in prop::collection::vec(prop_oneof![
            3 => any::<u8>(),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            1 => Just(b' '),
        ], 0..2048),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        small in any::<bool>(),
    ) {
        let d = Decoder { max_value_size: if small { 16 } else { MAX_VALUE } };
        prop_assert_eq!(outcomes(d, &buf, &[]), outcomes(d, &buf, &cuts));
    }

    /// Garbage made of protocol fragments reaches deeper into the parser.
    #[test]
    fn token_soup_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("VALUE ".to_string()), Just("VA ".to_string()), Just("HD ".to_string()),
        Just("END".to_string()), Just("\r\n".to_string()), Just("\n".to_string()),
        Just(" ".to_string()), Just("k".to_string()), Just("b ".to_string()),
        Just("f".to_string()), Just("c".to_string()), Just("t-".to_string()),
        Just("O".to_string()), "[0-9]{1,25}", "[ -~]{0,8}",
    ], 0..40)) {
        decode_garbage(DECODER, parts.concat().as_bytes());
        decode_garbage(Decoder { max_value_size: 8 }, parts.concat().as_bytes());
    }

    /// A valid reply with one byte changed, cut or extended never panics.
    #[test]
    fn corrupted_replies_never_panic(r in any_reply(), at in any::<usize>(), byte in any::<u8>(), cut in any::<bool>()) {
        let mut bytes = r.bytes;
        let i = at % bytes.len();
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] = byte;
        }
        decode_garbage(DECODER, &bytes);
    }
}

#[test]
fn concatenation_of_many_replies() {
    // A meta multi-get batch of 1000 hits and its MN, then text replies, in one buffer.
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000u32 {
        let data = vec![b'a' + (i % 26) as u8; (i % 300) as usize];
        stream.extend_from_slice(
            format!("VA {} f{i} kkey{i} O{i} c{}\r\n", data.len(), i * 7).as_bytes(),
        );
        stream.extend_from_slice(&data);
        stream.extend_from_slice(b"\r\n");
        let mut v = Value::default();
        v.key = Some(format!("key{i}").into_bytes().into());
        v.opaque = Some(i);
        v.flags = i;
        v.cas = Some(u64::from(i) * 7);
        v.data = data;
        expected.push(Response::Value(v));
    }
    stream.extend_from_slice(b"MN\r\nVALUE x 1 2 3\r\nab\r\nEND\r\nSTORED\r\n42\r\nEN\r\n");
    expected.push(Response::End);
    let mut v = Value::default();
    v.key = Some(b"x"[..].into());
    v.flags = 1;
    v.cas = Some(3);
    v.data = b"ab".to_vec();
    expected.push(Response::Value(v));
    expected.push(Response::End);
    expected.push(status(Status::Success, None, None));
    expected.push(Response::Number(42));
    expected.push(status(Status::Miss, None, None));
    assert_eq!(decode_all(&stream), expected);
    let cuts: Vec<usize> = (0..stream.len()).step_by(997).collect();
    assert_eq!(decode_chunked(&stream, &cuts), expected);
}

/// `cargo test --release -p fae-core --test codec_props -- --ignored decode_speed --nocapture`
#[test]
#[ignore = "timing; run in release"]
fn decode_speed() {
    let mut reply = b"VA 1024 f5 kuser:12345 O0 c123456\r\n".to_vec();
    reply.resize(reply.len() + 1024, b'x');
    reply.extend_from_slice(b"\r\n");
    let n = 1_000_000u32;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let r = DECODER
            .decode(std::hint::black_box(&reply))
            .unwrap()
            .unwrap();
        std::hint::black_box(r);
    }
    let per = start.elapsed() / n;
    println!("1 KiB meta hit: {per:?} per decode");
    let mut text = b"VALUE user:12345 5 1024 123456\r\n".to_vec();
    text.resize(text.len() + 1024, b'x');
    text.extend_from_slice(b"\r\n");
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            DECODER
                .decode(std::hint::black_box(&text))
                .unwrap()
                .unwrap(),
        );
    }
    println!("1 KiB text hit: {:?} per decode", start.elapsed() / n);
    if !cfg!(debug_assertions) {
        assert!(per < std::time::Duration::from_micros(1), "{per:?}");
    }
}

// ===== against a real memcached =====

mod live {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    struct Conn {
        stream: TcpStream,
        proto: Protocol,
        buf: Vec<u8>,
    }

    /// The live tests share one server and one ends with `flush_all`: run them one at a time.
    static SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serialized() -> std::sync::MutexGuard<'static, ()> {
        SERVER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    impl Conn {
        fn open(proto: Protocol) -> Self {
            let addr = std::env::var("FAE_TEST_MEMCACHED")
                .unwrap_or_else(|_| "127.0.0.1:11211".to_string());
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            Self {
                stream,
                proto,
                buf: Vec::new(),
            }
        }

        /// Send `reqs` then `version`, and return every reply before the `VERSION`: this
        /// also shows which quiet requests answered.
        fn exchange(&mut self, reqs: &[Request<'_>]) -> Vec<Response> {
            let mut out = Vec::new();
            for r in reqs {
                encode(self.proto, r, &mut out);
            }
            encode(self.proto, &Request::Version, &mut out);
            self.stream.write_all(&out).unwrap();
            let mut replies = Vec::new();
            loop {
                while let Some((r, used)) = DECODER.decode(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    if let Response::Version(_) = r {
                        return replies;
                    }
                    replies.push(r);
                }
                let mut chunk = [0u8; 65536];
                let n = self.stream.read(&mut chunk).unwrap();
                assert!(n > 0, "server closed the connection");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        fn one(&mut self, req: Request<'_>) -> Response {
            let mut r = self.exchange(&[req]);
            assert_eq!(r.len(), 1, "{r:?}");
            r.pop().unwrap()
        }
    }

    fn set<'a>(op: StoreOp, key: &'a [u8], value: &'a [u8], noreply: bool) -> Request<'a> {
        Request::Store {
            op,
            key,
            value,
            flags: 7,
            exptime: 0,
            noreply,
        }
    }

    fn st(s: Status) -> Response {
        status(s, None, None)
    }

    fn value_of(r: &Response) -> &Value {
        match r {
            Response::Value(v) => v,
            other => panic!("not a value: {other:?}"),
        }
    }

    fn common(proto: Protocol, k: &[u8]) {
        let mut c = Conn::open(proto);
        let miss: &[u8] = b"fae-codec-missing";
        c.exchange(&[Request::Delete {
            key: miss,
            noreply: true,
            invalidate: None,
            cas: None,
        }]);
        assert_eq!(
            c.one(set(StoreOp::Set, k, b"v\r\n1", false)),
            st(Status::Success)
        );
        assert_eq!(
            c.one(set(StoreOp::Add, k, b"x", false)),
            st(Status::NotStored)
        );
        assert_eq!(
            c.one(set(StoreOp::Replace, miss, b"x", false)),
            st(Status::NotStored)
        );
        assert_eq!(
            c.one(set(StoreOp::Append, k, b"!", false)),
            st(Status::Success)
        );
        let keys = [k, miss];
        let r = c.exchange(&[Request::Get {
            keys: &keys,
            opaque: 0,
            cas: true,
            touch: None,
            ttl: false,
            lease: None,
            recache: None,
        }]);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[1], Response::End);
        let v = value_of(&r[0]);
        // Meta asks binary keys back by opaque only (see `protocol::meta` docs).
        let binary = fae_core::key::needs_base64(k);
        let expect_key = (proto == Protocol::Text || !binary).then_some(k);
        assert_eq!(v.key.as_deref(), expect_key);
        assert_eq!((v.flags, v.data.as_slice()), (7, &b"v\r\n1!"[..]));
        let cas = v.cas.unwrap();
        if proto == Protocol::Meta {
            assert_eq!(v.opaque, Some(0));
        }
        assert_eq!(
            c.one(set(StoreOp::Cas(cas + 1000), k, b"y", false)),
            st(Status::Exists)
        );
        assert_eq!(
            c.one(set(StoreOp::Cas(cas), miss, b"y", false)),
            st(Status::NotFound)
        );
        assert_eq!(
            c.one(set(StoreOp::Cas(cas), k, b"10", false)),
            st(Status::Success)
        );
        let arith = |incr, delta| Request::Arith {
            key: k,
            incr,
            delta,
            noreply: false,
        };
        let number = |r: Response| match r {
            Response::Number(n) => n,
            Response::Value(v) => std::str::from_utf8(&v.data).unwrap().parse().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(number(c.one(arith(true, 5))), 15);
        assert_eq!(number(c.one(arith(false, 100))), 0);
        assert_eq!(number(c.one(arith(true, u64::MAX))), u64::MAX);
        let touch = |key| Request::Touch {
            key,
            exptime: 100,
            noreply: false,
        };
        let hit = c.one(touch(k));
        assert_eq!(hit, st(Status::Success));
        let missed = c.one(touch(miss));
        let expect_miss = match proto {
            Protocol::Text => Status::NotFound,
            Protocol::Meta => Status::Miss,
        };
        assert_eq!(missed, st(expect_miss));
        let r = c.exchange(&[Request::Get {
            keys: &[k],
            opaque: 0,
            cas: false,
            touch: Some(200),
            ttl: false,
            lease: None,
            recache: None,
        }]);
        assert_eq!(value_of(&r[0]).data, b"18446744073709551615");
        assert_eq!(
            c.one(Request::Delete {
                key: k,
                noreply: false,
                invalidate: None,
                cas: None,
            }),
            st(Status::Success)
        );
        assert_eq!(
            c.one(Request::Delete {
                key: k,
                noreply: false,
                invalidate: None,
                cas: None,
            }),
            st(Status::NotFound)
        );
        // Noop: `mn` → MN in meta; `version` in text (the sentinel eats it).
        let noop = c.exchange(&[Request::Noop]);
        match proto {
            Protocol::Meta => assert_eq!(noop, [Response::End]),
            Protocol::Text => assert!(noop.is_empty()),
        }
    }

    #[test]
    #[ignore = "needs a memcached at $FAE_TEST_MEMCACHED"]
    fn live_server_text() {
        let _one_at_a_time = serialized();
        common(Protocol::Text, b"fae-codec-text");
        let mut c = Conn::open(Protocol::Text);
        // Text noreply: nothing comes back, success or failure.
        let r = c.exchange(&[
            set(StoreOp::Set, b"fae-codec-q", b"1", true),
            set(StoreOp::Add, b"fae-codec-q", b"1", true),
            Request::Delete {
                key: b"fae-codec-q",
                noreply: true,
                invalidate: None,
                cas: None,
            },
            Request::Delete {
                key: b"fae-codec-q",
                noreply: true,
                invalidate: None,
                cas: None,
            },
        ]);
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    #[ignore = "needs a memcached at $FAE_TEST_MEMCACHED"]
    fn live_server_meta() {
        let _one_at_a_time = serialized();
        common(Protocol::Meta, b"fae-codec-meta");
        // A binary key, base64 with `b`, decoded back from the `k` flag.
        common(Protocol::Meta, b"fae codec\r\n\0binary");
        // 186 raw bytes = 248 base64 bytes: within memcached's 250.
        common(Protocol::Meta, &[0xffu8; 186]);
    }

    /// Quiet mode hides only the nominal reply (see `protocol::meta` docs).
    #[test]
    #[ignore = "needs a memcached at $FAE_TEST_MEMCACHED"]
    fn live_server_meta_quiet_failures() {
        let _one_at_a_time = serialized();
        let mut c = Conn::open(Protocol::Meta);
        let k: &[u8] = b"fae-codec-quiet";
        let gone: &[u8] = b"fae-codec-quiet-missing";
        c.exchange(&[Request::Delete {
            key: gone,
            noreply: true,
            invalidate: None,
            cas: None,
        }]);
        let quiet_touch = |key| Request::Touch {
            key,
            exptime: 100,
            noreply: true,
        };
        let quiet_arith = |key| Request::Arith {
            key,
            incr: true,
            delta: 1,
            noreply: true,
        };
        let quiet_delete = |key| Request::Delete {
            key,
            noreply: true,
            invalidate: None,
            cas: None,
        };
        let r = c.exchange(&[
            set(StoreOp::Set, k, b"1", true),          // HD hidden
            set(StoreOp::Add, k, b"1", true),          // NS
            set(StoreOp::Replace, gone, b"1", true),   // NS
            set(StoreOp::Cas(1 << 60), k, b"1", true), // EX
            set(StoreOp::Cas(1), gone, b"1", true),    // NF
            quiet_arith(k),                            // VA hidden
            quiet_arith(gone),                         // NF
            quiet_touch(k),                            // HD: *not* hidden
            quiet_touch(gone),                         // EN hidden
            quiet_delete(k),                           // HD hidden
            quiet_delete(k),                           // NF
        ]);
        assert_eq!(
            r,
            [
                st(Status::NotStored),
                st(Status::NotStored),
                st(Status::Exists),
                st(Status::NotFound),
                st(Status::NotFound),
                st(Status::Success),
                st(Status::NotFound),
            ]
        );
        // A quiet get batch: only hits and the MN.
        c.one(set(StoreOp::Set, k, b"2", false));
        let keys = [gone, k, gone];
        let r = c.exchange(&[Request::Get {
            keys: &keys,
            opaque: 0,
            cas: false,
            touch: None,
            ttl: false,
            lease: None,
            recache: None,
        }]);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(value_of(&r[0]).opaque, Some(1));
        assert_eq!(r[1], Response::End);
        assert_eq!(
            c.one(Request::FlushAll {
                delay: 0,
                noreply: false
            }),
            st(Status::Success)
        );
    }
}
