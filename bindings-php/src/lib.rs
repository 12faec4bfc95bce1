//! The `fae` PHP extension: `Fae\Client` (php-memcached's `Memcached` API on libfae),
//! `Fae\SessionHandler` and `Fae\Exception`. Thin: values and options are converted here,
//! everything else is `fae-core`. See `bindings-php/README.md`.
#![cfg_attr(windows, feature(abi_vectorcall))]
// ext-php-rs' generated glue (class registration, arg parsing) trips these pedantic lints.
#![allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]

use ext_php_rs::prelude::*;

mod client;
#[allow(dead_code)] // the full RES_* table, as php-memcached defines it
mod codes;
mod compat;
mod convert;
mod logging;
mod php_ini;
mod session;
mod session_module;
mod state;
mod values;

pub use client::FaeClient;
pub use session::FaeSessionHandler;

/// `GET_PRESERVE_ORDER` / `GET_EXTENDED` get flags.
pub const GET_PRESERVE_ORDER: i64 = 1;
pub const GET_EXTENDED: i64 = 2;

/// `HAVE_IGBINARY` / `HAVE_MSGPACK` depend on other extensions, known only at run time.
#[php_function]
#[php(name = "Fae\\have_serializer")]
pub fn have_serializer(name: String) -> bool {
    match name.as_str() {
        "php" | "json" | "json_array" => true,
        "igbinary" => values::have_function("igbinary_serialize"),
        "msgpack" => values::have_function("msgpack_pack"),
        _ => false,
    }
}

/// The libfae version.
#[php_function]
#[php(name = "Fae\\version")]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// MINIT: the php.ini settings, then the session save handlers (`fae`, and `memcached` when
/// this extension provides php-memcached's classes). Nothing else happens at module load;
/// the classes are registered after this.
extern "C" fn module_startup(ty: i32, module_number: i32) -> i32 {
    logging::module_startup(ty, module_number);
    php_ini::register_ini(module_number);
    let provide = php_ini::wants_memcached_classes();
    if provide {
        let n = compat::register_module_alias().unwrap_or(module_number);
        php_ini::register_memcached_ini(n);
    }
    session_module::register(provide);
    0
}

#[php_module]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    module
        .name("fae")
        .startup_function(module_startup)
        .request_shutdown_function(logging::request_shutdown)
        .info_function(compat::module_info)
        .class::<FaeClient>()
        .class::<FaeSessionHandler>()
        .function(wrap_function!(have_serializer))
        .function(wrap_function!(version))
}
