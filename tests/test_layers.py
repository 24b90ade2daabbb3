"""The layers run one way, checked from the source (``TYPE_CHECKING`` imports included).

Each package and top-level module of src/meterstream has its place in
:data:`LAYERS`, bottom to top. A module imports from its own package and from
the layers below its own, never from a layer beside or above it. What it
takes from another package is public there: no ``_name``, and no ``_module``
on the way to it (``meterstream._spool.spool`` yes, the package's own
underscore being the private-package convention; ``meterstream._exporters.
stripe._api`` no: ``meterstream._exporters.stripe`` exports ``StripeAPI``).
And no three top-level modules share a name prefix: that is a package
waiting to be made.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Optional

import meterstream

PACKAGE = Path(meterstream.__file__).parent

#: Bottom to top. The units of one layer are peers: none imports another.
#: ``__init__`` is the package itself, the public surface.
LAYERS: tuple[tuple[str, ...], ...] = (
    # Stripe's rule for a value's digits: a pure leaf, so that the record
    # path and the emulator share one definition of what Stripe counts.
    ("_digits",),
    # Nothing of meterstream below them but that rule. The emulator stands in
    # for Stripe on its own: anything may use it, it uses nothing of the SDK.
    ("errors", "_version", "emulator"),
    ("_config",),  # Settings: their declarations and every parser, errors only
    ("_internal",),  # rate-limited logging, the never-break-the-host boundary
    ("_otel",),  # OpenTelemetry through its API: spans, metrics, the baggage helpers
    ("_record",),  # decorators, Call, metering(), context, checks, the recorded tuple
    ("_aggregate", "_exporters"),  # the exact arithmetic and the aggregator; the exporters
    ("_delivery",),  # the buffer, the delivery threads, retries, the ledger
    ("_spool",),  # the durable store, and the aggregation of the uses it keeps
    ("_truth", "_fleet"),  # Stripe's error reports, webhooks, reconciliation; NATS, relays
    ("_client",),  # MeterClient: the facade that wires the pipeline
    ("_default", "_signals", "testing"),
    ("_api", "pytest_plugin"),
    ("cli", "integrations"),
    ("__init__", "__main__"),
)


class Import(NamedTuple):
    """One import in the package: *importer* takes *name* from *module*
    (*name* is None when the import is of the module itself)."""

    importer: str
    module: str
    name: Optional[str]
    line: int


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


def imports_of(module: str) -> list[Import]:
    """Every import of a meterstream module in *module*, anywhere in it."""
    path = MODULES[module]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:  # a submodule, not a name
                    found.append(Import(module, f"{target}.{alias.name}", None, node.lineno))
                else:
                    found.append(Import(module, target, alias.name, node.lineno))
    return [i for i in found if i.module == "meterstream" or i.module.startswith("meterstream.")]


def unit_of(module: str) -> str:
    """The package or top-level module *module* belongs to (``__init__``: the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(found: Iterable[Import], layers: Sequence[Sequence[str]]) -> list[str]:
    """What in *found* breaks *layers*: an import upwards or sideways, or of a
    name (or through a module) private to another package."""
    rank = {unit: level for level, units in enumerate(layers) for unit in units}
    out: list[str] = []
    for item in found:
        importer, imported = unit_of(item.importer), unit_of(item.module)
        if importer == imported:
            continue
        where = f"{item.importer} line {item.line}: {item.module}"
        if item.name is not None:
            where += f":{item.name}"
        if importer not in rank or imported not in rank:
            out.append(f"{where}: {importer if importer not in rank else imported} has no layer")
        elif rank[imported] >= rank[importer]:
            side = "beside" if rank[imported] == rank[importer] else "above"
            out.append(f"{where}: {imported} is {side} {importer}")
        inner = item.module.split(".")[2:]
        if any(_private(part) for part in inner) or (item.name and _private(item.name)):
            out.append(f"{where}: private to {imported}")
    return out


def prefix_groups(names: Iterable[str], size: int = 3) -> dict[str, list[str]]:
    """Names that share a first word (leading underscores aside) *size* or more times."""
    groups: dict[str, list[str]] = {}
    for name in names:
        if name.startswith("__"):
            continue
        groups.setdefault(name.lstrip("_").split("_")[0], []).append(name)
    return {prefix: sorted(group) for prefix, group in groups.items() if len(group) >= size}


# -- the checker ---------------------------------------------------------------------


def test_the_checker_finds_imports_upwards_sideways_and_of_private_names() -> None:
    layers = [("low",), ("left", "right"), ("top",), ("__init__",)]
    found = [
        Import("meterstream.top.a", "meterstream.low.b", "thing", 1),  # down: fine
        Import("meterstream.top.a", "meterstream.low", "__version__", 2),  # dunder: fine
        Import("meterstream.low._c", "meterstream.low._d", "_own", 3),  # own package: fine
        Import("meterstream.low.b", "meterstream.top.a", None, 4),
        Import("meterstream.left", "meterstream.right.e", "f", 5),
        Import("meterstream.top.a", "meterstream.low._c", "g", 6),
        Import("meterstream.top.a", "meterstream.low.b", "_h", 7),
        Import("meterstream.low.b", "meterstream", "configure", 8),
        Import("meterstream.new", "meterstream.low", "b", 9),
    ]
    assert violations(found, layers) == [
        "meterstream.low.b line 4: meterstream.top.a: top is above low",
        "meterstream.left line 5: meterstream.right.e:f: right is beside left",
        "meterstream.top.a line 6: meterstream.low._c:g: private to low",
        "meterstream.top.a line 7: meterstream.low.b:_h: private to low",
        "meterstream.low.b line 8: meterstream:configure: __init__ is above low",
        "meterstream.new line 9: meterstream.low:b: new has no layer",
    ]


def test_the_prefix_finder_finds_three_modules_that_share_a_prefix() -> None:
    names = ["_spool_a", "_spool_b", "spool", "_api", "_api_b", "__main__", "errors"]
    assert prefix_groups(names) == {"spool": ["_spool_a", "_spool_b", "spool"]}
    assert prefix_groups(["_relay", "_relay_cli", "errors"]) == {}


def test_the_walk_sees_type_checking_and_function_level_imports() -> None:
    found = imports_of("meterstream._client.exporters")
    assert ("meterstream._config.settings", "Settings") in {(i.module, i.name) for i in found}
    assert ("meterstream._exporters.stripe", "StripeExporter") in {
        (i.module, i.name) for i in found
    }


# -- the package ---------------------------------------------------------------------


def test_every_package_and_top_level_module_has_one_place_in_the_layers() -> None:
    declared = [unit for units in LAYERS for unit in units]
    assert len(declared) == len(set(declared))
    assert set(declared) == {unit_of(module) for module in MODULES}


def test_the_layers_run_one_way_and_names_used_across_packages_are_public() -> None:
    found = [item for module in MODULES for item in imports_of(module)]
    assert len(found) > 500  # the walk sees the imports
    assert violations(found, LAYERS) == []


def test_config_imports_nothing_of_meterstream_but_errors() -> None:
    found = [
        item for module in MODULES if unit_of(module) == "_config" for item in imports_of(module)
    ]
    assert {unit_of(item.module) for item in found} == {"_config", "errors"}


def test_no_three_top_level_modules_share_a_name_prefix() -> None:
    names = [
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists())
    ]
    assert prefix_groups(names) == {}
