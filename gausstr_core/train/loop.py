"""The self-supervised training loop: resumable, single- or multi-process (torchrun + DDP).

Checkpoints: `<work_dir>/checkpoints/latest.pt` (every `train.checkpoint_every` steps and at each
epoch end) and `epoch_<e>.pt` (the same file, put in place before latest.pt: see `_Trainer.save`),
each a model checkpoint (gausstr_core.model.checkpoint) with a
`train_state` extra: optimizer, scheduler, step, epoch, batches consumed in the epoch, RNG states,
the best validation score so far. Validation (train.val_every > 0): at every val_every-th epoch end,
rank 0 scores the model on train.val_split (gausstr_core.evaluation.evaluate with the feature and
depth caches) and logs IoU, mIoU over 17 and 15 classes and density IoU (log line and TensorBoard
val/*); when train.best_metric beats the best so far, that epoch's checkpoint is also put in place
as `best.pt` (before latest.pt). A resumed run keeps the best so far.
Depth-head phase (train.depth_head_phase = f > 0, a model with model.depth_head): once f of the
budget is left (the fraction of max_seconds, max_steps or the epochs used first reaches 1 - f), every
later step trains the depth head alone on its loss against the depth maps (losses.depth_head_loss):
the neck runs without gradients, nothing is rendered, and every other weight stays as it is, so a step
costs a small part of a full one and the head gets many more of them; the learning rate (the
schedule's) falls linearly to 0 over the phase. Validation and image logs are
skipped in the phase (the validation scores, with the depth maps given, cannot change in it), so
best.pt, when written, predates the phase's head.
Head-depth mix (train.head_depth_mix = m > 0, a model with model.depth_head): in a fraction m of the
full steps, spread evenly over the run (a golden-ratio sequence of the step index, so a resumed run
picks the same steps), the decoder takes the depth head's depth (detached) instead of the depth maps,
so the Gaussians also learn from the depth they are given at inference without a depth network; the
depth head's loss against the depth maps is the same in every step.
Learning-rate anneal (train.lr_anneal = a > 0): once a of the budget is left (as for the depth-head phase),
the full steps' learning rate (the schedule's) falls linearly to 0 at the budget's end, so a run cut by
max_seconds ends on settled weights rather than wherever its last steps at full rate left them.
Weight average (train.ema_decay = d > 0, train/weight_average.py): an exponential moving average of the
weights, updated after every step, is what validation scores and what a checkpoint's state_dict holds
(so evaluation, the node and best.pt use it); the live weights the optimizer steps go into train_state
(`live_state_dict`, with the average's update count), from which a resumed run continues.
Only rank 0 writes; at start, each rank removes its own temporaries left by killed runs. A resumed
single-process run continues bit-exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from gausstr_core.atomic_files import remove_stale_temporaries
from gausstr_core.config import Config, save_config
from gausstr_core.data import collate_samples
from gausstr_core.data.dataset import GaussTRDataset
from gausstr_core.losses import depth_head_loss, gausstr_losses
from gausstr_core.model import GaussTR
from gausstr_core.model.checkpoint import load_checkpoint, load_state_dict_strict, save_checkpoint
from gausstr_core.train.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, shutdown
from gausstr_core.train.logging import TrainLogger
from gausstr_core.train.rng import capture_rng_state, restore_rng_state
from gausstr_core.train.sampler import ResumableDistributedSampler
from gausstr_core.train.schedule import anneal_factor, warmup_multistep
from gausstr_core.train.weight_average import WeightAverage

# Config entries a resumed run must share with its checkpoint (others, e.g. epochs, may change).
RESUME_MUST_MATCH = ("model", "data.input_size", "data.cameras", "data.feature_kind", "train.pca_dims")


@dataclass
class TrainResult:
    steps: int
    epochs_done: int
    last_checkpoint: Path | None
    terms: list[dict[str, float]]  # the logged loss terms of every step run by this call (rank-averaged)
    head_phase_start: int | None = None  # index in terms of the first depth-head-phase step (None: none)

    @property
    def losses(self) -> list[float]:
        """Total loss of every step run by this call."""
        return [step["total"] for step in self.terms]


def latest_checkpoint(work_dir: str | Path) -> Path:
    return Path(work_dir) / "checkpoints" / "latest.pt"


def train(
    config: Config,
    *,
    device: str = "auto",
    resume: str | Path | None = None,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train `config` in `config.train.work_dir`; stop after the configured epochs, or earlier at
    `max_steps` total steps / `max_seconds` of this call (writing a checkpoint when stopping).

    resume: a checkpoint path, 'auto' (the work dir's latest.pt if it exists) or None.
    """
    info = init_distributed(device)
    try:
        return _Trainer(config, info, show_progress).run(_resume_path(config, resume), max_steps, max_seconds)
    finally:
        shutdown(info)


def _resume_path(config: Config, resume: str | Path | None) -> Path | None:
    if resume is None:
        return None
    if str(resume) == "auto":
        path = latest_checkpoint(config.train.work_dir)
        return path if path.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: checkpoint not found: {path}")
    return path


GOLDEN = (math.sqrt(5) - 1) / 2  # the golden-ratio sequence's step: its points spread evenly over [0, 1)


def mixed_step(step: int, fraction: float) -> bool:
    """Whether full step `step` (0-based) is one of the train.head_depth_mix fraction: the golden-ratio
    sequence's point of the step lies below it, so any run of n steps holds about fraction x n of them."""
    return (step + 1) * GOLDEN % 1.0 < fraction  # never for 0: the points lie in [0, 1)


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        values = values[part]
    return values


def check_resume_config(config: Config, saved: dict[str, Any], source: str) -> None:
    """Raise ValueError naming every RESUME_MUST_MATCH entry that differs from the checkpoint's."""
    current = config.to_dict()
    diffs = [
        f"{key}: checkpoint {_lookup(saved, key)!r} vs now {_lookup(current, key)!r}"
        for key in RESUME_MUST_MATCH
        if _lookup(saved, key) != _lookup(current, key)
    ]
    if diffs:
        raise ValueError(f"cannot resume from {source}: config differs: " + "; ".join(diffs))


class _Trainer:
    def __init__(self, config: Config, info: DistInfo, show_progress: bool) -> None:
        self.config, self.info = config, info
        cfg = config.train
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.dataset = GaussTRDataset(config, config.data.train_split, load_occupancy=False)
        self.sampler = ResumableDistributedSampler(
            len(self.dataset), info.world_size, info.rank, shuffle=True, seed=cfg.seed
        )
        self.loader = DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            collate_fn=collate_samples,
            num_workers=config.data.num_workers,
            generator=torch.Generator().manual_seed(cfg.seed),
            drop_last=False,
        )
        self.iters_per_epoch = math.ceil(self.sampler.shard_size / cfg.batch_size)
        self.model = GaussTR(config.model).to(info.device)
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
            if info.world_size > 1
            else None
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        milestones = tuple(m * self.iters_per_epoch for m in cfg.lr_milestones)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_multistep(cfg.warmup_iters, milestones, cfg.lr_gamma)
        )
        self.features_online = config.data.feature_source == "online"
        self.feature_provider = None
        if self.features_online:
            from gausstr_core.foundation.registry import build_feature_provider

            self.feature_provider = build_feature_provider({**config.data.feature_provider, "device": str(info.device)})
        # mixed precision (CUDA only): fp16 autocast with a GradScaler (the authors'), bf16 autocast, or off
        cuda = info.device.type == "cuda"
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.amp) if cuda else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp == "fp16")
        self.step, self.epoch, self.consumed = 0, 0, 0
        self.best: dict[str, Any] | None = None  # best validation so far: metric, value, epoch, step
        self.average = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.validator = None  # OccupancyPredictor around self.scored, built at the first validation
        self.head_phase = False  # train.depth_head_phase reached: only the depth head trains
        for name in ("depth_head_phase", "head_depth_mix"):
            if getattr(cfg, name) > 0 and self.model.depth_head is None:
                raise ValueError(f"train.{name} needs the depth head (model.depth_head: true)")
        self.logger = TrainLogger(
            Path(cfg.work_dir), enabled=info.is_main, show_progress=show_progress, log_every=cfg.log_every
        )

    @property
    def scored(self) -> GaussTR:
        """The weights validation scores and checkpoints hold: the average's with train.ema_decay, else the live."""
        return self.average.module if self.average is not None else self.model

    # -- checkpoints -------------------------------------------------------------------------

    def load(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location="cpu")
        check_resume_config(self.config, ckpt["config"], str(path))
        if "train_state" not in ckpt:
            raise ValueError(f"cannot resume from {path}: it holds no train_state (a weights-only checkpoint)")
        state = ckpt["train_state"]
        # a run with a weight average saved the live weights apart; one without has them as state_dict
        load_state_dict_strict(self.model, state.get("live_state_dict", ckpt["state_dict"]), f"checkpoint {path}")
        if self.average is not None:  # continue the saved average, or start one from the weights loaded
            load_state_dict_strict(self.average.module, ckpt["state_dict"], f"checkpoint {path}")
            self.average.updates = state.get("average_updates", 0)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        # Batches already consumed in this epoch, re-expressed for this run's world size.
        seen = state["consumed"] * state["world_size"]
        self.consumed = min(seen // self.info.world_size, self.iters_per_epoch)
        restore_rng_state(state["rng"])
        self.loader.generator.set_state(state["loader_rng"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best = state.get("best")

    def save(self, *names: str) -> Path:
        """Write one checkpoint under every name (default latest.pt), put in place in the given order
        (atomic_files: e.g. epoch_N.pt before latest.pt, so no kill loses either); returns the last path."""
        folder = Path(self.config.train.work_dir) / "checkpoints"
        paths = [folder / name for name in names or ("latest.pt",)]
        if self.info.is_main:
            train_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "consumed": self.consumed,
                "world_size": self.info.world_size,
                "rng": capture_rng_state(),
                "loader_rng": self.loader.generator.get_state(),
                "scaler": self.scaler.state_dict(),
                "best": self.best,
            }
            if self.average is not None:
                train_state["live_state_dict"] = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
                train_state["average_updates"] = self.average.updates
            save_checkpoint(paths, self.scored, self.config, extra={"train_state": train_state})
        barrier(self.info)
        return paths[-1]

    # -- validation --------------------------------------------------------------------------

    def validate(self) -> bool:
        """Score the model on the validation split and log it (rank 0; other ranks return False);
        True when train.best_metric beats the best so far (then self.best is updated)."""
        if not self.info.is_main:
            return False
        from gausstr_core.evaluation import evaluate
        from gausstr_core.predict import OccupancyPredictor, default_feature_spec, matching_text_encoder_spec

        cfg = self.config.train
        split = cfg.val_split or self.config.data.val_split
        if self.validator is None:
            inference = self.config.inference
            text = dict(inference.text_encoder) or matching_text_encoder_spec(default_feature_spec(self.config))
            self.validator = OccupancyPredictor(self.scored, self.config, device=self.info.device, text_encoder=text)
        training = self.scored.training
        self.scored.eval()
        try:
            result = evaluate(self.validator, split, limit=cfg.val_limit or None, cached_features=True, progress=False)
        finally:
            self.scored.train(training)
        scores = result.scores()
        self.logger.log_validation(self.step, self.epoch, split, scores)
        value = scores[cfg.best_metric]
        if not math.isfinite(value) or (self.best is not None and value <= self.best["value"]):
            return False
        self.best = {"metric": cfg.best_metric, "value": value, "epoch": self.epoch, "step": self.step}
        return True

    # -- one step ----------------------------------------------------------------------------

    def train_step(self, batch, lr_factor: float = 1.0) -> dict[str, torch.Tensor]:
        """One full step; its learning rate is the schedule's x lr_factor."""
        batch = batch.to(self.info.device)
        features = batch.features
        if self.features_online:
            with torch.no_grad():
                b, n = batch.images.shape[:2]
                features = self.feature_provider(batch.images.flatten(0, 1)).unflatten(0, (b, n))
        if features is None or batch.depths is None:
            raise ValueError(f"batch {batch.tokens}: training needs feature maps and depth maps")
        net = self.ddp or self.model
        with_head = self.model.depth_head is not None  # it learns the depth maps the Gaussians sample
        head_in = with_head and mixed_step(self.step, self.config.train.head_depth_mix)
        with torch.autocast(self.info.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = net(features, None if head_in else batch.depths, batch.intrinsics, batch.cam2ego,
                      batch.original_to_input, images=batch.images if with_head else None, return_depth=with_head)
            layers, head_depths = out if with_head else (out, None)
            total, terms = gausstr_losses(
                layers,
                features,
                batch.depths,
                batch.cam2ego,
                batch.intrinsics,
                batch.original_to_input,
                self.config.train,
                segmentation=batch.segmentation if self.model.segment_head is not None else None,
                segment_head=self.model.segment_head if batch.segmentation is not None else None,
                head_depths=head_depths,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        lr = self.scale_lr(lr_factor)
        skipped = self.update(grad_norm)
        self.scheduler.step()
        names = sorted(terms)
        averaged = all_reduce_mean(torch.stack([terms[k].detach().float() for k in names]), self.info)
        terms = dict(zip(names, averaged))
        terms["grad_norm"] = grad_norm.detach()
        terms["lr"] = torch.tensor(lr)
        terms["update_skipped"] = skipped
        if with_head:
            terms["head_depth_in"] = torch.tensor(float(head_in))
        self._last = (layers[-1].detach(), features, batch)
        return terms

    def update(self, grad_norm: torch.Tensor) -> torch.Tensor:
        """The optimizer step for the unscaled, clipped gradients of total norm grad_norm; returns the
        'update_skipped' term (1.0: skipped). fp16: the scaler skips an overflowed step itself (and lowers
        its scale); without it a non-finite gradient would make every weight NaN, so that step is skipped
        here (the norm is the same on every rank: the gradients are averaged)."""
        skipped = not self.scaler.is_enabled() and not bool(torch.isfinite(grad_norm))
        if skipped:
            self.logger.note(f"step {self.step + 1}: non-finite gradient norm, update skipped")
        else:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        return torch.tensor(float(skipped))

    def scale_lr(self, factor: float) -> float:
        """Set this step's learning rate to the schedule's x factor (the scheduler's next step sets its own
        value again); returns it."""
        for group, scheduled in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
            group["lr"] = scheduled * factor
        return self.optimizer.param_groups[0]["lr"]

    def start_head_phase(self) -> None:
        """Freeze every weight but the depth head's (the optimizer skips weights without gradients)."""
        self.head_phase = True
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.startswith("depth_head."))

    def head_step(self, batch, lr_factor: float) -> dict[str, torch.Tensor]:
        """One depth-head-phase step: neck without gradients, head, its loss; gradients averaged over
        ranks by hand (the DDP wrapper is bypassed); the step's learning rate is the schedule's x lr_factor."""
        batch = batch.to(self.info.device)
        if batch.features is None or batch.depths is None:
            raise ValueError(f"batch {batch.tokens}: the depth-head phase needs feature maps and depth maps")
        with torch.autocast(self.info.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            with torch.no_grad():
                maps = self.model.encode(batch.features)
            depths = self.model.predict_depth(maps, batch.images, batch.intrinsics, batch.cam2ego,
                                              batch.original_to_input)
            total, terms = depth_head_loss(depths, batch.depths, self.config.train)
        head = list(self.model.depth_head.parameters())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        for param in head:
            param.grad = all_reduce_mean(param.grad, self.info)
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(head, self.config.train.grad_clip)
        lr = self.scale_lr(lr_factor)
        skipped = self.update(grad_norm)
        self.scheduler.step()
        terms = {**terms, "total": total.detach()}
        names = sorted(terms)
        averaged = all_reduce_mean(torch.stack([terms[k].float() for k in names]), self.info)
        return {**dict(zip(names, averaged)), "grad_norm": grad_norm.detach(), "lr": torch.tensor(lr),
                "update_skipped": skipped}

    # -- the loop ----------------------------------------------------------------------------

    def run(self, resume: Path | None, max_steps: int | None, max_seconds: float | None) -> TrainResult:
        cfg = self.config.train
        if resume is not None:
            self.load(resume)
        if self.info.is_main:
            Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
            save_config(self.config, Path(cfg.work_dir) / "config.yaml")
        remove_stale_temporaries(Path(cfg.work_dir) / "checkpoints", self.info.rank)  # of killed runs of this rank
        self.model.train()
        start, history, last_ckpt, head_phase_start = time.monotonic(), [], None, None

        def used() -> float:
            """Fraction of the budget used: the largest of the time, step and epoch fractions."""
            fractions = [self.step / (cfg.epochs * self.iters_per_epoch)]
            if max_steps is not None:
                fractions.append(self.step / max(max_steps, 1))
            if max_seconds is not None:
                fractions.append((time.monotonic() - start) / max_seconds if max_seconds > 0 else 1.0)
            return max(fractions)

        def out_of_budget() -> bool:
            return (max_steps is not None and self.step >= max_steps) or (
                max_seconds is not None and time.monotonic() - start >= max_seconds
            )

        stop = out_of_budget()
        while self.epoch < cfg.epochs and not stop:
            self.sampler.set_epoch(self.epoch, start=self.consumed * cfg.batch_size)
            self.logger.start_epoch(self.epoch, self.iters_per_epoch, self.consumed)
            saved_step = None
            for batch in self.loader:
                tic = time.monotonic()
                spent = used()
                if not self.head_phase and cfg.depth_head_phase > 0 and spent >= 1 - cfg.depth_head_phase:
                    self.start_head_phase()
                    head_phase_start = len(history)
                if self.head_phase:
                    terms = self.head_step(batch, anneal_factor(spent, cfg.depth_head_phase))
                else:
                    terms = self.train_step(batch, anneal_factor(spent, cfg.lr_anneal))
                if self.average is not None:
                    self.average.update(self.model)
                self.step += 1
                self.consumed += 1
                history.append({name: float(value) for name, value in terms.items()})
                self.logger.log_step(self.step, terms, time.monotonic() - tic)
                if self.step % cfg.image_log_every == 0 and not self.head_phase:
                    self.logger.log_images(self.step, *self._last, self.config)
                if self.step % cfg.checkpoint_every == 0:
                    last_ckpt, saved_step = self.save(), self.step
                stop = out_of_budget()
                if stop:
                    break
            if self.consumed >= self.iters_per_epoch:
                self.epoch += 1
                self.consumed = 0
                validate = cfg.val_every > 0 and self.epoch % cfg.val_every == 0 and not self.head_phase
                best = validate and self.validate()
                last_ckpt = self.save(f"epoch_{self.epoch}.pt", *(("best.pt",) if best else ()), "latest.pt")
            elif saved_step != self.step:
                last_ckpt = self.save()
            self.logger.end_epoch()
        self.logger.close()
        return TrainResult(self.step, self.epoch, last_ckpt, history, head_phase_start)
