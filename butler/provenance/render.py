"""A lineage (`ProvenanceRecord`) as a text tree, JSON, W3C PROV-JSON or Graphviz ``dot``.

PROV: each dataset file is a ``prov:Entity`` (``butler:dataset/<uuid>`` when
it has a record, ``butler:file/<sha256 of its repository and path>`` when it
has none), each run and quantum a ``prov:Activity`` (the quantum's settings
as an attribute), the user a ``prov:Agent``; ``wasGeneratedBy``, ``used`` and
``wasDerivedFrom`` join them. ``prov`` and ``graphviz`` are imported only here
(the ``provenance`` extra).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from ..utils import require_extra
from .lineage import ProvenanceInput, ProvenanceRecord

__all__ = ["to_text", "to_json", "to_prov_json", "to_dot", "FORMATS"]

#: the formats of `butler provenance`
FORMATS = ("text", "json", "prov-json", "dot")

_NAMESPACE = "https://github.com/butler/provenance#"


def _data_id_text(dataId: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(dataId.items()))


def _describe(node: ProvenanceRecord | ProvenanceInput) -> str:
    """One line: dataset type, data ID, file, digest, size."""
    digest = f"sha256:{node.sha256}" if node.sha256 else "sha256:(no record)"
    size = f"{node.size} B" if node.size is not None else "size unknown"
    return f"{node.datasetType} {_data_id_text(node.dataId)}  {node.repository}/{node.path}  {digest}  {size}"


def _activity(record: ProvenanceRecord) -> str:
    parts = [f"written {record.time}"]
    if record.state != "done":
        parts.append(record.state)
    if record.quantum is not None:
        parts.append(f"quantum {record.quantum}")
    if record.config:
        parts.append("config " + json.dumps(record.config, sort_keys=True))
    if record.run is not None:
        parts.append(f"run {record.run.uuid[:8]} by {record.run.user}@{record.run.host}: {record.run.command}")
    return "; ".join(parts)


def to_text(record: ProvenanceRecord) -> str:
    """The lineage as an indented tree, one dataset per line (its activity on the next)."""
    lines = [_describe(record), f"  ({_activity(record)})"]

    def branch(node: ProvenanceRecord, prefix: str) -> Iterator[str]:
        for index, item in enumerate(node.inputs):
            last = index == len(node.inputs) - 1
            yield prefix + ("└── " if last else "├── ") + _describe(item)
            below = prefix + ("    " if last else "│   ")
            if item.record is not None:
                yield below + f"  ({_activity(item.record)})"
                yield from branch(item.record, below)
            elif item.uuid is None:
                yield below + "  (no provenance record: read as it was found)"

    lines.extend(branch(record, ""))
    return "\n".join(lines)


def to_json(record: ProvenanceRecord, indent: int | None = 2) -> str:
    """The lineage as JSON (`ProvenanceRecord.to_dict`)."""
    return json.dumps(record.to_dict(), indent=indent, sort_keys=True, default=str)


def _entity_id(node: ProvenanceRecord | ProvenanceInput) -> str:
    if node.uuid:
        return f"butler:dataset/{node.uuid}"
    where = hashlib.sha256(f"{node.repository}\0{node.path}".encode()).hexdigest()[:32]
    return f"butler:file/{where}"


def _nodes(record: ProvenanceRecord) -> Iterator[tuple[ProvenanceRecord, ProvenanceInput]]:
    """``(record, input)`` for every edge of the lineage."""
    seen = set()
    stack = [record]
    while stack:
        node = stack.pop()
        if node.uuid in seen:
            continue
        seen.add(node.uuid)
        for item in node.inputs:
            yield node, item
            if item.record is not None:
                stack.append(item.record)


def to_prov_json(record: ProvenanceRecord) -> str:
    """The lineage as W3C PROV-JSON, built with the ``prov`` package."""
    document = require_extra("prov.model", "provenance", "PROV-JSON output").ProvDocument()
    document.add_namespace("butler", _NAMESPACE)
    made: set[str] = set()
    generatedIds: set[str] = set()

    def entity(node: ProvenanceRecord | ProvenanceInput) -> str:
        identifier = _entity_id(node)
        if identifier not in made:
            made.add(identifier)
            attributes: dict[str, Any] = {
                "butler:datasetType": node.datasetType, "butler:dataId": json.dumps(node.dataId),
                "butler:repository": node.repository, "butler:path": node.path}
            if node.sha256:
                attributes["butler:sha256"] = node.sha256
            if node.size is not None:
                attributes["butler:size"] = node.size
            document.entity(identifier, attributes)
        return identifier

    def activity(node: ProvenanceRecord) -> str | None:
        if node.run is None:
            return None
        identifier = (f"butler:quantum/{node.quantumId}" if node.quantumId else f"butler:run/{node.run.uuid}")
        if identifier not in made:
            made.add(identifier)
            attributes: dict[str, Any] = {"butler:run": node.run.uuid, "butler:command": node.run.command or "",
                                          "butler:host": node.run.host or ""}
            if node.quantum is not None:
                attributes["butler:label"] = node.quantum
            if node.config is not None:
                attributes["butler:config"] = json.dumps(node.config, sort_keys=True)
            document.activity(identifier, node.run.start, node.run.end, attributes)
            agent = f"butler:user/{node.run.user}"
            if agent not in made:
                made.add(agent)
                document.agent(agent)
            document.wasAssociatedWith(identifier, agent)
        return identifier

    def generated(node: ProvenanceRecord) -> str:
        identifier = entity(node)
        act = activity(node)
        if act is not None and identifier not in generatedIds:
            generatedIds.add(identifier)
            document.wasGeneratedBy(identifier, act, node.time)
        return identifier

    generated(record)
    for node, item in _nodes(record):
        target = generated(node)
        source = generated(item.record) if item.record is not None else entity(item)
        act = activity(node)
        if act is not None:
            document.used(act, source)
        document.wasDerivedFrom(target, source)
    return str(document.serialize(format="json", indent=2))


def to_dot(record: ProvenanceRecord) -> Any:
    """The lineage as a `graphviz.Digraph` (``.source`` is the ``dot`` text; inputs point at what they made)."""
    graphviz = require_extra("graphviz", "provenance", "dot output")

    graph = graphviz.Digraph("provenance", graph_attr={"rankdir": "BT"}, node_attr={"shape": "box"})
    named: set[str] = set()

    def node(item: ProvenanceRecord | ProvenanceInput) -> str:
        identifier = _entity_id(item).partition(":")[2]  # dot reads "a:b" in an edge as node a, port b
        if identifier not in named:
            named.add(identifier)
            digest = item.sha256[:12] if item.sha256 else "no record"
            label = f"{item.datasetType}\n{_data_id_text(item.dataId)}\n{item.path}\nsha256 {digest}"
            graph.node(identifier, label, style="solid" if item.sha256 else "dashed")
        return identifier

    node(record)
    for parent, item in _nodes(record):
        graph.edge(node(item.record if item.record is not None else item), node(parent),
                   label=parent.quantum or "")
    return graph
