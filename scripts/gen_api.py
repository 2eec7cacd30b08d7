#!/usr/bin/env python3
"""Generates API.md from the docstrings and signatures of x0x's public Python API.

    python scripts/gen_api.py                      # (re)write API.md
    python scripts/gen_api.py --check              # exit 1 if API.md is not what it generates
    python scripts/gen_api.py --coverage [--min N] # docstring coverage; exit 1 below N percent

The public API is ``x0x.__all__``. The output depends only on the package's source, not on the
Python version or the machine: annotations are rendered by this script (not by ``repr``), in
the style of the source (``Optional[X]``, ``List[X]``), so CPython 3.8+ and PyPy agree.
Attribute, field, enum member and type alias docs are the string literals that follow the
assignment in the source (the Sphinx convention), read with ``ast``.
"""

import argparse
import ast
import builtins
import collections
import difflib
import enum
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "API.md"
REGENERATE = "python scripts/gen_api.py"

try:
    import x0x
except ImportError:  # not installed: use the source tree (with its built extension)
    sys.path.insert(0, str(ROOT / "python"))
    import x0x

PACKAGE = "x0x"
WRAP = 88  # signatures longer than this get one parameter per line
EMPTY = inspect.Parameter.empty

# Generic origins rendered with their ``typing`` names, as the source spells them.
TYPING_NAMES: Dict[object, str] = {
    list: "List",
    dict: "Dict",
    tuple: "Tuple",
    set: "Set",
    frozenset: "FrozenSet",
    type: "Type",
    collections.deque: "Deque",
    collections.defaultdict: "DefaultDict",
    collections.OrderedDict: "OrderedDict",
}

# Special methods worth telling a user about, and what they let one write.
PROTOCOLS: Sequence[Tuple[str, str]] = (
    ("__aenter__", "`async with`"),
    ("__aiter__", "`async for`"),
    ("__iter__", "`for`"),
    ("__len__", "`len()`"),
    ("__bytes__", "`bytes()`"),
    ("__str__", "`str()`"),
    ("__eq__", "`==`"),
    ("__hash__", "`hash()`"),
)


# --------------------------------------------------------------------------------------------
# Attribute docs from the source


class SourceDocs:
    """The attribute docstrings of one module: module-level names and per top-level class."""

    def __init__(self, tree: Optional[ast.Module]) -> None:
        self.module: Dict[str, str] = {}
        self.classes: Dict[str, Dict[str, str]] = {}
        # Instance attributes assigned as ``self.name = param`` in a method: the parameter.
        self.self_params: Dict[str, Dict[str, Tuple[str, str]]] = {}
        if tree is None:
            return
        self.module = _attribute_docs(tree.body)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                docs = _attribute_docs(node.body)
                params: Dict[str, Tuple[str, str]] = {}
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        for name, doc in _attribute_docs(item.body, self_attrs=True).items():
                            docs.setdefault(name, doc)
                        params.update(_self_params(item))
                self.classes[node.name] = docs
                self.self_params[node.name] = params


def _assigned_names(node: ast.stmt, self_attrs: bool) -> List[str]:
    targets: List[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    names = []
    for target in targets:
        if isinstance(target, ast.Name) and not self_attrs:
            names.append(target.id)
        elif (
            self_attrs
            and isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            names.append(target.attr)
    return names


def _attribute_docs(body: Sequence[ast.stmt], self_attrs: bool = False) -> Dict[str, str]:
    docs: Dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            for name in _assigned_names(node, self_attrs):
                docs[name] = inspect.cleandoc(following.value.value)
    return docs


def _self_params(function: ast.stmt) -> Dict[str, Tuple[str, str]]:
    assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
    params = {arg.arg for arg in function.args.args + function.args.kwonlyargs}
    found: Dict[str, Tuple[str, str]] = {}
    for node in function.body:
        value = node.value if isinstance(node, ast.Assign) else None
        if isinstance(value, ast.Name) and value.id in params:
            for name in _assigned_names(node, self_attrs=True):
                found[name] = (function.name, value.id)
    return found


_SOURCE_DOCS: Dict[str, SourceDocs] = {}


def source_docs(module_name: str) -> SourceDocs:
    """The attribute docs of a module (parsed once; empty if its source is unavailable)."""
    if module_name not in _SOURCE_DOCS:
        tree = None
        module = sys.modules.get(module_name)
        try:
            path = inspect.getsourcefile(module) if module is not None else None
            if path is not None:
                tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        except (OSError, TypeError, SyntaxError):
            tree = None
        _SOURCE_DOCS[module_name] = SourceDocs(tree)
    return _SOURCE_DOCS[module_name]


def package_modules() -> List[str]:
    """The loaded modules of the package, sorted."""
    return sorted(name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + "."))


# --------------------------------------------------------------------------------------------
# Rendering annotations and values


def is_ours(obj: object) -> bool:
    """Whether ``obj`` (a class or function) is defined in the package."""
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and (module == PACKAGE or module.startswith(PACKAGE + "."))


def _aliases(namespace: Dict[str, Any]) -> List[Tuple[str, object]]:
    """Type aliases (subscripted generics, unions, literals) defined or imported in a module."""
    found = []
    for name in sorted(namespace):
        value = namespace[name]
        if getattr(typing, name, None) is value or typing.get_origin(value) is None:
            continue
        found.append((name, value))
    return found


class Renderer:
    """Renders annotations in one context: the module whose aliases apply, the owning class."""

    def __init__(self, namespace: Dict[str, Any], owner: Optional[type] = None) -> None:
        self.aliases = _aliases(namespace)
        self.owner = owner

    def annotation(self, tp: object, expand: bool = False) -> str:
        """``tp`` as the source would spell it; ``expand``: never replace it by its alias."""
        if not expand:
            for name, value in self.aliases:
                if _equal(value, tp):
                    if name not in PUBLIC_NAMES:
                        USED_ALIASES.setdefault(name, value)
                    return name
        if tp is None or tp is type(None):
            return "None"
        if tp is Ellipsis:
            return "..."
        if tp is typing.Any:
            return "Any"
        if isinstance(tp, str):
            return tp
        if isinstance(tp, typing.ForwardRef):
            return str(tp.__forward_arg__)
        if isinstance(tp, typing.TypeVar):
            return self._type_var(tp)
        if isinstance(tp, list):  # the parameter list of a Callable
            return "[" + ", ".join(self.annotation(arg) for arg in tp) + "]"
        origin = typing.get_origin(tp)
        if origin is not None:
            return self._generic(origin, typing.get_args(tp), tp)
        if isinstance(tp, type):
            return class_name(tp)
        return scrub(repr(tp))

    def _type_var(self, tp: "typing.TypeVar") -> str:
        # ``def f(cls: Type[T]) -> T`` with T bound to a base: on the class, T is the class.
        bound = tp.__bound__
        bound_name = bound.__forward_arg__ if isinstance(bound, typing.ForwardRef) else None
        if isinstance(bound, type):
            bound_name = bound.__qualname__
        mro = () if self.owner is None else self.owner.__mro__
        if bound_name is not None and bound_name in (k.__qualname__ for k in mro):
            return self.owner.__qualname__ if self.owner is not None else bound_name
        return str(tp.__name__)

    def _generic(self, origin: object, args: Tuple[Any, ...], tp: object) -> str:
        if origin is typing.Union:
            rest = [arg for arg in args if arg is not type(None)]
            inner = ", ".join(self.annotation(arg) for arg in rest)
            if len(rest) < len(args):
                return f"Optional[{inner}]" if len(rest) == 1 else f"Optional[Union[{inner}]]"
            return f"Union[{inner}]"
        if origin is typing.Literal:
            return "Literal[" + ", ".join(repr(arg) for arg in args) + "]"
        if origin in TYPING_NAMES:
            name = TYPING_NAMES[origin]
        elif isinstance(origin, type) and origin.__module__ in ("collections.abc", "typing"):
            name = origin.__name__
        elif isinstance(origin, type):
            name = class_name(origin)
        else:
            return scrub(repr(tp))
        if not args:
            return name
        return f"{name}[" + ", ".join(self.annotation(arg) for arg in args) + "]"


def _equal(a: object, b: object) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:
        return False


def class_name(cls: type) -> str:
    """How a class is named in the docs: bare for builtins and the package's own classes."""
    if cls.__module__ == "builtins" or is_ours(cls):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def scrub(text: str) -> str:
    """Removes memory addresses from a repr."""
    return re.sub(r" at 0x[0-9A-Fa-f]+", "", text)


def value_repr(value: object) -> str:
    """A default or constant value, as source would spell it."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    return scrub(repr(value))


def render_signature(
    name: str,
    function: Callable[..., Any],
    renderer: Renderer,
    prefix: str = "def ",
    first: str = "keep",
) -> str:
    """``def name(params) -> return`` from ``inspect.signature``, wrapped if long.

    ``first``: the first parameter (``self``, ``cls``) is shown as is (``"keep"``), without its
    annotation (``"bare"``) or not at all, nor the return type (``"drop"``: a constructor).
    """
    signature = inspect.signature(function)
    params: List[str] = []
    previous = None
    values = list(signature.parameters.values())
    for index, param in enumerate(values[1:] if first == "drop" else values):
        kind = param.kind
        if previous == inspect.Parameter.POSITIONAL_ONLY and kind != previous:
            params.append("/")
        if kind == inspect.Parameter.KEYWORD_ONLY and previous not in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            params.append("*")
        previous = kind
        text = param.name
        if kind == inspect.Parameter.VAR_POSITIONAL:
            text = "*" + text
        elif kind == inspect.Parameter.VAR_KEYWORD:
            text = "**" + text
        annotated = param.annotation is not EMPTY and not (first == "bare" and index == 0)
        if annotated:
            text += ": " + renderer.annotation(param.annotation)
        if param.default is not EMPTY:
            text += (" = " if annotated else "=") + value_repr(param.default)
        params.append(text)
    if previous == inspect.Parameter.POSITIONAL_ONLY:
        params.append("/")
    returns = ""
    if signature.return_annotation is not EMPTY and first != "drop":
        returns = " -> " + renderer.annotation(signature.return_annotation)
    return wrap(f"{prefix}{name}", params, returns)


def wrap(head: str, params: Sequence[str], tail: str = "") -> str:
    """``head(params)tail`` on one line, or one parameter per line if that is too long."""
    line = f"{head}({', '.join(params)}){tail}"
    if len(line) <= WRAP or not params:
        return line
    body = "".join(f"    {param},\n" for param in params)
    return f"{head}(\n{body}){tail}"


# --------------------------------------------------------------------------------------------
# Docstrings


def markdown(doc: str) -> str:
    """A docstring as Markdown: reST ``literals`` become `code`."""
    return doc.replace("``", "`")


def one_line(doc: str) -> str:
    """A docstring for a table cell."""
    return " ".join(markdown(doc).split()).replace("|", "\\|")


def own_doc(obj: object) -> str:
    """The object's own docstring, cleaned ("" if none)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def member_doc(function: object) -> str:
    """A function's docstring, or the one of the method it overrides."""
    return inspect.getdoc(function) or ""


# --------------------------------------------------------------------------------------------
# Classes


def ours_in_mro(cls: type) -> List[type]:
    """The classes of ``cls``'s MRO that the package defines, ``cls`` first."""
    return [k for k in cls.__mro__ if is_ours(k)]


def own_annotations(cls: type) -> Dict[str, Any]:
    """The annotations a class body declares itself."""
    get_annotations = getattr(inspect, "get_annotations", None)
    if get_annotations is not None:
        return dict(get_annotations(cls))
    # Python 3.8 and 3.9 have no inspect.get_annotations (nor, maybe, typing_extensions).
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    return dict(annotations) if isinstance(annotations, dict) else {}


def is_named_tuple(cls: type) -> bool:
    return issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple)


def is_typed_dict(cls: type) -> bool:
    return issubclass(cls, dict) and hasattr(cls, "__total__")


def class_kind(cls: type) -> str:
    if issubclass(cls, BaseException):
        return "exception"
    if issubclass(cls, enum.Enum):
        return "enum"
    if is_named_tuple(cls):
        return "named tuple"
    if is_typed_dict(cls):
        return "typed dict"
    return "class"


def attribute_doc(cls: type, name: str) -> str:
    """The source docstring of attribute ``name``, from the first class in the MRO with one."""
    for k in ours_in_mro(cls):
        doc = source_docs(k.__module__).classes.get(k.__qualname__, {}).get(name)
        if doc:
            return doc
    return ""


class Field(NamedTuple):
    """A named tuple field, typed dict key, enum member or attribute: one table row."""

    code: str
    doc: str


def fields(cls: type) -> List[Field]:
    """The fields of an enum, named tuple or typed dict, in definition order."""
    renderer = Renderer(vars(sys.modules[cls.__module__]))
    rows = []
    if issubclass(cls, enum.Enum):
        for name, member in cls.__members__.items():
            rows.append(Field(f"{name} = {value_repr(member.value)}", attribute_doc(cls, name)))
    elif is_named_tuple(cls) or is_typed_dict(cls):
        annotations: Dict[str, Any] = dict(getattr(cls, "__annotations__", {}))
        optional = getattr(cls, "__optional_keys__", None)
        if optional is None:  # Python 3.8
            optional = frozenset(annotations) if not getattr(cls, "__total__", True) else ()
        for name, tp in annotations.items():
            code = f"{name}: {renderer.annotation(tp)}"
            if is_typed_dict(cls) and name in optional:
                code += "  (optional)"
            rows.append(Field(code, attribute_doc(cls, name)))
    return rows


def field_names(cls: type) -> Set[str]:
    if issubclass(cls, enum.Enum):
        return set(cls.__members__)
    if is_named_tuple(cls) or is_typed_dict(cls):
        return set(getattr(cls, "__annotations__", {}))
    return set()


class Member(NamedTuple):
    """A public method, property or attribute of a documented class."""

    name: str
    kind: str  # "method", "property", "attribute"
    code: str  # its signature, or ``name: type = value``
    doc: str
    owner: type  # the class (in the MRO) that defines it


def members(cls: type) -> List[Member]:
    """The public members of ``cls`` defined by the package: own first, then inherited."""
    found: Dict[str, Member] = {}
    skip = field_names(cls)
    for k in ours_in_mro(cls):
        namespace = vars(sys.modules[k.__module__])
        renderer = Renderer(namespace, owner=cls)
        slots = k.__dict__.get("__slots__", ())
        slots = (slots,) if isinstance(slots, str) else tuple(slots)
        for name, raw in k.__dict__.items():
            if name.startswith("_") or name in skip or name in found:
                continue
            found[name] = _member(cls, k, name, raw, name in slots, renderer)
        # Instance attributes documented in a method body (``self.name = ...`` + docstring).
        docs = source_docs(k.__module__)
        for name in docs.classes.get(k.__qualname__, {}):
            if name.startswith("_") or name in skip or name in found or name in k.__dict__:
                continue
            if name in docs.self_params.get(k.__qualname__, {}):
                found[name] = _instance_attribute(cls, k, name, renderer)
    return list(found.values())


def _member(cls: type, k: type, name: str, raw: object, slot: bool, renderer: Renderer) -> Member:
    if isinstance(raw, property):
        getter = raw.fget
        returns = EMPTY if getter is None else inspect.signature(getter).return_annotation
        code = name if returns is EMPTY else f"{name}: {renderer.annotation(returns)}"
        access = "read-only" if raw.fset is None else "read-write"
        return Member(name, "property", f"{code}  # {access} property", member_doc(raw), k)
    if isinstance(raw, (classmethod, staticmethod)):
        function = raw.__func__
        decorator = "@classmethod\n" if isinstance(raw, classmethod) else "@staticmethod\n"
        prefix = decorator + ("async def " if inspect.iscoroutinefunction(function) else "def ")
        first = "bare" if isinstance(raw, classmethod) else "keep"
        code = render_signature(name, function, renderer, prefix, first)
        return Member(name, "method", code, member_doc(function), k)
    if inspect.isfunction(raw):
        prefix = "async def " if inspect.iscoroutinefunction(raw) else "def "
        code = render_signature(name, raw, renderer, prefix, "bare")
        return Member(name, "method", code, member_doc(raw), k)
    if slot:
        return _instance_attribute(cls, k, name, renderer)
    annotation = None
    for base in ours_in_mro(cls):
        annotation = own_annotations(base).get(name, annotation)
        if annotation is not None:
            break
    typed = "" if annotation is None else ": " + renderer.annotation(annotation)
    return Member(
        name, "attribute", f"{name}{typed} = {value_repr(raw)}", attribute_doc(cls, name), k
    )


def _instance_attribute(cls: type, k: type, name: str, renderer: Renderer) -> Member:
    code = name
    assigned = source_docs(k.__module__).self_params.get(k.__qualname__, {}).get(name)
    if assigned is not None:
        method, param = assigned
        function = k.__dict__.get(method)
        if inspect.isfunction(function):
            annotation = inspect.signature(function).parameters[param].annotation
            if annotation is not EMPTY:
                code += ": " + renderer.annotation(annotation)
    return Member(name, "attribute", code, attribute_doc(cls, name), k)


def constructor(cls: type) -> Tuple[str, str]:
    """The class line (``class Name(params)``) and the constructor's own docstring."""
    renderer = Renderer(vars(sys.modules[cls.__module__]), owner=cls)
    if issubclass(cls, enum.Enum) or is_typed_dict(cls):
        return f"class {cls.__qualname__}", ""
    if is_named_tuple(cls):
        return wrap(f"class {cls.__qualname__}", [field.code for field in fields(cls)]), ""
    for k in ours_in_mro(cls):
        init = k.__dict__.get("__init__")
        if inspect.isfunction(init):
            signature = render_signature(cls.__qualname__, init, renderer, "class ", "drop")
            return signature, own_doc(init)
    return f"class {cls.__qualname__}()", ""


def protocols(cls: type) -> List[str]:
    """What the class's special methods let a user write (``async with`` ...)."""
    defined: Dict[str, object] = {}
    for k in reversed(ours_in_mro(cls)):
        defined.update(k.__dict__)
    return [text for name, text in PROTOCOLS if defined.get(name) is not None]


def bases(cls: type) -> List[str]:
    """Every class an exception can be caught as, besides ``Exception`` and ``BaseException``.

    The package's classes in MRO order, then the others sorted: the MRO itself differs between
    Python versions (``asyncio.TimeoutError`` is the builtin ``TimeoutError`` from 3.11 on).
    """
    ours = [class_name(k) for k in cls.__mro__[1:] if is_ours(k)]
    others: Set[str] = set()
    for k in cls.__mro__[1:]:
        if is_ours(k) or k in (object, BaseException, Exception):
            continue
        for module, prefix in ((builtins, ""), (sys.modules.get("asyncio"), "asyncio.")):
            if module is not None and getattr(module, k.__name__, None) is k:
                others.add(prefix + k.__name__)
        if k.__module__ not in ("builtins",) and not k.__module__.startswith("asyncio"):
            others.add(class_name(k))
    return ours + sorted(others, key=lambda name: (name.count("."), name)) or ["Exception"]


# --------------------------------------------------------------------------------------------
# The document


class Section(NamedTuple):
    """One name of ``__all__``: its group, heading and Markdown body."""

    group: str
    name: str
    body: str
    # (qualified name, has docstring) of what it documents, for --coverage.
    coverage: List[Tuple[str, bool]]


GROUPS = (
    "Classes",
    "Data types",
    "Functions",
    "Types and constants",
    "Exceptions",
)

PUBLIC_NAMES: Set[str] = set(getattr(x0x, "__all__", ()))
USED_ALIASES: Dict[str, object] = {}


def code_block(text: str) -> str:
    return f"```python\n{text}\n```\n"


def table(header: str, rows: Sequence[Field]) -> str:
    lines = [f"| {header} | Description |", "| --- | --- |"]
    for row in rows:
        lines.append(f"| `{row.code}` | {one_line(row.doc)} |")
    return "\n".join(lines) + "\n"


def class_section(name: str, cls: type) -> Section:
    kind = class_kind(cls)
    group = {"exception": "Exceptions", "class": "Classes"}.get(kind, "Data types")
    doc = own_doc(cls)
    coverage = [(name, bool(doc))]
    line, init_doc = constructor(cls)
    parts = [code_block(line)]
    facts = [f"*{kind}* in `{cls.__module__}`"]
    if kind == "exception":
        facts.append("bases: " + ", ".join(f"`{base}`" for base in bases(cls)))
    elif kind == "typed dict":
        facts.append("a plain `dict` at run time")
    supported = protocols(cls) if kind == "class" else []
    if supported:
        facts.append("supports " + ", ".join(supported))
    parts.append("; ".join(facts) + ".\n")
    parts.append(markdown(doc) + "\n" if doc else "*(no docstring)*\n")
    if init_doc:
        parts.append("Constructor: " + markdown(init_doc) + "\n")
    rows = fields(cls)
    if rows:
        header = "Member" if issubclass(cls, enum.Enum) else "Field"
        parts.append(table(header, rows))
    shown: List[Member] = []
    inherited: Dict[str, List[str]] = {}
    for member in members(cls):
        owner = member.owner
        if owner is not cls and owner.__qualname__ in PUBLIC_NAMES:
            inherited.setdefault(owner.__qualname__, []).append(member.name)
        else:
            shown.append(member)
    attributes = [m for m in shown if m.kind == "attribute"]
    if attributes:
        parts.append(table("Attribute", [Field(m.code, m.doc) for m in attributes]))
    for member in shown:
        if member.kind == "attribute":
            continue
        parts.append(code_block(member.code))
        parts.append((markdown(member.doc) if member.doc else "*(no docstring)*") + "\n")
        coverage.append((f"{name}.{member.name}", bool(member.doc)))
    for base, names in inherited.items():
        listed = ", ".join(f"`{member}`" for member in names)
        parts.append(f"Inherited from [`{base}`](#{anchor(base)}): {listed}.\n")
    return Section(group, name, "\n".join(parts), coverage)


def function_section(name: str, function: Callable[..., Any]) -> Section:
    renderer = Renderer(getattr(function, "__globals__", {}))
    prefix = "async def " if inspect.iscoroutinefunction(function) else "def "
    doc = own_doc(function)
    parts = [
        code_block(render_signature(name, function, renderer, prefix)),
        f"*function* in `{function.__module__}`.\n",
        markdown(doc) + "\n" if doc else "*(no docstring)*\n",
    ]
    return Section("Functions", name, "\n".join(parts), [(name, bool(doc))])


def module_attribute_doc(name: str) -> str:
    """The source docstring of a module-level name, from the first package module with one."""
    for module in package_modules():
        doc = source_docs(module).module.get(name)
        if doc:
            return doc
    return ""


def data_section(name: str, value: object) -> Section:
    """A type alias (``EventName``) or a constant (``__version__``)."""
    doc = module_attribute_doc(name)
    if typing.get_origin(value) is not None:
        renderer = Renderer(vars(x0x))
        code = f"{name} = {renderer.annotation(value, expand=True)}"
        kind = "type alias"
    else:
        annotation = own_annotations_of_module(x0x).get(name)
        typed = (
            class_name(type(value)) if annotation is None else Renderer({}).annotation(annotation)
        )
        code = f"{name}: {typed}"
        kind = "constant"
    parts = [code_block(code), f"*{kind}*.\n", markdown(doc) + "\n" if doc else ""]
    return Section("Types and constants", name, "\n".join(p for p in parts if p), [])


def own_annotations_of_module(module: types.ModuleType) -> Dict[str, Any]:
    annotations = vars(module).get("__annotations__", {})
    return dict(annotations) if isinstance(annotations, dict) else {}


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def sections() -> List[Section]:
    """One section per name of ``x0x.__all__``, grouped, in ``__all__`` order within a group."""
    found: List[Section] = []
    for name in list(getattr(x0x, "__all__", ())):
        value = getattr(x0x, name)
        if isinstance(value, type):
            found.append(class_section(name, value))
        elif inspect.isfunction(value) or inspect.isbuiltin(value):
            found.append(function_section(name, value))
        else:
            found.append(data_section(name, value))
    order = list(getattr(x0x, "__all__", ()))

    def key(section: Section) -> Tuple[int, int, int]:
        value = getattr(x0x, section.name)
        # Exceptions: bases before the classes that derive from them.
        depth = len(ours_in_mro(value)) if section.group == "Exceptions" else 0
        return GROUPS.index(section.group), depth, order.index(section.name)

    return sorted(found, key=key)


def alias_sections() -> List[Section]:
    """The type aliases that signatures use but ``__all__`` does not export."""
    found = []
    done: Set[str] = set()
    while len(done) < len(USED_ALIASES):  # rendering an alias may use another
        for name in sorted(set(USED_ALIASES) - done):
            done.add(name)
            code = f"{name} = {Renderer({}).annotation(USED_ALIASES[name], expand=True)}"
            doc = module_attribute_doc(name)
            body = code_block(code) + "\n" + (markdown(doc) + "\n" if doc else "")
            found.append(Section("Other types in signatures", name, body, []))
    return sorted(found, key=lambda section: section.name)


INTRO = """\
Every name below is importable from `x0x` (it is `x0x.__all__`). `async def` methods are
coroutines: await them on a running asyncio event loop. Every exception x0x raises for a failed
native call derives from [`X0xError`](#x0xerror) and also from the built-in exception a Python
user would catch for that kind of failure. Type annotations are checked: the package ships
`py.typed`.
"""


def generate() -> str:
    """API.md's text."""
    USED_ALIASES.clear()
    main = sections()
    extra = alias_sections()
    package_doc = inspect.cleandoc(x0x.__doc__ or "")
    summary, _, rest = package_doc.partition("\n")
    out = [
        "# x0x Python API\n",
        "<!-- Generated by scripts/gen_api.py from the docstrings and signatures of the x0x "
        f"package. Do not edit; regenerate with: {REGENERATE} -->\n",
        markdown(summary) + "\n",
        markdown(rest.strip()) + "\n" if rest.strip() else "",
        INTRO,
        "## Contents\n",
    ]
    groups = [(group, [s for s in main if s.group == group]) for group in GROUPS]
    groups.append(("Other types in signatures", extra))
    groups = [(group, items) for group, items in groups if items]
    for group, items in groups:
        links = ", ".join(f"[`{s.name}`](#{anchor(s.name)})" for s in items)
        out.append(f"- [{group}](#{anchor(group)}): {links}")
    out[-1] += "\n"
    for group, items in groups:
        out.append(f"## {group}\n")
        for section in items:
            out.append(f"### `{section.name}`\n")
            out.append(section.body)
    text = "\n".join(part for part in out if part)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def coverage() -> Tuple[int, List[str]]:
    """(documented, missing names) over classes, functions, methods and properties."""
    documented, missing = 0, []
    for section in sections():
        for name, has_doc in section.coverage:
            if has_doc:
                documented += 1
            else:
                missing.append(name)
    return documented, missing


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if API.md is stale")
    mode.add_argument("--coverage", action="store_true", help="print the docstring coverage")
    parser.add_argument(
        "--min",
        type=float,
        default=95.0,
        metavar="PERCENT",
        help="with --coverage: exit 1 below this (default 95)",
    )
    args = parser.parse_args(argv)
    if args.coverage:
        documented, missing = coverage()
        total = documented + len(missing)
        percent = 100.0 * documented / total if total else 100.0
        print(
            f"docstring coverage: {percent:.1f}% ({documented}/{total} public classes, "
            "functions, methods and properties)"
        )
        if missing:
            print(f"missing docstrings ({len(missing)}):")
            for name in missing:
                print(f"  {name}")
        if percent < args.min:
            print(f"coverage {percent:.1f}% is below the minimum {args.min:g}%", file=sys.stderr)
            return 1
        return 0
    text = generate()
    if args.check:
        try:
            current = OUTPUT.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        if current != text:
            diff = list(
                difflib.unified_diff(
                    current.splitlines(),
                    text.splitlines(),
                    "API.md",
                    "API.md (generated)",
                    lineterm="",
                )
            )
            shown = diff[:40] + (
                [f"... ({len(diff) - 40} more diff lines)"] if len(diff) > 40 else []
            )
            print("\n".join(shown), file=sys.stderr)
            print(f"API.md is stale; run: {REGENERATE}", file=sys.stderr)
            return 1
        print("API.md is up to date")
        return 0
    with OUTPUT.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {OUTPUT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
