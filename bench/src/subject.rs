//! What every client under test provides, the workloads, and the timed loops.
//!
//! Each workload runs the same keys and values for every client. Every result is checked (a get
//! must return the exact bytes stored); the check runs after the clock stops, so it is not
//! part of a call's latency.

use std::ops::Range;
use std::time::{Duration, Instant};

/// `(key, value)` pairs a multi-get returned.
pub type Hits<'a> = Vec<(&'a [u8], &'a [u8])>;

/// A client under test.
pub trait Subject {
    /// What a single get returns (owned; dropped after the clock stops).
    type Value: AsRef<[u8]>;
    /// What a multi-get returns.
    type Multi;
    /// The row label.
    fn label(&self) -> String;
    /// Get one key. `Ok(None)` on a miss.
    fn get(&mut self, key: &[u8]) -> Result<Option<Self::Value>, String>;
    /// Set one key (flags 0, no expiry).
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Get many keys in one call.
    fn get_multi(&mut self, keys: &[&[u8]]) -> Result<Self::Multi, String>;
    /// The hits in `out`, for verification (untimed). `keys` is what was asked for.
    fn multi_hits<'a>(&self, out: &'a Self::Multi, keys: &[&'a [u8]]) -> Result<Hits<'a>, String>;
}

/// The workloads, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Single get of a key that exists (100-byte value).
    Get,
    /// Single set (100-byte value).
    Set,
    /// One multi-get of 100 keys spread over the 4 servers.
    MultiGet,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 3] = [Workload::Get, Workload::Set, Workload::MultiGet];

    /// Index into per-workload arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Bytes per value in every workload.
pub const VALUE_SIZE: usize = 100;
/// Keys per multi-get.
pub const MULTI_KEYS: usize = 100;
/// Distinct keys the single-get workload cycles through.
const GET_KEYS: usize = 1000;
/// Distinct keys the set workload cycles through.
const SET_KEYS: usize = 1000;
/// Distinct 100-key sets the multi-get workload cycles through.
const MULTI_SETS: usize = 10;

/// A deterministic value of exactly [`VALUE_SIZE`] bytes, different for every `(kind, tag, i)`,
/// so a value from the wrong key or the wrong writer is caught.
fn value_for(kind: &str, tag: usize, i: usize) -> Vec<u8> {
    let mut v = format!("{kind}:{tag:02}:{i:06}:").into_bytes();
    let mut x = (i as u32).wrapping_mul(2_654_435_761) ^ (tag as u32);
    while v.len() < VALUE_SIZE {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        v.push(b'a' + (x >> 16) as u8 % 26);
    }
    v
}

/// The keys and values every client uses.
#[derive(Debug)]
pub struct Data {
    /// Single-get keys and their values (stored before timing).
    pub get: Vec<(Vec<u8>, Vec<u8>)>,
    /// Set keys.
    pub set_keys: Vec<Vec<u8>>,
    /// Set values per writer tag (one tag per client), so a cross-client read-back can tell
    /// which client's write landed.
    pub set_vals: Vec<Vec<Vec<u8>>>,
    /// Multi-get keys and values (stored before timing).
    pub multi: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Data {
    /// Keys and values for `writers` clients.
    pub fn new(writers: usize) -> Data {
        let get = (0..GET_KEYS)
            .map(|i| {
                (
                    format!("fae-bench:get:{i:05}").into_bytes(),
                    value_for("get", 0, i),
                )
            })
            .collect();
        let set_keys = (0..SET_KEYS)
            .map(|i| format!("fae-bench:set:{i:05}").into_bytes())
            .collect();
        let set_vals = (0..writers)
            .map(|t| (0..SET_KEYS).map(|i| value_for("set", t, i)).collect())
            .collect();
        let multi = (0..MULTI_SETS * MULTI_KEYS)
            .map(|i| {
                (
                    format!("fae-bench:multi:{i:05}").into_bytes(),
                    value_for("multi", 0, i),
                )
            })
            .collect();
        Data {
            get,
            set_keys,
            set_vals,
            multi,
        }
    }

    /// Every key the get workloads read, with its value.
    pub fn preload(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
        self.get.iter().chain(self.multi.iter())
    }

    /// The `j`-th 100-key set of the multi-get workload.
    pub fn multi_set(&self, j: usize) -> &[(Vec<u8>, Vec<u8>)] {
        let j = j % MULTI_SETS;
        &self.multi[j * MULTI_KEYS..(j + 1) * MULTI_KEYS]
    }

    /// The distinct set keys (indices into `set_keys`) a set run over `range` writes: call `i`
    /// writes key `i % set_keys.len()`.
    pub fn set_indices(&self, range: Range<usize>) -> impl Iterator<Item = usize> + use<> {
        let n = self.set_keys.len();
        let len = range.len().min(n);
        let start = range.start;
        (start..start + len).map(move |i| i % n)
    }
}

/// Latency samples and wall time of one client on one workload.
#[derive(Debug, Default)]
pub struct Record {
    /// One sample per call, nanoseconds.
    pub samples: Vec<u64>,
    /// Wall time of the timed loops (includes the untimed checks; used for ops/s).
    pub wall: Duration,
    /// CPU time this thread spent in the timed loops (user + system, includes the checks).
    pub cpu: Duration,
}

/// Wait for the next slot of a paced loop, one request per `every` from `*next`: after a
/// stall (a request that waited out a timeout) the loop goes on from now, without a burst of
/// catch-up requests.
pub(crate) fn pace(next: &mut Instant, every: Duration) {
    *next += every;
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
    } else {
        *next = now;
    }
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a Linux constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// A client that can run the workloads (object-safe; implemented for every [`Subject`]).
pub trait Runner {
    /// The row label.
    fn label(&self) -> String;
    /// Run calls `range` of workload `w`, writing as writer `tag`. With `rec`, every call is
    /// timed into it; without, this is warm-up. Every result is verified either way.
    fn run(
        &mut self,
        w: Workload,
        data: &Data,
        tag: usize,
        range: Range<usize>,
        rec: Option<&mut Record>,
    ) -> Result<(), String>;
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<S: Subject> Runner for S {
    fn label(&self) -> String {
        Subject::label(self)
    }

    fn run(
        &mut self,
        w: Workload,
        data: &Data,
        tag: usize,
        range: Range<usize>,
        mut rec: Option<&mut Record>,
    ) -> Result<(), String> {
        let label = Subject::label(self);
        let start = Instant::now();
        let cpu_start = thread_cpu();
        if let Some(r) = rec.as_deref_mut() {
            r.samples.reserve(range.len());
        }
        match w {
            Workload::Get => {
                for i in range {
                    let (key, want) = &data.get[i % data.get.len()];
                    let t0 = Instant::now();
                    let got = self.get(key);
                    let dt = t0.elapsed();
                    match got {
                        Ok(Some(v)) if v.as_ref() == want.as_slice() => {}
                        Ok(Some(v)) => {
                            return Err(format!(
                                "{label}: get {} returned {} wrong bytes",
                                String::from_utf8_lossy(key),
                                v.as_ref().len()
                            ));
                        }
                        Ok(None) => {
                            return Err(format!(
                                "{label}: get {} missed a stored key",
                                String::from_utf8_lossy(key)
                            ));
                        }
                        Err(e) => return Err(format!("{label}: get: {e}")),
                    }
                    if let Some(r) = rec.as_deref_mut() {
                        r.samples.push(ns(dt));
                    }
                }
            }
            Workload::Set => {
                for i in range {
                    let k = i % data.set_keys.len();
                    let key = &data.set_keys[k];
                    let value = &data.set_vals[tag][k];
                    let t0 = Instant::now();
                    let r = self.set(key, value);
                    let dt = t0.elapsed();
                    r.map_err(|e| format!("{label}: set: {e}"))?;
                    if let Some(r) = rec.as_deref_mut() {
                        r.samples.push(ns(dt));
                    }
                }
            }
            Workload::MultiGet => {
                let mut keys: Vec<&[u8]> = Vec::with_capacity(MULTI_KEYS);
                for i in range {
                    let set = data.multi_set(i);
                    keys.clear();
                    keys.extend(set.iter().map(|(k, _)| k.as_slice()));
                    let t0 = Instant::now();
                    let got = self.get_multi(&keys);
                    let dt = t0.elapsed();
                    let out = got.map_err(|e| format!("{label}: get_multi: {e}"))?;
                    let hits = self.multi_hits(&out, &keys)?;
                    verify_multi(&label, set, &hits)?;
                    if let Some(r) = rec.as_deref_mut() {
                        r.samples.push(ns(dt));
                    }
                }
            }
        }
        if let Some(r) = rec {
            r.wall += start.elapsed();
            r.cpu += thread_cpu().saturating_sub(cpu_start);
        }
        Ok(())
    }
}

/// Every requested key came back exactly once with its value, and nothing else came back.
fn verify_multi(label: &str, want: &[(Vec<u8>, Vec<u8>)], hits: &Hits<'_>) -> Result<(), String> {
    if hits.len() != want.len() {
        return Err(format!(
            "{label}: get_multi returned {} hits for {} stored keys",
            hits.len(),
            want.len()
        ));
    }
    let mut seen = vec![false; want.len()];
    for (k, v) in hits {
        let Some(i) = want.iter().position(|(wk, _)| wk.as_slice() == *k) else {
            return Err(format!(
                "{label}: get_multi returned a key that was not asked for: {}",
                String::from_utf8_lossy(k)
            ));
        };
        if seen[i] {
            return Err(format!(
                "{label}: get_multi returned {} twice",
                String::from_utf8_lossy(k)
            ));
        }
        seen[i] = true;
        if want[i].1.as_slice() != *v {
            return Err(format!(
                "{label}: get_multi returned wrong bytes for {}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_size_and_differ() {
        let a = value_for("set", 0, 7);
        let b = value_for("set", 1, 7);
        let c = value_for("set", 0, 8);
        assert_eq!(a.len(), VALUE_SIZE);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn set_indices_cover_each_key_once_per_pass() {
        let d = Data::new(1);
        let v: Vec<usize> = d.set_indices(995..1010).collect();
        assert_eq!(v.len(), 15);
        assert_eq!(v[0], 995);
        assert_eq!(v[5], 0);
    }
}
