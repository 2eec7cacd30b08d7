"""The public API (``x0x.__all__``): present, documented, fully annotated, and API.md current."""

import importlib.metadata
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import x0x

ROOT = Path(__file__).resolve().parents[2]
NAMES: List[str] = list(x0x.__all__)
OBJECTS: List[Tuple[str, object]] = [
    (name, getattr(x0x, name)) for name in NAMES if name != "__version__" and hasattr(x0x, name)
]
CLASSES: List[Tuple[str, type]] = [(n, o) for n, o in OBJECTS if isinstance(o, type)]
FUNCTIONS: List[Tuple[str, object]] = [(n, o) for n, o in OBJECTS if inspect.isfunction(o)]


def _ours(obj: object) -> bool:
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and (module == "x0x" or module.startswith("x0x."))


def _callables() -> Dict[str, Callable[..., Any]]:
    """Public functions, and the public methods, ``__init__`` and property getters that the
    package defines on public classes (inherited ones too), by qualified name."""
    found: Dict[str, Callable[..., Any]] = {}
    for name, function in FUNCTIONS:
        assert callable(function)
        found[name] = function
    for name, cls in CLASSES:
        for k in cls.__mro__:
            if not _ours(k):
                continue
            for attr, raw in vars(k).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if isinstance(raw, property):
                    function = raw.fget
                elif isinstance(raw, (classmethod, staticmethod)):
                    function = raw.__func__
                else:
                    function = raw
                # Skips generated members, e.g. NamedTuple field getters on PyPy.
                if inspect.isfunction(function) and _ours(function):
                    found.setdefault(f"{name}.{attr}", function)
    return found


CALLABLES = _callables()


def test_all_names_exist_once() -> None:
    missing = [name for name in NAMES if not hasattr(x0x, name)]
    assert not missing, f"in x0x.__all__ but not defined: {missing}"
    assert len(set(NAMES)) == len(NAMES), "x0x.__all__ has duplicates"


def test_public_names_were_found() -> None:
    assert CLASSES and FUNCTIONS and len(CALLABLES) > len(FUNCTIONS)


@pytest.mark.parametrize("name", [name for name, _ in CLASSES + FUNCTIONS])
def test_has_docstring(name: str) -> None:
    obj = getattr(x0x, name)
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else obj.__doc__
    assert isinstance(doc, str) and doc.strip(), f"x0x.{name} has no docstring"


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_fully_annotated(name: str) -> None:
    function = CALLABLES[name]
    signature = inspect.signature(function)
    unannotated = [
        param.name
        for index, param in enumerate(signature.parameters.values())
        if param.annotation is inspect.Parameter.empty
        and not (index == 0 and "." in name and param.name in ("self", "cls"))
    ]
    assert not unannotated, f"{name}: parameters without annotations: {unannotated}"
    assert signature.return_annotation is not inspect.Parameter.empty, (
        f"{name}: no return annotation"
    )


def test_exceptions_derive_from_x0x_error() -> None:
    exceptions = [cls for _, cls in CLASSES if issubclass(cls, BaseException)]
    assert x0x.X0xError in exceptions
    strays = [cls.__name__ for cls in exceptions if not issubclass(cls, x0x.X0xError)]
    assert not strays, f"exceptions not derived from X0xError: {strays}"


def test_the_version_is_cargo_tomls_everywhere() -> None:
    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8").split("\n[", 1)[0]  # [package]
    match = re.search(r'^version = "([^"]+)"', cargo, re.M)
    assert match, "Cargo.toml's [package] has no version"
    assert x0x.__version__ == match.group(1)
    assert importlib.metadata.version("agent-x0x") == x0x.__version__


def test_py_typed_is_installed() -> None:
    assert x0x.__file__ is not None
    assert (Path(x0x.__file__).parent / "py.typed").is_file()


def test_api_md_documents_every_public_name() -> None:
    text = (ROOT / "API.md").read_text(encoding="utf-8")
    missing = [name for name in NAMES if f"### `{name}`" not in text]
    assert not missing, f"API.md has no section for {missing}"


def test_api_md_is_current() -> None:
    # griffe is a dev tool (Python >= 3.11): the PyPy run skips this; make lint checks it too.
    pytest.importorskip("griffe")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "api_md.py"), "--check"],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stats_have_every_field_of_their_c_structs() -> None:
    from x0x._x0x_cffi import ffi

    for python, c in [(x0x.Stats, "X0xStats"), (x0x.TopicStats, "X0xTopicStats")]:
        c_fields = {name for name, _ in ffi.typeof(c).fields}
        assert set(python.__annotations__) == c_fields, c


def test_every_c_status_has_its_exception() -> None:
    from x0x._x0x_cffi import ffi, lib
    from x0x.errors import _BY_STATUS

    failures = {
        code: ffi.string(lib.x0x_status_str(code)).decode()
        for code in range(1, 64)
        if ffi.string(lib.x0x_status_str(code)) != b"UNKNOWN"
    }
    assert failures, "the library names its statuses"
    assert set(_BY_STATUS) == set(failures), failures
    for code, cls in _BY_STATUS.items():
        assert code == getattr(lib, f"X0X_{failures[code]}"), cls
