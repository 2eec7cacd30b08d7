//! include/x0x.h must be exactly what cbindgen generates from the sources.
//! Regenerate with `X0X_BLESS=1 cargo test --test header`.

#[test]
fn header_is_up_to_date() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let path = format!("{dir}/include/x0x.h");
    if std::env::var_os("X0X_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/x0x.h");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/x0x.h is stale; regenerate it with: X0X_BLESS=1 cargo test --test header"
    );
}

#[test]
fn header_version_macros_match_the_crate() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/x0x.h")).unwrap();
    for (name, value) in [
        ("X0X_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("X0X_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("X0X_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {name} {value}\n");
        assert!(header.contains(&line), "header lacks {line:?}");
    }
    let version = unsafe { std::ffi::CStr::from_ptr(x0x::ffi::x0x_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_macro_is_prefixed() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/x0x.h")).unwrap();
    for line in header.lines().filter(|l| l.starts_with("#define ")) {
        let name = line.split_whitespace().nth(1).unwrap();
        assert!(
            name.starts_with("X0X_"),
            "unprefixed macro in the C API: {line}"
        );
    }
}
