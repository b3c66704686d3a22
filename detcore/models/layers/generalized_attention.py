"""``GeneralizedAttention``: the spatial attention block of Zhu et al., "An Empirical Study of Spatial
Attention Mechanisms in Deep Networks" (ICCV 2019).

Every query position ``p = (i, j)`` attends over the key positions ``p' = (k, l)`` (the input subsampled
by ``kv_stride``) with, per head, the energy

    E(p, p') = [1] q_p . k_p'  +  [2] q_p . R(p - p')  +  [3] u . k_p'  +  [4] v . R(p - p')

where the bits of ``attention_type`` (``"1111"``, ``"0010"``, ...) switch the four terms on: query
content vs key content, query content vs relative position, key saliency alone (a learnt vector ``u``,
``appr_bias``), relative position alone (``v``, ``geom_bias``). The relative-position feature is
``R = (fc_x(emb(j - l)) + fc_y(emb(i - k))) / sqrt(2)``, ``emb`` the sinusoidal embedding of the
offset in input pixels (times ``position_magnitude``). A softmax over the key positions weights the
values; a 1x1 conv projects the heads back to ``in_channels``; the result, scaled by ``gamma`` (zero
at init, so a fresh block is the identity), is added to the input:

    y = x + gamma * proj_conv(softmax(E) V)

``spatial_range >= 0`` limits each query to a window of key positions around it (the reference's
window). ``q_stride > 1`` subsamples the queries; the output is then resized back (bilinear).

State-dict names are the reference's (``appr_bias``, ``geom_bias``, ``gamma``, ``query_conv``,
``key_conv``, ``value_conv``, ``appr_geom_fc_x``, ``appr_geom_fc_y``, ``proj_conv``); as a ResNet
plugin the block is named ``gen_attention_block``. The reference keeps the window as a fixed-size
``local_constraint_map`` parameter (built for at most 84 x 84 maps); here it is computed for the map at
hand, and that key of a reference checkpoint is dropped on load.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detcore.models.init import kaiming_init


def _kaiming(module: nn.Module) -> None:
    # fan_in, leaky ReLU with slope 1 (gain 1), uniform, zero bias: the reference's initialisation
    kaiming_init(module, a=1, mode="fan_in", nonlinearity="leaky_relu", distribution="uniform")


class GeneralizedAttention(nn.Module):
    """Generalized spatial attention on ``(B, in_channels, H, W)`` -> same shape.

    Args:
        in_channels: channels of the input and the output.
        spatial_range: keys within this many pixels (in key-grid units, as in the reference) of the
            query; -1: all positions.
        num_heads: attention heads; each has ``in_channels // num_heads`` query/key and value channels.
        position_embedding_dim: size of the sinusoidal offset embedding (x and y halves); -1: in_channels.
            Must be a multiple of 4.
        position_magnitude: offsets are multiplied by this before the embedding.
        kv_stride: keys and values are taken at every ``kv_stride``-th row and column.
        q_stride: queries likewise (the output is resized back to the input's size).
        attention_type: four ``0``/``1`` characters switching the energy terms (see the module doc).
    """

    _abbr_ = "gen_attention_block"

    def __init__(
        self,
        in_channels: int,
        spatial_range: int = -1,
        num_heads: int = 9,
        position_embedding_dim: int = -1,
        position_magnitude: int = 1,
        kv_stride: int = 2,
        q_stride: int = 1,
        attention_type: str = "1111",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if (
            not isinstance(attention_type, str)
            or len(attention_type) != 4
            or set(attention_type) - {"0", "1"}
        ):
            raise ValueError(
                f"{name}: attention_type must be 4 characters of 0/1 (e.g. '1111'), got {attention_type!r}"
            )
        terms = tuple(c == "1" for c in attention_type)
        if not any(terms):
            raise ValueError(f"{name}: attention_type '0000' switches every energy term off")
        if num_heads < 1 or in_channels // num_heads < 1:
            raise ValueError(f"{name}: need 1 <= num_heads <= in_channels, got {num_heads} for {in_channels}")
        if kv_stride < 1 or q_stride < 1:
            raise ValueError(f"{name}: strides must be >= 1, got kv_stride={kv_stride}, q_stride={q_stride}")
        embed_dim = position_embedding_dim if position_embedding_dim > 0 else in_channels
        if (terms[1] or terms[3]) and embed_dim % 4:
            raise ValueError(f"{name}: position_embedding_dim must be a multiple of 4, got {embed_dim}")

        self.in_channels = in_channels
        self.attention_type = terms
        self.spatial_range = spatial_range
        self.num_heads = num_heads
        self.position_embedding_dim = embed_dim
        self.position_magnitude = position_magnitude
        self.kv_stride, self.q_stride = kv_stride, q_stride
        self.qk_embed_dim = in_channels // num_heads
        self.v_dim = in_channels // num_heads
        qk_channels = self.qk_embed_dim * num_heads
        stdv = 1.0 / math.sqrt(self.qk_embed_dim * 2)

        # parameters first, in the reference's order: appr_bias, geom_bias, gamma
        if terms[2]:
            self.appr_bias = nn.Parameter(torch.empty(qk_channels).uniform_(-stdv, stdv))
        if terms[3]:
            self.geom_bias = nn.Parameter(torch.empty(qk_channels).uniform_(-stdv, stdv))
        self.gamma = nn.Parameter(torch.zeros(1))
        if terms[0] or terms[1]:
            self.query_conv = nn.Conv2d(in_channels, qk_channels, 1, bias=False)
        if terms[0] or terms[2]:
            self.key_conv = nn.Conv2d(in_channels, qk_channels, 1, bias=False)
        self.value_conv = nn.Conv2d(in_channels, self.v_dim * num_heads, 1, bias=False)
        if terms[1] or terms[3]:
            self.appr_geom_fc_x = nn.Linear(embed_dim // 2, qk_channels, bias=False)
            self.appr_geom_fc_y = nn.Linear(embed_dim // 2, qk_channels, bias=False)
        self.proj_conv = nn.Conv2d(self.v_dim * num_heads, in_channels, 1, bias=True)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-uniform (fan_in, gain 1) convs and position fcs, zero biases; ``gamma`` stays 0."""
        for child in self.children():
            _kaiming(child)

    # -- pieces -------------------------------------------------------------------------------------

    def position_embedding(self, n_q: int, n_kv: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Sinusoidal embeddings ``(n_q, n_kv, position_embedding_dim // 2)`` of the offsets
        ``(a * q_stride - b * kv_stride) * position_magnitude`` along one axis."""
        q_pos = torch.arange(n_q, device=device, dtype=dtype) * self.q_stride
        kv_pos = torch.arange(n_kv, device=device, dtype=dtype) * self.kv_stride
        offsets = (q_pos[:, None] - kv_pos[None, :]) * self.position_magnitude  # (n_q, n_kv)
        quarter = self.position_embedding_dim // 4
        freqs = torch.arange(quarter, device=device, dtype=dtype) * (4.0 / self.position_embedding_dim)
        wave = torch.tensor(1000.0, device=device, dtype=dtype) ** freqs  # (quarter,)
        angles = offsets[..., None] / wave
        return torch.cat((angles.sin(), angles.cos()), dim=-1)

    def window_mask(self, h: int, w: int, h_kv: int, w_kv: int, device: torch.device) -> Tensor:
        """True where key ``(k, l)`` is outside query ``(i, j)``'s window: ``(h, w, h_kv, w_kv)``.

        Along each axis query index ``a`` sees key indices ``[max(floor((a - r) / s), 0),
        floor((a + r + 1) / s) + 1)``, ``r = spatial_range`` and ``s = kv_stride`` (the reference's window).
        """

        def allowed(n: int, n_kv: int) -> Tensor:
            a = torch.arange(n, device=device)
            lo = torch.div(a - self.spatial_range, self.kv_stride, rounding_mode="floor").clamp(min=0)
            hi = torch.div(a + self.spatial_range + 1, self.kv_stride, rounding_mode="floor") + 1
            b = torch.arange(n_kv, device=device)
            return (b[None, :] >= lo[:, None]) & (b[None, :] < hi[:, None])

        inside = allowed(h, h_kv)[:, None, :, None] & allowed(w, w_kv)[None, :, None, :]
        return ~inside

    def energy(self, x_q: Tensor, x_kv: Tensor) -> Tensor:
        """Attention logits ``(B, heads, h, w, h_kv, w_kv)``; the query axes are 1 x 1 when no term
        depends on the query (``"0010"``: every query gets the same distribution)."""
        n, _, h, w = x_q.shape
        _, _, h_kv, w_kv = x_kv.shape
        m, d = self.num_heads, self.qk_embed_dim
        t = self.attention_type
        query = None
        if t[0] or t[1]:
            query = self.query_conv(x_q).view(n, m, d, h, w).permute(0, 1, 3, 4, 2)  # (n, m, h, w, d)
        energy = x_q.new_zeros(1, 1, 1, 1, 1, 1)
        if t[0] or t[2]:
            key = self.key_conv(x_kv).view(n, m, d, h_kv * w_kv)
            content = 0
            if t[0]:
                content = query
            if t[2]:
                content = content + self.appr_bias.view(1, m, 1, 1, d)
            qh, qw = content.shape[2], content.shape[3]
            flat = content.reshape(content.shape[0], m, qh * qw, d)
            energy = energy + torch.matmul(flat, key).view(n, m, qh, qw, h_kv, w_kv)
        if t[1] or t[3]:
            geom = 0
            if t[1]:
                geom = query
            if t[3]:
                geom = geom + self.geom_bias.view(1, m, 1, 1, d)
            geom = geom.expand(n, m, h, w, d)
            emb_x = self.position_embedding(w, w_kv, x_q.device, x_q.dtype)
            emb_y = self.position_embedding(h, h_kv, x_q.device, x_q.dtype)
            rel_x = self.appr_geom_fc_x(emb_x).view(w, w_kv, m, d).permute(2, 0, 1, 3) / math.sqrt(2)
            rel_y = self.appr_geom_fc_y(emb_y).view(h, h_kv, m, d).permute(2, 0, 1, 3) / math.sqrt(2)
            energy_x = torch.einsum("nmhwd,mwld->nmhwl", geom, rel_x)  # (n, m, h, w, w_kv)
            energy_y = torch.einsum("nmhwd,mhkd->nmhwk", geom, rel_y)  # (n, m, h, w, h_kv)
            energy = energy + energy_x[:, :, :, :, None, :] + energy_y[:, :, :, :, :, None]
        if self.spatial_range >= 0:
            energy = energy.expand(n, m, h, w, h_kv, w_kv)
            energy = energy.masked_fill(self.window_mask(h, w, h_kv, w_kv, x_q.device), float("-inf"))
        return energy

    # -- forward ------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        x_q = x[:, :, :: self.q_stride, :: self.q_stride] if self.q_stride > 1 else x
        x_kv = x[:, :, :: self.kv_stride, :: self.kv_stride] if self.kv_stride > 1 else x
        n = x.shape[0]
        m, v = self.num_heads, self.v_dim
        energy = self.energy(x_q, x_kv)
        _, _, h, w, h_kv, w_kv = energy.shape
        attention = energy.reshape(energy.shape[0], m, h * w, h_kv * w_kv).softmax(dim=-1)
        value = self.value_conv(x_kv).view(n, m, v, h_kv * w_kv).transpose(2, 3)  # (n, m, hw_kv, v)
        out = torch.matmul(attention, value)  # (n, m, hw, v)
        out = out.transpose(2, 3).reshape(n, m * v, h, w)
        out = self.proj_conv(out)
        if (h, w) != (1, 1) and out.shape[2:] != x.shape[2:]:
            out = F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.gamma * out + x

    def _load_from_state_dict(
        self,
        state_dict,
        prefix,
        local_metadata,
        strict,
        missing_keys,
        unexpected_keys,
        error_msgs,  # noqa: ANN001
    ) -> None:
        # the reference stores its window as a fixed-size byte parameter; it is recomputed here
        state_dict.pop(prefix + "local_constraint_map", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        bits = "".join("1" if t else "0" for t in self.attention_type)
        return (
            f"attention_type={bits!r}, num_heads={self.num_heads}, spatial_range={self.spatial_range}, "
            f"kv_stride={self.kv_stride}, q_stride={self.q_stride}"
        )
