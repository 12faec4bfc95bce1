//! The panic boundary. Since Rust 1.81 a panic unwinding out of an `extern "C"` function aborts
//! the process, so every exported body runs inside [`ffi_panic_boundary!`], which catches the
//! panic and returns `FAE_RESULT_PANIC` (fallible functions) or NULL/0/false (infallible ones).

use std::any::Any;
use std::ffi::c_char;

use crate::result::fae_result;

/// What a function returns when a panic was caught.
pub(crate) trait PanicOrDefault {
    fn value() -> Self;
}

/// What a function returns when a required pointer parameter is NULL.
pub(crate) trait NullParameterOrDefault {
    /// True for `fae_result`: the NULL is reported through `fae_last_error_message`.
    /// Infallible getters return a default and leave the message alone.
    const REPORTS: bool = false;
    fn value() -> Self;
}

impl PanicOrDefault for fae_result {
    fn value() -> Self {
        fae_result::Panic
    }
}

impl NullParameterOrDefault for fae_result {
    const REPORTS: bool = true;
    fn value() -> Self {
        fae_result::NullParameter
    }
}

macro_rules! defaults {
    ($($t:ty => $v:expr),* $(,)?) => {$(
        impl PanicOrDefault for $t {
            fn value() -> Self {
                $v
            }
        }
        impl NullParameterOrDefault for $t {
            fn value() -> Self {
                $v
            }
        }
    )*};
}

defaults! {
    () => (),
    bool => false,
    u32 => 0,
    u64 => 0,
    usize => 0,
    *const u8 => std::ptr::null(),
    *const c_char => std::ptr::null(),
}

/// Describe a panic payload for `fae_last_error_message`.
pub(crate) fn describe(payload: &(dyn Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("panic in libfae: {msg}")
}

/// Run `$body` (a block that returns `fae_result`) with panics caught. The thread's last error
/// message is cleared first and always describes an error code on the way out.
///
/// The closure is `AssertUnwindSafe`: after a panic we return an error and touch none of the
/// state the body was using, except shared core state that is itself panic-safe (atomics,
/// lock-free queues).
macro_rules! ffi_panic_boundary {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
            $crate::result::clear_last_error();
            let ret: $crate::result::fae_result = { $($body)* };
            ret
        })) {
            Ok(ret) => {
                $crate::result::ensure_last_error(ret);
                ret
            }
            Err(payload) => {
                $crate::result::set_last_error($crate::panic::describe(&*payload));
                $crate::panic::PanicOrDefault::value()
            }
        }
    };
}
pub(crate) use ffi_panic_boundary;

/// Like [`ffi_panic_boundary!`] but leaves the thread's last error message alone: for the
/// functions that read it, and for infallible getters that must not erase it.
macro_rules! ffi_panic_boundary_keep_error {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
            $($body)*
        })) {
            Ok(ret) => ret,
            Err(_) => $crate::panic::PanicOrDefault::value(),
        }
    };
}
pub(crate) use ffi_panic_boundary_keep_error;
