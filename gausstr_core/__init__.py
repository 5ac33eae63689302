"""GaussTR core: ROS-free PyTorch implementation of the Foundation Model-Aligned Gaussian Transformer."""

import os

# OpenMP threads that spin while waiting make torch 10-30x slower on a CPU shared with other busy
# processes (a robot's other nodes, the camera driver; measured here: 2.2 s -> 23 s per prediction).
# Passive waiting costs nothing measurable when the CPU is free. Must be set before torch loads;
# a value the user exported wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
