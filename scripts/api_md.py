#!/usr/bin/env python3
"""Writes API.md, the Markdown reference of ``x0x.__all__``, from the package's source.

    python scripts/api_md.py           # (re)write API.md (make docs)
    python scripts/api_md.py --check   # exit 1 if API.md is not what it would write (make lint)

Why griffe: pdoc, which builds the HTML site (``make docs``), has no Markdown output, and it
renders signatures from the imported objects, whose text can vary with the Python version.
griffe, the maintained loader behind mkdocstrings, reads the source statically: the
signatures are the source's own text, the same on every Python and machine, and nothing is
imported (no built extension needed). What is left here is the layout. griffe 2 needs Python
3.11 (the lint's). Docstring coverage is interrogate's job (``make lint``).
"""

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import griffe

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "API.md"
REGENERATE = "make docs"
GROUPS = ("Classes", "Exceptions", "Functions", "Constants and types")

Member = Union[griffe.Object, griffe.Alias]


def target(obj: Member) -> griffe.Object:
    """What a name stands for: re-exports and inherited members are griffe aliases."""
    return obj.final_target if isinstance(obj, griffe.Alias) else obj


def markdown(obj: griffe.Object) -> str:
    """The docstring as Markdown (reST ``literals`` become `code`), or "" if there is none."""
    return obj.docstring.value.replace("``", "`") if obj.docstring else ""


def block(code: str, doc: str = "") -> str:
    """A Python code block, then the text that documents it."""
    return f"```python\n{code}\n```\n\n" + (f"{doc}\n\n" if doc else "")


def annotations(obj: griffe.Object) -> Iterable[Union[str, griffe.Expr, None]]:
    """The annotations of a function's parameters and return, or an attribute's annotation."""
    if isinstance(obj, griffe.Function):
        return [*(p.annotation for p in obj.parameters), obj.returns]
    return [obj.annotation] if isinstance(obj, griffe.Attribute) else []


def function_code(function: griffe.Function, name: str) -> str:
    """``def name(self, ...) -> T`` with its decorator and ``async``."""
    decorator = next(
        (f"@{label}\n" for label in ("staticmethod", "classmethod") if label in function.labels), ""
    )
    keyword = "async def" if "async" in function.labels else "def"
    signature = function.signature(name=name)
    first = next(iter(function.parameters), None)
    if function.parent and function.parent.is_class and first and first.name in ("self", "cls"):
        head, rest = signature.split("(", 1)  # griffe leaves the receiver out; methods show it
        signature = f"{head}({first.name}" + (rest if rest.startswith(")") else f", {rest}")
    return f"{decorator}{keyword} {signature}"


def attribute_code(attribute: griffe.Attribute, name: str) -> str:
    """``name: T = value``, as much of it as the source says; properties say so."""
    code = name + (f": {attribute.annotation}" if attribute.annotation else "")
    if "property" in attribute.labels:
        return code + (
            "  # property" if "writable" in attribute.labels else "  # read-only property"
        )
    # An instance attribute's value is code in a method (often a parameter's name): left out.
    instance_only = (
        "instance-attribute" in attribute.labels and "class-attribute" not in attribute.labels
    )
    return code + (
        f" = {attribute.value}" if attribute.value is not None and not instance_only else ""
    )


class Writer:
    """Renders the sections and remembers the package's unexported types they mention."""

    def __init__(self, package: griffe.Module) -> None:
        self.package = package
        self.exports: List[str] = [str(name) for name in package.exports or []]
        self.mentioned: Set[str] = set()

    def mention(self, obj: griffe.Object) -> None:
        """Notes the package's module-level names (type aliases) in ``obj``'s annotations."""
        for annotation in annotations(obj):
            if not isinstance(annotation, griffe.Expr):
                continue
            for name in annotation.iterate(flat=True):
                if not isinstance(name, griffe.ExprName) or name.name in self.exports:
                    continue
                path = name.canonical_path
                found = (
                    self.package.modules_collection.get_member(path)
                    if path.startswith("x0x.")
                    else None
                )
                if isinstance(found, griffe.Attribute) and found.parent and found.parent.is_module:
                    self.mentioned.add(path)

    def member(self, obj: Member, name: str) -> str:
        """One function or attribute: its code, then its docstring."""
        found = target(obj)
        self.mention(found)
        if isinstance(found, griffe.Function):
            return block(function_code(found, name), markdown(found))
        assert isinstance(found, griffe.Attribute), found
        return block(attribute_code(found, name), markdown(found))

    def class_section(self, cls: griffe.Class) -> str:
        """The class line, its docstring, its constructor and its public members (own first)."""
        bases = ", ".join(str(base) for base in cls.bases)
        out = [block(f"class {cls.name}" + (f"({bases})" if bases else ""), markdown(cls))]
        out.append(f"Defined in `{cls.module.path}`.\n\n")
        members = {
            **cls.members,
            **{k: v for k, v in cls.inherited_members.items() if k not in cls.members},
        }
        special = []
        for name, obj in members.items():
            if name == "__init__":
                out.insert(2, self.member(obj, "__init__"))
            elif name.startswith("__") and name.endswith("__") and target(obj).is_function:
                special.append(f"`{name}`")
            elif not name.startswith("_"):
                out.append(self.member(obj, name))
        if special:
            out.append(f"Special methods: {', '.join(special)}.\n\n")
        return "".join(out)

    def section(self, name: str) -> str:
        found = target(self.package[name])
        if isinstance(found, griffe.Class):
            return self.class_section(found)
        return self.member(found, name)

    def group(self, name: str) -> str:
        found = target(self.package[name])
        if not isinstance(found, griffe.Class):
            return "Functions" if found.is_function else "Constants and types"
        lineage = [found, *found.mro()]
        is_exception = any(
            str(base) in ("Exception", "BaseException") for k in lineage for base in k.bases
        )
        return "Exceptions" if is_exception else "Classes"

    def order(self, name: str) -> Tuple[int, int, int]:
        """Group, then ``__all__`` order; exceptions after the ones they derive from."""
        group, found = self.group(name), target(self.package[name])
        depth = len(found.mro()) if group == "Exceptions" and isinstance(found, griffe.Class) else 0
        return GROUPS.index(group), depth, self.exports.index(name)

    def document(self) -> str:
        names = sorted(self.exports, key=self.order)
        sections = {name: self.section(name) for name in names}
        extra: Dict[str, str] = {}
        while set(self.mentioned) - set(extra):  # an alias may mention another
            for path in sorted(set(self.mentioned) - set(extra)):
                alias = self.package.modules_collection.get_member(path)
                extra[path] = self.member(alias, alias.name)
        out = [
            "# x0x Python API\n\n",
            "<!-- Generated by scripts/api_md.py from the x0x package's source (griffe).\n"
            f"     Do not edit; regenerate with: {REGENERATE} -->\n\n",
            markdown(self.package) + "\n\n",
            "Every name below is importable from `x0x` (it is `x0x.__all__`). `async def` methods\n"
            "are coroutines: await them in a running asyncio event loop or trio run (or\n"
            "anyio on either backend).\n\n",
            "## Contents\n\n",
        ]
        headings = [
            (group, [name for name in names if self.group(name) == group]) for group in GROUPS
        ]
        extra_paths = sorted(extra, key=lambda path: path.rsplit(".", 1)[1].lstrip("_").lower())
        headings.append(
            ("Other types in signatures", [path.rsplit(".", 1)[1] for path in extra_paths])
        )
        for heading, items in headings:
            links = ", ".join(f"[`{item}`](#{anchor(item)})" for item in items)
            out.append(f"- [{heading}](#{anchor(heading)}): {links}\n")
        out.append("\n")
        for heading, items in headings[:-1]:
            out.append(f"## {heading}\n\n")
            out.extend(f"### `{name}`\n\n{sections[name]}" for name in items)
        out.append("## Other types in signatures\n\n")
        for path in extra_paths:
            out.append(
                f"### `{path.rsplit('.', 1)[1]}`\n\nIn `{path.rsplit('.', 1)[0]}`.\n\n{extra[path]}"
            )
        return re.sub(r"\n{3,}", "\n\n", "".join(out)).rstrip("\n") + "\n"


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def generate() -> str:
    """API.md's text."""
    package = griffe.load(
        "x0x", search_paths=[ROOT / "python"], allow_inspection=False, resolve_aliases=True
    )
    assert isinstance(package, griffe.Module), package
    return Writer(package).document()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if API.md is stale")
    args = parser.parse_args(argv)
    text = generate()
    if not args.check:
        OUTPUT.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {OUTPUT.name}")
        return 0
    current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
    if current == text:
        print("API.md is up to date")
        return 0
    diff = list(
        difflib.unified_diff(
            current.splitlines(), text.splitlines(), "API.md", "generated", lineterm=""
        )
    )
    print(
        "\n".join(
            diff[:40] + ([f"... ({len(diff) - 40} more diff lines)"] if len(diff) > 40 else [])
        )
    )
    print(f"API.md is stale; run: {REGENERATE}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
