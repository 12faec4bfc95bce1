//! Meta protocol encoder (memcached ≥ 1.6).
//!
//! protocol.txt: "All meta commands follow a basic syntax: `<cm> <key> <datalen*> <flag1>
//! <flag2> <...>\r\n`". What libfae sends, per request:
//!
//! ```text
//! Get     mg <key> v f k O<opaque>[ c][ t][ T<ttl>][ N<ttl>][ R<ttl>] q\r\n (per key), mn\r\n
//!         mg <base64 key> b v f O<opaque>[ c][ T<ttl>] q\r\n (binary key: no `k`, see below)
//!         one key: the same `mg` without ` q`, and no `mn` ([`quiet_get`])
//! Store   ms <key> <datalen>[ b] F<flags> T<exptime> M<S|E|R|A|P>[ C<cas>][ q]\r\n<data>\r\n
//! Delete  md <key>[ b][ I[ T<ttl>]][ q]\r\n         (I: invalidate, keep the item as stale)
//! Arith   ma <key>[ b] v M<I|D> D<delta>[ q]\r\n
//! Touch   mg <key>[ b] T<exptime>[ q]\r\n
//! Noop    mn\r\n
//! FlushAll, Version: the text commands (meta servers accept them on the same connection).
//! ```
//!
//! # What memcached 1.6.18 does with these (checked by hand on a live server)
//!
//! - **Binary keys.** A key that [`key::needs_base64`] is sent base64-encoded (standard alphabet,
//!   with padding) and flagged `b`. The server checks the 250-byte `KEY_MAX_LENGTH` on the
//!   *encoded* token: 186 raw bytes (248 encoded) are stored, 187 raw bytes (252 encoded) get
//!   `CLIENT_ERROR bad command line format` — which is why [`key::check`] limits binary keys by
//!   [`key::base64_len`]. When asked with `k`, replies normally echo the key base64-encoded, with
//!   `b` among the returned flags, not necessarily right after `k` (`VA 3 f7 kYSBiAA== b O1 c2`)
//!   — but see the next point.
//! - **Quiet mode (`q`) hides only the nominal reply; failures are always sent:**
//!   - `mg … q`: a miss (`EN`) is hidden. A hit is sent: `VA …` with `v`, and **`HD` without
//!     `v`** — so a quiet meta [`Request::Touch`] still answers `HD` when the key exists and
//!     nothing when it does not.
//!   - `ms … q`: `HD` is hidden; `NS` (add on a present key, replace on a missing one), `EX`
//!     (CAS mismatch) and `NF` (CAS on a missing key) are sent.
//!   - `md … q`: `HD` is hidden; `NF` is sent. (protocol.txt says "hide response lines with the
//!     code 'DE'", an older name for `HD`.)
//!   - `ma … v q`: a success, `VA <n>` with its number, is hidden; `NF` is sent.
//!   - Errors (`CLIENT_ERROR …`, `SERVER_ERROR …`) are always sent: "Errors are always
//!     returned."
//!
//!   A quiet meta request may therefore produce zero or one reply; end a pipeline with `mn` and
//!   read up to `MN` to know it is complete.
//! - **Binary keys are not asked back with `k`.** The server picks the form of the returned key
//!   from the *item* (`ITEM_KEY_BINARY`, set by `ms … b`), not from the request. Append, prepend
//!   and an `incr` that lengthens the number rebuild the item without that bit (1.6.18, and
//!   still so in memcached's master as of 2026-07: `do_store_item` allocates the combined item
//!   afresh), after which `mg <b64> b v k` answers `VA 2 kfae codec\r\n\0binary` — the raw key,
//!   spaces and `\r\n` included, which breaks the reply framing. So a meta `Get` asks for `k`
//!   only for printable keys; a binary-key hit is matched by its opaque and decodes with
//!   `key: None`.
//! - Opaque tokens: "Opaque tokens may be up to 32 bytes in length"; longer ones get
//!   `CLIENT_ERROR opaque token too long`. Ours are decimal `u32`s (≤ 10 bytes).

use super::num::{push_u32, push_u64, push_usize};
use super::{Request, StoreOp, text};
use crate::key;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Append the meta-protocol bytes of `req` to `out`.
///
/// Keys must have been validated by [`crate::key::check`]; those that need it are
/// base64-encoded here. See the module docs for the exact commands and how memcached answers
/// them, quiet mode included.
pub fn encode(req: &Request<'_>, out: &mut Vec<u8>) {
    match *req {
        Request::Get {
            keys,
            opaque,
            cas,
            touch,
            ttl,
            lease,
            recache,
        } => {
            // Per key: about 30 bytes of command and flags plus the (possibly encoded) key.
            out.reserve(
                keys.iter()
                    .map(|k| 32 + key::base64_len(k.len()))
                    .sum::<usize>()
                    + 4,
            );
            let quiet = quiet_get(keys.len());
            for (index, k) in keys.iter().enumerate() {
                out.extend_from_slice(b"mg");
                let binary = push_key_token(out, k);
                // v: value, f: client flags, k: key, O: opaque = `opaque` + the key's
                // position, so a hit can be matched to its key even though misses are silent
                // (q). No `k` for a binary key: memcached may echo it raw (see the module
                // docs), and the opaque already names the key.
                out.extend_from_slice(if binary { b" b v f O" } else { b" v f k O" });
                // The index fits: a batch holds far fewer than 2^32 keys.
                push_u32(out, opaque.wrapping_add(index as u32));
                if cas {
                    out.extend_from_slice(b" c");
                }
                if ttl {
                    // "t: return item TTL remaining in seconds (-1 for unlimited)"
                    out.extend_from_slice(b" t");
                }
                if let Some(ttl) = touch {
                    // "T(token): update remaining TTL ... Similar to "touch" and "gat""
                    out.extend_from_slice(b" T");
                    push_u32(out, ttl);
                }
                if let Some(ttl) = lease {
                    // "N(token): vivify on miss, takes TTL as a argument": a miss becomes an
                    // empty stub and `W`; a stub answers `VA 0` with `W` or `Z`, so even a
                    // quiet (`q`) lease read always replies.
                    out.extend_from_slice(b" N");
                    push_u32(out, ttl);
                }
                if let Some(ttl) = recache {
                    // "R(token): if token is less than remaining TTL win for recache"
                    out.extend_from_slice(b" R");
                    push_u32(out, ttl);
                }
                // "With noreply enabled, the "EN\r\n" marker is suppressed."
                out.extend_from_slice(if quiet { b" q\r\n" } else { b"\r\n" });
            }
            if quiet {
                // "an "mn\r\n" command can be tagged to the end of the chain, which will return
                // an "MN\r\n", signalling to a client that all previous commands have been
                // processed."
                out.extend_from_slice(b"mn\r\n");
            }
        }
        Request::Store {
            op,
            key,
            value,
            flags,
            exptime,
            noreply,
        } => {
            out.reserve(key::base64_len(key.len()) + value.len() + 4 * 21 + 20);
            out.extend_from_slice(b"ms");
            // "ms <key> <datalen> <flags>*\r\n": the data length comes before the flags, so
            // the `b` flag goes after it.
            let binary = push_key_token(out, key);
            out.push(b' ');
            push_usize(out, value.len());
            if binary {
                out.extend_from_slice(b" b");
            }
            // "F(token): set client flags to token (32 bit unsigned numeric)"
            out.extend_from_slice(b" F");
            push_u32(out, flags);
            out.extend_from_slice(b" T");
            push_u32(out, exptime);
            // "M(token): mode switch ... E: add, A: append, P: prepend, R: replace, S: set".
            // "The "cas" command is supplanted by specifying the cas value with the 'C' flag."
            let (mode, cas): (&[u8], _) = match op {
                StoreOp::Set => (b" MS", None),
                StoreOp::Add => (b" ME", None),
                StoreOp::Replace => (b" MR", None),
                StoreOp::Append => (b" MA", None),
                StoreOp::Prepend => (b" MP", None),
                StoreOp::Cas(unique) => (b" MS", Some(unique)),
            };
            out.extend_from_slice(mode);
            if let Some(unique) = cas {
                out.extend_from_slice(b" C");
                push_u64(out, unique);
            }
            push_quiet(out, noreply);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        Request::Delete {
            key,
            noreply,
            invalidate,
            cas,
        } => {
            out.extend_from_slice(b"md");
            push_key(out, key);
            if let Some(cas) = cas {
                // "C(token): compare CAS value"
                out.extend_from_slice(b" C");
                push_u64(out, cas);
            }
            if let Some(ttl) = invalidate {
                // "I: invalidate. mark as stale, bumps CAS." / "T(token): updates TTL, only
                // when paired with the 'I' flag".
                out.extend_from_slice(b" I");
                if ttl > 0 {
                    out.extend_from_slice(b" T");
                    push_u32(out, ttl);
                }
            }
            push_quiet(out, noreply);
            out.extend_from_slice(b"\r\n");
        }
        Request::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            out.extend_from_slice(b"ma");
            push_key(out, key);
            // "If the 'v' flag is supplied, the response is formatted as:
            // VA <size> <flags>*\r\n<number>\r\n"
            out.extend_from_slice(if incr { b" v MI D" } else { b" v MD D" });
            push_u64(out, delta);
            push_quiet(out, noreply);
            out.extend_from_slice(b"\r\n");
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            // mg without `v` answers `HD` on a hit and `EN` on a miss; `T` updates the TTL.
            out.extend_from_slice(b"mg");
            push_key(out, key);
            out.extend_from_slice(b" T");
            push_u32(out, exptime);
            push_quiet(out, noreply);
            out.extend_from_slice(b"\r\n");
        }
        // "The meta commands will not replace specialized commands that do not sit in the
        // Storage or Retrieval categories": flush_all and version stay text commands.
        Request::FlushAll { .. } | Request::Version => text::encode(req, out),
        // "mn\r\n" ... "This returns the static response: "MN\r\n""
        Request::Noop => out.extend_from_slice(b"mn\r\n"),
    }
}

/// Whether a meta get of `keys` keys is sent quiet (`q` on each `mg`, then `mn`).
///
/// A single key is not: without `q` its `mg` always answers once (`VA`, `EN`, or an error
/// line), so that reply ends the read and the server parses and answers one command instead of
/// two (`mn` costs memcached ~0.3 µs of a 9 µs loopback get, docs/BENCHMARKS.md). The reply is
/// still checked: its opaque and key must be the ones asked, and a byte already buffered after
/// it fails the read. What `mn` alone would catch is a second block that arrives *later* than
/// the reply (a server answering one request twice): the next request on the connection reads
/// it, finds an opaque it did not send, and fails with `protocol`, discarding the connection.
pub fn quiet_get(keys: usize) -> bool {
    keys != 1
}

/// `" <key>[ b]"`: the key token and, when it was base64-encoded, the `b` flag right after it.
#[inline]
fn push_key(out: &mut Vec<u8>, k: &[u8]) {
    if push_key_token(out, k) {
        out.extend_from_slice(b" b");
    }
}

/// `" <key>"`, base64-encoded when [`key::needs_base64`]. Returns whether it was encoded.
#[inline]
fn push_key_token(out: &mut Vec<u8>, k: &[u8]) -> bool {
    debug_assert!(!k.is_empty(), "empty key");
    out.push(b' ');
    if !key::needs_base64(k) {
        out.extend_from_slice(k);
        return false;
    }
    push_base64(out, k);
    true
}

/// `k` base64-encoded onto `out`. Out of line: printable keys are the common case, and the
/// encoder inlined into every get spread it over more instruction-cache lines.
#[cold]
#[inline(never)]
fn push_base64(out: &mut Vec<u8>, k: &[u8]) {
    // Encode straight into `out`: no temporary String.
    let start = out.len();
    out.resize(start + key::base64_len(k.len()), 0);
    match STANDARD.encode_slice(k, &mut out[start..]) {
        Ok(n) => out.truncate(start + n),
        // Unreachable: the slot is exactly base64_len(k.len()) bytes, the padded length.
        Err(_) => out.truncate(start),
    }
}

/// `" q"` when asked: "q: use noreply semantics for return codes".
#[inline]
fn push_quiet(out: &mut Vec<u8>, noreply: bool) {
    if noreply {
        out.extend_from_slice(b" q");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(req: Request<'_>) -> Vec<u8> {
        let mut out = b"prefix|".to_vec();
        encode(&req, &mut out);
        assert_eq!(&out[..7], b"prefix|");
        out.split_off(7)
    }

    fn store(op: StoreOp, key: &[u8], noreply: bool) -> Vec<u8> {
        enc(Request::Store {
            op,
            key,
            value: b"abc",
            flags: 5,
            exptime: 60,
            noreply,
        })
    }

    #[test]
    fn get() {
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
        assert_eq!(
            get(false, None),
            b"mg k1 v f k O0 q\r\nmg k2 v f k O1 q\r\nmn\r\n"
        );
        assert_eq!(
            get(true, None),
            b"mg k1 v f k O0 c q\r\nmg k2 v f k O1 c q\r\nmn\r\n"
        );
        assert_eq!(
            get(false, Some(30)),
            b"mg k1 v f k O0 T30 q\r\nmg k2 v f k O1 T30 q\r\nmn\r\n"
        );
        assert_eq!(
            get(true, Some(0)),
            b"mg k1 v f k O0 c T0 q\r\nmg k2 v f k O1 c T0 q\r\nmn\r\n"
        );
        let empty = enc(Request::Get {
            keys: &[],
            opaque: 0,
            cas: false,
            touch: None,
            ttl: false,
            lease: None,
            recache: None,
        });
        assert_eq!(empty, b"mn\r\n");
    }

    /// One key: no `q`, no `mn` (its one reply ends the read); opaques count from `opaque`
    /// and wrap.
    #[test]
    fn a_single_key_get_is_not_quiet() {
        let get = |keys: &[&[u8]], opaque| {
            enc(Request::Get {
                keys,
                opaque,
                cas: true,
                touch: None,
                ttl: false,
                lease: Some(30),
                recache: None,
            })
        };
        assert_eq!(get(&[b"k1"], 7), b"mg k1 v f k O7 c N30\r\n");
        assert_eq!(
            get(&[b"k1", b"k2"], u32::MAX),
            b"mg k1 v f k O4294967295 c N30 q\r\nmg k2 v f k O0 c N30 q\r\nmn\r\n"
        );
        assert_eq!(get(&[b"a b"], 0), b"mg YSBi b v f O0 c N30\r\n");
        assert!(!quiet_get(1));
        assert!(quiet_get(0) && quiet_get(2));
    }

    #[test]
    fn binary_keys_travel_in_base64() {
        // base64("a b\0") = "YSBiAA=="
        let keys: &[&[u8]] = &[b"plain", b"a b\0"];
        assert_eq!(
            enc(Request::Get {
                keys,
                opaque: 0,
                cas: false,
                touch: None,
                ttl: false,
                lease: None,
                recache: None
            }),
            b"mg plain v f k O0 q\r\nmg YSBiAA== b v f O1 q\r\nmn\r\n"
        );
        assert_eq!(
            store(StoreOp::Set, b"a b\0", false),
            b"ms YSBiAA== 3 b F5 T60 MS\r\nabc\r\n"
        );
        assert_eq!(
            enc(Request::Delete {
                key: b"\r\n",
                noreply: true,
                invalidate: None,
                cas: None
            }),
            b"md DQo= b q\r\n"
        );
        assert_eq!(
            enc(Request::Arith {
                key: b"\x7f",
                incr: true,
                delta: 1,
                noreply: false
            }),
            b"ma fw== b v MI D1\r\n"
        );
        assert_eq!(
            enc(Request::Touch {
                key: b"\x00\x01\x02",
                exptime: 9,
                noreply: false
            }),
            b"mg AAEC b T9\r\n"
        );
        // Bytes >= 0x80 are fine in a text key and are sent as they are.
        assert_eq!(
            enc(Request::Delete {
                key: "ключ".as_bytes(),
                noreply: false,
                invalidate: None,
                cas: None
            }),
            [&b"md "[..], "ключ".as_bytes(), b"\r\n"].concat()
        );
    }

    #[test]
    fn longest_binary_key_fits_the_server_limit() {
        // key::check accepts 186 raw bytes (248 encoded); memcached 1.6.18 stores it.
        let k = [0u8; 186];
        let out = enc(Request::Delete {
            key: &k,
            noreply: false,
            invalidate: None,
            cas: None,
        });
        assert_eq!(out.len(), 3 + 248 + 4);
        assert!(out.starts_with(b"md AAAA"));
        assert!(out.ends_with(b"AAAA b\r\n"));
    }

    #[test]
    fn storage() {
        assert_eq!(
            store(StoreOp::Set, b"k", false),
            b"ms k 3 F5 T60 MS\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Add, b"k", false),
            b"ms k 3 F5 T60 ME\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Replace, b"k", true),
            b"ms k 3 F5 T60 MR q\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Append, b"k", false),
            b"ms k 3 F5 T60 MA\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Prepend, b"k", false),
            b"ms k 3 F5 T60 MP\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Cas(u64::MAX), b"k", false),
            b"ms k 3 F5 T60 MS C18446744073709551615\r\nabc\r\n"
        );
        assert_eq!(
            store(StoreOp::Cas(7), b"k", true),
            b"ms k 3 F5 T60 MS C7 q\r\nabc\r\n"
        );
        assert_eq!(
            enc(Request::Store {
                op: StoreOp::Set,
                key: b"k",
                value: b"",
                flags: 0,
                exptime: 0,
                noreply: false,
            }),
            b"ms k 0 F0 T0 MS\r\n\r\n"
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
        assert_eq!(del(false), b"md k\r\n");
        assert_eq!(del(true), b"md k q\r\n");
        let arith = |incr, delta, noreply| {
            enc(Request::Arith {
                key: b"n",
                incr,
                delta,
                noreply,
            })
        };
        assert_eq!(arith(true, 1, false), b"ma n v MI D1\r\n");
        assert_eq!(
            arith(false, u64::MAX, true),
            b"ma n v MD D18446744073709551615 q\r\n"
        );
        let touch = |exptime, noreply| {
            enc(Request::Touch {
                key: b"k",
                exptime,
                noreply,
            })
        };
        assert_eq!(touch(10, false), b"mg k T10\r\n");
        assert_eq!(touch(0, true), b"mg k T0 q\r\n");
        let flush = |delay, noreply| enc(Request::FlushAll { delay, noreply });
        assert_eq!(flush(0, false), b"flush_all\r\n");
        assert_eq!(flush(10, true), b"flush_all 10 noreply\r\n");
        assert_eq!(enc(Request::Version), b"version\r\n");
        assert_eq!(enc(Request::Noop), b"mn\r\n");
    }
}
