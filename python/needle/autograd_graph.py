"""needle.autograd_graph: the graph algorithms of reverse-mode AD (re-exported by autograd).

`find_topo_sort` orders a graph; `_reverse_pass` walks it backwards and hands each node's
gradient to a `store`: `_store_grad` (create_graph=True, and `compute_gradient_of_variables`)
or `_GradSource.store` (plain `backward()`), which tags each constant gradient so that it can
rebuild its graph form later, holding only weak references to the graph.
"""
import weakref

from .autograd import _MODE, Tensor, TensorTuple, _enable_grad

__all__ = ["find_topo_sort", "compute_gradient_of_variables", "queue_backward_end_callback"]


def find_topo_sort(node_list):
    """Post-order DFS from each node of `node_list` in order, inputs left to right.

    Returns every reachable node once, inputs before the nodes that use them. Iterative, so deep
    graphs (long RNN unrolls) do not hit Python's recursion limit.
    """
    visited = set()
    topo_order = []
    for root in node_list:
        if root in visited:
            continue
        visited.add(root)
        stack = [(root, iter(root.inputs))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in visited:
                    visited.add(child)
                    stack.append((child, iter(child.inputs)))
                    break
            else:
                stack.pop()
                topo_order.append(node)
    return topo_order


def _sum_grads(grads):
    if len(grads) > 1 and isinstance(grads[0], TensorTuple):
        from .ops import ops_tuple  # the ops import autograd: import on first use
        total = ops_tuple.sum_tuple_grads(grads)
        if total is not None:
            return total
    total = grads[0]
    for g in grads[1:]:
        total = total + g
    return total


def _reverse_pass(output, out_grad, store):
    """Walk output's graph in reverse topological order; `store(node, grad)` each gradient.

    Each node's gradient is the sum (tensor `+`) of its contributions, in the order the users
    appear in reverse topological order.
    """
    node_to_output_grads = {output: [out_grad]}
    pop = node_to_output_grads.pop
    for node in reversed(find_topo_sort([output])):
        grads = pop(node, None)
        if grads is None:
            continue
        grad = grads[0] if len(grads) == 1 else _sum_grads(grads)
        store(node, grad)
        if node.op is None:
            continue
        for inp, g in zip(node.inputs, node.op.gradient_as_tuple(grad, node)):
            if inp in node_to_output_grads:
                node_to_output_grads[inp].append(g)
            else:
                node_to_output_grads[inp] = [g]


def queue_backward_end_callback(fn):
    """Run `fn()` when the backward pass now running (in this thread) ends. Call it from a
    grad hook (DistributedDataParallel waits for its all-reduces there)."""
    _MODE.end_callbacks.append(fn)


def _run_backward(output, out_grad, store, caller_grad_mode):
    """A storing reverse pass, then the end callbacks that its hooks queued.

    Grad hooks run in the grad mode of backward()'s caller, not in the pass's own (so a hook
    may run a forward and backward of its own)."""
    callbacks = _MODE.end_callbacks
    mark = len(callbacks)  # a nested backward runs only the callbacks it queued
    outer_hook_mode, _MODE.hook_mode = _MODE.hook_mode, caller_grad_mode
    try:
        _reverse_pass(output, out_grad, store)
        while len(callbacks) > mark:
            callbacks.pop(mark)()
    finally:
        del callbacks[mark:]  # a failed backward leaves none behind for the next
        _MODE.hook_mode = outer_hook_mode


def compute_gradient_of_variables(output_tensor, out_grad):
    """Store on every node of output_tensor's graph its gradient (`node.grad`).

    The gradients are built with needle ops in the current grad mode (graph nodes unless
    inside `no_grad`). `.grad` is overwritten, except on `nn.Parameter`s, where it accumulates.
    """
    _run_backward(output_tensor, out_grad, _store_grad, _MODE.enabled)


def _store_grad(node, grad, accumulated_source=None):
    """node.grad = grad (or node.grad + grad on a Parameter), then the leaf's hooks."""
    if node._accumulate_grad and node.grad is not None:
        grad = node.grad + grad  # a new tensor: the previous one may be held by the caller
        if accumulated_source is not None:
            grad._grad_source = accumulated_source
    node.grad = grad
    hooks = node._post_accumulate_hooks
    if hooks and node.op is None:
        pass_mode, _MODE.enabled = _MODE.enabled, _MODE.hook_mode
        try:
            for hook in list(hooks.values()):
                hook(node)
        finally:
            _MODE.enabled = pass_mode


_FREED = ("the graph it was computed from is gone (the tensor backward() was called on has "
          "been freed); call backward(create_graph=True) to get gradients that can be "
          "differentiated after that")


class _GradSource:
    """How the constant gradients of one plain `backward()` call rebuild their graph form.

    Each such gradient holds `(source, weakref(node))`; the source holds a weak reference to
    the tensor backward() was called on and the raw output gradient. Only weak references
    point back into the graph, so no reference cycle is made: dropping the output frees the
    step, and a later rebuild raises a clear error instead.
    """

    __slots__ = ("anchor", "out_data")

    def __init__(self, anchor, out_data):
        self.anchor = weakref.ref(anchor)
        self.out_data = out_data

    def store(self, node, grad):
        """The `store` of a plain backward(): tag each gradient with where it came from."""
        if isinstance(grad, Tensor):
            if grad.requires_grad or grad._grad_source is not None:  # shared with another node
                grad = Tensor.make_const(grad.realize_cached_data())
            grad._grad_source = (self, weakref.ref(node))
        _store_grad(node, grad, _ACCUMULATED)

    def rebuild(self, node):
        """node's gradient as a graph, recomputed with grad mode on from the live graph."""
        anchor = self.anchor()
        if anchor is None or node is None:
            raise RuntimeError(f"backward: cannot differentiate this gradient: {_FREED}")
        grads = {}
        with _enable_grad():
            root = _differentiable(anchor)
            _reverse_pass(root, Tensor.make_const(self.out_data), grads.__setitem__)
        return grads[node]


class _Accumulated:
    """The source of a Parameter's gradient summed over several plain backward() calls."""

    @staticmethod
    def rebuild(node):
        raise RuntimeError("backward: this gradient was accumulated over several plain "
                           "backward() calls and cannot be differentiated; call "
                           "backward(create_graph=True) to get differentiable gradients")


_ACCUMULATED = (_Accumulated, None)


class _Derived:
    """The source of a constant computed from plain backward() gradients (`x.grad.sum()`)."""

    @staticmethod
    def rebuild(node):
        raise RuntimeError("backward: this tensor was computed from gradients of a plain "
                           "backward(), which are constants, so nothing would flow back; call "
                           "backward(create_graph=True) first to differentiate through "
                           "gradients (only x.grad.backward() itself works without it)")


_DERIVED = (_Derived, None)


def _differentiable(tensor):
    """tensor itself, or, for a constant gradient of a plain backward(), its graph form."""
    source = tensor._grad_source
    if source is None:
        return tensor
    record, node_ref = source
    return record.rebuild(node_ref() if node_ref is not None else None)


class _HookHandle:
    """Returned by `register_post_accumulate_grad_hook`; `remove()` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks, hook):
        _HookHandle._next_id += 1
        self.id = _HookHandle._next_id
        self._hooks = hooks
        hooks[self.id] = hook

    def remove(self):
        self._hooks.pop(self.id, None)
