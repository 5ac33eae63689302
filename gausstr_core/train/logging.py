"""Training progress (tqdm) and TensorBoard scalars/images, written by rank 0 only."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from gausstr_core.config import Config
from gausstr_core.data import Batch
from gausstr_core.gaussians import Gaussians
from gausstr_core.losses import pca_project
from gausstr_core.render import render_gaussians

SHOWN_TERMS = ("total", "feature", "depth_silog", "depth_l1")


class TrainLogger:
    def __init__(self, work_dir: Path, enabled: bool, show_progress: bool = True, log_every: int = 1) -> None:
        self.enabled, self.show_progress, self.log_every = enabled, show_progress, log_every
        self.work_dir = work_dir
        self.writer = None
        self.bar: tqdm | None = None

    def _tb(self):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.work_dir / "tensorboard"))
        return self.writer

    def start_epoch(self, epoch: int, total: int, done: int) -> None:
        if self.enabled and self.show_progress:
            self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch}", dynamic_ncols=True)

    def log_step(self, step: int, terms: dict[str, torch.Tensor], seconds: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            shown = {k: f"{float(terms[k]):.3f}" for k in SHOWN_TERMS if k in terms}
            self.bar.set_postfix(**shown, s_per_step=f"{seconds:.2f}")
            self.bar.update(1)
        if step % self.log_every:
            return
        writer = self._tb()
        for name, value in terms.items():
            writer.add_scalar(f"train/{name}", float(value), step)
        writer.add_scalar("train/step_seconds", seconds, step)

    @torch.no_grad()
    def log_images(self, step: int, gaussians: Gaussians, features: torch.Tensor, batch: Batch, config: Config) -> None:
        """Rendered depth and PCA-to-RGB features of sample 0, camera 0, next to the targets."""
        if not self.enabled:
            return
        g = gaussians.detach()[0:1].to(torch.float32)
        target = features[0, 0:1].float()  # (1, C, h, w)
        # pca_lowrank draws random numbers: fork so that logging leaves the training stream alone
        with torch.random.fork_rng(devices=[target.device.index or 0] if target.is_cuda else []):
            basis = pca_project(target, q=3)
        out = render_gaussians(
            means=g.means,
            quats=g.quats,
            scales=g.scales,
            opacities=g.opacities,
            colors=g.features @ basis.float(),
            cam2ego=batch.cam2ego[0:1, 0:1],
            intrinsics=batch.intrinsics[0:1, 0:1],
            original_to_input=batch.original_to_input[0:1, 0:1],
            image_size=tuple(batch.depths.shape[-2:]),
            near=config.train.render_near,
            far=config.train.render_far,
        )
        writer = self._tb()
        writer.add_image("depth/rendered", _normalise(out.depth[0, 0:1]), step)
        writer.add_image("depth/target", _normalise(batch.depths[0, 0:1].float()), step)
        writer.add_image("features/rendered_pca", _normalise(out.features[0, 0]), step)
        target_rgb = torch.einsum("chw,cq->qhw", target[0], basis.float())
        writer.add_image("features/target_pca", _normalise(target_rgb), step)

    def note(self, text: str) -> None:
        """One line through tqdm (bars stay intact), rank 0 only."""
        if self.enabled:
            tqdm.write(text)

    def log_validation(self, step: int, epoch: int, split: str, scores: dict[str, float]) -> None:
        """One line (through tqdm, so bars stay intact) and TensorBoard val/<name> at `step`."""
        if not self.enabled:
            return
        shown = ", ".join(f"{name} {100 * value:.2f}" for name, value in scores.items())
        tqdm.write(f"validation after epoch {epoch} (step {step}, split {split}): {shown}")
        writer = self._tb()
        for name, value in scores.items():
            writer.add_scalar(f"val/{name}", value, step)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.end_epoch()
        if self.writer is not None:
            self.writer.close()


def _normalise(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> per-image min-max scaled to [0, 1] for TensorBoard."""
    lo, hi = image.amin(), image.amax()
    return ((image - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1).cpu()
