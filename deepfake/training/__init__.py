"""Training, one job a module:

    config       the types of train.py's config (TrainConfig, ModelConfig; the data's are deepfake.data.config)
    module       DeepfakeLitModule, the LightningModule
    train        train(cfg): a composed config becomes a run (trainer, callbacks, loggers, the run's files)
    checkpoint   load_checkpoint: a run's checkpoint read back without Lightning or Hydra

Nothing is imported here, so ``import deepfake.training.checkpoint`` (export, evaluation, explanations, the
command line) does not load Lightning or Hydra.
"""
