"""Framework integrations (optional extras).

* :mod:`streamtopo.integrations.torch` — collectors that turn a ``torch.nn.Module`` into per-layer
  signals (gradient norms, activation norms, attention entropy, penultimate features) with one
  host copy per monitored step; the only module that imports ``torch``.
* :mod:`streamtopo.integrations.training` — :class:`TrainingMonitor`, one object that owns the
  collectors, the monitors and the run writer.
* :mod:`streamtopo.integrations.lightning` and :mod:`streamtopo.integrations.hf` — callbacks for
  Lightning and the Hugging Face ``Trainer``; each imports its framework when used.

Nothing here is imported by ``import streamtopo``.
"""
