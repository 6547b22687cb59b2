"""Package metadata: one version, the published distribution name, the licence."""
import pathlib
from importlib import metadata

import needle

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_version_comes_from_the_installed_metadata():
    assert needle.__version__ == metadata.version("needle-dl")
    assert needle.__version__ != "0+unknown"


def test_distribution_metadata_is_publishable():
    meta = metadata.metadata("needle-dl")
    assert meta["Name"] == "needle-dl"  # `needle` on PyPI is an unrelated project
    assert meta["Requires-Python"] == ">=3.9"
    classifiers = meta.get_all("Classifier")
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert meta.get_all("Project-URL"), "project.urls missing"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
