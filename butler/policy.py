"""`Policy`: nested configuration with dotted keys, read from and written to YAML.

A policy is a tree of plain dicts. ``policy['a.b.c']`` reaches into it;
a nested mapping comes back as a `Policy` that *shares* the subtree (no copy),
so reading a camera policy stays cheap.  A missing key reads as `None`, as
Gen2 policies did; use `Policy.get` for another default.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator, KeysView, Mapping
from typing import Any

from .errors import PolicyError
from .utils import keep, read_kept

__all__ = ["Policy"]

#: version of what a kept parse holds (a marshalled plain tree); bump when that changes
_CACHE_FORMAT = 2

#: product names whose policy files live in this project's own tree (``<root>/policy``)
_OWN_PRODUCTS = ("butler", "daf_persistence")


#: the types of YAML's plain leaves, told apart by ``type`` alone (no abstract-class check)
_LEAVES = frozenset((str, int, float, bool, type(None)))


def _copy_tree(value: Any) -> Any:
    """Copy nested mappings and lists into plain dicts and lists; leave leaves shared."""
    kind = type(value)
    if kind is dict:
        return {k: _copy_tree(v) for k, v in value.items()}
    if kind in _LEAVES:
        return value
    if isinstance(value, Policy):
        value = value._data
    if isinstance(value, Mapping):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    return value


def _update_tree(target: dict, other: Mapping) -> None:
    """Recursively update ``target`` from ``other``; ``other`` wins on leaves."""
    for key, value in other.items():
        current = target.get(key)
        if isinstance(value, (Mapping, Policy)) and isinstance(current, dict):
            _update_tree(current, value._data if isinstance(value, Policy) else value)
        else:
            target[key] = _copy_tree(value)


def _merge_tree(target: dict, other: Mapping) -> None:
    """Recursively add to ``target`` the keys of ``other`` that it lacks; ``target`` wins."""
    for key, value in other.items():
        if key not in target:
            target[key] = _copy_tree(value)
            continue
        current = target[key]
        if isinstance(current, dict) and isinstance(value, (Mapping, Policy)):
            _merge_tree(current, value._data if isinstance(value, Policy) else value)


@functools.lru_cache(maxsize=64)
def _read_yaml_file(path: str, mtime_ns: int, size: int) -> dict:
    """Parse a policy file once per (path, modification time, size) in a process.

    Between processes, the parsed tree of a plain file is kept in the user's
    cache directory (`butler.utils.cache_dir`) with the file's bytes, which are read
    every time and compared: a changed file is never answered from the cache. Parsing
    YAML costs tens of milliseconds a camera, loading the kept tree well under one.
    """
    import io

    from .cfg import load_yaml, read_bounded  # the project's one safe YAML loader, and its size limit
    from .storage import Storage

    storage, name = Storage.forFile(path)
    with storage.openRead(name) as stream:
        content = read_bounded(stream, path)
    tree = read_kept("policy", content, _CACHE_FORMAT)
    if type(tree) is dict:
        return tree
    data = load_yaml(io.BytesIO(content), path)
    if data is None:
        return {}
    if isinstance(data, Policy):
        return data._data
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy file {path!r} does not hold a mapping (got {type(data).__name__})")
    tree = _copy_tree(data)
    keep("policy", content, _CACHE_FORMAT, tree)
    return tree


class Policy:
    """Nested configuration addressed with dotted keys.

    Parameters
    ----------
    data : `dict`, `Policy`, `str` or `os.PathLike`, optional
        Nothing (empty policy), a mapping (copied), another `Policy` (deep
        copy) or the path of a ``.yaml`` file.

    Raises
    ------
    FileNotFoundError
        When a ``.yaml`` (or legacy ``.paf``) path does not exist.
    butler.errors.PolicyError
        A `RuntimeError`: the path is not a ``.yaml`` file, or the file
        does not hold a mapping.
    butler.errors.UnsafeYamlError
        The file holds a YAML tag the safe loader refuses.

    Notes
    -----
    Keys must not contain dots: ``p['a.b']`` always means ``p['a']['b']``.
    Reading a missing key gives `None` (the Gen2 behaviour).
    """

    __slots__ = ("_data",)

    def __init__(self, data: Any = None):
        if data is None:
            self._data: dict = {}
        elif isinstance(data, (Policy, Mapping)):
            self._data = _copy_tree(data)
        elif isinstance(data, (str, os.PathLike)):
            self._data = _copy_tree(self._load_file(os.fspath(data)))
        else:
            raise PolicyError(f"cannot make a Policy from {type(data).__name__}: {data!r}")

    @classmethod
    def _wrap(cls, data: dict) -> Policy:
        """Return a `Policy` sharing ``data`` (no copy)."""
        policy = cls.__new__(cls)
        policy._data = data
        return policy

    @staticmethod
    def _load_file(path: str) -> dict:
        if not path.endswith((".yaml", ".paf")):
            raise PolicyError(f"unsupported policy file type (need .yaml): {path!r}")
        try:
            stat = os.stat(path)
        except FileNotFoundError as exc:
            raise FileNotFoundError(exc.errno, f"policy file not found: {path!r}", path) from None
        if path.endswith(".paf"):
            raise PolicyError(f"legacy PAF policy files are not supported (convert to YAML): {path!r}")
        return _read_yaml_file(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)

    # -- mapping access ---------------------------------------------------------------------

    def _find(self, name: str) -> tuple[bool, Any]:
        """Return ``(found, value)`` for a dotted name."""
        data: Any = self._data
        if name in data:  # fast path: a top-level key
            return True, data[name]
        if not isinstance(name, str) or "." not in name:
            return False, None
        for key in name.split("."):
            if not isinstance(data, dict) or key not in data:
                return False, None
            data = data[key]
        return True, data

    def __getitem__(self, name: str) -> Any:
        found, value = self._find(name)
        if isinstance(value, dict):
            return Policy._wrap(value)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """Return the value at a dotted name, or ``default`` when it is missing."""
        found, value = self._find(name)
        if not found:
            return default
        if isinstance(value, dict):
            return Policy._wrap(value)
        return value

    def __contains__(self, name: object) -> bool:
        return self._find(name)[0]  # type: ignore[arg-type]

    def __setitem__(self, name: str, value: Any) -> None:
        keys = name.split(".")
        data = self._data
        for key in keys[:-1]:
            child = data.get(key)
            if not isinstance(child, dict):
                child = data[key] = {}
            data = child
        data[keys[-1]] = _copy_tree(value)

    def __delitem__(self, name: str) -> None:
        parent, _, last = name.rpartition(".")
        container = self._data if not parent else self._find(parent)[1]
        if not isinstance(container, dict) or last not in container:
            raise KeyError(name)
        del container[last]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> KeysView:
        """The top-level keys."""
        return self._data.keys()

    def values(self) -> list:
        """The top-level values (nested mappings as `Policy`)."""
        return [self[key] for key in self._data]

    def items(self) -> list[tuple[Any, Any]]:
        """The top-level items (nested mappings as `Policy`)."""
        return [(key, self[key]) for key in self._data]

    def names(self, topLevelOnly: bool = False) -> list[str]:
        """Return the dotted name of every node, inner nodes included.

        Parameters
        ----------
        topLevelOnly : `bool`
            Only the top-level keys.
        """
        if topLevelOnly:
            return list(self._data)
        result: list[str] = []

        def walk(data: dict, prefix: str) -> None:
            for key, value in data.items():
                name = f"{prefix}{key}"
                result.append(name)
                if isinstance(value, dict):
                    walk(value, name + ".")

        walk(self._data, "")
        return result

    def toDict(self) -> dict:
        """Return a deep copy of the contents as plain dicts and lists."""
        return _copy_tree(self._data)

    def asArray(self, name: str) -> list:
        """Return the value at ``name`` as a list (a scalar or string becomes one element)."""
        value = self.get(name)
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]

    # -- combining --------------------------------------------------------------------------

    def update(self, other: Mapping | Policy) -> None:
        """Merge ``other`` into this policy recursively; ``other`` wins on conflicts.

        Unlike `dict.update`, a nested mapping is merged into the existing one
        instead of replacing it.
        """
        _update_tree(self._data, other._data if isinstance(other, Policy) else other)

    def merge(self, other: Mapping | Policy) -> None:
        """Add the keys of ``other`` that this policy lacks, recursively; this policy wins.

        ``other`` is not modified (what is added is copied).
        """
        _merge_tree(self._data, other._data if isinstance(other, Policy) else other)

    # -- comparison, copying, pickling, I/O -------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Policy):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Policy({self._data!r})"

    def __copy__(self) -> Policy:
        return Policy(self)

    def __deepcopy__(self, memo: dict) -> Policy:
        return Policy(self)

    def __setstate__(self, state: dict) -> None:
        self._data = state

    def __reduce__(self) -> tuple:
        return (Policy, (), self._data)

    def dumpToFile(self, path: str | os.PathLike) -> None:
        """Write the policy to a YAML file, atomically.

        Parameters
        ----------
        path : `str` or `os.PathLike`
            Destination; `Policy` reads it back equal.
        """
        import yaml

        from .safeio import write_bytes

        text = yaml.safe_dump(self._data, default_flow_style=False, sort_keys=False)
        write_bytes(os.fspath(path), text.encode("utf-8"))

    @staticmethod
    def defaultPolicyFile(productName: str, fileName: str, relativePath: str | None = None) -> str:
        """Return ``<product dir>/<relativePath>/<fileName>``.

        Parameters
        ----------
        productName : `str`
            A product: ``$<PRODUCTNAME>_DIR`` (upper case) names its directory
            when set. Otherwise ``butler``, ``daf_persistence`` and ``obs_*``
            mean this project's root (the directory holding ``policy/``), and
            any other name an installed Python package's directory.
        fileName : `str`
            The file name, possibly with a leading relative path.
        relativePath : `str`, optional
            Directory of the file relative to the product directory.

        Raises
        ------
        butler.errors.PolicyError
            When no directory is known for ``productName``.
        """
        base = os.environ.get(f"{productName.upper()}_DIR") or _product_dir(productName)
        if relativePath is not None:
            base = os.path.join(base, relativePath)
        return os.path.join(base, fileName)


Mapping.register(Policy)


def _product_dir(productName: str) -> str:
    """The installed directory of a product (see `Policy.defaultPolicyFile`)."""
    if productName in _OWN_PRODUCTS or productName.startswith("obs_"):
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.find_spec(productName)
    if spec is None or not spec.submodule_search_locations:
        raise PolicyError(f"no product installed for productName {productName!r} "
                          f"(set ${productName.upper()}_DIR)")
    return list(spec.submodule_search_locations)[0]
