"""Where a training step's data-movement calls come from: every `compact`, `pad`, `fill`,
`ewise_setitem` and `scalar_setitem` of the device's backend table is wrapped with a recorder of
the Python stack, then one step's calls are tallied by call site.

    PYTHONPATH=. python benchmarks/trace_copies.py [--model resnet9|lenet] [--batch 32] [--jit]

(PYTHONPATH=. from the repository root makes `apps` importable, as pytest's configuration does.)

A site is the innermost frames of the needle package that are not autograd plumbing, innermost
first. With `--jit` the recorders are installed before the capture; the replay's calls are those
of the last capture (its tape) plus the replay's own input and output copies, so the sites are
read from the capture and the counts checked against a replay.
"""
import argparse
import collections
import os
import sys
import time
import traceback

import needle as ndl

from profile_step import training_step  # (this folder is on sys.path when run as a script)

TRACED = ("compact", "pad", "fill", "ewise_setitem", "scalar_setitem")
_PACKAGE = os.path.dirname(ndl.__file__)
_PLUMBING = ("autograd.py", "autograd_graph.py", "tensor_methods.py", "nn_containers.py")


def site_of(stack, depth):
    """The `depth` innermost needle frames of `stack` that are not plumbing, innermost first."""
    frames = []
    for fr in reversed(stack):
        if not fr.filename.startswith(_PACKAGE) or os.path.basename(fr.filename) in _PLUMBING:
            continue
        frames.append(f"{os.path.basename(fr.filename)[:-3]}.{fr.name}:{fr.lineno}")
        if len(frames) == depth:
            break
    return " <- ".join(frames)


def wrap(dev, log, depth):
    """Record (name, site, shape, seconds) of every traced call of `dev` into `log` (a list)."""
    for name in TRACED:
        fn = dev.__dict__.get(name)
        if fn is None:  # a backend without it (an older tree)
            continue

        def traced(*args, fn=fn, name=name):
            shape = args[2] if name in ("compact", "pad", "ewise_setitem") else \
                args[3] if name == "scalar_setitem" else (args[0].size,)
            site = site_of(traceback.extract_stack()[:-1], depth)
            start = time.perf_counter()
            out = fn(*args)
            log.append((name, site, tuple(shape), time.perf_counter() - start))
            return out

        dev.__dict__[name] = traced


def tally(log, title, repeats=()):
    """Print the calls of one step by site; ms per site: the least over `repeats` (the same
    step's logs again: the least disturbed on a shared machine)."""
    print(f"{title}: " + ", ".join(f"{n} {sum(1 for e in log if e[0] == n)}" for n in TRACED)
          + f" ({sum(e[3] for e in log) * 1e3:.3f} ms)")
    counts = collections.Counter((name, site) for name, site, _, _ in log)
    shapes, seconds = collections.defaultdict(set), collections.defaultdict(float)
    for name, site, shape, sec in log:
        shapes[(name, site)].add(shape)
        seconds[(name, site)] += sec
    for other in repeats:
        again = collections.defaultdict(float)
        for name, site, _, sec in other:
            again[(name, site)] += sec
        for key in seconds:
            seconds[key] = min(seconds[key], again[key])
    print("  calls  ms     function       site (innermost first)")
    for (name, site), k in sorted(counts.items(), key=lambda kv: (kv[0][0], -seconds[kv[0]])):
        some = sorted(shapes[(name, site)])[:2]
        print(f"  {k:3d} {seconds[(name, site)] * 1e3:7.3f}  {name:<15}{site}   e.g. "
              f"{', '.join(map(str, some))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet9", choices=["resnet9", "lenet"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cpu_numpy", "cuda"])
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--depth", type=int, default=3, help="frames per call site")
    parser.add_argument("--repeats", type=int, default=10, help="steps timed (least ms kept)")
    args = parser.parse_args()
    dev = getattr(ndl, args.device)()
    train_step, x, y = training_step(args.model, args.batch, dev)

    log = []
    wrap(dev, log, args.depth)
    fn = ndl.jit(train_step) if args.jit else train_step
    per_call = []
    for _ in range(5 + args.repeats):  # jit: eager, two captures, then replays
        log.clear()
        fn(x, y).numpy()
        per_call.append(list(log))
    label = f"{args.model} batch {args.batch} on {dev}"
    if args.jit:
        tally(per_call[2], f"{label}, the jit's last capture (the replay's tape)")
        tally(per_call[4], f"{label}, a jit replay (sites: the replay loop)", per_call[5:])
    else:
        tally(per_call[4], f"{label}, one eager step", per_call[5:])


if __name__ == "__main__":
    sys.exit(main())
