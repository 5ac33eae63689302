"""Feature provider and text encoder for the synthetic world, computed from image pixels alone.

The provider decodes each pixel's class from its colour (the world's palette under the renderer's
brightness range, so shading, texture and JPEG noise do not matter), turns the per-patch class
fractions into a mix of per-class prototype vectors (a seeded Gaussian table, unit rows) and adds
noise seeded by the image content (the same image always gives the same features). The text
encoder maps class names and common synonyms ("person", "road", "grass", "building", ...) to the
same prototypes. An unknown prompt gets a deterministic hashed random unit vector (nearly
orthogonal to every prototype, like a concept absent from the world); `strict=True` raises instead.

The provider only reads images of the synthetic world and refuses others (NotSyntheticImageError)
by a palette-fit test (`check_palette_fit`): a pixel is *interior* when its 3 x 3 neighbourhood
decodes to one class, and *misfit* when it lies farther than FIT_TOLERANCE (0.06 in [0, 1] RGB,
15 levels) from its fitted palette colour. An image passes when at least MIN_INTERIOR (30 %) of
its pixels are interior and at most MAX_MISFIT (20 %) of the interior ones are misfits. Measured
by benchmarks/palette_fit.py: synthetic images at JPEG quality 50-95, 160x90 and 960x540
originals and those resized down to 48x28 have >= 53 % interior pixels and <= 6 % misfits;
matplotlib's sample photographs (colour or grey) >= 58 % misfits; value noise, random checkers
and grey ramps >= 43 % misfits, uniform noise 0 % interior pixels.
"""

from __future__ import annotations

import hashlib
import re

import torch
import torch.nn.functional as F

from gausstr_core.errors import UserError
from gausstr_core.synthetic_palette import BRIGHTNESS_RANGE, PALETTE_CLASSES, palette_tensor

FIT_TOLERANCE = 0.06  # RGB distance in [0, 1] from the fitted palette colour
MIN_INTERIOR = 0.30  # fraction of pixels whose 3 x 3 neighbourhood decodes to one class
MAX_MISFIT = 0.20  # fraction of interior pixels farther than FIT_TOLERANCE


class NotSyntheticImageError(UserError):
    """An image given to the synthetic feature provider is not from the synthetic world."""


def class_prototypes(feature_dim: int, seed: int = 0) -> torch.Tensor:
    """(18, feature_dim) unit prototype per palette class (row i = Occ3D id i, 17 = sky)."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(len(PALETTE_CLASSES), feature_dim, generator=generator)
    return table / table.norm(dim=1, keepdim=True)


def decode_classes(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, H, W) int64 palette class ids (17 = sky)."""
    return palette_fit(images)[0]


def palette_fit(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [0, 1] -> class ids (B, H, W) int64 and distances (B, H, W) to the fitted colour.

    Each pixel picks the palette colour c minimising |pixel - a c| with the brightness a fitted
    and clipped to the renderer's range (slightly widened).
    """
    colours = palette_tensor().to(images.device)  # (K, 3)
    lo, hi = BRIGHTNESS_RANGE[0] - 0.05, BRIGHTNESS_RANGE[1] + 0.05
    classes, distances = [], []
    for image in images:  # one image at a time bounds memory to K x H x W
        pix = image.reshape(3, -1).T  # (P, 3)
        dot = pix @ colours.T  # (P, K)
        norm2 = (colours * colours).sum(1)
        scale = (dot / norm2).clamp(lo, hi)
        residual = scale * (scale * norm2 - 2 * dot)  # |pix - scale c|^2 - |pix|^2
        best, index = residual.min(dim=1)
        classes.append(index.reshape(image.shape[1:]))
        distances.append((best + (pix * pix).sum(1)).clamp(min=0).sqrt().reshape(image.shape[1:]))
    return torch.stack(classes), torch.stack(distances)


def check_palette_fit(classes: torch.Tensor, distances: torch.Tensor) -> None:
    """Raise NotSyntheticImageError for the first image failing the palette-fit test (module docstring).

    classes, distances: (B, H, W) from palette_fit.
    """
    padded = F.pad(classes[:, None].float(), (1, 1, 1, 1), mode="replicate")
    interior = (F.max_pool2d(padded, 3, 1) == -F.max_pool2d(-padded, 3, 1))[:, 0]  # (B, H, W)
    for i, (inside, far) in enumerate(zip(interior, distances > FIT_TOLERANCE)):
        share = float(inside.float().mean())
        misfit = float((inside & far).sum()) / max(int(inside.sum()), 1)
        if share < MIN_INTERIOR or misfit > MAX_MISFIT:
            raise NotSyntheticImageError(
                f"image {i} of the batch is not from the synthetic world: {share:.0%} of its pixels lie in "
                f"single-class regions (>= {MIN_INTERIOR:.0%} needed) and {misfit:.0%} of those fit no palette "
                f"colour (<= {MAX_MISFIT:.0%} allowed); the 'synthetic' feature provider only reads gausstr-synth "
                "images: configure a real one (e.g. maskclip, dinov2) for other data"
            )


class SyntheticFeatureProvider:
    """Image -> (B, feature_dim, H // patch_size, W // patch_size) class-prototype features."""

    def __init__(
        self, feature_dim: int = 64, patch_size: int = 8, seed: int = 0, noise: float = 0.1, device: str | None = None
    ):
        if feature_dim <= 0 or patch_size <= 0 or noise < 0:
            raise ValueError(
                f"SyntheticFeatureProvider: bad feature_dim {feature_dim}, patch_size {patch_size} or noise {noise}"
            )
        self.feature_dim = feature_dim
        self.patch_size = patch_size
        self.seed = seed
        self.noise = noise
        self.device = torch.device(device or "cpu")
        self.prototypes = class_prototypes(feature_dim, seed).to(self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"SyntheticFeatureProvider: images must be float (B, 3, H, W), got {tuple(images.shape)} {images.dtype}"
            )
        p = self.patch_size
        if images.shape[-2] < p or images.shape[-1] < p:
            raise ValueError(f"SyntheticFeatureProvider: images {tuple(images.shape[-2:])} smaller than patch size {p}")
        images = images.to(self.device)
        classes, distances = palette_fit(images)
        check_palette_fit(classes, distances)
        onehot = F.one_hot(classes, len(PALETTE_CLASSES)).permute(0, 3, 1, 2).float()
        fractions = F.avg_pool2d(onehot, p)  # (B, K, h, w)
        features = torch.einsum("bkhw,kc->bchw", fractions, self.prototypes)
        if self.noise > 0:
            noise = torch.stack([self._noise(image, features.shape[1:]) for image in images])
            features = features + noise.to(self.device)
        return features

    def _noise(self, image: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Noise of total norm ~ self.noise per cell, seeded by the image's 8-bit content."""
        digest = hashlib.blake2b((image * 255).round().to(torch.uint8).cpu().numpy().tobytes(), digest_size=8)
        generator = torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") ^ self.seed)
        return torch.randn(shape, generator=generator) * (self.noise / self.feature_dim**0.5)


_SYNONYMS = {
    "pedestrian": ("person", "people", "human", "man", "woman", "child"),
    "traffic_cone": ("cone", "traffic cone"),
    "driveable_surface": ("road", "drivable surface", "street", "lane"),
    "terrain": ("grass", "soil", "lawn", "ground"),
    "manmade": ("building", "wall", "fence", "pole", "sign", "traffic sign", "house", "man-made"),
    "vegetation": ("tree", "trees", "bush", "hedge", "plant"),
    "sky": ("free",),
    "construction_vehicle": ("construction vehicle", "excavator"),
    "bicycle": ("bike",),
    "motorcycle": ("motorbike",),
}


def _normalise(prompt: str) -> str:
    text = re.sub(r"[\s_]+", " ", prompt.lower()).strip(" .")
    return re.sub(r"^(a|an|the) ", "", text)


class SyntheticTextEncoder:
    """Prompts -> (P, feature_dim) prototypes of SyntheticFeatureProvider with the same seed."""

    def __init__(self, feature_dim: int = 64, seed: int = 0, strict: bool = False, device: str | None = None):
        self.feature_dim = feature_dim
        self.seed = seed
        self.strict = strict
        self.device = torch.device(device or "cpu")
        self.prototypes = class_prototypes(feature_dim, seed).to(self.device)
        self.lookup = {_normalise(name): i for i, name in enumerate(PALETTE_CLASSES)}
        for name, words in _SYNONYMS.items():
            for word in words:
                self.lookup[_normalise(word)] = PALETTE_CLASSES.index(name)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"SyntheticTextEncoder.encode takes a list of strings, got {prompts!r}")
        rows = []
        for prompt in prompts:
            key = _normalise(prompt)
            if key in self.lookup:
                rows.append(self.prototypes[self.lookup[key]])
            elif self.strict:
                raise KeyError(f"SyntheticTextEncoder: unknown prompt {prompt!r}; known: {sorted(self.lookup)}")
            else:
                rows.append(self._hashed(key))
        if not rows:
            return torch.zeros(0, self.feature_dim, device=self.device)
        return torch.stack(rows)

    def _hashed(self, key: str) -> torch.Tensor:
        digest = hashlib.blake2b(f"{self.seed}:{key}".encode(), digest_size=8).digest()
        vector = torch.randn(
            self.feature_dim, generator=torch.Generator().manual_seed(int.from_bytes(digest, "little"))
        )
        return (vector / vector.norm()).to(self.device)
