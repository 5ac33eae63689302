"""GaussTR core: ROS-free PyTorch implementation of the Foundation Model-Aligned Gaussian Transformer."""

__version__ = "0.1.0"
