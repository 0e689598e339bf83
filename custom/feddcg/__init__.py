"""FedDCG for NVIDIA FLARE: a framework-free core (backbone, prompts, aggregation, inference, data, site and server
logic) and a thin NVFlare layer in `feddcg.flare`. See the README for the method and how it reads the paper."""

__version__ = "0.1.0"
