"""The Music Tagging Transformer (Won, Choi, Serra, ISMIR 2021), in one file.

A residual CNN front end turns the (128, frames) dB mel map into one vector per 4 frames, a
learned CLS token is put in front, and a pre-norm Transformer reads the sequence; the CLS output
gives the tags. Module names mirror the published implementation so that published state dicts
load with only the `network.` prefix removed.
"""
import torch
import torch.nn.functional as F
from torch import nn

class ResBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (projected) shortcut, then ReLU and max-pooling."""

    def __init__(self, in_channels, out_channels, pooling):
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn_1 = nn.BatchNorm2d(out_channels)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn_2 = nn.BatchNorm2d(out_channels)
        self.diff = in_channels != out_channels
        if self.diff:
            self.conv_3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.bn_3 = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(pooling)

    def forward(self, x):
        out = self.bn_2(self.conv_2(F.relu(self.bn_1(self.conv_1(x)))))
        shortcut = self.bn_3(self.conv_3(x)) if self.diff else x
        return self.pool(F.relu(out + shortcut))


class FrontEnd(nn.Module):
    """(B, 1, 128, T) -> (B, T // 4, width): frequency pooled 128 -> 16, time by 4."""

    def __init__(self, conv_channels, width, n_mels=128):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1)
        self.layer1 = ResBlock(1, conv_channels, (2, 2))
        self.layer2 = ResBlock(conv_channels, conv_channels, (2, 2))
        self.layer3 = ResBlock(conv_channels, conv_channels, (2, 1))
        self.fc = nn.Linear(conv_channels * (n_mels // 8), width)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.input_bn(x))))
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)  # channel-major (c, f) per time step
        return self.fc(x)


class Attention(nn.Module):
    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        b, n, d = x.shape
        # q, k, v in that order; heads contiguous inside each: (b, n, 3, h, d/h)
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(d/h), as published
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden, dropout):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x):
        return self.net(x)


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class Residual(nn.Module):
    """x + fn(x); with stochastic depth, fn's branch is dropped per sample while training."""

    def __init__(self, fn, drop_path=0.0):
        super().__init__()
        self.fn = fn
        self.drop_path = drop_path

    def forward(self, x):
        out = self.fn(x)
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep) / keep
            out = out * mask
        return x + out


class Transformer(nn.Module):
    def __init__(self, dim, depth, heads, mlp_dim, dropout, drop_path):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([
                Residual(PreNorm(dim, Attention(dim, heads, dropout)), drop_path),
                Residual(PreNorm(dim, FeedForward(dim, mlp_dim, dropout)), drop_path),
            ])
            for _ in range(depth)
        )

    def forward(self, x):
        for attention, feed_forward in self.layers:
            x = feed_forward(attention(x))
        return x


def check_transformer_config(**sizes):
    """One-line ValueError for sizes the transformer cannot be built with."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"transformer {name} must be a positive integer, not {value!r}")
    if sizes["width"] % sizes["heads"]:
        raise ValueError(f"transformer width {sizes['width']} is not divisible by "
                         f"heads {sizes['heads']}")
    if sizes["n_mels"] % 8:
        raise ValueError(f"transformer n_mels {sizes['n_mels']} is not a multiple of 8")


class MusicTaggingTransformer(nn.Module):
    """(batch, 128, frames) dB log-mel -> (batch, n_tags) logits."""

    kind = "transformer"
    frontend_prefixes = ("frontend.",)  # the CNN front end's tensors (--init-from-teacher)
    default_crop_seconds = 10.0

    def __init__(self, n_tags=50, conv_channels=128, width=256, layers=4, heads=8, dropout=0.1,
                 drop_path=0.0, max_len=512, n_mels=128):
        super().__init__()
        check_transformer_config(n_tags=n_tags, conv_channels=conv_channels, width=width,
                                 layers=layers, heads=heads, max_len=max_len, n_mels=n_mels)
        self.config = dict(n_tags=n_tags, conv_channels=conv_channels, width=width, layers=layers,
                           heads=heads, dropout=dropout, drop_path=drop_path, max_len=max_len,
                           n_mels=n_mels)
        self.frontend = FrontEnd(conv_channels, width, n_mels)
        self.cls_token = nn.Parameter(torch.randn(width))
        self.pos_embedding = nn.Parameter(torch.randn(1, max_len + 1, width))
        self.dropout = nn.Dropout(dropout)
        self.transformer = Transformer(width, layers, heads, 4 * width, dropout, drop_path)
        self.mlp_head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_tags))

    @property
    def max_frames(self) -> int:
        """Longest input: 4 frames per token, max_len tokens after the CLS token."""
        return 4 * self.config["max_len"] + 3

    def embed(self, mel):
        """The CLS token's output, the song embedding the head reads."""
        x = self.frontend(mel.unsqueeze(1))
        if x.shape[1] > self.config["max_len"]:
            raise ValueError(f"input of {mel.shape[-1]} frames is longer than the model's "
                             f"{self.max_frames}-frame positional table; split it into chunks")
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], dim=1)
        x = self.dropout(x + self.pos_embedding[:, : x.shape[1]])
        return self.transformer(x)[:, 0]

    def head(self, embedding):
        return self.mlp_head(embedding)

    def forward(self, mel):
        return self.head(self.embed(mel))
