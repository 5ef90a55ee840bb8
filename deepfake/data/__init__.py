"""From datasets on disk to training batches, one job a module:

    config       the ``data`` settings (DataConfig, the types of configs/data/*.yaml) and the face stage they name
    augment      training's augmentation and the random surroundings of face crops
    pairs        self-blended pseudo-fake pairs (data.pseudo_fakes=sbi)
    dataset      ImageDataset: one split's items, and the batch collation that skips unreadable images
    datamodule   DeepfakeDataModule: finds, checks, crops and splits the samples; the data loaders

Finding a dataset's samples and splitting them is :mod:`deepfake.samples`' job. Nothing is imported here, so
``import deepfake.data.config`` stays free of Lightning.
"""
