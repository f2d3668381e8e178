"""Pulmonary embolism CNN-LSTM: data (synthetic CTPA + emboli inserted into the real CTA crop), network,
training, ONNX export, evaluation through the serving path (``inference.models.pe``), compression.

Importing this package does not import torch; the submodules ``net``, ``train``, ``export`` do.
"""
