"""Checkpoints as safetensors files: numpy arrays as tensors, everything else as JSON metadata.

`save_safetensors(path, obj)` takes nested dicts / lists / tuples of numpy arrays and plain
values (what the training app checkpoints: state dicts, the RNG state, the history, the args).
Each array becomes a tensor named by its path in `obj` joined with "/" (e.g.
`model_state/conv1.weight`, `optimizer/state/0/m`), so that safetensors' torch and numpy
loaders read the weights directly, without pickle. The rest of `obj` is one JSON document in
the header's metadata (key "needle"), where an array appears as {"__tensor__": name}. A sha256
over that JSON and every tensor (metadata key "sha256") detects corruption that safetensors'
own header checks cannot see (flipped bytes inside the tensor data).
"""
import hashlib
import json

import numpy as np
import safetensors
import safetensors.numpy

from needle.utils import atomic_write

__all__ = ["SAFETENSORS_FORMAT", "is_safetensors", "load_safetensors", "save_safetensors"]

SAFETENSORS_FORMAT = "needle-safetensors-1"
# A dict holding one of these keys is stored as a list of items, so that a user's dict can
# never be mistaken for an encoded array, tuple or dict with non-string keys.
_MARKERS = ("__tensor__", "__scalar__", "__tuple__", "__items__")


def _join(name, key):
    return f"{name}/{key}" if name else str(key)


def _encode(value, name, tensors):
    """JSON-able form of `value`; its arrays go into `tensors` under `name`-based keys."""
    if isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, (str, bytes)):
        if name in tensors:  # e.g. keys 1 and "1" in one dict
            raise TypeError(f"save_safetensors: two entries are named {name!r}")
        tensors[name] = np.asarray(value, order="C")  # (ascontiguousarray makes 0-d 1-d)
        return {"__scalar__" if isinstance(value, np.generic) else "__tensor__": name}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not any(k in _MARKERS for k in value):
            return {k: _encode(v, _join(name, k), tensors) for k, v in value.items()}
        return {"__items__": [[_encode(k, _join(name, f"key{i}"), tensors),
                               _encode(v, _join(name, k), tensors)]
                              for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, _join(name, i), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _join(name, i), tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"save_safetensors: {name or 'the object'} is a {type(value).__name__}; "
                    f"only numpy arrays, dicts, lists, tuples and plain values can be saved")


def _decode(value, tensors):
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__scalar__" in value:
        return tensors[value["__scalar__"]][()]  # a numpy scalar, as saved
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _digest(document, tensors):
    h = hashlib.sha256(document.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\n{name} {t.dtype.str} {t.shape}\n".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def save_safetensors(path, obj):
    """Save `obj` (nested dicts / lists / tuples of numpy arrays and plain values) atomically.

    Arrays become tensors named by their path in `obj` ("a/b/0" for obj["a"]["b"][0]); the
    structure and the plain values become JSON in the metadata (see the module docstring).

    Raises:
        TypeError: naming the entry that is neither an array nor a plain value.

    Example:
        >>> save_safetensors("ckpt.safetensors", {"model_state": model.state_dict(), "epoch": 3})
        >>> safetensors.numpy.load_file("ckpt.safetensors")["model_state/conv1.weight"].shape
    """
    tensors = {}
    document = json.dumps(_encode(obj, "", tensors))
    metadata = {"format": SAFETENSORS_FORMAT, "needle": document,
                "sha256": _digest(document, tensors)}
    atomic_write(path, safetensors.numpy.save(tensors, metadata=metadata))


def is_safetensors(path):
    """True when `path` starts like a safetensors file (an 8-byte header length, then '{')."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def load_safetensors(path):
    """Load what `save_safetensors` wrote.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming the file when it is not such a file, or is truncated or corrupted
            (checksum mismatch).
    """
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except safetensors.SafetensorError as e:
        raise ValueError(f"load_safetensors: {path} is corrupted or truncated ({e})") from None
    if metadata.get("format") != SAFETENSORS_FORMAT or "needle" not in metadata:
        raise ValueError(f"load_safetensors: {path} is a safetensors file, but not a needle "
                         f"checkpoint (no {SAFETENSORS_FORMAT!r} metadata)")
    document = metadata["needle"]
    if _digest(document, tensors) != metadata.get("sha256"):
        raise ValueError(f"load_safetensors: {path} is corrupted or truncated (checksum "
                         f"mismatch)")
    try:
        return _decode(json.loads(document), tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"load_safetensors: {path} has unreadable metadata ({e})") from None
