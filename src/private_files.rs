//! Where x0x creates what only its user may read (key files, the data dir, lock files): owner-only
//! permissions, set at creation so there is no moment when the file is open to others.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

// Owner-only creation needs Unix permissions; Windows would need ACLs, which are not written yet.
#[cfg(not(unix))]
compile_error!(
    "x0x builds on Unix (Linux, macOS) only: its key files are created owner-only with Unix \
     permissions (0600/0700), and the Windows equivalent (ACLs) is not implemented"
);

/// Creates directories (with their parents) readable by the owner only (0700).
pub(crate) fn dir_builder() -> DirBuilder {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder
}

/// Opens files that, when created, are readable and writable by the owner only (0600).
pub(crate) fn open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}
