"""PTB data helpers (Dictionary, Corpus, batchify, get_batch), LanguageModel and the PTB loops of
apps.simple_ml, on a tiny corpus written to tmp_path."""
import needle as ndl
import numpy as np
import pytest
from needle import nn
from needle.data import Corpus, Dictionary, batchify, get_batch

from apps.models import LanguageModel
from apps.simple_ml import epoch_general_ptb, evaluate_ptb, train_ptb

TRAIN = ["the cat sat on the mat", "", "a dog sat on the log", "the cat saw a dog"]
TEST = ["the dog sat", "a bird flew"]


@pytest.fixture
def ptb_dir(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(" " + line + " " for line in TRAIN) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(TEST) + "\n")
    return tmp_path


def expected_ids(lines, vocab):
    ids = []
    for line in lines:
        for w in line.split() + ["<eos>"]:
            vocab.setdefault(w, len(vocab))
            ids.append(vocab[w])
    return ids


# ---------------------------------------------------------------------------------------------
# data


def test_dictionary():
    d = Dictionary()
    assert len(d) == 0
    assert [d.add_word(w) for w in ["b", "a", "b", "c", "a"]] == [0, 1, 0, 2, 1]
    assert d.word2idx == {"b": 0, "a": 1, "c": 2}
    assert d.idx2word == ["b", "a", "c"]
    assert len(d) == 3


def test_corpus_tokenizes_with_shared_dictionary(ptb_dir):
    corpus = Corpus(str(ptb_dir))
    vocab = {}
    assert corpus.train == expected_ids(TRAIN, vocab)
    assert corpus.test == expected_ids(TEST, vocab)  # test words extend the same dictionary
    assert corpus.dictionary.word2idx == vocab
    assert corpus.dictionary.idx2word[corpus.train[6]] == "<eos>"
    assert corpus.train[7] == corpus.train[6]  # the empty line is just "<eos>"
    assert len(corpus.dictionary) == len(vocab) == 12


def test_corpus_max_lines(ptb_dir):
    corpus = Corpus(ptb_dir, max_lines=1)
    vocab = {}
    assert corpus.train == expected_ids(TRAIN[:1], vocab)
    assert corpus.test == expected_ids(TEST[:1], vocab)
    assert Corpus(ptb_dir, max_lines=0).train == []


def test_corpus_missing_file(tmp_path):
    (tmp_path / "train.txt").write_text("a b\n")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        Corpus(tmp_path)


def test_batchify():
    data = list(range(11))
    b = batchify(data, 3, device=ndl.cpu(), dtype="float32")
    assert isinstance(b, np.ndarray) and b.shape == (3, 3) and b.dtype == np.float32
    for j in range(3):
        np.testing.assert_array_equal(b[:, j], data[3 * j:3 * j + 3])  # remainder 9, 10 dropped
    assert batchify(data, 1, None, None).shape == (11, 1)
    with pytest.raises(ValueError, match="batchify.*batch_size"):
        batchify(data, 0, None, None)
    with pytest.raises(ValueError, match="batchify.*11 tokens"):
        batchify(data, 12, None, None)


def test_get_batch(device):
    batches = batchify(list(range(24)), 3, device, "float32")  # 8 x 3
    state = np.random.get_state()[1].copy()
    X, y = get_batch(batches, 2, 4, device=device)
    assert X.shape == (4, 3) and y.shape == (12,)
    assert X.device == device and X.dtype == "float32" and y.dtype == "float32"
    assert isinstance(X.cached_data, ndl.backend_ndarray.NDArray)
    np.testing.assert_array_equal(X.numpy(), batches[2:6])
    np.testing.assert_array_equal(y.numpy(), batches[3:7].reshape(-1))
    X, y = get_batch(batches, 5, 4, device=device)  # L = min(4, 8 - 1 - 5) = 2
    assert X.shape == (2, 3) and y.shape == (6,)
    np.testing.assert_array_equal(y.numpy(), batches[6:8].reshape(-1))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # no draws
    with pytest.raises(IndexError, match=r"get_batch.*\(8, 3\)"):
        get_batch(batches, 7, 4, device=device)


# ---------------------------------------------------------------------------------------------
# LanguageModel


@pytest.mark.parametrize("seq_model,num_layers", [("rnn", 1), ("rnn", 2), ("lstm", 2)])
def test_language_model_shapes(device, seq_model, num_layers):
    model = LanguageModel(6, 11, 5, num_layers=num_layers, seq_model=seq_model, device=device)
    x = ndl.Tensor(np.random.randint(0, 11, size=(4, 3)), device=device)
    out, h = model(x)
    assert out.shape == (12, 11) and out.device == device
    if seq_model == "rnn":
        assert isinstance(h, ndl.Tensor) and h.shape == (num_layers, 3, 5)
    else:
        assert type(h) is tuple and len(h) == 2
        assert h[0].shape == h[1].shape == (num_layers, 3, 5)
    out2, _ = model(x, h)  # the state can be fed back
    assert out2.shape == (12, 11)
    out2.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_language_model_creation_order_and_draws():
    np.random.seed(0)
    model = LanguageModel(4, 9, 3, num_layers=1, seq_model="rnn", device=ndl.cpu_numpy())
    after = np.random.rand()
    np.random.seed(0)
    emb = np.random.randn(9, 4).astype(np.float32)
    k = 1 / np.sqrt(3)
    cell = [np.random.rand(*s).astype(np.float32) * 2 * k - k for s in [(4, 3), (3, 3), (3,),
                                                                          (3,)]]
    np.random.rand(3, 9), np.random.rand(9, 1)  # Linear weight, then bias
    assert np.random.rand() == after
    params = model.parameters()
    assert [p.shape for p in params] == [(9, 4), (4, 3), (3, 3), (3,), (3,), (3, 9), (1, 9)]
    np.testing.assert_array_equal(params[0].numpy(), emb)
    np.testing.assert_allclose(params[1].numpy(), cell[0], rtol=1e-6, atol=1e-7)
    assert isinstance(model.seq_model, nn.RNN)
    assert isinstance(LanguageModel(4, 9, 3, seq_model="lstm").seq_model, nn.LSTM)
    with pytest.raises(ValueError, match="seq_model"):
        LanguageModel(4, 9, 3, seq_model="gru")


# ---------------------------------------------------------------------------------------------
# training loops


@pytest.mark.parametrize("seq_model", ["rnn", "lstm"])
def test_train_ptb_loss_falls(device, ptb_dir, seq_model):
    corpus = Corpus(ptb_dir)
    data = batchify(corpus.train * 4, 2, device, "float32")  # 56 x 2
    model = LanguageModel(8, len(corpus.dictionary), 16, seq_model=seq_model, device=device)
    acc0, loss0 = evaluate_ptb(model, data, seq_len=8, device=device)
    # Each helper reseeds 4 first and draws nothing else.
    expected_next = (np.random.seed(4), np.random.rand())[1]
    evaluate_ptb(model, data, seq_len=8, device=device)
    assert np.random.rand() == expected_next
    opt = ndl.optim.Adam if seq_model == "lstm" else ndl.optim.SGD
    lr = 0.02 if seq_model == "lstm" else 0.5
    train_ptb(model, data, seq_len=8, n_epochs=4, optimizer=opt, lr=lr, clip=1.0,
              device=device)
    acc1, loss1 = evaluate_ptb(model, data, seq_len=8, device=device)
    assert 0.0 <= acc0 <= 1.0 and 0.0 <= acc1 <= 1.0
    assert loss0 > np.log(len(corpus.dictionary)) * 0.8  # untrained: about uniform
    assert loss1 < loss0 - 0.5, (loss0, loss1)
    assert acc1 > acc0


def test_epoch_general_ptb_modes_and_errors(ptb_dir):
    corpus = Corpus(ptb_dir)
    dev = ndl.cpu()
    data = batchify(corpus.train, 2, dev, "float32")  # 14 x 2
    model = LanguageModel(4, len(corpus.dictionary), 6, device=dev)
    model.train()
    acc, loss = epoch_general_ptb(data, model, seq_len=5, device=dev)
    assert not model.training and not model.seq_model.rnn_cells[0].training
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    epoch_general_ptb(data, model, seq_len=5, opt=opt, clip=0.25, device=dev)
    assert model.training
    with pytest.raises(ValueError, match="epoch_general_ptb.*no batches"):
        epoch_general_ptb(data[:1], model, seq_len=5, device=dev)
