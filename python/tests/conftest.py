"""Shared paths for the Python tests; the troupe plugin is loaded by `-p troupe.pytest_plugin`
(crates/troupe-cli/tests/python.rs) or by its entry point once installed."""

from pathlib import Path

# pytester runs pytest inside the tests of the plugin itself (test_plugin.py).
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"
