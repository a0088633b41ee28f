"""cnnvis pipeline: train small CNNs and show what they learned.

Layout (one job per package):
  data/          datasets as in-memory tensors (lines generator, IDX files, LightningDataModules)
  models/        cnn_basic, cnn_deep, multihead and the LightningModule that trains them
  training/      the train job: Lightning trainer, run artefacts, checkpoint registry
  visualization/ activations, filter patterns, Grad-CAM (hook-based, batched)
  storage/       the HDF5 store of a visualize run
  rendering/     matplotlib/Pillow figures (mosaics, overlays, curves, confusion matrices)
  report/        the HTML report of a run or sweep
"""
