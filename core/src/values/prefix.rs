//! The key prefix, one rule for every binding.
//!
//! A client-wide prefix goes in front of every key sent to memcached. Whether the server is
//! then chosen by the prefixed key (`hashed`) or by the key as the caller gave it depends on
//! the client a binding stands in for:
//!
//! | client | option | hashed |
//! |---|---|---|
//! | php-memcached / libmemcached | `OPT_PREFIX_KEY` (libmemcached's namespace) | no, unless `OPT_HASH_WITH_PREFIX_KEY` |
//! | pymemcache, pylibmc | `key_prefix` | yes: they prepend it to the key before anything else |
//!
//! A server key (php-memcached's `*ByKey` methods) places the item instead of its key; the
//! prefix goes in front of it only when `hashed`.

use std::borrow::Cow;

/// A key prefix and whether placement hashes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPrefix {
    prefix: Vec<u8>,
    hashed: bool,
}

impl KeyPrefix {
    /// `prefix` in front of every key; `hashed`: placement hashes the prefixed key.
    pub fn new(prefix: impl Into<Vec<u8>>, hashed: bool) -> KeyPrefix {
        KeyPrefix {
            prefix: prefix.into(),
            hashed,
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Does placement hash the prefixed key?
    pub fn hashed(&self) -> bool {
        self.hashed
    }

    /// Replace the prefix, keeping `hashed`.
    pub fn set_prefix(&mut self, prefix: impl Into<Vec<u8>>) {
        self.prefix = prefix.into();
    }

    /// Set whether placement hashes the prefixed key.
    pub fn set_hashed(&mut self, hashed: bool) {
        self.hashed = hashed;
    }

    /// The key stored on the server: prefix ‖ key.
    pub fn stored(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    /// The bytes hashed to place an item whose key or server key is `by`.
    pub fn placing<'a>(&self, by: &'a [u8]) -> Cow<'a, [u8]> {
        if self.hashed && !self.prefix.is_empty() {
            Cow::Owned(self.stored(by))
        } else {
            Cow::Borrowed(by)
        }
    }

    /// The stored key for `key` and the key that places it: `server_key` if given, else `key`,
    /// each prefixed only when `hashed`.
    pub fn apply(&self, key: &[u8], server_key: Option<&[u8]>) -> PrefixedKey {
        let stored = self.stored(key);
        let place = match server_key {
            Some(s) => Some(self.placing(s).into_owned()),
            None if self.hashed || self.prefix.is_empty() => None,
            None => Some(key.to_vec()),
        };
        PrefixedKey { key: stored, place }
    }
}

/// A key as sent to memcached and the bytes that choose its server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixedKey {
    key: Vec<u8>,
    place: Option<Vec<u8>>,
}

impl PrefixedKey {
    /// The key sent to the server.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The bytes hashed to choose the server.
    pub fn place(&self) -> &[u8] {
        self.place.as_deref().unwrap_or(&self.key)
    }

    /// The placing bytes when they differ from the key (`None`: the key places itself).
    pub fn routing(&self) -> Option<&[u8]> {
        self.place.as_deref()
    }

    /// (stored key, placing bytes when they differ from the key).
    pub fn into_parts(self) -> (Vec<u8>, Option<Vec<u8>>) {
        (self.key, self.place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prefix_places_the_key_itself() {
        for hashed in [false, true] {
            let p = KeyPrefix::new(Vec::new(), hashed).apply(b"k", None);
            assert_eq!(
                (p.key(), p.place(), p.routing()),
                (&b"k"[..], &b"k"[..], None)
            );
        }
    }

    #[test]
    fn php_memcached_default_places_by_the_unprefixed_key() {
        let pfx = KeyPrefix::new(b"app:".to_vec(), false);
        let p = pfx.apply(b"k", None);
        assert_eq!((p.key(), p.place()), (&b"app:k"[..], &b"k"[..]));
        let p = pfx.apply(b"k", Some(b"user1"));
        assert_eq!((p.key(), p.place()), (&b"app:k"[..], &b"user1"[..]));
        assert_eq!(&*pfx.placing(b"user1"), b"user1");
    }

    #[test]
    fn hashed_prefix_places_by_the_prefixed_key() {
        let pfx = KeyPrefix::new(b"app:".to_vec(), true);
        let p = pfx.apply(b"k", None);
        assert_eq!(
            (p.key(), p.place(), p.routing()),
            (&b"app:k"[..], &b"app:k"[..], None)
        );
        let p = pfx.apply(b"k", Some(b"user1"));
        assert_eq!(
            p.into_parts(),
            (b"app:k".to_vec(), Some(b"app:user1".to_vec()))
        );
        assert_eq!(&*pfx.placing(b"user1"), b"app:user1");
    }
}
