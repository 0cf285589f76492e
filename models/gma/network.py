"""GMA (Jiang et al., ICCV 2021): RAFT with global motion aggregation, as the Ascend port runs it.

Module names and shapes follow zacjiang/GMA@2f1fd29 (``core/network.py`` and friends) so that
``gma-sintel.pth`` (185 entries, 'module.' stripped) loads strictly. The forward is what the
port's GMA.patch exports: a fixed number of refinement iterations from zero flow, returning only
the last convex-upsampled flow. Each op is chosen to export at opset 12 with standard ops and to
compute what upstream computes:

* the correlation lookup (upstream: ``F.grid_sample(align_corners=True)``, which exports only
  from opset 16) is a gather of the integer window around each centre plus a separable bilinear
  blend, zero outside the map;
* attention and aggregation (upstream: ``einsum``) are matmuls over the single head;
* convex upsampling (upstream: ``F.unfold`` 3x3) takes nine shifted slices of the zero-padded
  flow and blends them with one matmul per pixel;
* the first and second frame go through the feature encoder one at a time (upstream concatenates
  them on the batch axis and splits back, which would bake the export batch size into a Split).
  Instance norm is per sample, so the features are the same.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.spec import Profile

HIDDEN = 128  # GRU state channels
CONTEXT = 128  # context feature channels
CORR_LEVELS = 4
CORR_RADIUS = 4
MAX_POS = 160  # upstream builds Attention(max_pos_size=160)
UPSAMPLE = 8  # the network works at 1/8 resolution


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    raise ValueError(f"norm {kind!r}: GMA's encoders use 'batch' or 'instance'")


class ResidualBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm: str, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.norm1 = _norm(norm, planes)
        self.norm2 = _norm(norm, planes)
        if stride == 1:
            self.downsample = None
        else:
            # registered twice, as upstream does: the checkpoint holds both 'norm3.*' and
            # 'downsample.1.*' for the batch-norm encoder
            self.norm3 = _norm(norm, planes)
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride), self.norm3
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BasicEncoder(nn.Module):
    """RAFT's feature/context encoder: 1/8 resolution, ``output_dim`` channels."""

    def __init__(self, output_dim: int, norm: str):
        super().__init__()
        self.norm1 = _norm(norm, 64)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = self._stage(64, 64, norm, stride=1)
        self.layer2 = self._stage(64, 96, norm, stride=2)
        self.layer3 = self._stage(96, 128, norm, stride=2)
        self.conv2 = nn.Conv2d(128, output_dim, 1)

    @staticmethod
    def _stage(in_planes: int, planes: int, norm: str, stride: int) -> nn.Sequential:
        return nn.Sequential(
            ResidualBlock(in_planes, planes, norm, stride), ResidualBlock(planes, planes, norm, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class RelPosEmb(nn.Module):
    """Relative position embeddings of GMA's position-attention variants.

    The Sintel checkpoint stores them (and the index buffer) although its content-only attention
    never reads them; they exist here so that the checkpoint loads strictly.
    """

    def __init__(self, max_pos_size: int, dim_head: int):
        super().__init__()
        self.rel_height = nn.Embedding(2 * max_pos_size - 1, dim_head)
        self.rel_width = nn.Embedding(2 * max_pos_size - 1, dim_head)
        pos = torch.arange(max_pos_size)
        self.register_buffer("rel_ind", pos[None, :] - pos[:, None] + max_pos_size - 1)


class Attention(nn.Module):
    """Softmax of scaled query-key products between all context pixels (one head)."""

    def __init__(self, dim: int, dim_head: int):
        super().__init__()
        self.scale = dim_head**-0.5
        self.to_qk = nn.Conv2d(dim, 2 * dim_head, 1, bias=False)
        self.pos_emb = RelPosEmb(MAX_POS, dim_head)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        q, k = self.to_qk(fmap).chunk(2, dim=1)
        q = (self.scale * q).flatten(2).transpose(1, 2)  # [B, HW, d]
        return torch.softmax(torch.matmul(q, k.flatten(2)), dim=-1)  # [B, HW, HW]


class Aggregate(nn.Module):
    """Motion features plus gamma times their attention-weighted sum over all pixels."""

    def __init__(self, dim: int):
        super().__init__()
        self.to_v = nn.Conv2d(dim, dim, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, attn: torch.Tensor, fmap: torch.Tensor) -> torch.Tensor:
        v = self.to_v(fmap).flatten(2).transpose(1, 2)  # [B, HW, d]
        out = torch.matmul(attn, v).transpose(1, 2).reshape_as(fmap)
        return fmap + self.gamma * out


class BasicMotionEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        corr_planes = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(corr_planes, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class SepConvGRU(nn.Module):
    """A convolutional GRU applied twice: with 1x5 kernels, then with 5x1 kernels."""

    def __init__(self, hidden_dim: int, input_dim: int):
        super().__init__()
        c = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))

    @staticmethod
    def _step(h, x, convz, convr, convq):
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(convz(hx))
        r = torch.sigmoid(convr(hx))
        q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self._step(h, x, self.convz1, self.convr1, self.convq1)
        return self._step(h, x, self.convz2, self.convr2, self.convq2)


class FlowHead(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class GMAUpdateBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = BasicMotionEncoder()
        self.gru = SepConvGRU(HIDDEN, input_dim=CONTEXT + 2 * HIDDEN)
        self.flow_head = FlowHead(HIDDEN, hidden_dim=256)
        self.mask = nn.Sequential(
            nn.Conv2d(HIDDEN, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, UPSAMPLE * UPSAMPLE * 9, 1),
        )
        self.aggregator = Aggregate(HIDDEN)

    def forward(self, net, inp, corr, flow, attention):
        motion = self.encoder(flow, corr)
        motion_global = self.aggregator(attention, motion)
        net = self.gru(net, torch.cat([inp, motion, motion_global], dim=1))
        # upstream scales the mask logits by 0.25 (to balance gradients in training)
        return net, 0.25 * self.mask(net), self.flow_head(net)


def correlation_pyramid(
    fmap1: torch.Tensor, fmap2: torch.Tensor, levels: int
) -> list[torch.Tensor]:
    """All-pairs dot products / sqrt(C), one [H, W] map per pixel of frame 1, average-pooled
    ``levels - 1`` times: each level is [B*H*W, 1, H_l, W_l]."""
    _, c, h, w = fmap1.shape
    corr = torch.matmul(fmap1.flatten(2).transpose(1, 2), fmap2.flatten(2)) / math.sqrt(c)
    corr = corr.reshape(-1, 1, h, w)
    pyramid = [corr]
    for _ in range(levels - 1):
        corr = F.avg_pool2d(corr, 2, stride=2)
        pyramid.append(corr)
    return pyramid


def sample_window(corr: torch.Tensor, centre: torch.Tensor, radius: int) -> torch.Tensor:
    """Bilinear samples of ``corr`` [N, 1, H, W] at centre + (dx, dy), dx, dy in -r..r.

    ``centre`` is [N, 2] (x, y) in pixels. Values outside the map count as zero, as
    ``F.grid_sample(align_corners=True, padding_mode='zeros')`` treats them. The offsets are
    integers, so every point of a window shares the centre's fractional part: gather the
    (2r+2)^2 integer neighbours once and blend them with the same two weights. Output [N, (2r+1)^2]
    ordered x-offset-major, as upstream's ``meshgrid(dy, dx)`` window adds its first component to x.
    """
    _, _, h, w = corr.shape
    flat = corr.reshape(-1, h * w)
    x, y = centre[:, 0:1], centre[:, 1:2]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(2)
    steps = torch.arange(-radius, radius + 2, dtype=centre.dtype, device=centre.device)
    xs, ys = x0 + steps, y0 + steps  # [N, 2r+2] integer positions, window plus one beyond
    inside = ((ys >= 0) & (ys <= h - 1)).unsqueeze(2) & ((xs >= 0) & (xs <= w - 1)).unsqueeze(1)
    index = ys.clamp(0, h - 1).long().unsqueeze(2) * w + xs.clamp(0, w - 1).long().unsqueeze(1)
    vals = torch.gather(flat, 1, index.flatten(1)).reshape_as(inside) * inside.to(corr.dtype)
    rows = vals[:, :, :-1] * (1 - fx) + vals[:, :, 1:] * fx  # [N, 2r+2 (y), 2r+1 (x)]
    window = rows[:, :-1, :] * (1 - fy) + rows[:, 1:, :] * fy  # [N, 2r+1 (y), 2r+1 (x)]
    return window.transpose(1, 2).flatten(1)


def lookup(pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int) -> torch.Tensor:
    """Correlation features [B, levels*(2r+1)^2, H, W] around ``coords`` [B, 2, H, W] (x, y)."""
    _, _, h, w = coords.shape
    centre = coords.permute(0, 2, 3, 1).reshape(-1, 2)
    feats = torch.cat(
        [sample_window(corr, centre / 2**i, radius) for i, corr in enumerate(pyramid)], dim=1
    )
    return feats.reshape(-1, h, w, feats.shape[1]).permute(0, 3, 1, 2)


def coords_grid(h: int, w: int) -> torch.Tensor:
    """[1, 2, H, W]: channel 0 is x (column), channel 1 is y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([xs, ys]).float()[None]


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor, factor: int = UPSAMPLE) -> torch.Tensor:
    """Flow [B, 2, H, W] -> [B, 2, fH, fW]: each fine pixel is a softmax-weighted (convex)
    combination of factor * flow at the 3x3 coarse neighbours (zero beyond the border).
    ``mask`` [B, 9*f*f, H, W] holds the logits, channel = neighbour * f*f + row * f + col."""
    _, _, h, w = flow.shape
    padded = F.pad(factor * flow, (1, 1, 1, 1))
    neighbours = torch.stack(
        [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], dim=-1
    )  # [B, 2, H, W, 9], neighbour = dy * 3 + dx as F.unfold orders its kernel
    logits = mask.reshape(-1, 9, factor * factor, h, w).permute(0, 3, 4, 1, 2)
    weights = torch.softmax(logits, dim=3)  # [B, H, W, 9, f*f]
    fine = torch.matmul(neighbours.permute(0, 2, 3, 1, 4), weights)  # [B, H, W, 2, f*f]
    fine = fine.reshape(-1, h, w, 2, factor, factor).permute(0, 3, 1, 4, 2, 5)
    return fine.reshape(-1, 2, factor * h, factor * w)


class GMA(nn.Module):
    """image1, image2 [B, 3, H, W] raw 0-255 RGB (H, W multiples of 8) -> flow [B, 2, H, W]."""

    def __init__(self, iters: int):
        super().__init__()
        if iters < 1:
            raise ValueError(f"iters={iters}: GMA needs at least one refinement iteration")
        self.iters = iters
        self.fnet = BasicEncoder(output_dim=256, norm="instance")
        self.cnet = BasicEncoder(output_dim=HIDDEN + CONTEXT, norm="batch")
        self.update_block = GMAUpdateBlock()
        self.att = Attention(CONTEXT, dim_head=CONTEXT)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        image1 = 2 * (image1 / 255.0) - 1.0
        image2 = 2 * (image2 / 255.0) - 1.0
        pyramid = correlation_pyramid(self.fnet(image1), self.fnet(image2), CORR_LEVELS)
        net, inp = torch.split(self.cnet(image1), [HIDDEN, CONTEXT], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        attention = self.att(inp)

        coords0 = coords_grid(*net.shape[2:]).to(net.device)
        flow = torch.zeros_like(net[:, :2])
        for _ in range(self.iters):
            corr = lookup(pyramid, coords0 + flow, CORR_RADIUS)
            net, mask, delta = self.update_block(net, inp, corr, flow, attention)
            flow = flow + delta
        return convex_upsample(flow, mask)


def build(profile: Profile, state_dict: dict | None = None) -> GMA:
    """GMA with ``profile.protocol['iters']`` refinement iterations (the seed exports 6).

    Only one variant exists (one attention head, content-only attention): ``state_dict`` is not
    needed to choose it. Without one, the aggregation gate gamma gets a non-zero value, since
    upstream's zero init would leave the attention path out of seeded-weight comparisons.
    """
    net = GMA(iters=int(profile.protocol["iters"]))
    if state_dict is None:
        with torch.no_grad():
            net.update_block.aggregator.gamma.fill_(1.0)
    return net.eval()
