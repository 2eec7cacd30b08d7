"""Builds the Rust static library with setuptools-rust, then the cffi module that links it.

Two setuptools-rust defaults do not fit a cffi extension, so two small command subclasses fix
them (see shared notes/ffi-build-recipe.md for the measurements behind this):
* ``build_rust`` would run after ``build_ext``; cffi's ``pre_run`` hook runs it first instead.
* ``build_rust`` would install the cdylib into the package; we keep ``libx0x.a`` to link instead.

``X0X_ZIG_TARGET`` (off by default) selects the manylinux wheel build of scripts/build_wheels.sh.
"""

import os
import platform
import re
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools_rust import Binding, RustExtension, build_rust

IS_CPYTHON = platform.python_implementation() == "CPython"
# e.g. x86_64-unknown-linux-gnu.2.17: cargo-zigbuild + zig cc build for that glibc, not the host's.
ZIG_TARGET = os.environ.get("X0X_ZIG_TARGET", "")


def cargo_version() -> str:
    """The [package] version in Cargo.toml: the one version of the crate, the C library and
    this package (pyproject.toml declares it dynamic)."""
    text = (Path(__file__).parent / "Cargo.toml").read_text(encoding="utf-8")
    # A regex, not tomllib: tomllib is 3.11+ and this package builds on Python 3.8.
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = package and re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
    if not found:
        raise RuntimeError("Cargo.toml: no version in its [package] section")
    return found.group(1)


class build_rust_staticlib(build_rust):  # noqa: N801 (setuptools command naming)
    """Cargo build that records libx0x.a instead of copying the cdylib into the package."""

    staticlib = None

    def finalize_options(self):
        super().finalize_options()
        if ZIG_TARGET:
            self.cargo, self.target = "cargo-zigbuild", ZIG_TARGET

    def _config_specific_rust_args(self, ext):
        # rustc --print cfg rejects the ".2.17" suffix; none of these (macOS, musl, wasm) apply.
        return ([], []) if ZIG_TARGET else super()._config_specific_rust_args(ext)

    def run(self):
        # setuptools-rust's own build_ext hook calls run() a second time; build once.
        if self.staticlib is None:
            super().run()

    def install_extension(self, ext, dylib_paths, build_artifact_dir):
        cdylib = Path(dylib_paths[0].path)
        name = "x0x.lib" if cdylib.suffix == ".dll" else "libx0x.a"
        self.staticlib = str(cdylib.with_name(name))


class build_ext_rust_first(build_ext):  # noqa: N801
    def pre_run(self, ext, ffi):
        """cffi hook, called before it compiles the module: build and link the Rust library."""
        self.run_command("build_rust")
        staticlib = self.get_finalized_command("build_rust").staticlib
        ext.extra_objects = [staticlib]
        ext.depends = [staticlib]

    def build_extensions(self):
        if ZIG_TARGET:
            # zig cc links against its glibc stubs; no LDSHARED, so no RUNPATH into this Python.
            arch, _vendor, rest = ZIG_TARGET.split("-", 2)
            # The zig cargo-zigbuild uses (scripts/build_wheels.sh: one for every interpreter).
            python = os.environ.get("CARGO_ZIGBUILD_PYTHON_PATH", sys.executable)
            zig = [python, "-m", "ziglang", "cc", "-target", f"{arch}-{rest}"]
            self.compiler.set_executables(
                compiler_so=zig + self.compiler.compiler_so[1:], linker_so=[*zig, "-shared"]
            )
        super().build_extensions()


setup(
    version=cargo_version(),
    rust_extensions=[
        RustExtension(
            "x0x._x0x_rust",  # placeholder name: the cdylib is never installed
            path="Cargo.toml",
            binding=Binding.NoBinding,
            args=["--crate-type", "cdylib,staticlib"],
            py_limited_api=False,
        )
    ],
    cffi_modules=["build_ffi.py:ffi"],
    cmdclass={"build_rust": build_rust_staticlib, "build_ext": build_ext_rust_first},
    # One cp38-abi3 wheel serves every CPython >= 3.8; PyPy gets its own tag.
    options={"bdist_wheel": {"py_limited_api": "cp38"}} if IS_CPYTHON else {},
    zip_safe=False,
)
