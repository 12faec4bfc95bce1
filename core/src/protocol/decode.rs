//! Incremental decoder for replies of both protocols.
//!
//! One reply is a header line ended by `\r\n`, followed for hits by a data block of the length
//! the header declared, also ended by `\r\n`. protocol.txt: "Text lines are always terminated by
//! \r\n. Unstructured data is _also_ terminated by \r\n ... [the client] must use the length of
//! the data block ... to determine where the data block ends".
//!
//! The decoder is context-free: the first token of the line says what the reply is.
//!
//! | first token | protocol | decoded as |
//! |---|---|---|
//! | `VALUE <key> <flags> <bytes> [<cas>]` + data | text | [`Response::Value`] |
//! | `VA <size> <flags>*` + data | meta | [`Response::Value`] |
//! | `END`, `MN` | both | [`Response::End`] |
//! | `STORED`, `DELETED`, `TOUCHED`, `OK`, `HD <flags>*` | both | [`Status::Success`] |
//! | `NOT_STORED`, `NS <flags>*` | both | [`Status::NotStored`] |
//! | `EXISTS`, `EX <flags>*` | both | [`Status::Exists`] |
//! | `NOT_FOUND`, `NF <flags>*` | both | [`Status::NotFound`] |
//! | `EN <flags>*` | meta | [`Status::Miss`] |
//! | `<digits>` | text | [`Response::Number`] (incr/decr) |
//! | `VERSION <string>` | both | [`Response::Version`] |
//! | `ERROR`, `CLIENT_ERROR <msg>`, `SERVER_ERROR <msg>` | both | [`Response::Error`] |
//!
//! Anything else, a bare `\n` line ending, a line longer than [`MAX_LINE`], a bad or
//! overflowing number, a value larger than [`Decoder::max_value_size`] or a data block not
//! followed by `\r\n` is a [`ProtocolError`]: the byte stream can no longer be trusted and the
//! connection must be dropped. The decoder never panics, never reads past `buf`, and allocates
//! only for a reply that is complete (its data, bounded by `max_value_size`, its key and
//! messages, bounded by [`MAX_LINE`]).

use super::num::{parse_i64, parse_u32, parse_u64};
use super::tokenize::{MAX_TOKENS, Tokens};
use super::{InPlace, ProtocolError, Response, ServerErrorKind, Status, Value};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use memchr::memchr;
use std::ops::Range;

/// Longest header line accepted, in bytes, not counting its `\r\n`.
///
/// The longest legitimate line is a `VALUE`/`VA` header: a key of at most 250 bytes, a few
/// numbers and the meta flags libfae asks for, well under 1 KiB. 8 KiB leaves room for long
/// `SERVER_ERROR` messages while bounding how much garbage is scanned before giving up.
pub const MAX_LINE: usize = 8192;

/// Decodes replies of either protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    /// Largest value the decoder accepts (a larger `VALUE`/`VA` header is a protocol error,
    /// before any allocation).
    pub max_value_size: usize,
}

impl Decoder {
    /// Decode one reply from the start of `buf`. `Ok(None)`: incomplete, read more.
    /// `Ok(Some((response, used)))`: `used` bytes were consumed.
    ///
    /// A reply split at any byte boundary decodes the same as whole: every proper prefix of a
    /// valid reply gives `Ok(None)`.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Response, usize)>, ProtocolError> {
        Ok(self.decode_in_place(buf)?.map(|(reply, used)| {
            let resp = match reply {
                InPlace::Value(mut v, data) => {
                    v.data = buf[data].to_vec();
                    Response::Value(v)
                }
                InPlace::Other(resp) => resp,
            };
            (resp, used)
        }))
    }

    /// [`Decoder::decode`], leaving a value's data where it is in `buf`: the reply names its
    /// range instead of copying it (the [`Value::data`] it carries is empty). A multi-get
    /// hands its values to the caller straight from the connection's buffer this way.
    pub fn decode_in_place(&self, buf: &[u8]) -> Result<Option<(InPlace, usize)>, ProtocolError> {
        let Some((line, header_len)) = find_line(buf)? else {
            return Ok(None);
        };
        let (first, rest) = match memchr(b' ', line) {
            Some(sp) => (&line[..sp], &line[sp + 1..]),
            None => (line, &[][..]),
        };
        let response = match first {
            b"VALUE" => return self.text_value(line, rest, buf, header_len),
            b"VA" => return self.meta_value(line, rest, buf, header_len),
            b"END" | b"MN" => {
                no_arguments(line, rest)?;
                Response::End
            }
            b"STORED" | b"DELETED" | b"TOUCHED" | b"OK" => {
                text_status(line, rest, Status::Success)?
            }
            b"NOT_STORED" => text_status(line, rest, Status::NotStored)?,
            b"EXISTS" => text_status(line, rest, Status::Exists)?,
            b"NOT_FOUND" => text_status(line, rest, Status::NotFound)?,
            b"HD" => meta_status(line, rest, Status::Success)?,
            b"NS" => meta_status(line, rest, Status::NotStored)?,
            b"EX" => meta_status(line, rest, Status::Exists)?,
            b"NF" => meta_status(line, rest, Status::NotFound)?,
            b"EN" => meta_status(line, rest, Status::Miss)?,
            // "VERSION <version>\r\n": the rest of the line, as is.
            b"VERSION" => Response::Version(lossy(rest)),
            // "ERROR\r\n" means the client sent a nonexistent command name.
            b"ERROR" => server_error(ServerErrorKind::Error, rest),
            // "CLIENT_ERROR <error>\r\n" / "SERVER_ERROR <error>\r\n": a human-readable string.
            b"CLIENT_ERROR" => server_error(ServerErrorKind::ClientError, rest),
            b"SERVER_ERROR" => server_error(ServerErrorKind::ServerError, rest),
            // incr/decr: "<value>\r\n , where <value> is the new value of the item's data".
            // "The number MAY be space-padded at the end": trailing spaces are allowed.
            [b'0'..=b'9', ..] => {
                let n = parse_u64(first).ok_or_else(|| err("bad number", line))?;
                no_arguments(line, rest)?;
                Response::Number(n)
            }
            _ => return Err(err("unknown reply", line)),
        };
        Ok(Some((InPlace::Other(response), header_len)))
    }

    /// `VALUE <key> <flags> <bytes> [<cas unique>]\r\n<data block>\r\n`
    fn text_value(
        &self,
        line: &[u8],
        rest: &[u8],
        buf: &[u8],
        header_len: usize,
    ) -> Result<Option<(InPlace, usize)>, ProtocolError> {
        let t = Tokens::new(rest).map_err(|_| err("too many tokens", line))?;
        let (Some(key), Some(flags), Some(bytes)) = (t.get(0), t.get(1), t.get(2)) else {
            return Err(err("VALUE line needs <key> <flags> <bytes>", line));
        };
        if t.len() > 4 {
            return Err(err("VALUE line has extra tokens", line));
        }
        // "<flags> is an arbitrary 16-bit unsigned integer ... in memcached 1.2.1 and higher,
        // flags may be 32-bits".
        let flags = parse_u32(flags).ok_or_else(|| err("bad flags", line))?;
        // "<cas unique> is a unique 64-bit integer".
        let cas = match t.get(3) {
            Some(c) => Some(parse_u64(c).ok_or_else(|| err("bad cas", line))?),
            None => None,
        };
        let Some((data, used)) = self.data_block(line, bytes, buf, header_len)? else {
            return Ok(None);
        };
        let value = Value {
            key: Some(key.into()),
            flags,
            cas,
            ..Value::default()
        };
        Ok(Some((InPlace::Value(value, data), used)))
    }

    /// `VA <size> <flags>*\r\n<data block>\r\n`
    fn meta_value(
        &self,
        line: &[u8],
        rest: &[u8],
        buf: &[u8],
        header_len: usize,
    ) -> Result<Option<(InPlace, usize)>, ProtocolError> {
        let Some((size, flags)) = next_token(rest) else {
            return Err(err("VA line needs <size>", line));
        };
        let f = MetaFlags::parse(line, flags, 1)?;
        let Some((data, used)) = self.data_block(line, size, buf, header_len)? else {
            return Ok(None);
        };
        // "If 'b' flag is sent in the response, and a key is returned via 'k', this signals to
        // the client that the key is base64 encoded binary." memcached 1.6.18 may send `b`
        // after `k` (`VA 3 f7 kYSBiAA== b O1`), so the key is decoded once all flags are read.
        let key = match f.key {
            Some(k) if f.base64 => Some(base64_key(line, k)?),
            Some(k) => Some(k.into()),
            None => None,
        };
        let value = Value {
            key,
            opaque: f.opaque,
            flags: f.flags,
            cas: f.cas,
            ttl: f.ttl,
            win: f.win,
            stale: f.stale,
            win_taken: f.win_taken,
            data: Vec::new(),
        };
        Ok(Some((InPlace::Value(value, data), used)))
    }

    /// The data block after a header of `header_len` bytes whose size token is `size`: its
    /// range in `buf` and the end of the reply, `Ok(None)` until all of it and its `\r\n`
    /// are in `buf`.
    fn data_block(
        &self,
        line: &[u8],
        size: &[u8],
        buf: &[u8],
        header_len: usize,
    ) -> Result<Option<(Range<usize>, usize)>, ProtocolError> {
        let size = parse_u64(size).ok_or_else(|| err("bad data size", line))?;
        // Checked before anything is allocated or waited for: a corrupt or hostile size must
        // not make us buffer gigabytes.
        if size > u64::try_from(self.max_value_size).unwrap_or(u64::MAX) {
            return Err(err("value larger than max_value_size", line));
        }
        let too_big = || err("data size overflows", line);
        let size = usize::try_from(size).map_err(|_| too_big())?;
        let data_end = header_len.checked_add(size).ok_or_else(too_big)?;
        let end = data_end.checked_add(2).ok_or_else(too_big)?;
        match buf.get(data_end..end) {
            Some(b"\r\n") => Ok(Some((header_len..data_end, end))),
            Some(_) => Err(err("data block not followed by \\r\\n", line)),
            // Fail early when the byte after the data is already here and is not `\r`.
            None => match buf.get(data_end) {
                Some(&b) if b != b'\r' => Err(err("data block not followed by \\r\\n", line)),
                _ => Ok(None),
            },
        }
    }
}

/// A key echoed base64-encoded (`b`), decoded. Out of line: most keys are printable.
#[cold]
#[inline(never)]
fn base64_key(line: &[u8], k: &[u8]) -> Result<super::EchoedKey, ProtocolError> {
    Ok(STANDARD
        .decode(k)
        .map_err(|_| err("bad base64 key", line))?
        .into())
}

/// The first line of `buf` without its `\r\n`, and the length of the line with it.
fn find_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    // Never scan (or wait for) more than one maximal line plus its `\r\n`.
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    match memchr(b'\n', window) {
        // "Text lines are always terminated by \r\n": a bare `\n` means we are out of sync.
        Some(nl) => match nl.checked_sub(1).and_then(|cr| buf.get(cr)) {
            Some(b'\r') => Ok(Some((&buf[..nl - 1], nl + 1))),
            _ => Err(err("line ends with a bare \\n", &buf[..nl])),
        },
        None if window.len() == MAX_LINE + 2 => Err(err("reply line too long", window)),
        None => Ok(None),
    }
}

/// Text status lines carry nothing after the keyword.
fn text_status(line: &[u8], rest: &[u8], status: Status) -> Result<Response, ProtocolError> {
    no_arguments(line, rest)?;
    Ok(Response::Status {
        status,
        cas: None,
        opaque: None,
    })
}

/// Meta status line `<CD> <flags>*`: keep the CAS and opaque, validate the rest.
fn meta_status(line: &[u8], rest: &[u8], status: Status) -> Result<Response, ProtocolError> {
    let f = MetaFlags::parse(line, rest, 0)?;
    Ok(Response::Status {
        status,
        cas: f.cas,
        opaque: f.opaque,
    })
}

fn server_error(kind: ServerErrorKind, rest: &[u8]) -> Response {
    Response::Error {
        kind,
        message: lossy(rest),
    }
}

fn no_arguments(line: &[u8], rest: &[u8]) -> Result<(), ProtocolError> {
    if rest.iter().all(|&b| b == b' ') {
        Ok(())
    } else {
        Err(err("unexpected tokens", line))
    }
}

/// The meta return flags libfae reads. protocol.txt: "Flags are single character codes ...
/// Flags may contain token arguments, which come after the flag and before the next space".
#[derive(Default)]
struct MetaFlags<'a> {
    flags: u32,
    cas: Option<u64>,
    key: Option<&'a [u8]>,
    base64: bool,
    opaque: Option<u32>,
    ttl: Option<i64>,
    win: bool,
    stale: bool,
    win_taken: bool,
}

impl<'a> MetaFlags<'a> {
    /// The flags of `rest`, the line's tokens after the `before` already taken; the line may
    /// hold [`MAX_TOKENS`] in all, like a line [`Tokens`] splits. One pass, no offset table:
    /// this runs for every meta reply.
    fn parse(line: &[u8], mut rest: &'a [u8], before: usize) -> Result<Self, ProtocolError> {
        let mut f = Self::default();
        let mut n = before;
        while let Some((tok, after)) = next_token(rest) {
            rest = after;
            n += 1;
            if n > MAX_TOKENS {
                return Err(err("too many tokens", line));
            }
            // Tokens are never empty: `next_token` skips runs of spaces.
            let Some((&code, arg)) = tok.split_first() else {
                continue;
            };
            match code {
                // "F(token): set client flags to token (32 bit unsigned numeric)"
                b'f' => f.flags = parse_u32(arg).ok_or_else(|| err("bad f flag", line))?,
                b'c' => f.cas = Some(parse_u64(arg).ok_or_else(|| err("bad c flag", line))?),
                // "t: return item TTL remaining in seconds (-1 for unlimited)"
                b't' => f.ttl = Some(parse_i64(arg).ok_or_else(|| err("bad t flag", line))?),
                b'k' if arg.is_empty() => return Err(err("empty k flag", line)),
                b'k' => f.key = Some(arg),
                b'b' => f.base64 = true,
                // "Opaque tokens may be up to 32 bytes in length, and are a string similar to
                // keys": libfae sends numbers; anything else is not ours and is dropped.
                b'O' => f.opaque = parse_u32(arg),
                b'W' => f.win = true,
                b'X' => f.stale = true,
                b'Z' => f.win_taken = true,
                // s (size), h (hit before), l (last access) and flags added later: not needed.
                _ => {}
            }
        }
        Ok(f)
    }
}

/// The first space-separated token of `s` and what follows it; runs of spaces are skipped
/// (like [`Tokens`]). `None` when only spaces are left. A plain loop: tokens are a few bytes,
/// shorter than what `memchr` needs to pay off.
#[inline]
fn next_token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = s.iter().position(|&b| b != b' ')?;
    let s = &s[start..];
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    Some(s.split_at(end))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A protocol error quoting (the start of) the offending line, escaped.
#[cold]
fn err(what: &str, line: &[u8]) -> ProtocolError {
    const QUOTE: usize = 64;
    let shown = &line[..line.len().min(QUOTE)];
    let more = if line.len() > QUOTE { "…" } else { "" };
    ProtocolError(format!("{what}: \"{}\"{more}", shown.escape_ascii()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Decoder = Decoder {
        max_value_size: 1024 * 1024,
    };

    /// Decode `bytes` as exactly one reply, and check every proper prefix is incomplete.
    fn one(bytes: &[u8]) -> Response {
        for n in 0..bytes.len() {
            assert_eq!(D.decode(&bytes[..n]), Ok(None), "prefix {n} of {bytes:?}");
        }
        let (r, used) = D.decode(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "{bytes:?}");
        // Trailing bytes of the next reply do not change the result.
        let mut more = bytes.to_vec();
        more.extend_from_slice(b"END\r\n");
        assert_eq!(D.decode(&more).unwrap().unwrap(), (r.clone(), used));
        r
    }

    fn fails(bytes: &[u8]) -> String {
        match D.decode(bytes) {
            Err(ProtocolError(msg)) => msg,
            other => panic!("{bytes:?} gave {other:?}"),
        }
    }

    fn status(status: Status, cas: Option<u64>, opaque: Option<u32>) -> Response {
        Response::Status {
            status,
            cas,
            opaque,
        }
    }

    fn value(f: impl FnOnce(&mut Value)) -> Response {
        let mut v = Value::default();
        f(&mut v);
        Response::Value(v)
    }

    #[test]
    fn text_values() {
        assert_eq!(
            one(b"VALUE foo 5 3\r\nbar\r\n"),
            value(|v| {
                v.key = Some(b"foo"[..].into());
                v.flags = 5;
                v.data = b"bar".to_vec();
            })
        );
        assert_eq!(
            one(b"VALUE a 4294967295 4 18446744073709551615\r\na\r\nb\r\n"),
            value(|v| {
                v.key = Some(b"a"[..].into());
                v.flags = u32::MAX;
                v.cas = Some(u64::MAX);
                v.data = b"a\r\nb".to_vec();
            })
        );
        // Empty value; the server pads decr results with spaces inside the data.
        assert_eq!(
            one(b"VALUE e 0 0\r\n\r\n"),
            value(|v| v.key = Some(b"e"[..].into()))
        );
        assert_eq!(
            one(b"VALUE n 0 3\r\n5  \r\n"),
            value(|v| {
                v.key = Some(b"n"[..].into());
                v.data = b"5  ".to_vec();
            })
        );
    }

    #[test]
    fn meta_values() {
        // As memcached 1.6.18 answers `mg foo v f k O3 c q`.
        assert_eq!(
            one(b"VA 3 f5 kfoo O3 c1\r\nbar\r\n"),
            value(|v| {
                v.key = Some(b"foo"[..].into());
                v.flags = 5;
                v.opaque = Some(3);
                v.cas = Some(1);
                v.data = b"bar".to_vec();
            })
        );
        // A binary key: `b` after `k`, as the server sends it.
        assert_eq!(
            one(b"VA 3 f7 kYSBiAA== b O1 c2 t-1\r\nxyz\r\n"),
            value(|v| {
                v.key = Some(b"a b\0"[..].into());
                v.flags = 7;
                v.opaque = Some(1);
                v.cas = Some(2);
                v.ttl = Some(-1);
                v.data = b"xyz".to_vec();
            })
        );
        // Lease flags; `N` vivified an empty stub.
        assert_eq!(
            one(b"VA 0 c23 W\r\n\r\n"),
            value(|v| {
                v.cas = Some(23);
                v.win = true;
            })
        );
        assert_eq!(
            one(b"VA 1 t29 X Z s1 h1 l7 Oabc\r\nx\r\n"),
            value(|v| {
                v.ttl = Some(29);
                v.stale = true;
                v.win_taken = true;
                v.data = b"x".to_vec();
            })
        );
        // ma … v: the new number as data.
        assert_eq!(
            one(b"VA 20\r\n18446744073709551615\r\n"),
            value(|v| v.data = b"18446744073709551615".to_vec())
        );
        assert_eq!(one(b"VA 0\r\n\r\n"), value(|_| {}));
    }

    #[test]
    fn ends_and_statuses() {
        use Status::*;
        assert_eq!(one(b"END\r\n"), Response::End);
        assert_eq!(one(b"MN\r\n"), Response::End);
        for (line, s) in [
            (&b"STORED\r\n"[..], Success),
            (b"DELETED\r\n", Success),
            (b"TOUCHED\r\n", Success),
            (b"OK\r\n", Success),
            (b"NOT_STORED\r\n", NotStored),
            (b"EXISTS\r\n", Exists),
            (b"NOT_FOUND\r\n", NotFound),
            (b"HD\r\n", Success),
            (b"NS\r\n", NotStored),
            (b"EX\r\n", Exists),
            (b"NF\r\n", NotFound),
            (b"EN\r\n", Miss),
        ] {
            assert_eq!(one(line), status(s, None, None), "{line:?}");
        }
        // Flags on meta status lines, as memcached 1.6.18 sends them.
        assert_eq!(
            one(b"HD c12 kcXE= b O9\r\n"),
            status(Success, Some(12), Some(9))
        );
        assert_eq!(one(b"EX kqa O9 c0\r\n"), status(Exists, Some(0), Some(9)));
        assert_eq!(one(b"NF kqmissing O7\r\n"), status(NotFound, None, Some(7)));
        assert_eq!(one(b"EN kqmissing O8\r\n"), status(Miss, None, Some(8)));
        assert_eq!(one(b"NS Oabc\r\n"), status(NotStored, None, None));
        assert_eq!(one(b"HD c23 W\r\n"), status(Success, Some(23), None));
    }

    #[test]
    fn numbers_versions_errors() {
        assert_eq!(one(b"0\r\n"), Response::Number(0));
        assert_eq!(one(b"18446744073709551615\r\n"), Response::Number(u64::MAX));
        assert_eq!(one(b"5  \r\n"), Response::Number(5));
        assert_eq!(
            one(b"VERSION 1.6.18\r\n"),
            Response::Version("1.6.18".into())
        );
        assert_eq!(
            one(b"VERSION 1.6.18 custom build\r\n"),
            Response::Version("1.6.18 custom build".into())
        );
        assert_eq!(one(b"VERSION\r\n"), Response::Version(String::new()));
        let error = |kind, message: &str| Response::Error {
            kind,
            message: message.into(),
        };
        assert_eq!(one(b"ERROR\r\n"), error(ServerErrorKind::Error, ""));
        assert_eq!(
            one(b"ERROR unknown command\r\n"),
            error(ServerErrorKind::Error, "unknown command")
        );
        assert_eq!(
            one(b"CLIENT_ERROR bad command line format\r\n"),
            error(ServerErrorKind::ClientError, "bad command line format")
        );
        assert_eq!(
            one(b"SERVER_ERROR object too large for cache\r\n"),
            error(ServerErrorKind::ServerError, "object too large for cache")
        );
        assert_eq!(
            one(b"SERVER_ERROR \xff\r\n"),
            error(ServerErrorKind::ServerError, "\u{fffd}")
        );
    }

    #[test]
    fn garbage_and_malformed_lines() {
        for bad in [
            &b"\r\n"[..],
            b"HELLO\r\n",
            b"end\r\n",
            b" END\r\n",
            b"END x\r\n",
            b"STORED 1\r\n",
            b"VALUE\r\n",
            b"VALUE k 0\r\n",
            b"VALUE k 0 1 2 3\r\n",
            b"VALUE k x 1\r\n",
            b"VALUE k 0 x\r\n",
            b"VALUE k 0 -1\r\n",
            b"VALUE k 0 1 x\r\n",
            b"VA\r\n",
            b"VA x\r\n",
            b"VA 1 fx\r\n",
            b"VA 1 f-1\r\n",
            b"VA 1 cx\r\n",
            b"VA 1 tx\r\n",
            b"VA 1 k\r\n",
            b"HD cx\r\n",
            b"12a\r\n",
            b"1 2\r\n",
            b"\x00\r\n",
        ] {
            fails(bad);
        }
        // A base64 key that does not decode.
        assert!(fails(b"VA 1 k!!! b\r\nx\r\n").contains("base64"));
        // Too many tokens for the tokenizer.
        let mut many = b"HD".to_vec();
        for _ in 0..30 {
            many.extend_from_slice(b" s1");
        }
        many.extend_from_slice(b"\r\n");
        assert!(fails(&many).contains("too many tokens"));
    }

    #[test]
    fn meta_lines_split_like_the_tokenizer() {
        // Runs of spaces between and after the tokens, as `Tokens` tolerates them.
        let Response::Value(v) = one(b"VA  3   f5  kfoo  O7 c9  \r\nabc\r\n") else {
            panic!("not a value")
        };
        assert_eq!(
            (&v.data[..], v.flags, v.key.as_deref(), v.opaque, v.cas),
            (&b"abc"[..], 5, Some(&b"foo"[..]), Some(7), Some(9))
        );
        // MAX_TOKENS after the code, the size included: one more is refused.
        let line = |n: usize| {
            let mut l = b"VA 1".to_vec();
            l.extend(b" s1".repeat(n - 1));
            l.extend_from_slice(b"\r\nx\r\n");
            l
        };
        assert!(matches!(one(&line(MAX_TOKENS)), Response::Value(_)));
        assert!(fails(&line(MAX_TOKENS + 1)).contains("too many tokens"));
        let status = |n: usize| {
            let mut l = b"HD".to_vec();
            l.extend(b" s1".repeat(n));
            l.extend_from_slice(b"\r\n");
            l
        };
        assert!(matches!(one(&status(MAX_TOKENS)), Response::Status { .. }));
        assert!(fails(&status(MAX_TOKENS + 1)).contains("too many tokens"));
    }

    #[test]
    fn number_overflow() {
        assert!(fails(b"18446744073709551616\r\n").contains("bad number"));
        assert!(fails(b"VALUE k 4294967296 1\r\nx\r\n").contains("bad flags"));
        assert!(fails(b"VALUE k 0 1 18446744073709551616\r\nx\r\n").contains("bad cas"));
        assert!(fails(b"VA 1 f4294967296\r\nx\r\n").contains("bad f"));
        assert!(fails(b"VA 1 c18446744073709551616\r\nx\r\n").contains("bad c"));
        assert!(fails(b"VA 1 t9223372036854775808\r\nx\r\n").contains("bad t"));
        assert!(fails(b"VA 99999999999999999999999\r\n").contains("bad data size"));
        // A non-numeric or too-large opaque is not an error: it is just not ours.
        assert_eq!(
            one(b"HD O4294967296\r\n"),
            status(Status::Success, None, None)
        );
    }

    #[test]
    fn line_endings() {
        assert!(fails(b"END\n").contains("bare"));
        assert!(fails(b"\n").contains("bare"));
        assert!(fails(b"VALUE k 0 1\nx\r\n").contains("bare"));
        // A lone \r inside a line is content, not an ending.
        assert!(fails(b"END\rEND\r\n").contains("unknown"));
    }

    #[test]
    fn truncated_values_wait_and_wrong_terminators_fail() {
        assert_eq!(D.decode(b"VALUE k 0 5\r\nab"), Ok(None));
        assert_eq!(D.decode(b"VA 5 f1\r\nabcde"), Ok(None));
        assert_eq!(D.decode(b"VA 5 f1\r\nabcde\r"), Ok(None));
        assert!(fails(b"VALUE k 0 1\r\nxy\r\n").contains("not followed"));
        assert!(fails(b"VALUE k 0 1\r\nx\n\r").contains("not followed"));
        assert!(fails(b"VA 1\r\nx\rX").contains("not followed"));
        // Detected as soon as the byte after the data is not `\r`.
        assert!(fails(b"VA 1\r\nxy").contains("not followed"));
        // A value that is shorter than declared swallows the next reply, then fails.
        assert!(fails(b"VALUE k 0 3\r\nab\r\nEND\r\n").contains("not followed"));
    }

    #[test]
    fn oversized_value_header_fails_before_the_data_arrives() {
        let d = Decoder { max_value_size: 10 };
        assert!(d.decode(b"VALUE k 0 10\r\n").unwrap().is_none());
        let e = d.decode(b"VALUE k 0 11\r\n").unwrap_err();
        assert!(e.0.contains("max_value_size"), "{e}");
        assert!(d.decode(b"VA 11 f0\r\n").is_err());
        assert!(d.decode(b"VA 18446744073709551615\r\n").is_err());
        let huge = Decoder {
            max_value_size: usize::MAX,
        };
        assert!(
            huge.decode(b"VA 18446744073709551615\r\n")
                .unwrap_err()
                .0
                .contains("overflows")
        );
    }

    #[test]
    fn huge_lines_fail_without_waiting() {
        let mut line = b"SERVER_ERROR ".to_vec();
        line.resize(MAX_LINE, b'x');
        line.extend_from_slice(b"\r\n");
        // Exactly MAX_LINE bytes before \r\n: accepted.
        assert!(matches!(
            D.decode(&line),
            Ok(Some((Response::Error { .. }, n))) if n == MAX_LINE + 2
        ));
        // One more byte: rejected, and so is any buffer that long without a line end.
        line.insert(20, b'x');
        assert!(fails(&line).contains("too long"));
        assert!(fails(&vec![b'a'; MAX_LINE + 2]).contains("too long"));
        assert_eq!(D.decode(&vec![b'a'; MAX_LINE + 1]), Ok(None));
        // A long data block is fine: only the header line is limited.
        let mut v = b"VA 20000\r\n".to_vec();
        v.resize(v.len() + 20000, b'z');
        v.extend_from_slice(b"\r\n");
        assert!(matches!(D.decode(&v), Ok(Some((Response::Value(_), n))) if n == v.len()));
    }

    #[test]
    fn many_replies_in_one_buffer() {
        let stream = b"VA 3 f5 kfoo O0 c1\r\nbar\r\nVALUE k 0 1\r\nx\r\nEND\r\nMN\r\nHD\r\n\
                       NS\r\n15\r\nVERSION 1.6.18\r\nERROR\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, used)) = D.decode(&stream[at..]).unwrap() {
            got.push(r);
            at += used;
        }
        assert_eq!(at, stream.len());
        assert_eq!(got.len(), 9);
        assert_eq!(got[2], Response::End);
        assert_eq!(got[6], Response::Number(15));
    }
}
