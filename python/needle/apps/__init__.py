"""needle's applications, installed with the package: the models (`needle.apps.models`), the
training app (`needle.apps.train`, the `needle-train` command), the course helpers
(`needle.apps.simple_ml`, `needle.apps.mlp_resnet`) and `needle-summary` / `needle-bench`.

The repository's `apps/` folder re-exports these modules under their course names
(`apps.models`, or `models` with `./apps` on `sys.path`); importing `needle.apps` itself imports
nothing, so it draws and seeds nothing.
"""
