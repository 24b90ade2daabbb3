"""The package's shape, checked from its source: these fail when it knots again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meterstream
from meterstream._delivery import buffer as _buffer

PACKAGE = Path(meterstream.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """Every meterstream module *module* imports, anywhere in it (TYPE_CHECKING too)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    # A package's own submodules are not its dependencies' business: an edge
    # to the package itself would put every module in one cycle through
    # __init__, which imports them all.
    return {
        name
        for name in found
        if name in MODULES
        and name != module
        and not module.startswith(name + ".")
        and name != "meterstream"
    }


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle in *graph*, or [] when it has none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_the_package_import_graph_has_no_cycle_type_checking_imports_included() -> None:
    graph = {module: _imports(module) for module in MODULES}
    assert (
        "meterstream._record.decorators" in graph["meterstream._client.client"]
    )  # the walk sees imports
    assert _cycle(graph) == []


DECORATOR_MODULES = [
    "meterstream._record.call",
    "meterstream._record.decorators",
    "meterstream._record.metering",
    "meterstream._record.streams",
]


@pytest.mark.parametrize("module", DECORATOR_MODULES)
def test_the_decorators_do_not_import_the_client(module: str) -> None:
    assert not {"meterstream._client.client", "meterstream._default"} & _imports(module)


@pytest.mark.parametrize("module", DECORATOR_MODULES)
def test_the_decorators_touch_no_private_name_of_another_object(module: str) -> None:
    """They see the client through the Recorder protocol: public names only.

    Any ``x._name`` on something other than ``self`` counts, whatever the
    variable is called, so renaming ``client`` cannot hide one.
    """
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    private = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not (node.attr.startswith("__") and node.attr.endswith("__"))
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert private == []


def test_the_recorder_protocol_names_no_private_member() -> None:
    tree = ast.parse(MODULES["meterstream._record.recorder"].read_text(encoding="utf-8"))
    (protocol,) = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    members = [node.name for node in protocol.body if isinstance(node, ast.FunctionDef)]
    members += [
        node.target.id
        for node in protocol.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    ]
    assert sorted(members) == [
        "active",
        "customer_at_start",
        "invalid",
        "record_constant",
        "record_use",
    ]


def _appends_onto_the_buffer() -> list[str]:
    """Each ``<...>items.append(...)`` in the package, as module:function."""
    found: list[str] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("append", "appendleft", "extend")
                ):
                    receiver = node.func.value
                    name = receiver.attr if isinstance(receiver, ast.Attribute) else None
                    if isinstance(receiver, ast.Name):
                        name = receiver.id
                    if name in ("items", "_items"):
                        found.append(f"{module}:{func.name}")
    return found


def test_events_are_appended_onto_the_buffer_in_one_place_only() -> None:
    # add_marker appends a flush marker, not an event; the events' append is
    # the APPEND text, compiled into Buffer.put and the client's fast path.
    assert _appends_onto_the_buffer() == ["meterstream._delivery.buffer:add_marker"]
    assert _buffer.APPEND.count("append(") == 1


def test_the_fast_record_path_is_compiled_from_the_one_append() -> None:
    client = meterstream.MeterClient(exporter="memory")
    try:
        assert client._buffer.put.__code__.co_filename.startswith(_buffer.APPEND_FILENAME_PREFIX)
        assert client.record_constant.__code__.co_filename.startswith(
            _buffer.APPEND_FILENAME_PREFIX
        )
    finally:
        client.shutdown(0)
