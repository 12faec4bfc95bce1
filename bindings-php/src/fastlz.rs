//! FastLZ (Ariya Hidayat's format, MIT), the block format php-memcached's
//! `COMPRESSION_FASTLZ` stores after its 4-byte length prefix.
//!
//! The decoder reads both levels (level = first byte >> 5, plus one), as `fastlz_decompress`
//! does. The encoder writes level 1 (distances ≤ 8192, matches ≤ 264 bytes), which every
//! FastLZ decoder reads whatever the input size; php-memcached's compressor picks level 2 for
//! inputs ≥ 64 KiB, but its reader dispatches on the first byte, so both levels interoperate.

const MAX_L1_DISTANCE: usize = 8192;
const MAX_L2_DISTANCE: usize = 8191;
const MAX_COPY: usize = 32;
const MAX_LEN: usize = 264;
const HASH_LOG: u32 = 13;

fn hash3(b: &[u8]) -> usize {
    let v = u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16);
    (v.wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize
}

fn flush_literals(out: &mut Vec<u8>, lit: &[u8]) {
    for chunk in lit.chunks(MAX_COPY) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

/// Compress `input` as a level-1 FastLZ block.
pub fn compress(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n + n / 16 + 16);
    if n < 4 {
        if n > 0 {
            flush_literals(&mut out, input);
        }
        return out;
    }
    let mut table = vec![usize::MAX; 1 << HASH_LOG];
    let mut lit_start = 0;
    let mut i = 0;
    // The first instruction must be a literal run (its opcode byte carries the level bits).
    // Leave the last 3 bytes as literals: a match needs 3 bytes to hash.
    while i + 3 <= n {
        let h = hash3(&input[i..]);
        let cand = table[h];
        table[h] = i;
        if i > 0
            && cand != usize::MAX
            && i - cand <= MAX_L1_DISTANCE
            && input[cand..cand + 3] == input[i..i + 3]
        {
            let mut len = 3;
            while len < MAX_LEN && i + len < n && input[cand + len] == input[i + len] {
                len += 1;
            }
            flush_literals(&mut out, &input[lit_start..i]);
            let dist = i - cand - 1; // 0..=8191
            let l = len - 2; // 1..=262
            if l < 7 {
                out.push(((l as u8) << 5) | (dist >> 8) as u8);
            } else {
                out.push((7 << 5) | (dist >> 8) as u8);
                out.push((l - 7) as u8);
            }
            out.push((dist & 0xff) as u8);
            // Index a few positions inside the match so later data finds it.
            let end = i + len;
            let mut j = i + 1;
            while j + 3 <= n && j < end {
                table[hash3(&input[j..])] = j;
                j += 1;
            }
            i = end;
            lit_start = i;
        } else {
            i += 1;
        }
    }
    flush_literals(&mut out, &input[lit_start..]);
    out
}

/// Decompress a FastLZ block (level 1 or 2) that must expand to exactly `expected` bytes.
pub fn decompress(input: &[u8], expected: usize) -> Result<Vec<u8>, &'static str> {
    const BAD: &str = "corrupt fastlz stream";
    if input.is_empty() {
        return if expected == 0 {
            Ok(Vec::new())
        } else {
            Err(BAD)
        };
    }
    let level = (input[0] >> 5) + 1;
    if level > 2 {
        return Err("unknown fastlz level");
    }
    let mut out: Vec<u8> = Vec::with_capacity(expected);
    let mut ip = 1;
    let mut ctrl = usize::from(input[0] & 31);
    loop {
        if ctrl >= 32 {
            let mut len = (ctrl >> 5) - 1;
            let mut ofs = (ctrl & 31) << 8;
            if len == 6 {
                if level == 1 {
                    len += usize::from(*input.get(ip).ok_or(BAD)?);
                    ip += 1;
                } else {
                    loop {
                        let code = *input.get(ip).ok_or(BAD)?;
                        ip += 1;
                        len += usize::from(code);
                        if code != 255 {
                            break;
                        }
                    }
                }
            }
            let code = usize::from(*input.get(ip).ok_or(BAD)?);
            ip += 1;
            let mut back = ofs + code + 1;
            if level == 2 && code == 255 && ofs == (31 << 8) {
                let hi = usize::from(*input.get(ip).ok_or(BAD)?);
                let lo = usize::from(*input.get(ip + 1).ok_or(BAD)?);
                ip += 2;
                ofs = (hi << 8) + lo;
                back = ofs + MAX_L2_DISTANCE + 1;
            }
            len += 3;
            if back > out.len() || out.len() + len > expected {
                return Err(BAD);
            }
            let start = out.len() - back;
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        } else {
            let run = ctrl + 1;
            let lit = input.get(ip..ip + run).ok_or(BAD)?;
            if out.len() + run > expected {
                return Err(BAD);
            }
            out.extend_from_slice(lit);
            ip += run;
        }
        if ip >= input.len() {
            break;
        }
        ctrl = usize::from(input[ip]);
        ip += 1;
    }
    if out.len() != expected {
        return Err("fastlz length mismatch");
    }
    Ok(out)
}
