//! libfae through its Rust API (`fae_core::Client`).

use fae_core::{Client, Config, Item, Op};

use crate::subject::{Hits, Subject};

/// A `fae_core::Client` in the default `libmemcached` placement mode (KETAMA_WEIGHTED).
#[derive(Debug)]
pub struct FaeRust {
    client: Client,
    label: String,
}

impl FaeRust {
    /// A client for `addrs` speaking `protocol` (`"meta"` or `"text"`).
    pub fn new(addrs: &[String], protocol: &str) -> Result<Self, String> {
        let config = Config::from_json(&config_json(addrs, protocol))
            .map_err(|e| format!("libfae config: {e}"))?;
        let client = Client::new(&config).map_err(|e| format!("libfae client: {e}"))?;
        Ok(FaeRust {
            client,
            label: Self::label_for(protocol),
        })
    }

    /// The row label of a client speaking `protocol`.
    pub fn label_for(protocol: &str) -> String {
        format!("libfae Rust ({protocol})")
    }

    /// The server (`host:port`) libfae's placement picks for `key`.
    pub fn server_for(&self, key: &[u8]) -> Result<String, String> {
        let mut v = self
            .client
            .route_for(Op::Get, key)
            .map_err(|e| format!("route_for: {e}"))?;
        v.pop().ok_or_else(|| "route_for: no server".into())
    }
}

/// The JSON config every libfae row uses: the servers in the order libmemcached gets them, the
/// default mode (`libmemcached` = KETAMA_WEIGHTED) and `protocol`. A Unix socket path is given
/// with port 11211, the port libmemcached's `memcached_server_add(path, 0)` stores and hashes
/// (as php-memcached's `addServer`), so both place keys alike.
pub fn config_json(addrs: &[String], protocol: &str) -> String {
    let servers: Vec<String> = addrs
        .iter()
        .map(|a| {
            if a.starts_with('/') {
                format!("{{\"addr\": \"{a}\", \"port\": 11211}}")
            } else {
                format!("\"{a}\"")
            }
        })
        .collect();
    format!(
        "{{\"servers\": [{}], \"protocol\": \"{protocol}\"}}",
        servers.join(", ")
    )
}

impl Subject for FaeRust {
    type Value = Vec<u8>;
    type Multi = Vec<fae_core::Result<Option<Item>>>;

    fn label(&self) -> String {
        self.label.clone()
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.client.get(key) {
            Ok(item) => Ok(item.map(|i| i.value)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.client.set(key, value, 0, 0).map_err(|e| e.to_string())
    }

    fn get_multi(&mut self, keys: &[&[u8]]) -> Result<Self::Multi, String> {
        self.client.get_multi(keys).map_err(|e| e.to_string())
    }

    fn multi_hits<'a>(&self, out: &'a Self::Multi, keys: &[&'a [u8]]) -> Result<Hits<'a>, String> {
        if out.len() != keys.len() {
            return Err(format!(
                "get_multi returned {} results for {} keys",
                out.len(),
                keys.len()
            ));
        }
        let mut hits = Vec::with_capacity(keys.len());
        for (k, r) in keys.iter().zip(out) {
            match r {
                Ok(Some(item)) => hits.push((*k, item.value.as_slice())),
                Ok(None) => {}
                Err(e) => {
                    return Err(format!("get_multi: {}: {e}", String::from_utf8_lossy(k)));
                }
            }
        }
        Ok(hits)
    }
}
