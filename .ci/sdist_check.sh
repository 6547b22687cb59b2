#!/usr/bin/env bash
# Builds the sdist, checks its file list (everything the build and the package need; nothing
# built, downloaded or generated), installs it into a fresh venv without the CUDA backend (the
# CPU backend compiles from the sdist alone; the CUDA build is the editable install's), then
# imports it and trains LeNet for one epoch from outside the repository.
# Prints the sdist's size and this step's time.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m pip install -q build
python -m build --sdist --no-isolation --outdir "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
sdist="$(ls "$work"/dist/*.tar.gz)"
echo "sdist: $(basename "$sdist") $(du -k "$sdist" | cut -f1) KiB"

# Paths inside the archive, without its top folder (needle_dl-X.Y.Z/).
listing="$(tar -tzf "$sdist" | sed 's|^[^/]*/||' | grep -v '/$')"
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  required="$(git ls-files src python/needle)"
else  # a source tree without .git: what is there, less caches and built modules
  required="$(find src python/needle -type f ! -path '*/__pycache__/*' ! -name '*.so')"
fi
missing=0
for f in CMakeLists.txt pyproject.toml LICENSE README.md $required; do
  grep -qxF "$f" <<< "$listing" || { echo "error: the sdist lacks $f"; missing=1; }
done
[ "$missing" = 0 ] || exit 1
unwanted="$(grep -E '^(build|site|dist|data|runs|out|\.venv)/|(^|/)__pycache__/|\.(so|pyd|o|ckpt|npz|npy|pkl|gz|ubyte)$' <<< "$listing" || true)"
[ -z "$unwanted" ] || { echo "error: the sdist holds built or data files:"; echo "$unwanted"; exit 1; }

python -m venv "$work/venv"
NEEDLE_ENABLE_CUDA=OFF "$work/venv/bin/pip" install -q "$sdist[apps]"
cd "$work"  # outside the repository: nothing can be imported from the source tree
"$work/venv/bin/python" -c "
import needle as ndl
assert 'site-packages' in ndl.__file__, ndl.__file__
print('sdist install: needle', ndl.__version__, 'from', ndl.__file__)
"
"$work/venv/bin/needle-train" --model lenet --dataset digits --epochs 1 > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
tail -n 2 "$work/train.log"
echo "sdist check: $((SECONDS - start)) s"
