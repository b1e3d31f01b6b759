"""Provenance: what every Butler read and wrote, stored beside each output, and read back as a lineage.

- `recording`: `ProvenanceRecorder`, one per Butler: the reads of each scope
  (the Butler's lifetime, a ``Butler.quantum`` block), and a record per file a
  put writes, stored in the output's `butler.registry.provenance.ProvenanceStore`.
- `lineage`: the records as value objects (`ProvenanceRecord`, `ProvenanceInput`,
  `RunInfo`), followed through the inputs' repositories (`read_lineage`), and
  `verify_repository`.
- `render`: a lineage as a text tree, JSON, W3C PROV-JSON (the ``prov`` package)
  or Graphviz ``dot`` (the ``graphviz`` package).

The names are loaded on first use: a Butler's recorder needs neither the
reading side nor ``sqlite3`` until it puts.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule defining it
_PUBLIC = {
    "ProvenanceRecorder": "recording",
    "recording_enabled": "recording",
    "ProvenanceRecord": "lineage",
    "ProvenanceInput": "lineage",
    "RunInfo": "lineage",
    "VerifyProblem": "lineage",
    "read_lineage": "lineage",
    "verify_repository": "lineage",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value
