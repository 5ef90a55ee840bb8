"""deepfake: tell real face images from manipulated or generated ones.

How an image flows from disk to a verdict:
    preprocess (decode, RGB, resize, scale) -> data (layouts, splits, batches)
    -> models (detectors by name) -> training (Lightning fit/test, metrics.json)
"""

__version__ = "0.1.0"
