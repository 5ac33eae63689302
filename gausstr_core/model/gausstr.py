"""GaussTR: foundation features of N views -> one set of 3D Gaussians per decoder layer."""

from __future__ import annotations

import torch
from torch import nn

from gausstr_core.config import ModelConfig
from gausstr_core.gaussians import Gaussians
from gausstr_core.model.decoder import SELF_ATTN_SCOPES, DecoderLayer
from gausstr_core.model.depth_head import DepthHead
from gausstr_core.model.gaussian_head import GaussianHead, SegmentHead, sample_depth, uv_to_ego
from gausstr_core.model.layers import MLP, inverse_sigmoid, sine_encoding
from gausstr_core.model.neck import SimpleFeaturePyramid
from gausstr_core.model.reference_points import random_reference_points, stratified_reference_points

VARIANTS = ("talk2dino", "featup")


class GaussTR(nn.Module):
    """The GaussTR network (neck, decoder, Gaussian heads; no backbone: features come precomputed).

    Call: `model(features, depths, intrinsics, cam2ego, original_to_input, ref_points=None) -> list[Gaussians]`,
    one Gaussians per decoder layer, the last is the final prediction. Each holds B x (N*Q)
    Gaussians, view-major (the Q Gaussians of view 0 first). The stages are public too:
    `encode` (neck), `predict_depth` (the optional depth head, `cfg.depth_head`) and `decode`.

    Depth head: with depths=None the Gaussians sample the head's depth (no depth network needed);
    return_depth=True also returns the head's depth (B, N, H, W), m, for its training loss.

    Reference points: given ones are used as they are; otherwise `sample_reference_points` draws
    them, uniformly at random in training (every forward, as the authors), and in eval mode either
    a seeded stratified set (`cfg.deterministic_refs`, identical inputs -> identical outputs) or
    random ones (the authors' stochastic evaluation). Pass them explicitly to know or reuse them.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        d = cfg.embed_dims
        self.neck = SimpleFeaturePyramid(cfg.feature_dim, d)
        self.depth_head = (
            DepthHead(d, cfg.depth_head_dims, len(SimpleFeaturePyramid.FACTORS), cfg.depth_max)
            if cfg.depth_head
            else None
        )
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.pos_mlp = MLP(d, d, d)  # sine encoding of the 2D reference point -> query position
        self.layers = nn.ModuleList(
            DecoderLayer(
                d, cfg.num_heads, cfg.num_levels, cfg.num_points, cfg.ffn_dims, cfg.dropout, cfg.self_attn_scope
            )
            for _ in range(cfg.num_layers)
        )
        self.out_norm = nn.LayerNorm(d)  # shared by all layers' outputs before their heads
        self.heads = nn.ModuleList(
            GaussianHead(d, cfg.mlp_hidden, cfg.feature_dim, cfg.scale_range, cfg.scale_multiplier)
            for _ in range(cfg.num_layers)
        )
        self.scene_pos_mlp = MLP(3 * self._scene_pos_feats, d, d) if cfg.self_attn_scope == "scene" else None
        self.segment_head = (
            SegmentHead(cfg.num_layers, cfg.segment_in_dims, cfg.segment_hidden, cfg.segment_classes)
            if cfg.segment_classes > 0
            else None
        )

    @property
    def _scene_pos_feats(self) -> int:
        """Sine features per axis of the 3D positional encoding (even, 3 x this <= embed_dims)."""
        return self.cfg.embed_dims // 6 * 2

    def sample_reference_points(
        self, batch: int, views: int, generator: torch.Generator | None = None, deterministic: bool = False,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """(B, N, Q, 2) reference points, x = u / W, y = v / H in [0, 1], on `device` (default: the model's).

        deterministic: stratified grid jittered by `generator` (default: a CPU generator seeded with
        cfg.ref_seed), the same for every call; else uniform random.
        """
        device = self.query_embed.weight.device if device is None else device
        q = self.cfg.num_queries
        if deterministic:
            generator = generator or torch.Generator().manual_seed(self.cfg.ref_seed)
            return stratified_reference_points(batch, views, q, generator, device)
        return random_reference_points(batch, views, q, generator, device)

    def forward(
        self, features: torch.Tensor, depths: torch.Tensor | None, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
        original_to_input: torch.Tensor, *, ref_points: torch.Tensor | None = None,
        images: torch.Tensor | None = None, return_depth: bool = False,
    ) -> list[Gaussians] | tuple[list[Gaussians], torch.Tensor]:
        """features (B, N, C, h, w) foundation features; depths (B, N, H, W) metric depth at network-input
        size (H, W), m, or None (then the depth head's); intrinsics (B, N, 3, 3) original-pixel K; cam2ego
        (B, N, 4, 4); original_to_input (B, N, 3, 3) original -> input pixels; ref_points (B, N, Q, 2) in
        [0, 1] or None; images (B, N, 3, H, W) RGB in [0, 1] at network-input size: what the depth head
        needs besides the features (with depths None or return_depth). With depths None the decoder takes
        the head's depth, detached (the head learns from its own loss, not through the Gaussians).
        Returns one Gaussians (B, N*Q, ...) per decoder layer; with return_depth, also the depth
        head's (B, N, H, W) depth, m."""
        self.check_inputs(features, depths, intrinsics, cam2ego, original_to_input, ref_points)
        if return_depth and self.depth_head is None:
            raise ValueError("GaussTR: return_depth needs the depth head (model.depth_head: true)")
        value_maps = self.encode(features)
        head_depths = None
        if depths is None or return_depth:
            if images is None:
                raise ValueError("GaussTR: the depth head needs the network-input images (images=...)")
            head_depths = self.predict_depth(value_maps, images, intrinsics, cam2ego, original_to_input)
        # the head learns from its own loss only: no gradient reaches it through the Gaussians
        layers = self.decode(value_maps, head_depths.detach() if depths is None else depths, intrinsics, cam2ego,
                             original_to_input, ref_points)
        return (layers, head_depths) if return_depth else layers

    def encode(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Neck: features (B, N, C, h, w) -> the value maps, one (B*N, D, h*s, w*s) per scale s
        (SimpleFeaturePyramid.FACTORS, finest first), channels-last."""
        return [m.contiguous(memory_format=torch.channels_last) for m in self.neck(features.flatten(0, 1))]

    def predict_depth(
        self, value_maps: list[torch.Tensor], images: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
        original_to_input: torch.Tensor,
    ) -> torch.Tensor:
        """Depth head: encode's maps of B x N views and their images (B, N, 3, H, W) in [0, 1] at network-input
        size -> (B, N, H, W) metric depth, m, in [depth_head.MIN_DEPTH, cfg.depth_max]; intrinsics,
        original_to_input (B, N, 3, 3); cam2ego (B, N, 4, 4)."""
        if self.depth_head is None:
            raise ValueError("GaussTR: this model has no depth head (model.depth_head: false); give depth maps")
        b, n = intrinsics.shape[:2]
        if images.dim() != 5 or tuple(images.shape[:3]) != (b, n, 3):
            raise ValueError(f"GaussTR: images must have shape ({b}, {n}, 3, H, W), got {tuple(images.shape)}")
        depths = self.depth_head(value_maps, images.flatten(0, 1), intrinsics.flatten(0, 1), cam2ego.flatten(0, 1),
                                 original_to_input.flatten(0, 1))
        return depths.unflatten(0, (b, n))

    def decode(
        self, value_maps: list[torch.Tensor], depths: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
        original_to_input: torch.Tensor, ref_points: torch.Tensor | None = None,
    ) -> list[Gaussians]:
        """Decoder and Gaussian heads: encode's maps, depths (B, N, H, W) m and the cameras (as forward)
        -> one Gaussians (B, N*Q, ...) per decoder layer."""
        b, n = depths.shape[:2]
        if ref_points is None:
            deterministic = not self.training and self.cfg.deterministic_refs
            ref_points = self.sample_reference_points(b, n, deterministic=deterministic, device=depths.device)
        q, d = self.cfg.num_queries, self.cfg.embed_dims
        depths = depths.clamp(max=self.cfg.depth_max)
        ref = ref_points.reshape(b * n, q, 2).float()
        query = self.query_embed.weight[None].expand(b * n, q, d)
        outputs = []
        for layer, head in zip(self.layers, self.heads):
            pos_cross = self.pos_mlp(sine_encoding(ref.flip(-1), d // 2))  # (y, x) order, as the authors
            pos_self = pos_cross
            if self.scene_pos_mlp is not None:
                pos_self = self._scene_position(ref, depths, intrinsics, cam2ego, original_to_input)
            query = layer(query, pos_cross, pos_self, ref, value_maps, n)
            ref = torch.sigmoid(head.offset(query)[..., :2] + inverse_sigmoid(ref)).detach()
            hidden = self.out_norm(query).view(b, n, q, d)
            outputs.append(head(hidden, ref.view(b, n, q, 2), depths, intrinsics, cam2ego, original_to_input))
        return outputs

    def _scene_position(
        self, ref: torch.Tensor, depths: torch.Tensor, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
        original_to_input: torch.Tensor,
    ) -> torch.Tensor:
        """3D positional encoding (B*N, Q, D) of the points seen at the reference points (ego frame,
        divided by depth_max before the sine encoding)."""
        b, n = depths.shape[:2]
        uv = ref.float().view(b, n, -1, 2)
        with torch.autocast(device_type=ref.device.type, enabled=False):
            means = uv_to_ego(uv, sample_depth(depths.float(), uv), intrinsics.float(), cam2ego.float(),
                              original_to_input.float(), depths.shape[-2:])
        enc = sine_encoding(means / self.cfg.depth_max, self._scene_pos_feats)
        return self.scene_pos_mlp(enc.flatten(0, 1))

    def check_inputs(
        self, features: torch.Tensor, depths: torch.Tensor | None, intrinsics: torch.Tensor, cam2ego: torch.Tensor,
        original_to_input: torch.Tensor, ref_points: torch.Tensor | None = None,
    ) -> tuple[int, int]:
        """ValueError naming the first input of forward with a wrong shape (depths None: needs the
        depth head); returns (B, N)."""
        if features.dim() != 5:
            raise ValueError(f"GaussTR: features must be (B, N, C, h, w), got shape {tuple(features.shape)}")
        b, n, c = features.shape[:3]
        if c != self.cfg.feature_dim:
            raise ValueError(f"GaussTR: features have {c} channels, model.feature_dim is {self.cfg.feature_dim}")
        if depths is None and self.depth_head is None:
            raise ValueError("GaussTR: depths are None and the model has no depth head (model.depth_head: false)")
        expected = {"intrinsics": (intrinsics, (b, n, 3, 3)), "cam2ego": (cam2ego, (b, n, 4, 4)),
                    "original_to_input": (original_to_input, (b, n, 3, 3))}
        if depths is not None:
            expected["depths"] = (depths, (b, n, None, None))
        if ref_points is not None:
            expected["ref_points"] = (ref_points, (b, n, self.cfg.num_queries, 2))
        for name, (tensor, shape) in expected.items():
            ok = tensor.dim() == len(shape) and all(s is None or s == t for s, t in zip(shape, tensor.shape))
            if not ok:
                want = tuple("*" if s is None else s for s in shape)
                raise ValueError(f"GaussTR: {name} must have shape {want}, got {tuple(tensor.shape)}")
        return b, n


def _check_config(cfg: ModelConfig) -> None:
    problems = []
    if cfg.variant not in VARIANTS:
        problems.append(f"variant must be one of {VARIANTS}, got {cfg.variant!r}")
    if cfg.self_attn_scope not in SELF_ATTN_SCOPES:
        problems.append(f"self_attn_scope must be one of {SELF_ATTN_SCOPES}, got {cfg.self_attn_scope!r}")
    if cfg.num_levels != len(SimpleFeaturePyramid.FACTORS):
        levels = len(SimpleFeaturePyramid.FACTORS)
        problems.append(f"num_levels must be {levels} (the simple FPN's scales), got {cfg.num_levels}")
    if cfg.embed_dims % cfg.num_heads or cfg.embed_dims % 2:
        problems.append(f"embed_dims {cfg.embed_dims} must be even and divisible by num_heads {cfg.num_heads}")
    if cfg.feature_dim % 4:
        problems.append(f"feature_dim must be divisible by 4, got {cfg.feature_dim}")
    for name in ("num_queries", "num_layers", "num_heads", "num_points", "ffn_dims", "mlp_hidden", "depth_head_dims"):
        if getattr(cfg, name) <= 0:
            problems.append(f"{name} must be positive, got {getattr(cfg, name)}")
    if problems:
        raise ValueError("invalid model config: " + "; ".join(problems))
