"""The package's layout holds: core is pure, every package is installed, modules stay small.

Read from the source files and pyproject.toml with ``ast`` and ``tomllib``:
nothing is imported, so a broken rule is named with its file and line.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "llmrouter"
CORE = PACKAGE / "core"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIRS = {name: ROOT / folder for name, folder in SETUPTOOLS["package-dir"].items()}

# Standard-library modules core must not use all the same: its logic is synchronous and does no I/O.
NOT_FOR_CORE = frozenset({"asyncio", "socket", "subprocess", "threading", "concurrent", "selectors"})
# Reading a clock: core is told the time (an argument), it never asks for it.
CLOCKS = frozenset({"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns",
                    "process_time", "clock_gettime"})
DATE_CLOCKS = frozenset({"now", "utcnow", "today"})
MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 450


def _module_name(path: Path) -> str:
    """``llmrouter/core/dlq.py`` -> ``llmrouter.core.dlq``, through pyproject's package-dir mapping."""
    return _package_of(path.parent) + ("" if path.name == "__init__.py" else "." + path.stem)


def _package_of(folder: Path) -> str:
    """The import name of a source folder: the package-dir entry it lies in, plus the folders below it."""
    owners = [(name, base) for name, base in PACKAGE_DIRS.items() if folder == base or base in folder.parents]
    if not owners:
        raise AssertionError(f"{folder.relative_to(ROOT)} lies in no package-dir of pyproject.toml")
    name, base = max(owners, key=lambda owner: len(owner[1].parts))
    return ".".join([name, *folder.relative_to(base).parts])


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the module at ``path``."""
    return _imports_in(path.read_text(encoding="utf-8"), package=_package_of(path.parent))


def _imports_in(source: str, *, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, a module of ``package``: relative ones
    resolved, at any depth (function-level imports too). ``from a import b`` yields ``a.b`` (b may be a module)."""
    parts = package.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*parts[:len(parts) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base != "__future__" else base


def _is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names


def _foreign_imports(paths: list[Path], allowed: tuple[str, ...], *, banned: frozenset[str]) -> list[str]:
    """``path:line imports name`` of each import in ``paths`` that :func:`_is_foreign`."""
    return [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in paths for line, name in _imports(path)
            if _is_foreign(name, allowed, banned=banned)]


def _is_foreign(name: str, allowed: tuple[str, ...], *, banned: frozenset[str]) -> bool:
    """Neither within one of the ``allowed`` packages nor the standard library (less ``banned``)."""
    if any(_is_within(name, package) for package in allowed):
        return False
    return not _stdlib(name) or name.split(".")[0] in banned


def _core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _source_files() -> list[Path]:
    """Every module of the installed package: llmrouter/ and the folders package-dir maps into it."""
    folders = sorted(set(PACKAGE_DIRS.values()))
    return sorted({path for folder in folders for path in folder.rglob("*.py")})


def _package_folders() -> list[Path]:
    return sorted({init.parent for folder in set(PACKAGE_DIRS.values()) for init in folder.rglob("__init__.py")})


def test_core_imports_only_core_the_error_tree_and_the_standard_library():
    """llmrouter/core is pure logic: no faust, aiokafka, aiohttp, redis, pydantic, yaml, fastavro, nor any
    other llmrouter package (settings, wire, providers); and no asyncio, sockets, threads or subprocesses."""
    modules = _core_modules()
    assert len(modules) > 10, "llmrouter/core was not found where this test looks for it"
    foreign = _foreign_imports(modules, ("llmrouter.core", "llmrouter.errors"), banned=NOT_FOR_CORE)
    assert not foreign, "core imports outside core, the error tree and the standard library:\n" + "\n".join(foreign)


def test_the_error_tree_imports_only_the_standard_library():
    """llmrouter/errors.py is the root every module may import, so it imports nothing of the package or beyond."""
    foreign = _foreign_imports([PACKAGE / "errors.py"], (), banned=frozenset())
    assert not foreign, "errors.py imports beyond the standard library:\n" + "\n".join(foreign)


def test_core_reads_no_clock():
    """Core is told the time: no time.time()/monotonic()/perf_counter() and no datetime.now()/utcnow()/today(),
    called or handed on as a default clock (formatting a given timestamp, time.gmtime(t), is fine)."""
    found = []
    for path in _core_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner, attribute = node.value.id, node.attr
                if (owner == "time" and attribute in CLOCKS) or (owner in ("datetime", "date")
                                                                  and attribute in DATE_CLOCKS):
                    found.append(f"{where} reads the clock: {owner}.{attribute}")
            elif isinstance(node, ast.ImportFrom) and node.module == "time":
                found += [f"{where} imports the clock time.{a.name}" for a in node.names if a.name in CLOCKS]
    assert not found, "core reads a clock:\n" + "\n".join(found)


def test_every_package_folder_is_listed_in_pyproject_packages():
    """Each folder with an __init__.py under llmrouter/, agents/, topics/, tables/, schemas/ and infra/ is in
    [tool.setuptools] packages under its package-dir name, and each listed package exists. An editable
    install finds an unlisted package anyway, so only a wheel would miss it."""
    on_disk = {_package_of(folder) for folder in _package_folders()}
    listed = set(SETUPTOOLS["packages"])
    assert {"llmrouter", "llmrouter.core", "llmrouter.agents", "llmrouter.infra"} <= on_disk
    assert sorted(on_disk - listed) == [], "package folders missing from pyproject's packages"
    assert sorted(listed - on_disk) == [], "pyproject lists packages with no folder"


def test_every_folder_of_python_modules_is_a_package():
    """A folder holding modules but no __init__.py would be a namespace package setuptools leaves out."""
    holding = {path.parent for path in _source_files()}
    assert sorted(str(f.relative_to(ROOT)) for f in holding if not (f / "__init__.py").exists()) == []


def test_every_package_data_glob_matches_a_file():
    """Each [tool.setuptools.package-data] pattern ships at least one file (a pattern that matches nothing
    after a move silently ships nothing)."""
    empty = []
    for package, patterns in SETUPTOOLS["package-data"].items():
        assert package in SETUPTOOLS["packages"], f"package-data names {package}, which is not a listed package"
        folder = ROOT.joinpath(*_folder_parts(package))
        empty += [f"{package}: {pattern}" for pattern in patterns
                  if not any(path.is_file() for path in folder.glob(pattern))]
    assert empty == []


def _folder_parts(package: str) -> list[str]:
    """The source folder of ``package`` (relative to the repository) through package-dir."""
    owner = max((name for name in PACKAGE_DIRS if _is_within(package, name)), key=len)
    base = PACKAGE_DIRS[owner].relative_to(ROOT)
    return [*base.parts, *package[len(owner):].split(".")[1:]]


def test_llmrouter_holds_few_modules_at_its_top_level():
    """The package is grouped by role: at most eight modules sit directly in llmrouter/ (the app, the
    Router record, the error tree ...); the rest live in their folders."""
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_module_is_over_450_lines():
    """Modules stay small: none of the package (llmrouter/ and the folders installed into it) passes 450 lines."""
    long = {}
    for path in _source_files():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            long[str(path.relative_to(ROOT))] = lines
    assert not long, "modules over 450 lines:\n" + "\n".join(f"{path}: {n}" for path, n in sorted(long.items()))


def test_the_import_walk_resolves_relative_imports_and_names_what_core_may_not_use():
    """The checker itself: ``from .. import x`` in core resolves to llmrouter.x, ``from . import y`` to
    llmrouter.core.y, and asyncio, a third-party module and another llmrouter package are foreign while
    json, core and the error tree are not."""
    source = ("import json\nimport asyncio\nimport yaml\nfrom . import breaker\nfrom .. import wire\n"
              "def f():\n    from llmrouter.errors import ConfigError\n")
    names = [name for _, name in _imports_in(source, package="llmrouter.core")]
    assert names == ["json", "asyncio", "yaml", "llmrouter.core.breaker", "llmrouter.wire",
                     "llmrouter.errors.ConfigError"]
    foreign = [n for n in names if _is_foreign(n, ("llmrouter.core", "llmrouter.errors"), banned=NOT_FOR_CORE)]
    assert foreign == ["asyncio", "yaml", "llmrouter.wire"]
