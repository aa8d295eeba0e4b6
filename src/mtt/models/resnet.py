"""Short-chunk ResNet (Won, Choi, Kim, Serra, Serra 2020): the strong CNN baseline of the seed.

Seven residual blocks of 3x3 convolutions, each downsampling by stride 2, then max-pooling over
what remains of time and a small dense head. Trained on short crops (3.69 s in its paper).
"""
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=2):
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn_1 = nn.BatchNorm2d(out_channels)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn_2 = nn.BatchNorm2d(out_channels)
        self.diff = stride != 1 or in_channels != out_channels
        if self.diff:
            self.conv_3 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
            self.bn_3 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        out = self.bn_2(self.conv_2(F.relu(self.bn_1(self.conv_1(x)))))
        shortcut = self.bn_3(self.conv_3(x)) if self.diff else x
        return F.relu(out + shortcut)


class ShortChunkResNet(nn.Module):
    """(batch, 128, frames) dB log-mel -> (batch, n_tags) logits."""

    kind = "resnet"
    frontend_prefixes = ("spec_bn.", "layers.")  # the convolutions (--init-from-teacher)
    default_crop_seconds = 3.69

    def __init__(self, n_tags=50, channels=128, dropout=0.5, n_mels=128):
        super().__init__()
        self.config = dict(n_tags=n_tags, channels=channels, dropout=dropout, n_mels=n_mels)
        c = channels
        widths = [c, c, 2 * c, 2 * c, 2 * c, 2 * c, 4 * c]
        self.spec_bn = nn.BatchNorm2d(1)
        self.layers = nn.Sequential(*(ResBlock(i, o) for i, o in zip([1] + widths[:-1], widths)))
        self.dense1 = nn.Linear(4 * c, 4 * c)
        self.bn = nn.BatchNorm1d(4 * c)
        self.dropout = nn.Dropout(dropout)
        self.dense2 = nn.Linear(4 * c, n_tags)

    def embed(self, mel):
        """The penultimate layer's output, the song embedding the head reads."""
        x = self.layers(self.spec_bn(mel.unsqueeze(1)))  # (B, 4c, freq', time')
        x = x.amax(dim=(2, 3))  # frequency is 1 after seven halvings of 128; max over time
        return self.dropout(F.relu(self.bn(self.dense1(x))))

    def head(self, embedding):
        return self.dense2(embedding)

    def forward(self, mel):
        return self.head(self.embed(mel))
