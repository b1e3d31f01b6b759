"""Provenance: what every Butler read and wrote, stored beside each output, and read back as a lineage.

- `recording`: `ProvenanceRecorder`, one per Butler: the reads of each scope
  (the Butler's lifetime, a ``Butler.quantum`` block), and a record per file a
  put writes, stored in the output's `butler.registry.provenance.ProvenanceStore`.
- `lineage`: the records as value objects (`ProvenanceRecord`, `ProvenanceInput`,
  `RunInfo`), followed through the inputs' repositories (`read_lineage`), and
  `verify_repository`.
- `render`: a lineage as a text tree, JSON, W3C PROV-JSON (the ``prov`` package)
  or Graphviz ``dot`` (the ``graphviz`` package).
"""

from .lineage import (
    ProvenanceInput,
    ProvenanceRecord,
    RunInfo,
    VerifyProblem,
    read_lineage,
    verify_repository,
)
from .recording import ProvenanceRecorder, recording_enabled

__all__ = ["ProvenanceRecorder", "ProvenanceRecord", "ProvenanceInput", "RunInfo", "VerifyProblem",
           "read_lineage", "verify_repository", "recording_enabled"]
