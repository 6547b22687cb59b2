"""CUDA graphs for ndl.jit replays (docs/jit.md, "CUDA graphs").

A replay tape alternates runs of backend calls with host entries (input uploads, numpy random
draws, one_hot). On a device whose backend can capture graphs (`device.supports_graphs`: the
CUDA backend, real or emulated), each maximal run of calls on that device becomes one CUDA
graph: captured at the first replay, then replayed with one launch. A call that cannot be
captured (it reads device memory on the host, uploads, needs memory the capture cannot give)
splits its run: it runs as a plain call at every replay, and the calls around it are captured
as graphs of their own. NEEDLE_JIT_GRAPHS=0 turns graphs off (read when a program is built).
"""
import os

__all__ = ["GraphPlan", "applies", "graphs_enabled"]


def graphs_enabled():
    """Whether new jit programs may use CUDA graphs (NEEDLE_JIT_GRAPHS, default on)."""
    value = os.environ.get("NEEDLE_JIT_GRAPHS", "1").strip().lower()
    if value not in ("0", "1", "off", "on", "false", "true"):
        raise ValueError(f"NEEDLE_JIT_GRAPHS={value!r}: expected 1 or 0")
    return value in ("1", "on", "true")


def applies(kinds):
    """Whether a tape whose entries have `kinds` ([(kind, device)]) gets graphs: they are on,
    and some call is on a device that supports them."""
    return graphs_enabled() and any(kind == "call" and getattr(dev, "supports_graphs", False)
                                    for kind, dev in kinds)


def plan(tape, kinds, live=frozenset()):
    """A GraphPlan for `tape` ([(fn, args)]) whose entries have `kinds` ([(kind, device)]),
    or None when graphs do not apply (see `applies`).
    `live`: indices of entries whose scalar arguments the replay rewrites (jit_live): they
    run as plain calls, read from `tape` at each replay."""
    return GraphPlan(tape, kinds, live) if applies(kinds) else None


class GraphPlan:
    """The steps of a replay: host entries and plain calls as (fn, args), each run of calls
    on a graph-capable device as one item [device, [(fn, args), ...]] until it is captured."""

    def __init__(self, tape, kinds, live=frozenset()):
        self.items = []
        self.live_calls = len(live)
        for index, (entry, (kind, dev)) in enumerate(zip(tape, kinds)):
            if index in live:
                self.items.append((_run_tape_entry, (tape, index)))
            elif kind == "call" and getattr(dev, "supports_graphs", False):
                last = self.items[-1] if self.items else None
                if isinstance(last, list) and last[0] is dev:
                    last[1].append(entry)
                else:
                    self.items.append([dev, [entry]])
            else:
                self.items.append(entry)  # the tape's own tuple: no new references to buffers
        self.steps = None  # after the first run: [(fn, args)], a graph as (graph.launch, ())
        self.graphs = []
        self.fallbacks = []  # "name: why" of each call left out of the graphs

    def run(self):
        if self.steps is None:
            self._capture_and_run()
            return
        for fn, args in self.steps:
            fn(*args)

    def info(self):
        """{"captured", "graphs", "nodes", "plain_calls", "live_calls", "fallbacks"}:
        live_calls run outside the graphs because they take a live scalar (a learning rate)."""
        return {"captured": self.steps is not None, "graphs": len(self.graphs),
                "nodes": sum(g.nodes for g in self.graphs), "plain_calls": len(self.fallbacks),
                "live_calls": self.live_calls, "fallbacks": list(self.fallbacks)}

    def _capture_and_run(self):
        steps, self.graphs, self.fallbacks = [], [], []  # a failed first replay starts over
        for item in self.items:
            if isinstance(item, list):
                self._capture_run(item[0], item[1], steps)
            else:
                item[0](*item[1])
                steps.append(item)
        self.steps = steps

    def _capture_run(self, dev, entries, steps):
        """Capture `entries` as graphs, split at calls that cannot be captured; run them all
        once, in order (captured work runs only when its graph is launched)."""
        start = 0
        while start < len(entries):
            graph, failed, err = _try_capture(dev, entries[start:])
            if graph is not None:
                self._launch_graph(graph, steps)
                return
            if failed is None:  # the capture broke without a call raising: no graphs here
                self._run_plainly(entries[start:], steps, err)
                return
            stop = start + failed
            if stop > start:  # the calls before the failing one, captured again on their own
                graph, _, err_before = _try_capture(dev, entries[start:stop])
                if graph is not None:
                    self._launch_graph(graph, steps)
                else:
                    self._run_plainly(entries[start:stop], steps, err_before)
            self._run_plainly(entries[stop:stop + 1], steps, err)
            start = stop + 1

    def _run_plainly(self, entries, steps, err):
        for fn, args in entries:
            fn(*args)  # a genuine error (bad arguments) surfaces here, as in eager mode
            self.fallbacks.append(f"{getattr(fn, '__name__', fn)}: {err}")
        steps.extend(entries)

    def _launch_graph(self, graph, steps):
        graph.launch()
        self.graphs.append(graph)
        steps.append((graph.launch, ()))


def _run_tape_entry(tape, index):
    fn, args = tape[index]  # the replay may have rewritten its live arguments
    fn(*args)


def _try_capture(dev, entries):
    """(graph, None, None) if all of `entries` were captured into one graph (nothing ran yet),
    else (None, index of the call that raised or None, the error); the capture is then ended
    and discarded."""
    graphs = dev._graphs
    graphs.begin()
    pos = 0
    try:
        for pos, (fn, args) in enumerate(entries):
            fn(*args)
    except Exception as err:  # noqa: BLE001 - any failure: that call runs outside the graphs
        _abandon(graphs)
        return None, pos, err
    except BaseException:
        _abandon(graphs)
        raise
    try:
        return graphs.end(), None, None
    except RuntimeError as err:
        return None, None, err


def _abandon(graphs):
    try:
        graphs.end()
    except RuntimeError:
        pass  # an invalidated capture: ending it is all that was needed
