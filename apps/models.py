"""Models built from needle.nn modules: the image classifiers ResNet9, LeNet-5, VGG and
ResNet-18, and the Penn Treebank LanguageModel.

The classifiers take NCHW input (N x C x H x W) and return logits N x num_classes; every layer
gets the model's `device` and `dtype`. Parameters are drawn from numpy's global RNG in
construction order.
"""
import needle as ndl
import numpy as np
from needle import nn

__all__ = ["VGG", "VGG_CONFIGS", "BasicBlock", "LeNet", "ResNet9", "ResNet18"]

# Part of the RNG contract: importing apps.models reseeds the global RNG.
np.random.seed(0)


def ConvBN(a, b, k, s, device=None, dtype="float32"):
    """Conv(a, b, k, stride=s) -> BatchNorm2d(b) -> ReLU, NCHW."""
    return nn.Sequential(
        nn.Conv(a, b, k, stride=s, device=device, dtype=dtype),
        nn.BatchNorm2d(b, device=device, dtype=dtype),
        nn.ReLU(),
    )


class ResNet9(nn.Module):
    """The needle ResNet9 (431,946 parameters): N x 3 x 32 x 32 -> N x 10 logits.

    Example:
        >>> model = ResNet9(device=ndl.cpu())
        >>> model(ndl.init.zeros(2, 3, 32, 32, device=ndl.cpu())).shape
        (2, 10)
    """

    def __init__(self, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.model = nn.Sequential(
            ConvBN(3, 16, 7, 4, **kw),
            ConvBN(16, 32, 3, 2, **kw),
            nn.Residual(nn.Sequential(ConvBN(32, 32, 3, 1, **kw), ConvBN(32, 32, 3, 1, **kw))),
            ConvBN(32, 64, 3, 2, **kw),
            ConvBN(64, 128, 3, 2, **kw),
            nn.Residual(nn.Sequential(ConvBN(128, 128, 3, 1, **kw),
                                      ConvBN(128, 128, 3, 1, **kw))),
            nn.Flatten(),
            nn.Linear(128, 128, **kw),
            nn.ReLU(),
            nn.Linear(128, 10, **kw),
        )

    def forward(self, x):
        return self.model(x)


class LeNet(nn.Module):
    """LeNet-5 with ReLU and max pooling (61,706 parameters for 1 input channel, 10 classes).

    conv 5x5 (6) -> maxpool 2 -> conv 5x5 (16) -> maxpool 2 -> 120 -> 84 -> num_classes.

    Args:
        in_channels: C of the N x C x H x W input.
        num_classes: number of logits.
        input_size: 28 (the first conv pads by 2, as for MNIST) or 32 (no padding).

    Input N x C x 28 x 28 (or 32 x 32) -> logits N x num_classes.
    """

    def __init__(self, in_channels=1, num_classes=10, input_size=28, device=None,
                 dtype="float32"):
        super().__init__()
        if input_size not in (28, 32):
            raise ValueError(f"LeNet: input_size must be 28 or 32, got {input_size}")
        kw = dict(device=device, dtype=dtype)
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2 if input_size == 28 else 0, **kw),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, **kw),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120, **kw),
            nn.ReLU(),
            nn.Linear(120, 84, **kw),
            nn.ReLU(),
            nn.Linear(84, num_classes, **kw),
        )

    def forward(self, x):
        return self.model(x)


# Channels per 3x3 conv; "M" is a 2x2 max pool. Five pools take 32 x 32 down to 1 x 1.
VGG_CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG adapted to 32 x 32 images: 3x3 convs (+ BatchNorm2d) + ReLU, five max pools, then a
    single Linear(512, num_classes) (the usual CIFAR variant; no 4096-wide classifier).

    Parameters (3 input channels, 10 classes): VGG-11 9,225,610 (9,231,114 with batch_norm);
    VGG-16 14,719,818 (14,728,266 with batch_norm).

    Args:
        depth: 11, 13, 16 or 19.
        batch_norm: add BatchNorm2d after every conv.
        num_classes, in_channels: output logits and C of the N x C x 32 x 32 input.
    """

    def __init__(self, depth=11, batch_norm=False, num_classes=10, in_channels=3, device=None,
                 dtype="float32"):
        super().__init__()
        if depth not in VGG_CONFIGS:
            raise ValueError(f"VGG: depth must be one of {sorted(VGG_CONFIGS)}, got {depth}")
        kw = dict(device=device, dtype=dtype)
        layers, c = [], in_channels
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv(c, v, 3, **kw))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v, **kw))
            layers.append(nn.ReLU())
            c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, num_classes, **kw))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut
    (identity, or conv1x1(stride) -> BN when the shape changes), then ReLU. NCHW."""

    def __init__(self, in_planes, planes, stride=1, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.conv1 = nn.Conv(in_planes, planes, 3, stride=stride, bias=False, **kw)
        self.bn1 = nn.BatchNorm2d(planes, **kw)
        self.conv2 = nn.Conv(planes, planes, 3, bias=False, **kw)
        self.bn2 = nn.BatchNorm2d(planes, **kw)
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv(in_planes, planes, 1, stride=stride, bias=False, **kw),
                nn.BatchNorm2d(planes, **kw))
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32 x 32 images (CIFAR variant): a 3x3 stride-1 stem, no stem pooling, four
    stages of two basic blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2), global average
    pooling and Linear(512, num_classes). 11,173,962 parameters for 3 channels, 10 classes.

    Input N x C x H x W (H, W = 32 for CIFAR) -> logits N x num_classes.
    """

    def __init__(self, num_classes=10, in_channels=3, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.stem = nn.Sequential(nn.Conv(in_channels, 64, 3, bias=False, **kw),
                                  nn.BatchNorm2d(64, **kw), nn.ReLU())
        blocks, c = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c, planes, stride, **kw), BasicBlock(planes, planes, 1, **kw)]
            c = planes
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.GlobalAvgPool2d()
        self.fc = nn.Linear(512, num_classes, **kw)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))


# ---------------------------------------------------------------------------------------------
# Language model (Penn Treebank)


class LanguageModel(nn.Module):
    """Embedding -> RNN or LSTM -> Linear, for next-word prediction.

    Args:
        embedding_size: word-vector size; output_size: vocabulary size;
        hidden_size: recurrent state size; num_layers: stacked recurrent layers;
        seq_model: "rnn" or "lstm"; seq_len: kept for reference (the input fixes the length).
    Children, created in this order: `embedding` = Embedding(output_size, embedding_size),
    `seq_model` = RNN / LSTM(embedding_size, hidden_size, num_layers),
    `linear` = Linear(hidden_size, output_size).
    Shapes: forward(x (seq_len x bs) of word ids as floats, h=None)
        -> (logits (seq_len*bs) x output_size, h) where h is num_layers x bs x hidden_size
        (rnn) or a Python tuple (h, c) of two such Tensors (lstm).

    Example:
        >>> model = LanguageModel(8, 50, 16, seq_model="lstm")
        >>> out, (h, c) = model(ndl.Tensor(np.zeros((5, 2))))
        >>> out.shape, h.shape
        ((10, 50), (1, 2, 16))
    """

    def __init__(self, embedding_size, output_size, hidden_size, num_layers=1, seq_model="rnn",
                 seq_len=40, device=None, dtype="float32"):
        super().__init__()
        if seq_model not in ("rnn", "lstm"):
            raise ValueError(f"LanguageModel: seq_model must be 'rnn' or 'lstm', got "
                             f"{seq_model!r}")
        kw = dict(device=device, dtype=dtype)
        self.seq_len = seq_len
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.embedding = nn.Embedding(output_size, embedding_size, **kw)
        seq_class = nn.RNN if seq_model == "rnn" else nn.LSTM
        self.seq_model = seq_class(embedding_size, hidden_size, num_layers, **kw)
        self.linear = nn.Linear(hidden_size, output_size, **kw)

    def forward(self, x, h=None):
        if len(x.shape) != 2:
            raise ValueError(f"LanguageModel: expected word ids (seq_len, bs), got "
                             f"{tuple(x.shape)}")
        seq_len, bs = x.shape
        out, h = self.seq_model(self.embedding(x), h)
        out = ndl.ops.reshape(out, (seq_len * bs, self.hidden_size))
        return self.linear(out), h


__all__.append("LanguageModel")
