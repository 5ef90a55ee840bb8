"""The package's shape: no import cycle, and every import runs from the modules that orchestrate down to the
leaves they use, never back up (the layers below). grimp reads the imports statically, those inside functions
included, so a lazy import cannot hide a cycle; imports written as strings (``importlib.import_module``) and the
entry points (pyproject's console scripts, the repository's scripts) are read here too, so they cannot either."""

import ast
import re
from pathlib import Path

import grimp
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]

# From the top (the commands) to the bottom (what everything uses). A module belongs to the longest entry that
# names it or a package above it (the package itself, "deepfake", names only its __init__); it may import its own
# entry's modules and those of any lower layer, and the entries of one layer are independent of each other.
LAYERS = [
    # The `python -m` shims, then the command lines they run.
    {"deepfake.faces.__main__", "deepfake.report.__main__", "deepfake.web.__main__"},
    {"deepfake.commands"},
    {"deepfake.web", "deepfake.compare", "deepfake.report"},
    {"deepfake.evaluate"},
    {"deepfake.explain", "deepfake.export"},
    {"deepfake.training"},
    {"deepfake.data", "deepfake.models", "deepfake.robustness", "deepfake.curves", "deepfake.cross"},
    {
        "deepfake.metrics",
        "deepfake.predictor",
        "deepfake.cli",
        "deepfake.samples",
        "deepfake.faces.dataset",
        "deepfake.faces.landmarks",
    },
    # The model-file contract states the preprocessing and the face stage, so it sits right above both.
    {"deepfake.contract"},
    {"deepfake.preprocess", "deepfake.timing", "deepfake.video", "deepfake.sbi", "deepfake.surroundings"},
    # The face stage's front (deepfake.faces: what the rest of the package imports of it), then its modules.
    {"deepfake.faces"},
    {"deepfake.faces.detect", "deepfake.faces.drawing", "deepfake.faces.pool", "deepfake.images"},
    # The face stage's parts: the detectors, then what they use (aligned crops, the face mesh).
    {"deepfake.faces.blazeface", "deepfake.faces.hog"},
    {"deepfake.faces.align", "deepfake.faces.mesh"},
    # The package itself (its version and the bundled files' paths) and the errors: what every module may use.
    {"deepfake", "deepfake.errors"},
]
STRING_IMPORT = re.compile(r"""(?:import_module|__import__)\(\s*["'](deepfake(?:\.\w+)*)["']""")


def entry(module: str) -> tuple[int, str] | None:
    """The layer and entry of ``module``: the longest entry that is the module or a package above it."""
    found = [
        (len(name), layer, name)
        for layer, names in enumerate(LAYERS)
        for name in names
        if module == name or (name != "deepfake" and module.startswith(name + "."))
    ]
    return max(found)[1:] if found else None


def string_imports(graph) -> list[tuple[str, str]]:
    """(importer, imported) of every import written as a string in the package."""
    found = []
    for module in graph.modules:
        path = ROOT / Path(*module.split("."))
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for name in STRING_IMPORT.findall(source.read_text()):
            found.append((module, name))
    return found


@pytest.fixture(scope="module")
def graph():
    graph = grimp.build_graph("deepfake")
    for importer, imported in string_imports(graph):
        graph.add_import(importer=importer, imported=imported)
    return graph


def test_the_string_import_reader_finds_string_imports():
    # What the graph adds must be found: a reader that matched nothing would pass every test below.
    source = 'run(lambda: importlib.import_module("deepfake.evaluate").main()); __import__( "deepfake.x.y" )'
    assert STRING_IMPORT.findall(source) == ["deepfake.evaluate", "deepfake.x.y"]


def test_no_module_imports_one_that_imports_it_back(graph):
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.add(" -> ".join((module, *chain)))
    assert not cycles


def test_imports_go_down_the_layers(graph):
    illegal = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            (upper, upper_entry), (lower, lower_entry) = entry(importer), entry(imported)
            if upper_entry != lower_entry and upper >= lower:
                illegal.append(f"{importer} (layer {upper}) imports {imported} (layer {lower})")
    assert not illegal, "\n".join(illegal)


def test_every_module_has_a_layer(graph):
    assert not [module for module in graph.modules if entry(module) is None]
    # ... and every entry names something that exists, so a renamed module cannot leave a stale entry behind.
    assert not [name for names in LAYERS for name in names if name not in graph.modules]


def test_every_command_starts_in_the_command_layer():
    """Console scripts and the repository's scripts run a deepfake.commands module and nothing else of the
    package: a command cannot bypass the one place that parses arguments and prints results."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts and all(target.startswith("deepfake.commands.") for target in scripts.values()), scripts
    for script in ROOT.glob("*.py"):
        tree = ast.parse(script.read_text())
        imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        package = [name for name in imported if name.split(".")[0] == "deepfake"]
        assert package and all(name.startswith("deepfake.commands.") for name in package), (script.name, package)
