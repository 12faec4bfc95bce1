//! Pointer plumbing: which Rust type hides behind each opaque handle, how it is owned, and the
//! `try_*!` macros that turn NULL pointers into `FAE_RESULT_NULL_PARAMETER` (or a NULL/0/false
//! default in infallible functions).
//!
//! Every handle type implements [`Castable`], naming its Rust type and its ownership marker
//! ([`OwnershipBox`], [`OwnershipArc`] or [`OwnershipRef`]). The helpers below are generic over
//! that marker, so freeing a `Box` handle with the `Arc` helper (or the reverse), or freeing a
//! handle libfae only lends, does not compile.

use std::sync::Arc;

use crate::panic::NullParameterOrDefault;

/// The handle is a `Box<RustType>` turned into a raw pointer: one owner, freed once.
#[derive(Debug)]
pub(crate) struct OwnershipBox;

/// The handle is an `Arc<RustType>` turned into a raw pointer: immutable and shareable.
#[derive(Debug)]
pub(crate) struct OwnershipArc;

/// The handle is a `&mut RustType` that libfae lends to a callback for the duration of the
/// call (`fae_value_sink`): C never owns it and there is no `_free`.
#[derive(Debug)]
pub(crate) struct OwnershipRef;

/// Marker for the three ownership kinds.
pub(crate) trait OwnershipMarker {}
impl OwnershipMarker for OwnershipBox {}
impl OwnershipMarker for OwnershipArc {}
impl OwnershipMarker for OwnershipRef {}

/// Ties an opaque C handle type to the Rust type it points to and to how that value is owned.
/// One implementation per handle: a type cannot be both `Box` and `Arc` owned.
pub(crate) trait Castable {
    /// [`OwnershipBox`] or [`OwnershipArc`].
    type Ownership: OwnershipMarker;
    /// The Rust value behind the handle.
    type RustType;
}

/// Implement [`Castable`] (and `Debug`) for an opaque C handle. The handle struct itself is
/// written out by hand (`pub struct fae_x { _private: [u8; 0] }`): cbindgen does not expand
/// macros, and must see it to emit `typedef struct fae_x fae_x;`.
macro_rules! opaque_handle {
    ($name:ident => $rust:ty, $ownership:ty) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        impl $crate::ffi::Castable for $name {
            type Ownership = $ownership;
            type RustType = $rust;
        }
    };
}
pub(crate) use opaque_handle;

/// Borrow the Rust value behind a handle of either ownership. `None` for NULL.
///
/// # Safety
/// A non-NULL `ptr` must come from [`arc_into_out`] or [`box_into_out`] for the same `C`, and
/// must not have been freed.
pub(crate) unsafe fn try_ref<'a, C: Castable>(ptr: *const C) -> Option<&'a C::RustType> {
    // SAFETY: per this function's contract the pointer is NULL or points to a live RustType
    // (the handle was made from Box/Arc::into_raw of exactly that type).
    unsafe { ptr.cast::<C::RustType>().as_ref() }
}

/// Lend `value` to C as a handle of type `C`, for as long as the borrow lasts (a callback's
/// argument). Only [`try_mut`] may turn it back into a reference.
pub(crate) fn lend_mut<C: Castable<Ownership = OwnershipRef>>(value: &mut C::RustType) -> *mut C {
    std::ptr::from_mut(value).cast::<C>()
}

/// Borrow mutably the Rust value behind a lent handle. `None` for NULL.
///
/// # Safety
/// A non-NULL `ptr` must come from [`lend_mut`] for the same `C`, and the borrow it was made
/// from must still be live and not otherwise in use.
pub(crate) unsafe fn try_mut<'a, C: Castable<Ownership = OwnershipRef>>(
    ptr: *mut C,
) -> Option<&'a mut C::RustType> {
    // SAFETY: per this function's contract the pointer is NULL or comes from lend_mut of a live
    // `&mut RustType` that nothing else uses while C holds the handle.
    unsafe { ptr.cast::<C::RustType>().as_mut() }
}

/// Hand a new `Arc` to C through an out-param.
pub(crate) fn arc_into_out<C: Castable<Ownership = OwnershipArc>>(
    out: &mut *mut C,
    value: C::RustType,
) {
    *out = Arc::into_raw(Arc::new(value)).cast_mut().cast::<C>();
}

/// Drop C's reference to an `Arc` handle. NULL is a no-op.
///
/// # Safety
/// A non-NULL `ptr` must come from [`arc_into_out`] for the same `C` and must not be freed again.
pub(crate) unsafe fn free_arc<C: Castable<Ownership = OwnershipArc>>(ptr: *const C) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: per the contract, `ptr` is the result of Arc::into_raw for C::RustType and this
    // is the one release of that reference.
    drop(unsafe { Arc::from_raw(ptr.cast::<C::RustType>()) });
}

/// Hand a new `Box` to C through an out-param.
pub(crate) fn box_into_out<C: Castable<Ownership = OwnershipBox>>(
    out: &mut *mut C,
    value: C::RustType,
) {
    *out = Box::into_raw(Box::new(value)).cast::<C>();
}

/// Free a `Box` handle. NULL is a no-op.
///
/// # Safety
/// A non-NULL `ptr` must come from [`box_into_out`] for the same `C` and must not be freed again.
pub(crate) unsafe fn free_box<C: Castable<Ownership = OwnershipBox>>(ptr: *mut C) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: per the contract, `ptr` is the result of Box::into_raw for C::RustType and this
    // is its only free.
    drop(unsafe { Box::from_raw(ptr.cast::<C::RustType>()) });
}

/// Turn a `*mut T` out-param into `&mut T`. `None` for NULL.
///
/// # Safety
/// A non-NULL `ptr` must be valid for writes of `T` for the duration of the call.
pub(crate) unsafe fn try_out<'a, T>(ptr: *mut T) -> Option<&'a mut T> {
    // SAFETY: per the contract, non-NULL means writable and exclusive for this call.
    unsafe { ptr.as_mut() }
}

/// Borrow `len` bytes at `ptr`. NULL with `len == 0` is the empty slice (C callers often pass
/// `NULL, 0` for "no bytes"); NULL with `len > 0` is `None`.
///
/// # Safety
/// A non-NULL `ptr` must be valid for reads of `len` elements for the duration of the call.
pub(crate) unsafe fn slice_from<'a, T>(ptr: *const T, len: usize) -> Option<&'a [T]> {
    if ptr.is_null() {
        return (len == 0).then_some(&[]);
    }
    // SAFETY: non-NULL and readable for `len` elements per the contract.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrow `len` bytes at `ptr`, where NULL is refused whatever the length (keys, arrays of
/// keys: a NULL there is always a caller bug).
///
/// # Safety
/// As [`slice_from`].
pub(crate) unsafe fn slice_from_nonnull<'a, T>(ptr: *const T, len: usize) -> Option<&'a [T]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: forwarded contract.
    unsafe { slice_from(ptr, len) }
}

/// Record which parameter was NULL, for `fae_last_error_message`, and return the
/// NULL_PARAMETER code or the infallible default.
#[cold]
pub(crate) fn null_parameter<R: NullParameterOrDefault>(name: &str) -> R {
    if R::REPORTS {
        crate::result::set_last_error(format!("{name} is NULL"));
    }
    R::value()
}

/// Borrow the value behind a handle, or return NULL_PARAMETER (or the default).
macro_rules! try_ref_from_ptr {
    ($var:ident) => {
        // SAFETY: the exported function's `# Safety` section requires handles to be NULL or
        // live pointers produced by this library.
        match unsafe { $crate::ffi::try_ref($var) } {
            Some(r) => r,
            None => return $crate::ffi::null_parameter(stringify!($var)),
        }
    };
}
pub(crate) use try_ref_from_ptr;

/// Borrow mutably the value behind a lent handle ([`OwnershipRef`]), or return NULL_PARAMETER.
macro_rules! try_mut_from_ptr {
    ($var:ident) => {
        // SAFETY: the exported function's `# Safety` section requires lent handles to be NULL
        // or the live pointer libfae passed to the running callback.
        match unsafe { $crate::ffi::try_mut($var) } {
            Some(r) => r,
            None => return $crate::ffi::null_parameter(stringify!($var)),
        }
    };
}
pub(crate) use try_mut_from_ptr;

/// Turn an out-param into `&mut T`, or return NULL_PARAMETER.
macro_rules! try_out_param {
    ($var:ident) => {
        // SAFETY: the exported function's `# Safety` section requires out-params to be NULL
        // or valid for writes.
        match unsafe { $crate::ffi::try_out($var) } {
            Some(r) => r,
            None => return $crate::ffi::null_parameter(stringify!($var)),
        }
    };
}
pub(crate) use try_out_param;

/// Borrow `(ptr, len)` as a slice; NULL is allowed only with `len == 0`.
macro_rules! try_slice {
    ($ptr:ident, $len:expr) => {
        // SAFETY: the exported function's `# Safety` section requires `ptr` to be NULL or
        // readable for `len` elements.
        match unsafe { $crate::ffi::slice_from($ptr, $len) } {
            Some(s) => s,
            None => return $crate::ffi::null_parameter(stringify!($ptr)),
        }
    };
}
pub(crate) use try_slice;

/// Borrow `(ptr, len)` as a slice; NULL is always refused.
macro_rules! try_slice_nonnull {
    ($ptr:ident, $len:expr) => {
        // SAFETY: the exported function's `# Safety` section requires `ptr` to be NULL or
        // readable for `len` elements.
        match unsafe { $crate::ffi::slice_from_nonnull($ptr, $len) } {
            Some(s) => s,
            None => return $crate::ffi::null_parameter(stringify!($ptr)),
        }
    };
}
pub(crate) use try_slice_nonnull;

/// Unwrap an `Option<extern fn>` callback, or return NULL_PARAMETER.
macro_rules! try_callback {
    ($var:ident) => {
        match $var {
            Some(f) => f,
            None => return $crate::ffi::null_parameter(stringify!($var)),
        }
    };
}
pub(crate) use try_callback;

/// Write `text` into the caller's `(buf, len)` and its length into `*out_n`. The text is not
/// NUL-terminated. If it does not fit, nothing is written to `buf`, `*out_n` is set to the
/// length needed and the result is `FAE_RESULT_INSUFFICIENT_SIZE` (the one case where an
/// out-param is written on failure, as `snprintf` does).
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub(crate) unsafe fn write_text(
    text: &str,
    buf: *mut std::ffi::c_char,
    len: usize,
    out_n: &mut usize,
) -> crate::result::fae_result {
    use crate::result::fae_result;
    if text.len() > len {
        *out_n = text.len();
        return fae_result::InsufficientSize;
    }
    if !text.is_empty() {
        // SAFETY: buf is writable for len >= text.len() bytes (contract), and a Rust &str
        // cannot overlap a buffer the caller owns mutably.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        }
    }
    *out_n = text.len();
    fae_result::Ok
}

/// [`write_text`], and a too-small buffer is reported through `fae_last_error_message`.
///
/// # Safety
/// As [`write_text`].
pub(crate) unsafe fn write_text_reporting(
    text: &str,
    buf: *mut std::ffi::c_char,
    len: usize,
    out_n: &mut usize,
) -> crate::result::fae_result {
    // SAFETY: forwarded contract.
    let r = unsafe { write_text(text, buf, len, out_n) };
    if r == crate::result::fae_result::InsufficientSize {
        crate::result::set_last_error(format!(
            "buffer of {len} bytes is too small; {} bytes are needed",
            text.len()
        ));
    }
    r
}
