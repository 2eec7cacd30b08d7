"""cffi build script (API mode, out-of-line) for ``x0x._x0x_cffi``.

The cdef is the committed, cbindgen-generated ``include/x0x.h`` with its preprocessor lines
removed, so Python sees exactly the C ABI. Because this is API mode, the C compiler checks the
cdef against the real header: a drifted signature is a build error, not a silent ABI mismatch.
``setup.py`` links the Rust static library in (``extra_objects``) once cargo has built it.
"""

import os
import re
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent
HEADER = ROOT / "include" / "x0x.h"
_INT_DEFINE = re.compile(r"#\s*define\s+[A-Za-z_]\w*\s+\(?-?(0x[0-9a-fA-F]+|\d+)[uUlL]*\)?\s*$")

# The one callback into Python: log records (python/x0x/_logs.py). Async operations report
# to a completion queue's file descriptor instead (python/x0x/_ffi.py).
CDEF_EXTRA = """
extern "Python" void _x0x_on_log(void *user_data, int32_t level, const char *target,
                                 const char *message);
"""


def cdef_from_header(text: str) -> str:
    """The header minus preprocessor lines and ``__cplusplus`` blocks; int #defines stay."""
    out, skip = [], 0
    for line in text.splitlines():
        stripped = line.strip()
        if skip:
            skip += stripped.startswith("#if")
            skip -= stripped.startswith("#endif")
            continue
        if stripped.startswith("#"):
            if stripped.startswith("#if") and "__cplusplus" in stripped:
                skip = 1
            elif _INT_DEFINE.match(stripped):
                out.append(stripped)
            continue
        out.append(line)
    return "\n".join(out)


if sys.platform.startswith("linux"):
    # From `cargo rustc -- --print native-static-libs`; export only PyInit_* from the module.
    LIBRARIES = ["pthread", "dl", "m", "rt", "util"]
    LINK_ARGS = ["-Wl,--exclude-libs,ALL", "-Wl,--gc-sections"]
    if os.environ.get("X0X_ZIG_TARGET"):  # setup.py's manylinux mode, linked by zig cc
        LIBRARIES = [*LIBRARIES, "unwind"]  # else _Unwind_GetIP is undefined at import
        # zig rejects --exclude-libs, so a version script hides all but PyInit_*; -s strips.
        LINK_ARGS = [f"-Wl,--version-script={ROOT / 'x0x_cffi.map'}", "-Wl,--gc-sections", "-s"]
elif sys.platform == "darwin":
    LIBRARIES, LINK_ARGS = [], ["-framework", "CoreFoundation", "-framework", "Security"]
else:
    LIBRARIES, LINK_ARGS = ["ws2_32", "userenv", "ntdll", "bcrypt", "advapi32"], []

ffi = FFI()
ffi.cdef(cdef_from_header(HEADER.read_text(encoding="utf-8")) + CDEF_EXTRA)
ffi.set_source(
    "x0x._x0x_cffi",
    '#include "x0x.h"',
    include_dirs=[str(ROOT / "include")],
    libraries=LIBRARIES,
    extra_link_args=LINK_ARGS,
)

if __name__ == "__main__":
    print(cdef_from_header(HEADER.read_text(encoding="utf-8")))
