//! libfae through its C ABI (`bindings-c`, lib name `fae`), called from Rust exactly as a C
//! caller would: opaque handles, out-params, `fae_result` codes, a per-hit callback.

use std::ffi::c_void;
use std::ptr::{self, NonNull};

use fae::{fae_client, fae_config, fae_item, fae_result};

use crate::fae_rust::config_json;
use crate::subject::{Hits, Subject};

/// A `fae_client` built from the same JSON config as the Rust rows.
#[derive(Debug)]
pub struct FaeC {
    client: NonNull<fae_client>,
    label: String,
}

/// The text of the last error on this thread, with the code.
fn error_text(rc: fae_result) -> String {
    let mut buf = [0u8; 512];
    let mut n = 0usize;
    // SAFETY: `buf` is writable for its length and `n` is a valid out-param.
    let r =
        unsafe { fae::result::fae_last_error_message(buf.as_mut_ptr().cast(), buf.len(), &mut n) };
    let text = if r == fae_result::Ok {
        String::from_utf8_lossy(&buf[..n.min(buf.len())]).into_owned()
    } else {
        String::new()
    };
    format!("{rc:?}: {text}")
}

fn check(rc: fae_result, what: &str) -> Result<(), String> {
    if rc == fae_result::Ok {
        Ok(())
    } else {
        Err(format!("{what}: {}", error_text(rc)))
    }
}

impl FaeC {
    /// A client for `addrs` speaking `protocol`.
    pub fn new(addrs: &[String], protocol: &str) -> Result<Self, String> {
        let json = config_json(addrs, protocol);
        let mut config: *mut fae_config = ptr::null_mut();
        // SAFETY: `json` is readable for its length; `config` is a valid out-param.
        let rc =
            unsafe { fae::config::fae_config_from_json(json.as_ptr(), json.len(), &mut config) };
        check(rc, "fae_config_from_json")?;
        let mut client: *mut fae_client = ptr::null_mut();
        // SAFETY: `config` is the live config just created; `client` is a valid out-param.
        let rc = unsafe { fae::client::fae_client_new(config, &mut client) };
        // SAFETY: the config may be freed right after fae_client_new; freed once.
        unsafe { fae::config::fae_config_free(config) };
        check(rc, "fae_client_new")?;
        let client = NonNull::new(client).ok_or("fae_client_new: NULL client")?;
        Ok(FaeC {
            client,
            label: Self::label_for(protocol),
        })
    }

    /// The row label.
    pub fn label_for(protocol: &str) -> String {
        format!("libfae C ABI ({protocol})")
    }
}

impl Drop for FaeC {
    fn drop(&mut self) {
        // SAFETY: the client came from fae_client_new, no other thread uses it, freed once.
        unsafe { fae::client::fae_client_free(self.client.as_ptr()) };
    }
}

/// A hit from `fae_client_get`: the item handle and its borrowed value, freed with
/// `fae_item_free` on drop.
#[derive(Debug)]
pub struct CItem {
    item: NonNull<fae_item>,
    value: *const u8,
    len: usize,
}

impl AsRef<[u8]> for CItem {
    fn as_ref(&self) -> &[u8] {
        if self.value.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: `fae_item_value` returned this pointer and length; the bytes live as long as
        // the item, which this value owns.
        unsafe { std::slice::from_raw_parts(self.value, self.len) }
    }
}

impl Drop for CItem {
    fn drop(&mut self) {
        // SAFETY: the item came from fae_client_get and is freed once.
        unsafe { fae::item::fae_item_free(self.item.as_ptr()) };
    }
}

/// Hits of one `fae_client_get_multi`, copied out in the callback: `(index, value)`.
#[derive(Debug, Default)]
pub struct CMulti {
    hits: Vec<(usize, Vec<u8>)>,
}

/// The `fae_hit_callback`: copy the borrowed value into the `CMulti` behind `userdata`.
///
/// # Safety
/// `userdata` must be a `*mut CMulti` that is valid and not aliased for the call; `value` must
/// be readable for `value_len` bytes.
unsafe extern "C" fn collect_hit(
    userdata: *mut c_void,
    index: usize,
    _key: *const u8,
    _key_len: usize,
    value: *const u8,
    value_len: usize,
    _flags: u32,
    _cas: u64,
) {
    // SAFETY: per this function's contract (get_multi passes its own `&mut CMulti`).
    let out = unsafe { &mut *userdata.cast::<CMulti>() };
    let v = if value.is_null() || value_len == 0 {
        Vec::new()
    } else {
        // SAFETY: libfae lends `value_len` readable bytes for the duration of the call.
        unsafe { std::slice::from_raw_parts(value, value_len) }.to_vec()
    };
    out.hits.push((index, v));
}

impl Subject for FaeC {
    type Value = CItem;
    type Multi = CMulti;

    fn label(&self) -> String {
        self.label.clone()
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<CItem>, String> {
        let mut item: *mut fae_item = ptr::null_mut();
        // SAFETY: the client is live; `key` is readable for its length; `item` is a valid
        // out-param.
        let rc = unsafe {
            fae::client::fae_client_get(self.client.as_ptr(), key.as_ptr(), key.len(), &mut item)
        };
        match rc {
            fae_result::NotFound => Ok(None),
            fae_result::Ok => {
                let item = NonNull::new(item).ok_or("fae_client_get: OK with a NULL item")?;
                let mut len = 0usize;
                // SAFETY: `item` is the live item just returned; `len` is a valid out-param.
                let value = unsafe { fae::item::fae_item_value(item.as_ptr(), &mut len) };
                Ok(Some(CItem { item, value, len }))
            }
            rc => Err(format!("fae_client_get: {}", error_text(rc))),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        // SAFETY: the client is live; key and value are readable for their lengths.
        let rc = unsafe {
            fae::client::fae_client_set(
                self.client.as_ptr(),
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                0,
                0,
            )
        };
        check(rc, "fae_client_set")
    }

    fn get_multi(&mut self, keys: &[&[u8]]) -> Result<CMulti, String> {
        let ptrs: Vec<*const u8> = keys.iter().map(|k| k.as_ptr()).collect();
        let lens: Vec<usize> = keys.iter().map(|k| k.len()).collect();
        let mut out = CMulti {
            hits: Vec::with_capacity(keys.len()),
        };
        // SAFETY: the client is live; `ptrs`/`lens` hold `keys.len()` entries describing live
        // keys; `collect_hit` matches `fae_hit_callback` and gets `&mut out`, which outlives
        // the call and is not otherwise touched during it; `results_out` is NULL (optional).
        let rc = unsafe {
            fae::client::fae_client_get_multi(
                self.client.as_ptr(),
                ptrs.as_ptr(),
                lens.as_ptr(),
                keys.len(),
                Some(collect_hit),
                (&raw mut out).cast(),
                ptr::null_mut(),
            )
        };
        check(rc, "fae_client_get_multi")?;
        Ok(out)
    }

    fn multi_hits<'a>(&self, out: &'a CMulti, keys: &[&'a [u8]]) -> Result<Hits<'a>, String> {
        out.hits
            .iter()
            .map(|(i, v)| {
                keys.get(*i)
                    .map(|k| (*k, v.as_slice()))
                    .ok_or_else(|| format!("callback index {i} out of range"))
            })
            .collect()
    }
}
