//! Counters, declared once in a table: name, help. Names are public API (stats keys, log
//! fields); add rows, never rename them.
//!
//! Per destination: requests, errors by reason, breaker transitions, probes, heartbeats and
//! connection churn, plus gauges read at snapshot time (breaker state, open and idle
//! connections). [`crate::Client::stats`] returns a snapshot as JSON.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::error::Reason;

macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident: $help:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $(#[doc = $help] pub $field: AtomicU64,)*
        }

        impl $name {
            /// Every counter: (name, help).
            pub const TABLE: &'static [(&'static str, &'static str)] = &[$((stringify!($field), $help),)*];

            /// Every counter's current value, in table order.
            pub fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Counters of one destination (one server address).
    pub struct DestCounters {
        requests: "requests sent (single-key and per-server parts of multi-key calls)",
        tko_rejected: "requests failed fast with `tko` because the breaker was open",
        breaker_opened: "closed -> open transitions",
        breaker_half_opened: "open -> half-open transitions (a probe succeeded)",
        breaker_closed: "half-open -> closed transitions (the trial requests succeeded)",
        breaker_reopened: "half-open -> open transitions (a trial request failed)",
        fail_open: "failures that would have opened the breaker while the pool was failing open",
        probes_ok: "breaker probes that succeeded",
        probes_failed: "breaker probes that failed",
        heartbeats_ok: "idle-connection heartbeats answered",
        heartbeats_failed: "idle-connection heartbeats that failed (the connection was discarded)",
        connections_opened: "connections dialled and validated",
        connections_failed: "dials or validations that failed",
        connections_discarded: "connections closed after an error or a timeout mid-reply",
        connections_recycled: "idle connections closed for max_idle or max_age",
        ejected_lookups: "keys routed away from this destination while it was ejected",
    }
}

/// Errors by reason, indexed by [`Reason::ALL`].
#[derive(Debug, Default)]
pub struct ErrorCounters([AtomicU64; Reason::ALL.len()]);

impl ErrorCounters {
    /// Count one error.
    pub fn add(&self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Non-zero counts as a JSON object keyed by reason name.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (r, c) in Reason::ALL.iter().zip(&self.0) {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                m.insert(r.as_str().to_string(), json!(n));
            }
        }
        Value::Object(m)
    }

    /// The count for one reason.
    pub fn get(&self, reason: Reason) -> u64 {
        Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Add one to a counter.
#[inline]
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_counter_once() {
        let names: std::collections::HashSet<_> =
            DestCounters::TABLE.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), DestCounters::TABLE.len());
        let c = DestCounters::default();
        inc(&c.requests);
        assert_eq!(c.values()[0], ("requests", 1));
    }

    #[test]
    fn errors_by_reason() {
        let e = ErrorCounters::default();
        e.add(Reason::Timeout);
        e.add(Reason::Timeout);
        assert_eq!(e.to_json(), json!({"timeout": 2}));
        assert_eq!(e.get(Reason::Timeout), 2);
    }
}
