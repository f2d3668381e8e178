"""Nodule models: training, evaluation and export (torch + MONAI only in the modules that need them)."""
