"""The real occupancy node, with benchmarks/oracle_synthetic.py's oracle standing in for the network.

    python test/oracle_node.py --ros-args -p checkpoint:=tiny.pth ...   (the node's own arguments)

The checkpoint gives the config (its world's data section); its network is replaced by OracleHead,
which fits Gaussians to the ground truth of the world's one `val` keyframe (true classes and
voxels, from the depth maps the node receives), so the node's predictions carry meaningful
features without training. Everything else is the node as shipped: topics, lifecycle, queries.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.oracle_synthetic import OracleHead, OracleKnobs, class_features
from gausstr_core.data import GaussTRDataset
from gausstr_core.predict import OccupancyPredictor
from gausstr_ros import node


class OraclePredictor(OccupancyPredictor):
    @classmethod
    def from_checkpoint(cls, *args: Any, **kwargs: Any) -> OccupancyPredictor:
        predictor = OccupancyPredictor.from_checkpoint(*args, **kwargs)
        knobs = OracleKnobs()
        oracle = OracleHead(predictor.config.model, predictor.grid, knobs)
        oracle.prompt_ids, oracle.class_features = class_features(predictor, knobs.feature_gain)
        dataset = GaussTRDataset(predictor.config, predictor.config.data.val_split)
        if len(dataset) != 1:
            raise ValueError(f"oracle_node needs a world with one val keyframe, this one has {len(dataset)}")
        oracle.use(dataset[0])
        predictor.model = oracle
        return predictor


if __name__ == "__main__":
    node.OccupancyPredictor = OraclePredictor
    sys.exit(node.main(sys.argv))
