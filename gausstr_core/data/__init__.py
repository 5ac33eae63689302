"""Samples, dataset readers and the synthetic nuScenes-format world."""

from gausstr_core.data.dataset import GaussTRDataset, make_dataloader
from gausstr_core.data.nuscenes import CameraRecord, NuScenesReader, SampleRecord
from gausstr_core.data.sample import Batch, Sample, collate_samples

__all__ = [
    "Batch",
    "CameraRecord",
    "GaussTRDataset",
    "NuScenesReader",
    "Sample",
    "SampleRecord",
    "collate_samples",
    "make_dataloader",
]
