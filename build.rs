//! Gives the shared library a versioned SONAME (Linux), so programs linked against libx0x.so
//! record `libx0x.so.0` — the ABI's major version — and keep working across compatible updates.
//! scripts/install.sh installs the matching `libx0x.so.0` and `libx0x.so` links.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libx0x.so.{major}");
    }
}
