"""Penn Treebank language-model data: Dictionary, Corpus, batchify and get_batch.

The files are `train.txt` and `test.txt` in a user-given folder (never shipped). Each line
becomes its whitespace-separated words plus "<eos>". Nothing here draws random numbers.
"""
import os

import numpy as np

from ..autograd import Tensor

__all__ = ["Corpus", "Dictionary", "batchify", "get_batch"]


class Dictionary:
    """Word <-> id maps; ids are given out sequentially from 0 in order of first appearance.

    Attributes:
        word2idx: dict word -> id; idx2word: list id -> word.

    Example:
        >>> d = Dictionary()
        >>> d.add_word("a"), d.add_word("b"), d.add_word("a"), len(d)
        (0, 1, 0, 2)
    """

    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        """Return the id of `word`, adding it (with the next free id) if it is new."""
        idx = self.word2idx.get(word)
        if idx is None:
            idx = len(self.idx2word)
            self.word2idx[word] = idx
            self.idx2word.append(word)
        return idx

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    """Token ids of `train.txt` and `test.txt` in `base_dir`, with one shared Dictionary.

    Args:
        base_dir: folder holding train.txt and test.txt.
        max_lines: read at most this many lines of each file (None = all).
    Attributes:
        dictionary: the shared Dictionary (train words first, then new test words).
        train, test: lists of int ids; each line contributes its words then "<eos>".

    Raises:
        FileNotFoundError: naming the missing file.
    """

    def __init__(self, base_dir, max_lines=None):
        if max_lines is not None and max_lines < 0:
            raise ValueError(f"Corpus: max_lines must be None or >= 0, got {max_lines}")
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(base_dir, "train.txt"), max_lines)
        self.test = self.tokenize(os.path.join(base_dir, "test.txt"), max_lines)

    def tokenize(self, path, max_lines=None):
        """Ids of the words of the first `max_lines` lines of `path` (each line + "<eos>")."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Corpus: PTB file not found: {path}")
        ids = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if max_lines is not None and n >= max_lines:
                    break
                for word in line.split() + ["<eos>"]:
                    ids.append(self.dictionary.add_word(word))
        return ids


def batchify(data, batch_size, device=None, dtype=None):
    """Lay a token-id list out as batch_size parallel columns.

    Args:
        data: sequence of ids (length n).
        batch_size: number of columns (independent streams).
        device: accepted for API compatibility (the result is a numpy array).
        dtype: numpy dtype of the result (None keeps integer ids).
    Returns:
        numpy array nbatch x batch_size, nbatch = n // batch_size (the remainder is dropped),
        column j = data[j * nbatch:(j + 1) * nbatch].

    Example:
        >>> batchify(list(range(7)), 2, None, "float32")[:, 1]
        array([3., 4., 5.], dtype=float32)
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batchify: batch_size must be a positive integer, got {batch_size!r}")
    n = len(data)
    nbatch = n // batch_size
    if nbatch == 0:
        raise ValueError(f"batchify: {n} tokens are fewer than batch_size {batch_size}")
    array = np.asarray(data[:nbatch * batch_size])
    if dtype is not None:
        array = array.astype(dtype)
    return array.reshape(batch_size, nbatch).T.copy()


def get_batch(batches, i, bptt, device=None, dtype=None):
    """Inputs and next-token targets for the rows starting at `i`.

    Args:
        batches: numpy array nbatch x bs (from `batchify`).
        i: first row, 0 <= i < nbatch - 1.
        bptt: sequence length wanted; L = min(bptt, nbatch - 1 - i).
        device: device of the returned Tensors (None = default device).
        dtype: Tensor dtype (None = float32).
    Returns:
        (X, y): X = rows i .. i+L-1, shape L x bs; y = rows i+1 .. i+L flattened, shape (L*bs,);
        constant Tensors (requires_grad=False).
    """
    batches = np.asarray(batches)
    if batches.ndim != 2:
        raise ValueError(f"get_batch: expected batches of shape (nbatch, bs), got {batches.shape}")
    if int(bptt) != bptt or bptt < 1:
        raise ValueError(f"get_batch: bptt must be a positive integer, got {bptt!r}")
    nbatch = batches.shape[0]
    if not 0 <= i < nbatch - 1:
        raise IndexError(f"get_batch: row i={i} out of range for batches of shape "
                         f"{batches.shape} (need 0 <= i < {nbatch - 1})")
    seq_len = min(bptt, nbatch - 1 - i)
    data = batches[i:i + seq_len]
    target = batches[i + 1:i + 1 + seq_len].reshape(-1)
    dtype = "float32" if dtype is None else dtype
    return (Tensor(data, device=device, dtype=dtype, requires_grad=False),
            Tensor(target, device=device, dtype=dtype, requires_grad=False))
