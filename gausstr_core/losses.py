"""GaussTR's self-supervised losses: rendered PCA features vs. foundation features, rendered
depth vs. metric depth, and an optional 2D segmentation cross-entropy.

Frames and sizes: B samples, N views, G Gaussians, network input (H, W), target feature maps
(h, w) with one cell per patch, C foundation channels reduced to q PCA channels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gausstr_core.config import TrainConfig
from gausstr_core.gaussians import Gaussians
from gausstr_core.render import RenderOutput, render_gaussians

DEPTH_EPS = 1e-6  # targets at or below this are ignored; rendered depth is clamped to it before log
# (the authors' SiLog: mmseg SiLogLoss with its default eps)


def pca_project(target: torch.Tensor, q: int = 128, niter: int = 4) -> torch.Tensor:
    """PCA basis of target features, computed in float64 with `torch.pca_lowrank`.

    target: (M, C) feature vectors or (B*N, C, h, w) maps (channels at dim 1).
    Returns V (C, q') float64 with orthonormal columns, q' = min(q, C, M). Features are projected
    as x @ V with no mean subtraction (the basis itself comes from the centred data).
    """
    if target.dim() == 4:
        target = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1])
    elif target.dim() != 2:
        raise ValueError(f"pca_project: target must be (M, C) or (B*N, C, h, w), got {tuple(target.shape)}")
    q = min(q, *target.shape)
    with torch.no_grad():
        _, _, basis = torch.pca_lowrank(target.detach().double(), q=q, niter=niter)
    return basis


def pca_target(target: torch.Tensor, basis: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Target features on the render grid: (B, N, C, h, w) projected onto basis (C, q) and
    bilinearly upsampled (half-pixel centres) to size (H, W) -> (B, N, q, H, W) float32.

    Projection and bilinear upsampling are both linear, so projecting first (cheaper) equals
    upsampling first.
    """
    if target.dim() != 5 or target.shape[2] != basis.shape[0]:
        raise ValueError(f"pca_target: target must be (B, N, {basis.shape[0]}, h, w), got {tuple(target.shape)}")
    projected = torch.einsum("kchw,cq->kqhw", target.flatten(0, 1).float(), basis.float())
    upsampled = F.interpolate(projected, size=size, mode="bilinear", align_corners=False)
    return upsampled.unflatten(0, target.shape[:2])


def feature_loss(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of 1 - cos(rendered, target) along channels; both (B, N, q, H, W)."""
    if rendered.shape != target.shape:
        raise ValueError(f"feature_loss: rendered {tuple(rendered.shape)} and target {tuple(target.shape)} differ")
    return (1.0 - F.cosine_similarity(rendered, target.to(rendered.dtype), dim=2, eps=1e-8)).mean()


def depth_loss(
    rendered: torch.Tensor, target: torch.Tensor, far_depth: float = 51.2, far_target: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-invariant log depth loss (per view, then the mean over views) and L1 depth loss.

    rendered, target: (..., H, W) m, one map per view (e.g. (B, N, H, W)); rendered is the
    accumulated depth. Targets >= far_depth (sky, beyond range) become far_target, which pushes
    those pixels towards transparency. Pixels count where target > DEPTH_EPS; rendered depth is
    clamped to DEPTH_EPS before the log. Per view: silog = sqrt(mean d^2 - 0.5 (mean d)^2),
    d = log rendered - log target; the views' silogs are averaged (a view without valid pixels
    counts 0), as the authors' SiLog. l1 = mean |rendered - target| over all valid pixels.
    """
    if rendered.shape != target.shape or rendered.dim() < 2:
        raise ValueError(f"depth_loss: rendered {tuple(rendered.shape)} and target {tuple(target.shape)} differ")
    target = torch.where(target >= far_depth, torch.full_like(target, far_target), target).to(rendered.dtype)
    valid = target > DEPTH_EPS
    if not valid.any():
        zero = rendered.sum() * 0.0
        return zero, zero
    d = torch.log(rendered.clamp(min=DEPTH_EPS)) - torch.log(target.clamp(min=DEPTH_EPS))
    d = torch.where(valid, d, torch.zeros_like(d)).flatten(-2)
    count = valid.flatten(-2).sum(-1).clamp(min=1)
    mean_sq, mean = d.square().sum(-1) / count, d.sum(-1) / count
    silog = torch.sqrt((mean_sq - 0.5 * mean.square()).clamp(min=1e-12)).mean()
    return silog, (rendered[valid] - target[valid]).abs().mean()


def segment_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (..., classes) channel-last logits against (...) int64 labels, 0 ignored
    (0 when every label is ignored)."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"segment_loss: logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    if not (labels != 0).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long(), ignore_index=0)


def gausstr_losses(
    layers: list[Gaussians],
    target_features: torch.Tensor,
    target_depths: torch.Tensor,
    cam2ego: torch.Tensor,
    intrinsics: torch.Tensor,
    original_to_input: torch.Tensor,
    cfg: TrainConfig,
    segmentation: torch.Tensor | None = None,
    segment_head: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    render_fn: Callable[..., RenderOutput] = render_gaussians,
    head_depths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss of all decoder layers (equal weights, summed) and the detached terms to log.

    layers: one Gaussians batch per decoder layer (means (B, G, 3) ego, m; features (B, G, C)).
    target_features: (B, N, C, h, w); target_depths: (B, N, H, W) m at network-input size (H, W),
    the render size; cam2ego (B, N, 4, 4); intrinsics, original_to_input (B, N, 3, 3).
    segmentation: optional (B, N, H, W) int64 labels (0 = ignore), needs segment_head(features,
    layer) mapping channel-last rendered features (B, N, H, W, q) of decoder layer `layer` to
    (B, N, H, W, classes) logits (as `gausstr_core.model` SegmentHead).
    head_depths: optional (B, N, H, W) m of the model's depth head, trained towards target_depths
    (depth_head_loss, added to the total).
    The PCA basis comes from the target features once and is shared by all layers.
    Terms: 'layer{i}/{feature,depth_silog,depth_l1,segment,total}' and the sums over layers
    without the prefix, 'depth_head/{silog,l1}' with a depth head; 'total' is the weighted loss
    that is returned.
    """
    if not layers:
        raise ValueError("gausstr_losses: no decoder layers given")
    if (segmentation is None) != (segment_head is None):
        raise ValueError("gausstr_losses: segmentation labels and segment_head must be given together")
    if target_depths.dim() != 4:
        raise ValueError(f"gausstr_losses: target_depths must be (B, N, H, W), got {tuple(target_depths.shape)}")
    basis = pca_project(target_features.flatten(0, 1), q=cfg.pca_dims)
    image_size = tuple(target_depths.shape[-2:])
    target = pca_target(target_features, basis, image_size)

    terms: dict[str, torch.Tensor] = {}
    layer_totals = []
    for index, gaussians in enumerate(layers):
        colors = gaussians.features @ basis.to(gaussians.features.dtype)  # (B, G, q)
        out = render_fn(
            means=gaussians.means, quats=gaussians.quats, scales=gaussians.scales,
            opacities=gaussians.opacities, colors=colors, cam2ego=cam2ego, intrinsics=intrinsics,
            original_to_input=original_to_input, image_size=image_size, near=cfg.render_near, far=cfg.render_far,
        )
        layer = {"feature": feature_loss(out.features, target)}
        layer["depth_silog"], layer["depth_l1"] = depth_loss(out.depth, target_depths, cfg.far_depth, cfg.far_target)
        layer_total = (
            cfg.feature_loss_weight * layer["feature"]
            + cfg.depth_loss_weight * (layer["depth_silog"] + cfg.depth_l1_weight * layer["depth_l1"])
        )
        if segment_head is not None:
            logits = segment_head(out.features.permute(0, 1, 3, 4, 2), index)
            layer["segment"] = segment_loss(logits, segmentation)
            layer_total = layer_total + cfg.segment_loss_weight * layer["segment"]
        layer["total"] = layer_total
        layer_totals.append(layer_total)
        for name, value in layer.items():
            terms[f"layer{index}/{name}"] = value.detach()
            terms[name] = terms.get(name, 0.0) + value.detach()
    total = torch.stack(layer_totals).sum()
    if head_depths is not None:
        head_total, head_terms = depth_head_loss(head_depths, target_depths, cfg)
        total = total + head_total
        terms.update(head_terms)
    terms["total"] = total.detach()
    return total, terms


def depth_head_loss(
    head_depths: torch.Tensor, target_depths: torch.Tensor, cfg: TrainConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The depth head's loss: depth_head_weight x (silog + depth_l1_weight x l1) of head_depths against
    target_depths clamped to far_depth (sky and beyond: the far end of the range, not transparency);
    both (B, N, H, W) m. Returns it and the detached terms 'depth_head/silog', 'depth_head/l1'."""
    silog, l1 = depth_loss(head_depths, target_depths.clamp(max=cfg.far_depth), far_depth=float("inf"))
    total = cfg.depth_head_weight * (silog + cfg.depth_l1_weight * l1)
    return total, {"depth_head/silog": silog.detach(), "depth_head/l1": l1.detach()}
