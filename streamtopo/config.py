"""Monitor configuration files: what ``streamtopo calibrate`` writes and
``LayerMonitor(config=...)`` / ``TrainingMonitor(config=...)`` read.

A config is a JSON document (a path) or the same document as a dict::

    {"format": "streamtopo-config", "version": 1,
     "layer": {"rule": "cusum", "fa_per_1k": 0.2, ...},      # LayerMonitor arguments
     "calibration": {...}}                                    # how they were chosen (kept as is)

A dict without ``"format"`` is taken as the ``"layer"`` section itself. Keys are checked: an
unknown key raises naming it and the keys allowed. The file is plain JSON (never pickle), read
with a size bound.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ._validation import describe
from .errors import InputError, InputTypeError

__all__ = ["FORMAT", "VERSION", "config_document", "read_config"]

FORMAT = "streamtopo-config"
VERSION = 1
_SECTIONS = ("layer", "calibration")
_MAX_BYTES = 1 << 20


def config_document(layer: Mapping[str, Any], calibration: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of a config: ``layer`` arguments and the ``calibration`` record.

    >>> config_document({"rule": "cusum", "fa_per_1k": 0.2}, {})["layer"]
    {'rule': 'cusum', 'fa_per_1k': 0.2}
    """
    return {
        "format": FORMAT,
        "version": VERSION,
        "layer": dict(layer),
        "calibration": dict(calibration),
    }


def read_config(config: Any, section: str, allowed: Collection[str]) -> dict[str, Any]:
    """The ``section`` of a config (a path or a dict), its keys checked against ``allowed``.

    Examples
    --------
    >>> read_config({"rule": "cusum"}, "layer", ("rule", "fa_per_1k"))
    {'rule': 'cusum'}
    >>> read_config({"rule": "cusum", "fa": 1}, "layer", ("rule", "fa_per_1k"))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamtopo.errors.InputError: config has unknown key(s) ['fa'] in section 'layer'; ...
    """
    where = "config"
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        where = f"config file {path}"
        try:
            size = path.stat().st_size
            if size > _MAX_BYTES:
                raise InputError(f"{where} is {size} bytes; a config is at most {_MAX_BYTES}")
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"{where} cannot be read: {exc}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{where} is not JSON: {exc}") from exc
    elif isinstance(config, Mapping):
        doc = config
    else:
        raise InputTypeError(
            f"config must be a path to a JSON config or a dict, got {describe(config)}"
        )
    if not isinstance(doc, Mapping):
        raise InputError(f"{where} must hold a JSON object, got {describe(doc)}")
    if "format" in doc:
        if doc["format"] != FORMAT or doc.get("version") != VERSION:
            raise InputError(
                f"{where} has format {doc['format']!r} version {doc.get('version')!r}; "
                f"expected {FORMAT!r} version {VERSION}"
            )
        extra = sorted(set(doc) - {"format", "version", *_SECTIONS})
        if extra:
            raise InputError(
                f"{where} has unknown key(s) {extra}; allowed: "
                f"{sorted({'format', 'version', *_SECTIONS})}"
            )
        body = doc.get(section, {})
        if not isinstance(body, Mapping):
            raise InputError(
                f"{where}: section {section!r} must be an object, got {describe(body)}"
            )
    else:
        body = doc
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise InputError(
            f"{where} has unknown key(s) {unknown} in section {section!r}; allowed: "
            f"{sorted(allowed)}"
        )
    return dict(body)
