"""Structure rules the style guide promises: no import cycles, a small runtime core, small modules,
and package `__init__`s that import no optional dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "processors", "transports", "fakes", "runner")


def _modules() -> dict[str, Path]:
    found = {}
    for root in PACKAGES:
        for path in (ROOT / root).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found["voxframe." + ".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """Ids of the nodes under `if TYPE_CHECKING:`: annotations only, never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The voxframe modules `name` imports anywhere, inside functions too (not under TYPE_CHECKING).

    A lazy import inside a function breaks no import at start-up, but it is still a dependency: a
    cycle through one is a layering knot that only hides until someone moves the import up.
    """
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_there_is_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


#: What each top-level package may import (CONTRIBUTING.md, "Layers"): the runtime knows nothing
#: of what runs on it; processors and transports meet only through frames; the fakes are servers
#: that share no code with the clients they test, only the pipeline's audio helpers.
LAYERS = {
    "pipeline": set(),
    "processors": {"pipeline"},
    "transports": {"pipeline"},
    "fakes": {"pipeline"},
    "runner": {"pipeline", "processors", "transports"},
}


def test_each_package_imports_only_the_layers_below_it() -> None:
    modules = _modules()
    crossings = sorted(
        f"{name} imports {dep}"
        for name, path in modules.items()
        for dep in _imports(name, path, modules)
        if dep.split(".")[1] != name.split(".")[1]
        and dep.split(".")[1] not in LAYERS.get(name.split(".")[1], set(PACKAGES))
    )
    assert not crossings


def test_the_runtime_core_stays_small_enough_to_read_in_one_sitting() -> None:
    lines = sum(len(p.read_text().splitlines()) for p in (ROOT / "pipeline").glob("*.py"))
    assert lines < 2000, f"pipeline/ has grown to {lines} lines"


def test_no_module_is_over_six_hundred_lines() -> None:
    sizes = {path: len(path.read_text().splitlines()) for path in _modules().values()}
    too_big = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 600}
    assert not too_big


def test_package_inits_import_no_optional_dependency() -> None:
    """A user who installs only one provider's extra can import every package of the core.

    `transports.webrtc`, `fakes` and `runner` are exempt: aiortc/aiohttp/websockets are their whole point;
    so is `transports.websocket`, which serves on the WebRTC server's aiohttp app (the `webrtc` extra).
    """
    optional = ["aiortc", "av", "websockets", "openai", "onnxruntime", "faster_whisper", "piper", "aiohttp"]
    inits = [
        name
        for name, path in _modules().items()
        if path.name == "__init__.py"
        and not name.startswith(
            ("voxframe.transports.webrtc", "voxframe.transports.websocket", "voxframe.fakes", "voxframe.runner")
        )
    ]
    code = "import sys\n" + "".join(f"import {name}\n" for name in inits)
    code += f"print(sorted(m for m in {optional!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_clock_and_its_units_have_one_home() -> None:
    """`NS_PER_S` is defined once, and only the clock module reads the OS's or anyio's clock
    (a timestamp or timer elsewhere goes through the injected clock, which tests can move)."""
    sources = [p for root in (*PACKAGES, "benchmarks", "bots") for p in (ROOT / root).rglob("*.py")]
    defines = sorted(str(p.relative_to(ROOT)) for p in sources if "\nNS_PER_S = " in p.read_text())
    assert defines == ["pipeline/clock.py"]
    clock_reads = ("time.monotonic_ns()", "anyio.current_time()")
    runtime = [p for root in ("pipeline", "processors", "transports", "runner") for p in (ROOT / root).rglob("*.py")]

    def reads_clock(path: Path) -> bool:
        # A shielded teardown guard stays on real time (CONTRIBUTING.md, "One clock"): marked so.
        lines = [line for line in path.read_text().splitlines() if "# teardown guard" not in line]
        return any(read in line for line in lines for read in clock_reads)

    assert sorted(str(p.relative_to(ROOT)) for p in runtime if reads_clock(p)) == ["pipeline/clock.py"]
