//! Classic ASCII protocol encoder.
//!
//! Syntax as in memcached's `doc/protocol.txt`; byte-exact forms are pinned by the tests below
//! and were checked by hand against memcached 1.6.18:
//!
//! ```text
//! get <key>*\r\n                 gets <key>*\r\n
//! gat <exptime> <key>*\r\n       gats <exptime> <key>*\r\n
//! <set|add|replace|append|prepend> <key> <flags> <exptime> <bytes> [noreply]\r\n<data>\r\n
//! cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]\r\n<data>\r\n
//! delete <key> [noreply]\r\n     incr|decr <key> <value> [noreply]\r\n
//! touch <key> <exptime> [noreply]\r\n
//! flush_all [delay] [noreply]\r\n  version\r\n
//! ```
//!
//! The text protocol cannot carry binary keys: key bytes go on the wire as they are, so a space
//! or `\r\n` inside one would end the token or the command. [`crate::key::check`] refuses such
//! keys unless the client speaks meta with `binary_keys`, so they never reach this encoder.

use super::num::{push_u32, push_u64, push_usize};
use super::{Request, StoreOp};
use crate::key;

/// Append the text-protocol bytes of `req` to `out`.
///
/// Keys must have been validated by [`crate::key::check`] without `binary_ok` (checked in debug
/// builds). A `Get` with no keys encodes `get\r\n`, which memcached answers with `ERROR`.
/// [`Request::Noop`] has no text equivalent and encodes `version\r\n` (reply: `VERSION …`).
pub fn encode(req: &Request<'_>, out: &mut Vec<u8>) {
    match *req {
        Request::Get {
            keys, cas, touch, ..
        } => {
            let cmd: &[u8] = match (cas, touch.is_some()) {
                (false, false) => b"get",
                (true, false) => b"gets",
                (false, true) => b"gat",
                (true, true) => b"gats",
            };
            out.reserve(cmd.len() + 13 + keys.iter().map(|k| k.len() + 1).sum::<usize>());
            out.extend_from_slice(cmd);
            // "gat <exptime> <key>*\r\n": the TTL comes before the keys.
            if let Some(ttl) = touch {
                out.push(b' ');
                push_u32(out, ttl);
            }
            for k in keys {
                push_key(out, k);
            }
            out.extend_from_slice(b"\r\n");
        }
        Request::Store {
            op,
            key,
            value,
            flags,
            exptime,
            noreply,
        } => {
            let cmd: &[u8] = match op {
                StoreOp::Set => b"set",
                StoreOp::Add => b"add",
                StoreOp::Replace => b"replace",
                StoreOp::Append => b"append",
                StoreOp::Prepend => b"prepend",
                StoreOp::Cas(_) => b"cas",
            };
            // Header: command, key, three or four numbers (≤ 20 digits each), noreply, CRLFs.
            out.reserve(cmd.len() + key.len() + value.len() + 4 * 21 + 8 + 4);
            out.extend_from_slice(cmd);
            push_key(out, key);
            out.push(b' ');
            push_u32(out, flags);
            out.push(b' ');
            push_u32(out, exptime);
            out.push(b' ');
            push_usize(out, value.len());
            if let StoreOp::Cas(unique) = op {
                out.push(b' ');
                push_u64(out, unique);
            }
            push_noreply(out, noreply);
            out.extend_from_slice(b"\r\n");
            // "<data block>\r\n": the data is sent as is, its length was given above.
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        Request::Delete { key, noreply, .. } => {
            out.extend_from_slice(b"delete");
            push_key(out, key);
            push_noreply(out, noreply);
            out.extend_from_slice(b"\r\n");
        }
        Request::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            out.extend_from_slice(if incr { b"incr" } else { b"decr" });
            push_key(out, key);
            out.push(b' ');
            push_u64(out, delta);
            push_noreply(out, noreply);
            out.extend_from_slice(b"\r\n");
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            out.extend_from_slice(b"touch");
            push_key(out, key);
            out.push(b' ');
            push_u32(out, exptime);
            push_noreply(out, noreply);
            out.extend_from_slice(b"\r\n");
        }
        Request::FlushAll { delay, noreply } => {
            out.extend_from_slice(b"flush_all");
            // "flush_all is a command with an optional numeric argument"; 0 is the default
            // ("invalidate all existing items immediately"), so it is left out.
            if delay != 0 {
                out.push(b' ');
                push_u32(out, delay);
            }
            push_noreply(out, noreply);
            out.extend_from_slice(b"\r\n");
        }
        Request::Version | Request::Noop => out.extend_from_slice(b"version\r\n"),
    }
}

/// `" <key>"`.
#[inline]
fn push_key(out: &mut Vec<u8>, k: &[u8]) {
    debug_assert!(
        !k.is_empty() && !key::needs_base64(k),
        "text protocol cannot carry key {k:?}"
    );
    out.push(b' ');
    out.extend_from_slice(k);
}

/// `" noreply"` when asked. protocol.txt: "noreply" is the last parameter of the command line.
#[inline]
fn push_noreply(out: &mut Vec<u8>, noreply: bool) {
    if noreply {
        out.extend_from_slice(b" noreply");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(req: Request<'_>) -> Vec<u8> {
        let mut out = b"prefix|".to_vec();
        encode(&req, &mut out);
        // The encoder appends; it never touches what is already in the buffer.
        assert_eq!(&out[..7], b"prefix|");
        out.split_off(7)
    }

    fn store(op: StoreOp, value: &[u8], noreply: bool) -> Vec<u8> {
        enc(Request::Store {
            op,
            key: b"k",
            value,
            flags: 5,
            exptime: 60,
            noreply,
        })
    }

    #[test]
    fn retrieval() {
        let keys: &[&[u8]] = &[b"k1", b"k2"];
        let get = |cas, touch| {
            enc(Request::Get {
                keys,
                opaque: 0,
                cas,
                touch,
                ttl: false,
                lease: None,
                recache: None,
            })
        };
        assert_eq!(get(false, None), b"get k1 k2\r\n");
        assert_eq!(get(true, None), b"gets k1 k2\r\n");
        assert_eq!(get(false, Some(30)), b"gat 30 k1 k2\r\n");
        assert_eq!(get(true, Some(0)), b"gats 0 k1 k2\r\n");
        let one: &[&[u8]] = &[b"only"];
        assert_eq!(
            enc(Request::Get {
                keys: one,
                opaque: 0,
                cas: false,
                touch: None,
                ttl: false,
                lease: None,
                recache: None
            }),
            b"get only\r\n"
        );
        assert_eq!(
            enc(Request::Get {
                keys: &[],
                opaque: 0,
                cas: false,
                touch: None,
                ttl: false,
                lease: None,
                recache: None
            }),
            b"get\r\n"
        );
    }

    #[test]
    fn storage() {
        assert_eq!(
            store(StoreOp::Set, b"abc", false),
            b"set k 5 60 3\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Add, b"abc", false),
            b"add k 5 60 3\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Replace, b"abc", true),
            b"replace k 5 60 3 noreply\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Append, b"", false),
            b"append k 5 60 0\r\n\r\n"
        );
        assert_eq!(
            store(StoreOp::Prepend, b"a\r\nb", false),
            b"prepend k 5 60 4\r\na\r\nb\r\n"
        );
        assert_eq!(
            store(StoreOp::Cas(u64::MAX), b"abc", false),
            b"cas k 5 60 3 18446744073709551615\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Cas(7), b"abc", true),
            b"cas k 5 60 3 7 noreply\r\nabc\r\n"
        );
        assert_eq!(
            enc(Request::Store {
                op: StoreOp::Set,
                key: b"k",
                value: b"v",
                flags: u32::MAX,
                exptime: u32::MAX,
                noreply: false,
            }),
            b"set k 4294967295 4294967295 1\r\nv\r\n"
        );
    }

    #[test]
    fn other_commands() {
        let del = |noreply| {
            enc(Request::Delete {
                key: b"k",
                noreply,
                invalidate: None,
                cas: None,
            })
        };
        assert_eq!(del(false), b"delete k\r\n");
        assert_eq!(del(true), b"delete k noreply\r\n");
        let arith = |incr, delta, noreply| {
            enc(Request::Arith {
                key: b"n",
                incr,
                delta,
                noreply,
            })
        };
        assert_eq!(arith(true, 1, false), b"incr n 1\r\n");
        assert_eq!(
            arith(false, u64::MAX, true),
            b"decr n 18446744073709551615 noreply\r\n"
        );
        let touch = |exptime, noreply| {
            enc(Request::Touch {
                key: b"k",
                exptime,
                noreply,
            })
        };
        assert_eq!(touch(10, false), b"touch k 10\r\n");
        assert_eq!(touch(0, true), b"touch k 0 noreply\r\n");
        let flush = |delay, noreply| enc(Request::FlushAll { delay, noreply });
        assert_eq!(flush(0, false), b"flush_all\r\n");
        assert_eq!(flush(0, true), b"flush_all noreply\r\n");
        assert_eq!(flush(10, false), b"flush_all 10\r\n");
        assert_eq!(flush(10, true), b"flush_all 10 noreply\r\n");
        assert_eq!(enc(Request::Version), b"version\r\n");
        assert_eq!(enc(Request::Noop), b"version\r\n");
    }

    #[test]
    #[should_panic(expected = "text protocol cannot carry key")]
    #[cfg(debug_assertions)]
    fn binary_key_is_a_caller_bug() {
        enc(Request::Delete {
            key: b"a b",
            noreply: false,
            invalidate: None,
            cas: None,
        });
    }
}
