"""Drop-in versions of the source systems' APIs, as thin layers over streamtopo.

- :mod:`streamtopo.compat.ph_training` — seed 004's ``ph_training`` (``LayerPHMonitor``,
  ``PHMonitor``, ``PHTrainer``); the pipeline's pieces are in :mod:`streamtopo.compat.pipeline`.
- :mod:`streamtopo.compat.collapse_skill` — seed 000's collapse-monitoring skill.

Each module says which calls reproduce the source exactly and where they differ. Nothing heavy is
imported here.
"""
