"""Training side: the only package that imports torch and MONAI (extra ``[train]``)."""
