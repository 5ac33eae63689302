"""Benchmark: synthetic-world generation speed and dataset reader throughput.

Prints samples/s (one sample = six camera keyframes plus, with sweeps, the 12 Hz images up to the
next keyframe) for generation at test resolution (160x90) and full resolution (1600x900), and
samples/s of GaussTRDataset + DataLoader with 0 and 2 workers, with the ratios, all measured in
this run. Usage: python benchmarks/synth.py [--samples 3] [--full-samples 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from gausstr_core.config import load_config
from gausstr_core.data import GaussTRDataset, make_dataloader
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset


def generation(out: Path, options: SynthOptions) -> tuple[float, float]:
    """samples/s and images/s of generate_dataset."""
    summary = generate_dataset(out, options)
    return summary.samples / summary.seconds, summary.images / summary.seconds


def reader(root: Path, workers: int, epochs: int) -> float:
    """samples/s of the dataset (train and val splits) through a DataLoader, batch 1."""
    config = load_config(root / "gausstr_synthetic.yaml")
    dataset = GaussTRDataset(config, "train")
    loader = make_dataloader(dataset, batch_size=1, num_workers=workers)
    next(iter(loader))  # start workers outside the timing
    start = time.perf_counter()
    count = 0
    for _ in range(epochs):
        for batch in loader:
            count += len(batch.tokens)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="keyframes of the test-resolution scene")
    parser.add_argument("--full-samples", type=int, default=2, help="keyframes of the full-resolution scene")
    parser.add_argument("--epochs", type=int, default=3, help="passes over each tree when timing the reader")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, full = Path(tmp) / "small", Path(tmp) / "full"
        s_rate, s_images = generation(small, SynthOptions(scenes=1, samples_per_scene=args.samples))
        print(f"generation 160x90 with sweeps: {s_rate:.2f} samples/s ({s_images:.1f} images/s)")
        f_rate, f_images = generation(
            full,
            SynthOptions(
                scenes=1, samples_per_scene=args.full_samples, image_size=(1600, 900), patch_size=14, sweeps=False
            ),
        )
        print(f"generation 1600x900 keyframes only: {f_rate:.3f} samples/s ({f_images:.2f} images/s)")
        print(f"image rate ratio 160x90 / 1600x900: {s_images / f_images:.1f}x")
        for name, root in (("160x90 -> 90x160", small), ("1600x900 -> 504x896", full)):
            serial = reader(root, 0, args.epochs)
            parallel = reader(root, 2, args.epochs)
            print(
                f"reader {name}: {serial:.1f} samples/s with 0 workers, {parallel:.1f} with 2 workers "
                f"(ratio {parallel / serial:.2f})"
            )


if __name__ == "__main__":
    main()
