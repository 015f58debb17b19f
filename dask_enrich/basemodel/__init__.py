"""Base splice-site model: a numpy port of SpliceAI (released weights) and per-gene prediction."""
from .spliceai import CLASS_ORDER, CONTEXT, FLANK, SpliceAIModel, load_models, one_hot, predict_gene, predict_onehot, weights_dir

__all__ = [
    "CLASS_ORDER",
    "CONTEXT",
    "FLANK",
    "SpliceAIModel",
    "load_models",
    "one_hot",
    "predict_gene",
    "predict_onehot",
    "weights_dir",
]
