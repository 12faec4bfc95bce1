//! The shared library's SONAME, `libfae.so.MAJOR`, and the same name in the build tree.
//!
//! A program linked with `-lfae` records the SONAME and asks the dynamic linker for
//! `libfae.so.0`, not `libfae.so`. Installed copies get it from `install.sh`; for programs
//! linked against the build tree (`-Ltarget/release -lfae`, the tests, the demo) this script
//! puts a `libfae.so.MAJOR -> libfae.so` symlink next to where cargo writes `libfae.so`. A
//! symlink may be made before its target exists, so it works on the first build.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    ) {
        return; // not ELF: no SONAME (macOS has install names)
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    let soname = format!("libfae.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // OUT_DIR is <target>/<profile>/build/fae-c-<hash>/out: the profile directory (where
    // libfae.so lands) is three levels up, its deps/ holds the copy tests link against.
    let out = std::env::var("OUT_DIR").expect("cargo sets it");
    let Some(profile) = Path::new(&out).ancestors().nth(3) else {
        return;
    };
    if !profile.join("build").is_dir() {
        println!("cargo:warning=unexpected OUT_DIR {out}: no {soname} symlink in the build tree");
        return;
    }
    for dir in [profile.to_path_buf(), profile.join("deps")] {
        let link = dir.join(&soname);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        if let Err(e) = std::os::unix::fs::symlink("libfae.so", &link) {
            println!("cargo:warning=cannot create {}: {e}", link.display());
        }
    }
}
