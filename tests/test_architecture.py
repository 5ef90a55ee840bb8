"""The package's shape: no import cycle, and every import runs from the modules that orchestrate down to the
leaves they use, never back up (the layers below). grimp reads the imports statically, those inside functions
included, so a lazy import cannot hide a cycle."""

import grimp
import pytest

# From the top (commands and apps) to the bottom (what everything uses). A module may import any module of a
# lower layer; modules of one layer are independent of each other.
LAYERS = [
    {"deepfake.web", "deepfake.infer", "deepfake.compare", "deepfake.report", "deepfake.faces.__main__"},
    {"deepfake.evaluate"},
    {"deepfake.explain", "deepfake.export"},
    {"deepfake.training"},
    {"deepfake.data", "deepfake.models", "deepfake.robustness", "deepfake.curves", "deepfake.cross"},
    {
        "deepfake.metrics",
        "deepfake.predictor",
        "deepfake.cli",
        "deepfake.datasets",
        "deepfake.faces.dataset",
        "deepfake.faces.landmarks",
    },
    # The model-file contract states the preprocessing and the face stage, so it sits right above both.
    {"deepfake.contract"},
    {"deepfake.preprocess", "deepfake.timing", "deepfake.video", "deepfake.sbi", "deepfake.surroundings"},
    {"deepfake.faces.detect", "deepfake.faces.drawing", "deepfake.faces.pool", "deepfake.images"},
    # The face stage's parts: the detectors, then what they use (aligned crops, the face mesh).
    {"deepfake.faces.blazeface", "deepfake.faces.hog"},
    {"deepfake.faces.align", "deepfake.faces.mesh"},
    {"deepfake.errors"},
]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("deepfake")


def test_no_module_imports_one_that_imports_it_back(graph):
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.add(" -> ".join((module, *chain)))
    assert not cycles


def test_imports_go_down_the_layers(graph):
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS)
    assert not illegal, "\n".join(f"{d.importer} imports {d.imported}: {d.routes}" for d in illegal)


def test_every_module_has_a_layer(graph):
    # A package may be placed whole or module by module (deepfake.faces: its command line sits at the top).
    placed = {".".join(m.split(".")[:2]) for m in set().union(*LAYERS)}
    top_level = {m for m in graph.modules if m.count(".") == 1}
    assert top_level == placed
