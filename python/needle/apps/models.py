"""Models built from needle.nn modules: the image classifiers ResNet9, LeNet-5, AlexNet, VGG,
GoogLeNet (Inception v1) and ResNet-18, and the Penn Treebank LanguageModel.

The classifiers take NCHW input (N x C x H x W) and return logits N x num_classes; every layer
gets the model's `device` and `dtype`. Parameters are drawn from numpy's global RNG in
construction order.
"""
import needle as ndl
import numpy as np
from needle import nn

__all__ = ["VGG", "VGG_CONFIGS", "BasicBlock", "LeNet", "ResNet9", "ResNet18", "AlexNet",
           "Inception", "GoogLeNet"]


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


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al. 2012, single-tower form as in torchvision).

    Five convs (64, 192, 384, 256, 256 channels) with ReLU, three 3x3 stride-2 max pools, then
    Dropout -> Linear(hidden) -> ReLU -> Dropout -> Linear(hidden) -> ReLU -> Linear(classes).

    imagenet=True: torchvision's configuration for N x 3 x 224 x 224 (conv 11x11 stride 4
    padding 2, conv 5x5 padding 2, three 3x3 padding 1, hidden 4096): 61,100,840 parameters,
    torchvision's count. Its AdaptiveAvgPool2d((6, 6)) is the identity at 224 x 224 and is
    left out, so this configuration takes 224 x 224 inputs only.
    imagenet=False (default), our CIFAR-size variant for N x C x 32 x 32: the same widths and
    pools, the first conv 5x5 stride 1 padding 2 (32 -> 15 -> 7 -> 3 through the pools), and
    the classifier Linear(256*3*3, hidden) with hidden=1024 by default: 5,871,434 parameters
    for 3 channels and 10 classes.
    """

    def __init__(self, num_classes=10, in_channels=3, imagenet=False, hidden=None, dropout=0.5,
                 device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        hidden = hidden or (4096 if imagenet else 1024)
        first = (dict(kernel_size=11, stride=4, padding=2) if imagenet
                 else dict(kernel_size=5, stride=1, padding=2))
        self.input_size = 224 if imagenet else 32
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, **first, **kw), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2, **kw), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1, **kw), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, **kw), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(3, 2),
        )
        side = 6 if imagenet else 3
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(256 * side * side, hidden, **kw),
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden, **kw), nn.ReLU(),
            nn.Linear(hidden, num_classes, **kw),
        )

    def forward(self, x):
        if tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(f"AlexNet: expected N x C x {self.input_size} x {self.input_size} "
                             f"input, got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def _conv_bn(a, b, k, padding=0, stride=1, **kw):
    """GoogLeNet's conv unit (torchvision BasicConv2d): conv without bias -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(a, b, k, stride=stride, padding=padding, bias=False, **kw),
                         nn.BatchNorm2d(b, eps=1e-3, **kw), nn.ReLU())


class Inception(nn.Module):
    """Inception v1 block, NCHW: four branches joined along the channels,
    1x1 | 1x1 reduce -> 3x3 | 1x1 reduce -> "5x5" | 3x3 max pool -> 1x1 projection.

    The "5x5" branch uses a 3x3 conv, as torchvision does (its parameter count is the one we
    check); the paper's 5x5 (five=5) gives 7,005,832 parameters in the ImageNet GoogLeNet.
    Output channels: c1 + c3 + c5 + pool_proj.
    """

    def __init__(self, cin, c1, c3_reduce, c3, c5_reduce, c5, pool_proj, five=3, device=None,
                 dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.branch1 = _conv_bn(cin, c1, 1, **kw)
        self.branch3 = nn.Sequential(_conv_bn(cin, c3_reduce, 1, **kw),
                                     _conv_bn(c3_reduce, c3, 3, padding=1, **kw))
        self.branch5 = nn.Sequential(_conv_bn(cin, c5_reduce, 1, **kw),
                                     _conv_bn(c5_reduce, c5, five, padding=five // 2, **kw))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_bn(cin, pool_proj, 1, **kw))

    def forward(self, x):
        return ndl.ops.concat([self.branch1(x), self.branch3(x), self.branch5(x),
                               self.branch_pool(x)], axis=1)


# (cin, c1, c3 reduce, c3, c5 reduce, c5, pool proj) of the nine blocks; "M" a 3x3/2 max pool
GOOGLENET_BLOCKS = [
    (192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "M",
    (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128), "M",
    (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128),
]


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1 (Szegedy et al. 2014) without the auxiliary heads: nine
    Inception blocks with 1x1 reductions, global average pooling, Dropout, Linear(1024).

    imagenet=True: torchvision's configuration for N x 3 x 224 x 224 (stem 7x7/2 conv, max
    pool, 1x1 and 3x3 convs, max pool; BN after every conv; "5x5" branches 3x3):
    6,624,904 parameters, torchvision's googlenet(aux_logits=False) count. Its pools use
    ceil_mode; ours floor, which changes feature-map sizes by one, not parameters.
    imagenet=False (default), our CIFAR-size variant for N x C x 32 x 32: the stem is a single
    3x3 conv to 192 channels (no stride, no pooling), then the same nine blocks with the two
    inner max pools (32 -> 16 -> 8), global pooling and Linear(1024, classes): 5,490,986
    parameters for 3 channels and 10 classes (the widely used CIFAR GoogLeNet layout).
    width: scales every channel count (e.g. 0.25 for quick runs; 1 is the real model).
    """

    def __init__(self, num_classes=10, in_channels=3, imagenet=False, width=1.0, dropout=0.2,
                 five=3, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)

        def c(n):
            return max(1, int(round(n * width)))

        if imagenet:
            self.stem = nn.Sequential(
                _conv_bn(in_channels, c(64), 7, padding=3, stride=2, **kw), nn.MaxPool2d(3, 2),
                _conv_bn(c(64), c(64), 1, **kw), _conv_bn(c(64), c(192), 3, padding=1, **kw),
                nn.MaxPool2d(3, 2))
        else:
            self.stem = _conv_bn(in_channels, c(192), 3, padding=1, **kw)
        layers, cin = [], c(192)
        for block in GOOGLENET_BLOCKS:
            if block == "M":
                layers.append(nn.MaxPool2d(3, 2, 1))
                continue
            outs = [c(v) for v in block[1:]]
            layers.append(Inception(cin, *outs, five=five, **kw))
            cin = outs[0] + outs[2] + outs[4] + outs[5]
        if imagenet:
            layers[2] = nn.MaxPool2d(3, 2)
            layers[8] = nn.MaxPool2d(2, 2)
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.GlobalAvgPool2d()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes, **kw)

    def forward(self, x):
        return self.fc(self.dropout(self.pool(self.blocks(self.stem(x)))))


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
