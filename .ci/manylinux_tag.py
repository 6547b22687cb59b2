"""Prints the most compatible manylinux tag auditwheel accepts for a wheel (its `show` output)."""
import re
import subprocess
import sys

out = subprocess.run([sys.executable, "-m", "auditwheel", "show", sys.argv[1]],
                     capture_output=True, text=True, check=True).stdout
tags = re.findall(r'"(manylinux_\d+_\d+_x86_64)"', " ".join(out.split()))
if not tags:
    sys.exit(f"no manylinux tag in auditwheel's report:\n{out}")
print(tags[0])
