//! `fae_item`: one value read by a get: bytes, flags and CAS token. Single owner; free it with
//! `fae_item_free`.

use fae_core::Item;

use crate::ffi::{OwnershipBox, free_box, opaque_handle, try_out_param, try_ref_from_ptr};
use crate::panic::ffi_panic_boundary_keep_error;

/// A value read from memcached: bytes, client flags and CAS token. Owned by the caller,
/// freed with `fae_item_free`. Reading it from several threads is fine; freeing it while
/// another thread reads it is not.
#[allow(non_camel_case_types)]
pub struct fae_item {
    _private: [u8; 0],
}

opaque_handle!(fae_item => Item, OwnershipBox);

/// Stands in for the data pointer of an empty value, so that it is never NULL or dangling.
static EMPTY: [u8; 1] = [0];

/// The value's bytes; their count goes to `*len_out`. The pointer is borrowed from `item`:
/// valid until `fae_item_free(item)`. Never NULL for a valid item, even when the value is empty.
/// Returns NULL (and leaves `*len_out` alone) if `item` or `len_out` is NULL.
///
/// # Safety
/// `item` must be NULL or a live item from this library; `len_out` must be NULL or valid for a
/// write of one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_item_value(item: *const fae_item, len_out: *mut usize) -> *const u8 {
    ffi_panic_boundary_keep_error! {
        let item = try_ref_from_ptr!(item);
        let len_out = try_out_param!(len_out);
        *len_out = item.value.len();
        if item.value.is_empty() {
            EMPTY.as_ptr()
        } else {
            item.value.as_ptr()
        }
    }
}

/// The client flags stored with the value (0 if `item` is NULL).
///
/// # Safety
/// `item` must be NULL or a live item from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_item_flags(item: *const fae_item) -> u32 {
    ffi_panic_boundary_keep_error! {
        try_ref_from_ptr!(item).flags
    }
}

/// The item's CAS token, for `fae_client_cas` (0 if `item` is NULL). `fae_client_gets` and
/// `fae_client_gats` always fill it; `get`/`gat` may leave it 0.
///
/// # Safety
/// `item` must be NULL or a live item from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_item_cas(item: *const fae_item) -> u64 {
    ffi_panic_boundary_keep_error! {
        try_ref_from_ptr!(item).cas
    }
}

/// Free an item and its bytes. NULL is accepted. Must not be called twice with the same pointer.
///
/// # Safety
/// `item` must be NULL or a pointer from a get function that has not been freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_item_free(item: *mut fae_item) {
    ffi_panic_boundary_keep_error! {
        // SAFETY: forwarded contract.
        unsafe { free_box(item) }
    }
}
