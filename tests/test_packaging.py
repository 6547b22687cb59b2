"""Package metadata: one version, the published distribution name, the licence."""
import pathlib
from importlib import metadata

import needle
import pytest

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


def test_console_scripts_point_into_the_package():
    scripts = {ep.name: ep for ep in metadata.entry_points(group="console_scripts")
               if ep.dist is not None and ep.dist.name == "needle-dl"}
    assert set(scripts) == {"needle-train", "needle-summary", "needle-bench"}
    from needle.apps import bench, summary, train
    assert scripts["needle-train"].load() is train.main
    assert scripts["needle-summary"].load() is summary.main
    assert scripts["needle-bench"].load() is bench.main


def test_course_layout_modules_are_the_packaged_ones():
    """`apps.models` (repo root) is `needle.apps.models` itself: one copy of the code, and a
    monkeypatch through either name reaches the other."""
    import apps.models
    import apps.train
    import needle.apps.models
    import needle.apps.train
    assert apps.models is needle.apps.models
    assert apps.train is needle.apps.train


def test_importing_apps_models_seeds_numpy_and_needle_apps_does_not():
    import importlib
    import sys

    import numpy as np

    import needle.apps.models  # noqa: F401  (the packaged module never seeds)
    sys.modules.pop("apps.models", None)  # the course name, imported afresh
    np.random.rand(5)
    importlib.import_module("apps.models")
    after_import = np.random.rand(3)
    np.random.seed(0)
    np.testing.assert_array_equal(after_import, np.random.rand(3))


def test_training_app_runs_outside_the_repository(tmp_path):
    """The installed app: no `apps` folder on the path, run from a temporary directory."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "needle.apps.train", "--model", "lenet", "--dataset", "digits",
         "--epochs", "1", "--max-steps", "3", "--out", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "final: test_acc=" in proc.stdout
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_needle_summary_prints_the_parameter_count(capsys):
    from needle.apps import summary
    assert summary.main(["lenet"]) == 0
    assert "total parameters: 61,706" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        summary.main(["lenet", "--input-shape", "0", "1", "28", "28"])
