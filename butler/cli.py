"""The ``butler`` command: a thin click layer over the library.

Subcommands: ``create``, ``mappers``, ``demo``, ``show``, ``query``, ``get``,
``compare``, ``ingest``, ``registry copy``, ``serve``, ``provenance``, ``verify`` and
``map`` (a function over dataRefs, in parallel). Repositories given to ``show``, ``query``,
``get``, ``compare``, ``provenance`` and ``verify`` are opened as read-only Butler inputs,
whatever their kind (new-style cfg, or legacy ``_mapper``/``_parent``), and are never
written. They all take ``--mapper`` and ``--registry`` for a root that names no mapper,
such as a directory of bare Gen2 registries.

Exit codes (`EXIT_CODES`): 0 success; 1 ``compare`` found differences (or
``ingest`` could not ingest some files, ``verify`` found files that differ
from their records, or ``map`` failed for some dataRefs); 2 a mistake in the
input or the data, reported on one line of standard error naming the file or
repository (a package error, `ButlerError`, or a file-system, YAML or
decompression error); 3 a bug in the library, reported with the last frames of
its traceback.
``--log-level DEBUG`` also logs the traceback behind a one-line error.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import sys
import traceback
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import click

from .errors import ButlerError

__all__ = ["cli", "main", "parse_data_id", "read_data_id", "UserError", "EXIT_CODES"]

_log = logging.getLogger(__name__)

#: exit code of ``compare`` when the versions differ
EXIT_DIFFERENT = 1
#: exit code of a mistake in the input or the data
EXIT_USER_ERROR = 2
#: exit code of a bug in the library
EXIT_BUG = 3
#: what each exit code means, as ``butler --help`` prints it
EXIT_CODES = {
    0: "success",
    EXIT_DIFFERENT: "compare: the versions differ; ingest: some files were not ingested; verify: some files "
                    "differ from their provenance records (or have none); map: some dataRefs failed",
    EXIT_USER_ERROR: "a mistake in the input or the data (one line on standard error)",
    EXIT_BUG: "a bug in butler or a mapper (the end of its traceback on standard error)",
}

#: exceptions that mean "the input or the data is wrong", reported in one line: the package's
#: errors, and the built-ins the library lets through from files (the file system, a compressed
#: file cut short); `user_errors` adds a YAML file that does not parse
USER_ERRORS: tuple[type[BaseException], ...] = (ButlerError, OSError, EOFError, zlib.error)

#: exceptions that a file decoder (astropy, gzip, numpy) raises for a corrupt file; raised while
#: reading a dataset from outside this package, they are reported as a user error naming the file
DECODE_ERRORS: tuple[type[BaseException], ...] = (*USER_ERRORS, ValueError, TypeError, IndexError, KeyError)


def _close_matches(word: str, known: list[str], n: int) -> list[str]:
    """The known names closest to a mistyped one (`difflib`, imported only when a name is wrong)."""
    import difflib

    return difflib.get_close_matches(word, known, n=n)


def _yaml_errors() -> tuple[type[BaseException], ...]:
    """PyYAML's error class once PyYAML is loaded (none can have been raised before): a command over
    a repository that holds no YAML never imports it."""
    yaml = sys.modules.get("yaml")
    return (yaml.YAMLError,) if yaml is not None else ()


def user_errors() -> tuple[type[BaseException], ...]:
    """`USER_ERRORS` and, when PyYAML is loaded, its error (a YAML file that does not parse)."""
    return USER_ERRORS + _yaml_errors()


def decode_errors() -> tuple[type[BaseException], ...]:
    """`DECODE_ERRORS` and, when PyYAML is loaded, its error."""
    return DECODE_ERRORS + _yaml_errors()


#: traceback frames shown for a library bug
BUG_FRAMES = 4

#: longest line `describe_object` returns
MAX_LINE = 160

#: exceptions `_user_errors` lets through: click's own control flow (some subclass
#: RuntimeError), and a closed standard output (``butler query ... | head -1``),
#: which click's standalone mode ends quietly
_PASS_THROUGH = (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError)

#: directories of this project's code: an exception raised there is a bug, not a corrupt file
_OWN_CODE = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package) + os.sep
                  for package in ("butler", "mappers"))


class UserError(click.ClickException):
    """A mistake in the command's input: ``Error: <message>`` on one line, exit code 2."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _message(exc: BaseException) -> str:
    """The text of an exception for one line: its message, with the file an `OSError` names."""
    text = str(exc) or type(exc).__name__
    filename = getattr(exc, "filename", None)
    if isinstance(exc, OSError) and filename and str(filename) not in text:
        text = f"{filename}: {exc.strerror or text}"
    if isinstance(exc, _yaml_errors()):
        text = f"malformed YAML: {text}"
    return text


def _report_bug(exc: BaseException) -> None:
    """Print the last frames of a bug's traceback and exit with `EXIT_BUG`."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-BUG_FRAMES, chain=False)
    click.echo("".join(frames).rstrip("\n"), err=True)
    click.echo(f"butler: internal error ({type(exc).__name__}): this is a bug in butler or in the mapper, "
               "not in your input; please report it with the lines above", err=True)
    raise click.exceptions.Exit(EXIT_BUG)


def _user_errors(func: Callable) -> Callable:
    """Report user errors on one line (exit code 2) and anything else as a bug (exit code 3)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except _PASS_THROUGH:
            raise
        except user_errors() as exc:
            _log.debug("%s failed", func.__name__, exc_info=True)
            raise UserError(_message(exc)) from None
        except Exception as exc:  # noqa: BLE001 - everything else is a bug, shown as one
            _report_bug(exc)

    return wrapper


def _raised_by_own_code(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is in this project's code (a bug there)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_OWN_CODE)


def _first_sentence(text: str) -> str:
    """The first sentence of a decoder's message (astropy's next ones suggest keyword arguments)."""
    head, sep, _ = text.partition(". ")
    return head + ("." if sep else "")


_EPILOG = ("\b\nExit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
           + "\n\n\b\nExamples:\n  butler demo --keep\n  butler show DEMO/v1\n"
           "  butler query DEMO/v1 src --exists\n  butler get DEMO/v1 postISRCCD visit=101 detector=0\n"
           "\n\b\nShell completion (bash): eval \"$(_BUTLER_COMPLETE=bash_source butler)\"")


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="WARNING", show_default=True, help="Logging level (messages go to standard error).")
@click.version_option(package_name="butler")
def cli(log_level: str) -> None:
    """Work with Gen2 data repositories: create, show, query and get datasets, compare versions."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def command(*args: Any, **kwargs: Any) -> Callable:
    """Register a subcommand of `cli` whose user errors exit with code 2."""

    def decorate(func: Callable) -> click.Command:
        return cli.command(*args, **kwargs)(_user_errors(func))

    return decorate


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``butler`` command (the console-script entry point)."""
    cli.main(args=argv, prog_name="butler")


# -- helpers -----------------------------------------------------------------------------------


def _check_root(root: str) -> str:
    if not os.path.exists(root):
        raise UserError(f"no such repository root: {root}")
    if not os.path.isdir(root):
        raise UserError(f"not a directory: {root}")
    return os.path.abspath(root)


def open_butler(roots: Sequence[str], tags: Sequence[str] | None = None, mapper: str | None = None,
                registry: str | None = None) -> Any:
    """Open a Butler whose inputs are ``roots``, read-only, each tagged with its item of ``tags``.

    Parameters
    ----------
    roots : sequence of `str`
        Repository roots.
    tags : sequence, optional
        One tag per root.
    mapper : `str`, optional
        The mapper to read the roots with, in place of the one they record
        (a short class name, an import string or a legacy Gen2 name; see `check_mapper`).
    registry : `str`, optional
        The registry to read the roots with (the mapper argument ``registry``)
        in place of ``ROOT/registry.sqlite3``.
    """
    roots = [_check_root(root) for root in roots]
    from .butler import Butler
    from .cfg import RepositoryArgs

    if mapper is not None:
        mapper = check_mapper(mapper)
    mapperArgs = {"registry": registry} if registry else None
    given_tags: list[str | None] = list(tags) if tags else [None] * len(roots)
    inputs = [RepositoryArgs(root=root, mode="r", tags=tag, mapper=mapper, mapperArgs=mapperArgs)
              for root, tag in zip(roots, given_tags)]
    try:
        # a mapper typed by the user is trusted
        return Butler(inputs=inputs, trustedMappers=[mapper] if mapper is not None else None)
    except _yaml_errors() as exc:  # the parser names no file: "<byte string>"
        raise UserError(f"a repositoryCfg.yaml of {' or '.join(roots)} (or of a parent) is not valid YAML: "
                        f"{exc}") from None
    except UnicodeError as exc:  # a cfg or _mapper file that is no text; the decoder names no file
        raise UserError(f"a file of the repository {' or '.join(roots)} (or of a parent) is not UTF-8 text: "
                        f"{exc}") from None


def check_mapper(name: str) -> str:
    """Return the import string of the mapper class ``name`` stands for; a `UserError` when none.

    ``name`` is an import string, a legacy Gen2 name or the short class name of one
    of the package's mappers (``MinMapper2``, see `butler.utils.mapper_names`).
    """
    from .mapper import Mapper
    from .utils import doImport, resolve_short_mapper_name

    target = resolve_short_mapper_name(name)
    try:
        found = doImport(target)
    except ImportError as exc:
        raise UserError(f"--mapper {name}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Mapper)):
        raise UserError(f"--mapper {name}: {found!r} is not a mapper class")
    return target


def _mapped(butler: Any, datasetType: str) -> bool:
    """Whether an input's mapper maps ``datasetType``: it has the ``map_<datasetType>`` method
    `Mapper.map` calls (one look-up each; `Butler.getDatasetTypes` lists every mapper's methods,
    some 500 of a camera's, and is asked only to word a refusal)."""
    name = "map_" + datasetType
    return any(repo.cfg.mapper is not None and callable(getattr(repo.mapper, name, None))
               for repo in butler.repositories())


def dataset_keys(butler: Any, datasetType: str) -> dict:
    """Return ``{key: type}`` of a dataset type; a `UserError` when no input knows the type."""
    if not _mapped(butler, datasetType):
        known = butler.getDatasetTypes()
        if not known:
            raise UserError("no mapper to read the repository with: it has no _mapper file or "
                            "repositoryCfg.yaml naming one; give --mapper NAME")
        if datasetType not in known:
            near = _close_matches(datasetType, sorted(known), n=5)
            hint = f"; did you mean {', '.join(near)}?" if near else f" ({len(known)} dataset types known)"
            raise UserError(f"unknown dataset type {datasetType!r}{hint}")
    try:
        return dict(butler.getKeys(datasetType) or {})
    except KeyError:  # a type with no mapping of its own, such as a CameraMapper's ``flat_filename``
        return {}


def _known_keys(butler: Any, datasetType: str, datasetKeys: Mapping[str, Any]) -> set[str] | None:
    """Every key a data ID of ``datasetType`` may use: the mapper's keys and its registries' columns.

    ``datasetKeys`` are the dataset type's own keys (`dataset_keys`). None when no
    mapper can say (a mapper without ``getKeys(None)``), so nothing is refused.
    """
    try:
        allKeys = butler.getKeys(None)
    except (KeyError, TypeError, AttributeError):
        allKeys = None
    if not isinstance(allKeys, Mapping):
        return None
    known = set(allKeys) | set(datasetKeys)
    for repo in butler.repositories():
        if repo.cfg.mapper is not None:
            known.update(repo.mapper.knownDataIdKeys() or ())  # templates, registry columns, time keys
    return known


def check_data_id_keys(butler: Any, datasetType: str, dataId: Mapping[str, Any],
                       datasetKeys: Mapping[str, Any]) -> None:
    """Refuse a data-ID key that neither the mapper nor any of its registries knows (a typo).

    The library ignores such a key, as Gen2 did, so ``vist=1`` would match everything.
    ``datasetKeys`` are the dataset type's keys (`dataset_keys`). An empty data ID has
    no key to refuse: nothing more is asked of the mappers.
    """
    if not dataId:
        return
    known = _known_keys(butler, datasetType, datasetKeys)
    if known is None:
        return
    for key in dataId:
        if key not in known:
            near = _close_matches(key, sorted(known), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else \
                f"{datasetType} takes {', '.join(sorted(datasetKeys)) or 'no keys'}"
            raise UserError(f"unknown data ID key {key!r} for {datasetType}: no mapper template or registry "
                            f"column has it; {hint}")


def read_data_id(butler: Any, datasetType: str, items: Sequence[str]) -> tuple[dict, dict]:
    """Parse ``KEY=VALUE`` words into a checked data ID of ``datasetType``.

    Returns
    -------
    dataId : `dict`
        The data ID, each value converted with its key's type.
    keyTypes : `dict`
        ``{key: type}`` of the dataset type (see `dataset_keys`).

    Raises
    ------
    UserError
        An unknown dataset type, a malformed word, or a key no template or registry column knows.
    """
    keyTypes = dataset_keys(butler, datasetType)
    dataId = parse_data_id(items, keyTypes)
    check_data_id_keys(butler, datasetType, dataId, keyTypes)
    return dataId, keyTypes


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int": int, "integer": int, "float": float, "double": float, "real": float, "str": str, "text": str,
}


def _guess(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_data_id(items: Sequence[str], keyTypes: Mapping[str, Any] | None = None) -> dict:
    """Parse ``KEY=VALUE`` words into a data ID.

    Parameters
    ----------
    items : sequence of `str`
        The words.
    keyTypes : mapping, optional
        ``{key: type}`` as `Butler.getKeys` reports it (types or SQL type
        names); a value is converted with its key's type. A key without a
        type becomes an int or a float when it reads as one, else a string.

    Raises
    ------
    UserError
        A word that is not ``KEY=VALUE``, a repeated key, or a value its key's type refuses.
    """
    keyTypes = keyTypes or {}
    dataId: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UserError(f"malformed data ID item {item!r}: expected KEY=VALUE, e.g. visit=1")
        if key in dataId:
            raise UserError(f"data ID key {key!r} given twice")
        kind = keyTypes.get(key)
        if kind is None:
            dataId[key] = _guess(text)
            continue
        name = kind.__name__ if isinstance(kind, type) else str(kind)
        convert = _CONVERTERS.get(name.lower(), kind if callable(kind) else str)
        try:
            dataId[key] = convert(text)
        except ValueError:
            raise UserError(f"{key}={text}: {key} takes a value of type {name}") from None
    return dataId


def render_rows(names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Render rows of values as a text table, JSON (a list of objects) or CSV."""
    from .utils import text_table

    if fmt == "json":
        return json.dumps([dict(zip(names, row)) for row in rows], indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        import csv  # the CSV output only

        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    count = f"({len(rows)} row{'' if len(rows) == 1 else 's'})"
    if not names:  # data IDs with no keys (a dataset whose template has none)
        return f"{count[:-1]}, no data ID keys)"
    return text_table(names, rows) + "\n" + count


#: rows of a table ``get`` prints
TABLE_ROWS = 5


def _pixels(obj: Any) -> Any:
    """The pixel array of an image-like object (CCDData, an HDU, an array), or None."""
    import numpy as np

    data = getattr(obj, "data", obj) if not isinstance(obj, np.ndarray) else obj
    if isinstance(data, np.ndarray) and data.ndim >= 2 and data.dtype.kind in "uifb":
        return data
    return None


def image_statistics(data: Any) -> dict:
    """``min``, ``max``, ``mean``, ``median`` of the finite pixels, ``nan`` count and ``zeroFraction``."""
    import numpy as np

    values = np.asarray(data, dtype=float)
    finite = values[np.isfinite(values)]
    stats: dict[str, Any] = {name: None for name in ("min", "max", "mean", "median")}
    if finite.size:
        stats.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()),
                     median=float(np.median(finite)))
    stats["nan"] = int(np.isnan(values).sum())
    stats["zeroFraction"] = float((values == 0).sum() / values.size) if values.size else 0.0
    return stats


def summarize(obj: Any) -> dict:
    """What a dataset read by the butler holds, as ``get --format json`` prints it."""
    summary: dict[str, Any] = {"type": type(obj).__name__}
    if hasattr(obj, "colnames"):
        rows = [{name: _plain(row[name]) for name in obj.colnames} for row in obj[:TABLE_ROWS]]
        summary.update(rows=len(obj), columns=list(obj.colnames), firstRows=rows)
    elif _pixels(obj) is not None:
        data = _pixels(obj)
        unit = getattr(obj, "unit", None)
        summary.update(shape=list(data.shape), dtype=str(data.dtype), unit=str(unit) if unit else None,
                       stats=image_statistics(data))
    elif hasattr(obj, "cards"):
        summary["cards"] = len(obj)
    elif isinstance(obj, Mapping):
        summary["keys"] = [str(key) for key in obj]
    elif isinstance(obj, (list, tuple)):
        summary.update(length=len(obj), items=[summarize(item) for item in obj[:TABLE_ROWS]])
    else:
        summary["repr"] = _shorten(repr(obj))
    return summary


def _plain(value: Any) -> Any:
    """A table cell as a JSON value."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[:MAX_LINE - 3] + "..."


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def describe_object(obj: Any) -> str:
    """Describe a dataset read by the butler: a line, then image statistics or a table's first rows."""
    from .utils import text_table

    summary = summarize(obj)
    kind = summary["type"]
    if "columns" in summary:
        line = _shorten(f"{kind}: {summary['rows']} rows; columns {', '.join(summary['columns'])}")
        rows = [[row[name] for name in summary["columns"]] for row in summary["firstRows"]]
        return line + ("\n" + text_table(summary["columns"], rows) if rows else "")
    if "stats" in summary:
        stats = summary["stats"]
        line = f"{kind}: shape {tuple(summary['shape'])}, dtype {summary['dtype']}"
        line += f", unit {summary['unit']}" if summary["unit"] else ""
        values = " ".join(f"{name} {_number(stats[name])}" for name in ("min", "max", "mean", "median"))
        return f"{line}\n{values}; {stats['nan']} NaN; zero fraction {stats['zeroFraction']:.3g}"
    if "cards" in summary:
        return f"{kind}: {summary['cards']} cards"
    if "keys" in summary:
        return _shorten(f"{kind}: {len(summary['keys'])} keys: {', '.join(summary['keys'][:10])}")
    if "items" in summary:
        return _shorten(f"{kind} of {summary['length']}: "
                        + "; ".join(describe_object(item).splitlines()[0] for item in obj[:TABLE_ROWS]))
    return summary["repr"]


def header_of(obj: Any) -> Any:
    """The FITS header (or ``meta`` mapping) of a dataset; a `UserError` when it has none."""
    if hasattr(obj, "cards"):
        return obj
    for name in ("header", "meta"):
        value = getattr(obj, name, None)
        if value is not None and not callable(value):
            return value
    raise UserError(f"a {type(obj).__name__} has no header")


def header_lines(header: Any) -> list[str]:
    """A header as text: the FITS cards, or ``KEY = value`` lines of a mapping."""
    if hasattr(header, "cards"):
        return [str(card) for card in header.cards]
    return [f"{key} = {value!r}" for key, value in header.items()]


# -- show ------------------------------------------------------------------------------------

#: registry files looked for in each repository, relative to its root; the first gives way
#: to the mapper argument ``registry`` when the repository has one
REGISTRY_FILES = ("registry.sqlite3", "calibRegistry.sqlite3", os.path.join("CALIB", "calibRegistry.sqlite3"))


def _repository_kind(repo: Any) -> str:
    from .cfg import CFG_FILENAME

    if not repo.node.legacy:
        return CFG_FILENAME
    markers = [m for m in ("_mapper", "_parent", "registry.sqlite3") if os.path.exists(os.path.join(repo.root, m))]
    return "legacy (" + ", ".join(markers) + ")"


def _mapper_text(mapper: Any) -> str:
    from .cfg import resolve_mapper_name

    if mapper is None:
        return "none"
    resolved = resolve_mapper_name(mapper)
    given = mapper if isinstance(mapper, str) else resolved or repr(mapper)
    return given if resolved in (None, given) else f"{given} -> {resolved}"


def _parent_tree(repo: Any, prefix: str = "", seen: set | None = None) -> list[str]:
    """Lines of the parent tree below ``repo`` (each repository expanded once)."""
    seen = set() if seen is None else seen
    seen.add(repo.root)
    lines = []
    link = os.path.join(repo.root, "_parent")
    for i, parent in enumerate(repo.parents):
        last = i == len(repo.parents) - 1
        notes = [_repository_kind(parent)]
        if os.path.exists(link) and os.path.realpath(link) == os.path.realpath(parent.root):
            notes.append("via _parent link")
        if parent.root in seen:
            notes.append("shown above")
        lines.append(f"{prefix}{'`-- ' if last else '|-- '}{parent.root}  [{'; '.join(notes)}]")
        if parent.root not in seen:
            lines += _parent_tree(parent, prefix + ("    " if last else "|   "), seen)
    return lines


def _registry_counts(repo: Any) -> dict[str, dict[str, int]]:
    """``{registry path: {table: rows}}`` of the registry files found in a repository."""
    from .registry import SqliteRegistry

    paths = [os.path.join(repo.root, name) for name in REGISTRY_FILES]
    given = (repo.cfg.mapperArgs or {}).get("registry")
    if isinstance(given, (str, os.PathLike)):
        paths[0] = os.path.join(repo.root, given)
    counts = {}
    for path in paths:
        if not os.path.isfile(path):
            continue
        registry = SqliteRegistry(path)
        try:
            counts[path] = {table: registry.rowCount(table) for table in registry.tables()}
        finally:
            registry.close()
    return counts


def _files_under(root: str) -> list[str]:
    """Relative paths of the files under ``root`` (symlinked directories such as ``_parent`` not followed)."""
    files = []
    for directory, _, names in os.walk(root):
        relative = os.path.relpath(directory, root)
        files += [os.path.normpath(os.path.join(relative, name)) for name in names]
    return files


def _datasets_on_disk(repo: Any) -> dict[str, int]:
    """``{dataset type: files}`` of the dataset types of a repository's mapper with files in its root."""
    from .registry import FsScanner

    mappings = getattr(repo.mapper, "mappings", None) if repo.cfg.mapper is not None else None
    mappings = mappings or {}
    files = _files_under(repo.root)
    # a file may be stored compressed under the template's name plus .gz or .fz
    files += [f[:-3] for f in files if f.endswith((".gz", ".fz"))]
    counts = {}
    for datasetType in sorted(mappings):
        try:
            template = mappings[datasetType].template
        except user_errors():
            continue
        if template:
            scanner = FsScanner(template)
            count = sum(1 for f in files if scanner.match(f) is not None)
            if count:
                counts[datasetType] = count
    return counts


def _or_problem(func: Callable[[], Any]) -> Any:
    """``func()``, or the one-line text of the user error it raises."""
    try:
        return func()
    except user_errors() as exc:
        return "unavailable (" + " ".join(_message(exc).split()) + ")"


def repository_info(butler: Any) -> dict:
    """Describe the first input of a Butler and its parents, as ``butler show --format json`` prints it."""
    repos = butler.repositories()
    top = repos[0]
    cfg = top.cfg
    types = _or_problem(lambda: sorted(butler.getDatasetTypes()))
    return {
        "repository": top.root,
        "cfg": _repository_kind(top),
        "mapper": _mapper_text(cfg.mapper),
        "mapperArgs": dict(cfg.mapperArgs or {}),
        "policy": sorted(map(str, cfg.policy.names(topLevelOnly=True))) if cfg.policy else [],
        "mode": top.mode,
        "tags": sorted(map(str, top.tags)),
        "parents": [repo.root for repo in repos[1:]],
        "registries": {path: counts for repo in repos for path, counts in _registry_counts(repo).items()},
        "datasetsOnDisk": {repo.root: _or_problem(functools.partial(_datasets_on_disk, repo))
                           for repo in repos},
        "datasetTypes": types,
    }


def _counts_text(counts: Any) -> str:
    if isinstance(counts, str):
        return counts
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def repository_report(butler: Any, listTypes: bool = False) -> str:
    """Describe the first input of a Butler and its parents, as ``butler show`` prints it."""
    import textwrap

    info = repository_info(butler)
    top = butler.repositories()[0]
    lines = [f"repository: {info['repository']}", f"cfg:        {info['cfg']}",
             f"mapper:     {info['mapper']}"]
    if info["mapperArgs"]:
        lines.append(f"mapperArgs: {info['mapperArgs']}")
    if info["policy"]:
        lines.append(f"policy:     {', '.join(info['policy'])}")
    lines += [f"mode:       {info['mode']} (opened read-only)",
              f"tags:       {', '.join(info['tags']) or 'none'}",
              "parents:", f"  {top.root}"]
    lines += ["  " + line for line in _parent_tree(top)]
    registries = [f"  {path}: {_counts_text(counts) or 'no tables'}"
                  for path, counts in info["registries"].items()]
    lines += ["registries (rows per table):"] + (registries or ["  none"])
    lines.append("datasets on disk (files per dataset type):")
    lines += [f"  {root}: {_counts_text(counts) or 'none'}"
              for root, counts in info["datasetsOnDisk"].items()]
    types = info["datasetTypes"]
    if isinstance(types, str):
        lines.append(f"dataset types: {types}")
    elif not listTypes:
        lines.append(f"dataset types: {len(types)} known to the mapper (--types lists them)")
    else:
        lines.append(f"dataset types ({len(types)}):")
        lines += textwrap.wrap(", ".join(types), width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


# -- pictures ----------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; a `UserError` naming the extra when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--png needs matplotlib: pip install 'butler[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image_pixels(obj: Any, what: str) -> Any:
    data = _pixels(obj)
    if data is None or data.ndim != 2:
        raise UserError(f"--png draws a 2-d image; {what} is a {type(obj).__name__}")
    return data


def _save_figure(figure: Any, png: str) -> None:
    from .safeio import atomic_write

    with atomic_write(png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def render_image(obj: Any, png: str, title: str) -> None:
    """Draw an image with astropy's ZScale and a colour bar, to the PNG file ``png``."""
    from astropy.visualization import ZScaleInterval

    plt = _pyplot()
    data = _image_pixels(obj, title)
    low, high = ZScaleInterval().get_limits(data)
    figure, axes = plt.subplots(figsize=(7, 6))
    try:
        shown = axes.imshow(data, origin="lower", cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        figure.colorbar(shown, ax=axes)
        axes.set_title(title)
        _save_figure(figure, png)
    finally:
        plt.close(figure)


def render_difference(a: Any, b: Any, png: str, labels: Sequence[str], title: str) -> None:
    """Draw A, B (one ZScale) and A-B side by side, each with a colour bar, to the PNG file ``png``."""
    import numpy as np
    from astropy.visualization import ZScaleInterval

    plt = _pyplot()
    data_a, data_b = _image_pixels(a, labels[0]), _image_pixels(b, labels[1])
    if data_a.shape != data_b.shape:
        raise UserError(f"--png: the images differ in shape ({data_a.shape} and {data_b.shape})")
    diff = data_a.astype(float) - data_b.astype(float)
    low, high = ZScaleInterval().get_limits(np.concatenate([data_a.ravel(), data_b.ravel()]))
    span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0
    panels = ((data_a, labels[0], low, high, "gray"), (data_b, labels[1], low, high, "gray"),
              (diff, f"{labels[0]} - {labels[1]}", -span or -1.0, span or 1.0, "coolwarm"))
    figure, axes = plt.subplots(1, 3, figsize=(15, 5))
    try:
        for ax, (data, label, vmin, vmax, cmap) in zip(axes, panels):
            shown = ax.imshow(data, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            figure.colorbar(shown, ax=ax)
            ax.set_title(label)
        figure.suptitle(title)
        _save_figure(figure, png)
    finally:
        plt.close(figure)


# -- commands ----------------------------------------------------------------------------------

_DATA_ID = click.argument("data_id", nargs=-1, metavar="[KEY=VALUE]...")

#: the path types of the options, one object each (a click type holds no state; making one
#: asks gettext for its name, which searches the locale directories every time)
_FILE = click.Path(dir_okay=False)
_DIRECTORY = click.Path(file_okay=False)
_EXISTING_FILE = click.Path(exists=True, dir_okay=False, resolve_path=True)

#: a query longer than this shows a progress bar while ``--exists`` checks each data ID
PROGRESS_AFTER = 20


def _format_option(*choices: str) -> Callable:
    """The ``--format`` option of a command that can print ``choices`` (the first is the default)."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format.")


def _reading_options(func: Callable) -> Callable:
    """Add ``--mapper`` and ``--registry``, the arguments of `open_butler`, to a command."""
    func = click.option("--registry", type=_EXISTING_FILE,
                        help="Registry to read the repository with, in place of its registry.sqlite3 "
                             "(a path relative to the current directory).")(func)
    return click.option("--mapper", metavar="NAME",
                        help="Mapper to read the repository with, for a root that names none (no _mapper "
                             "or repositoryCfg.yaml) or in place of its own: a class name such as "
                             "MinMapper2 (butler mappers lists them), an import string such as "
                             "mappers.testing.MinMapper2, or a legacy Gen2 name.")(func)


#: files that make a directory a repository: ``create`` refuses a root holding one
REPOSITORY_MARKERS = ("repositoryCfg.yaml", "_mapper", "_parent", "registry.sqlite3")


def _refuse_existing(path: str, force: bool) -> None:
    if os.path.exists(path) and not force:
        raise UserError(f"{path} exists; give --force to overwrite it")


@command()
@click.argument("root")
@click.option("--mapper", required=True, metavar="NAME",
              help="The repository's mapper: a class name (butler mappers lists them), an import string or a "
                   "legacy Gen2 name.")
@click.option("--parent", "parents", multiple=True, metavar="ROOT",
              help="A parent repository, read-only (repeat for more, in search order).")
def create(root: str, mapper: str, parents: tuple[str, ...]) -> None:
    """Create an empty repository at ROOT, recording its mapper and parents in its repositoryCfg.yaml.

    \b
    Example:
      butler create /data/rerun --mapper DemoMapper --parent /data/input
    """
    from .butler import Butler
    from .cfg import CFG_FILENAME, RepositoryArgs

    found = [name for name in REPOSITORY_MARKERS if os.path.lexists(os.path.join(root, name))]
    if found:
        raise UserError(f"a repository exists at {os.path.abspath(root)} already (it has {', '.join(found)})")
    target = check_mapper(mapper)
    inputs = [RepositoryArgs(root=_check_root(parent), mode="r") for parent in parents]
    Butler(inputs=inputs, outputs=RepositoryArgs(root=os.path.abspath(root), mapper=target),
           trustedMappers=[target])  # typed by the user: trusted
    click.echo(f"created {os.path.join(os.path.abspath(root), CFG_FILENAME)} (mapper {target}"
               + (f"; parents {', '.join(os.path.abspath(p) for p in parents)})" if parents else ")"))


@command()
def mappers() -> None:
    """List the mapper names --mapper accepts: class names, legacy Gen2 names, and what they resolve to.

    \b
    Example:
      butler mappers
    """
    from .utils import mapper_names

    names = mapper_names()
    rows = sorted(names.items(), key=lambda kv: ("." in kv[0], kv[0]))  # class names first
    click.echo(render_rows(("name", "resolves to"), rows, "table"))


@command()
@click.argument("directory", required=False, type=_DIRECTORY)
@click.option("--keep", is_flag=True, help="Keep the temporary directory (when no DIRECTORY is given).")
def demo(directory: str | None, keep: bool) -> None:
    """Make a demo camera repository, process it twice (v1, v2) and compare the versions.

    DIRECTORY must not exist yet or be empty, and is kept. By default a fresh
    temporary folder is made, and removed at the end unless --keep is given.

    \b
    Example:
      butler demo ./demo && butler show ./demo/v1
    """
    from .demo import run_demo

    run_demo(directory, echo=click.echo, keep=keep or directory is not None)


@command()
@click.argument("root")
@click.option("--types", "listTypes", is_flag=True, help="List every dataset type the mapper knows.")
@_format_option("text", "json")
@_reading_options
def show(root: str, listTypes: bool, fmt: str, mapper: str | None, registry: str | None) -> None:
    """Describe the repository at ROOT: cfg, mapper, parents, registries, datasets, dataset types.

    \b
    Example:
      butler show DEMO/v1 --types
    """
    butler = open_butler([root], mapper=mapper, registry=registry)
    if fmt == "json":
        click.echo(json.dumps(repository_info(butler), indent=2, default=str))
    else:
        click.echo(repository_report(butler, listTypes))


def parse_keys(keys: str, known: set[str] | None) -> list[str]:
    """The names of ``--keys K1,K2``; a `UserError` for an empty, repeated or unknown one."""
    names = [k.strip() for k in keys.split(",")]
    if not all(names):
        raise UserError(f"--keys {keys!r}: an empty key; give comma-separated keys such as visit,detector")
    repeated = sorted({k for k in names if names.count(k) > 1})
    if repeated:
        raise UserError(f"--keys {keys!r}: {', '.join(repeated)} given twice")
    for name in names:
        if known is not None and name not in known:
            near = _close_matches(name, sorted(known), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else f"known: {', '.join(sorted(known))}"
            raise UserError(f"--keys: unknown key {name!r}; {hint}")
    return names


def _calibration_mapping(butler: Any, datasetType: str) -> Any:
    """The calibration mapping of ``datasetType`` in the first input's mapper, or None."""
    repo = butler.repositories()[0]
    mapping = (getattr(repo.mapper, "mappings", None) or {}).get(datasetType) if repo.cfg.mapper else None
    return mapping if mapping is not None and hasattr(mapping, "refRegistry") and mapping.tables else None


def calibration_rows(mapping: Any, dataId: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """The rows of a calibration dataset type's calibration registry tables matching ``dataId``."""
    registry = mapping.registry
    if registry is None:
        raise UserError(f"no calibration registry for {mapping.datasetType!r}")
    names = list(dict.fromkeys(c for table in mapping.tables for c in registry.columns(table) if c != "id"))
    rows = registry.queryMetadata(mapping.tables, names, dataId)
    return names, [row if isinstance(row, tuple) else (row,) for row in rows]


@command()
@click.argument("root")
@click.argument("dataset")
@_DATA_ID
@click.option("--keys", help="Comma-separated keys to list (their distinct values, queryMetadata).")
@click.option("--exists", is_flag=True,
              help="List only the data IDs whose dataset exists (a check for each).")
@_format_option("table", "json", "csv")
@_reading_options
def query(root: str, dataset: str, data_id: tuple[str, ...], keys: str | None, exists: bool, fmt: str,
          mapper: str | None, registry: str | None) -> None:
    """List the data IDs of DATASET in ROOT that match KEY=VALUE items.

    What is listed are the registry's rows (the data IDs the mapper knows), whether
    or not each dataset was written; --exists keeps those whose dataset exists. A
    calibration dataset type lists its calibration registry's rows (validity ranges).

    \b
    Examples:
      butler query DEMO/v1 src visit=101 --format json
      butler query DEMO/v1 src --exists
      butler query DEMO/input raw --keys visit,detector
      butler query DEMO/input flat filter=g
    """
    butler = open_butler([root], mapper=mapper, registry=registry)
    dataId, datasetKeys = read_data_id(butler, dataset, data_id)
    calibration = _calibration_mapping(butler, dataset)
    if keys is not None:
        names = parse_keys(keys, _known_keys(butler, dataset, datasetKeys))
        rows = [v if isinstance(v, tuple) else (v,) for v in butler.queryMetadata(dataset, names, dataId)]
    elif calibration is not None:
        names, rows = calibration_rows(calibration, dataId)
    else:
        ids = [dict(ref.dataId) for ref in butler.subset(dataset, dataId=dataId)]
        names = list(dict.fromkeys([*(k for d in ids for k in d), *([] if ids else [*dataId, *datasetKeys])]))
        rows = [tuple(d.get(k, "") for k in names) for d in ids]
    if exists:
        from tqdm import tqdm

        bar = tqdm(rows, desc=f"checking {dataset}", unit="dataId", file=sys.stderr,
                   disable=len(rows) <= PROGRESS_AFTER or not sys.stderr.isatty())
        rows = [row for row in bar
                if butler.datasetExists(dataset, {**dataId, **{k: v for k, v in zip(names, row) if v != ""}})]
    click.echo(render_rows(names, rows, fmt))


@contextlib.contextmanager
def decoding(what: str) -> Iterator[None]:
    """Report what a file decoder raises inside the block as a `UserError` about ``what``.

    An exception raised inside this project's code stays what it is (a bug, or a
    package error); one raised by a decoder (astropy, gzip, numpy) for a corrupt or
    foreign file becomes one line naming ``what`` was read. The decoders' warnings
    are logged after the block succeeds only: those of a failed read repeat its error.
    """
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            _log.warning("%s: %s", what, warning.message)
    except decode_errors() as exc:
        if isinstance(exc, ButlerError) or _raised_by_own_code(exc):
            raise
        _log.debug("reading %s failed", what, exc_info=True)
        cause = _first_sentence(_message(exc))
        raise UserError(f"cannot read {what}: {type(exc).__name__}: {cause}") from None


def read_dataset(butler: Any, datasetType: str, dataId: Mapping[str, Any], path: str) -> Any:
    """Read a dataset; a file its decoder cannot read is a `UserError` naming the file (see `decoding`)."""
    with decoding(f"{path} ({datasetType} {format_items(dataId)})"):
        return butler.get(datasetType, dataId)


def write_dataset(obj: Any, out: str) -> None:
    """Write the object the butler read to ``out`` atomically, as FITS (``.fits``) or by its extension."""
    from astropy.nddata import CCDData

    from .formatters import get_formatter, known_storage_names
    from .safeio import atomic_write

    name = os.path.basename(out).lower()
    formats: dict[str, str] = {}
    for known in sorted(known_storage_names(), key=lambda n: n != "FitsStorage"):  # it writes tables too
        for ext in get_formatter(known).extensions:
            if not ext.endswith((".gz", ".fz")):  # formatters write uncompressed files
                formats.setdefault(ext, known)
    longest_first = sorted(formats, key=len, reverse=True)
    storage = next((formats[ext] for ext in longest_first if name.endswith(ext)), None)
    if storage is None:
        raise UserError(f"--out {out}: cannot tell the format from the name; use one of "
                        f"{', '.join(sorted(formats))}")
    with atomic_write(out) as tmp:
        if isinstance(obj, CCDData) and storage == "FitsStorage":  # one HDU: the image with its header
            obj.to_hdu().writeto(tmp, overwrite=True)
        else:
            get_formatter(storage).write_file(obj, tmp, hdu=None, additionalData={})


@command()
@click.argument("root")
@click.argument("dataset")
@_DATA_ID
@click.option("--uri", is_flag=True, help="Print only the path of the dataset.")
@click.option("--out", type=_FILE,
              help="Write the dataset (exactly what get reads: one HDU of an HDU dataset) to OUT, a .fits "
                   "file (or .yaml, .npy, ... by the dataset's kind).")
@click.option("--force", is_flag=True, help="Overwrite OUT or PNG when it exists.")
@click.option("--header", "showHeader", is_flag=True, help="Print the dataset's header.")
@click.option("--png", type=_FILE, help="Render the image to PNG (ZScale, colour bar; "
              "needs the plot extra: pip install 'butler[plot]').")
@_format_option("text", "json")
@_reading_options
def get(root: str, dataset: str, data_id: tuple[str, ...], uri: bool, out: str | None, force: bool,
        showHeader: bool, png: str | None, fmt: str, mapper: str | None, registry: str | None) -> None:
    """Find one dataset: print where it is and what it holds (image statistics, a table's first rows).

    \b
    Examples:
      butler get DEMO/v1 postISRCCD visit=101 detector=0
      butler get DEMO/v1 src visit=101 detector=0 --format json
      butler get DEMO/v1 postISRCCD visit=101 detector=0 --out ccd.fits --png ccd.png
    """
    butler = open_butler([root], mapper=mapper, registry=registry)
    dataId, _ = read_data_id(butler, dataset, data_id)
    path = butler.getUri(dataset, dataId)  # the library's message when none or several match
    if uri:
        click.echo(path)
        return
    for target in (out, png):
        if target:
            _refuse_existing(target, force)
    obj = read_dataset(butler, dataset, dataId, path)
    if out:
        write_dataset(obj, out)
        click.echo(f"wrote {dataset} {format_items(dataId)} ({path}) -> {out}")
    if png:
        render_image(obj, png, title=f"{dataset} {format_items(dataId)}")
        click.echo(f"wrote {png}")
    if out or png:
        return
    if showHeader:
        header = header_of(obj)
        click.echo(json.dumps(dict(header), indent=2, default=str) if fmt == "json"
                   else "\n".join(header_lines(header)))
    elif fmt == "json":
        click.echo(json.dumps({"uri": path, **summarize(obj)}, indent=2, default=str))
    else:
        click.echo(path)
        click.echo(describe_object(obj))


def format_items(dataId: Mapping[str, Any]) -> str:
    """A data ID as ``key=value`` words."""
    return " ".join(f"{key}={value}" for key, value in dataId.items())


def version_labels(rootA: str, rootB: str) -> tuple[str, str]:
    """Tags for two versions: their directory names when distinct, else ``A`` and ``B``."""
    nameA, nameB = (os.path.basename(os.path.normpath(os.path.abspath(r))) for r in (rootA, rootB))
    return (nameA, nameB) if nameA != nameB and nameA and nameB else ("A", "B")


@command()
@click.argument("root_a")
@click.argument("root_b")
@click.argument("dataset")
@_DATA_ID
@click.option("--rtol", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Relative tolerance for numbers.")
@click.option("--atol", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Absolute tolerance for numbers.")
@click.option("--ignore-keys", metavar="K1,K2", default="",
              help="Header keywords not to compare (comma-separated; glob patterns such as DATE*).")
@click.option("--pixels-only", is_flag=True,
              help="Compare only pixel (and table) values, not headers or metadata.")
@click.option("--png", type=_FILE,
              help="Render A, B and A-B side by side for the one data ID compared (needs the plot extra).")
@click.option("--force", is_flag=True, help="Overwrite PNG when it exists.")
@click.option("--why", is_flag=True,
              help="Print only why each differing data ID differs: the recorded inputs and run settings that "
                   "differ between the versions (from their provenance records).")
@_format_option("table", "json")
@_reading_options
@click.pass_context
def compare(ctx: click.Context, root_a: str, root_b: str, dataset: str, data_id: tuple[str, ...],
            rtol: float, atol: float, ignore_keys: str, pixels_only: bool, png: str | None, force: bool,
            why: bool, fmt: str, mapper: str | None, registry: str | None) -> None:
    """Compare every DATASET matching KEY=VALUE items in two versions ROOT_A and ROOT_B.

    Both are opened as read-only inputs of one Butler, tagged with their
    directory names. For each data ID that differs, the provenance records
    say why: which recorded inputs (digests or files) and which run settings
    differ. Exit code 0 when identical within tolerance, 1 when different.

    \b
    Examples:
      butler compare DEMO/v1 DEMO/v2 src visit=101
      butler compare RAWS_A RAWS_B raw --ignore-keys 'DATE*,CHECKSUM' --pixels-only
      butler compare DEMO/v1 DEMO/v2 postISRCCD visit=101 detector=0 --png diff.png
      butler compare DEMO/v1 DEMO/v2 src --why
    """
    from .compare import compare_versions
    from .dataId import DataId

    ignore = [k.strip() for k in ignore_keys.split(",") if k.strip()]
    labels = version_labels(root_a, root_b)
    butler = open_butler([root_a, root_b], labels, mapper=mapper, registry=registry)
    dataId, _ = read_data_id(butler, dataset, data_id)
    if png:
        _refuse_existing(png, force)
    with decoding(f"a {dataset} dataset of {root_a} or {root_b} (read it with butler get to see which)"):
        report = compare_versions(butler, dataset, dataId, *labels, rtol=rtol, atol=atol,
                                  progress=sys.stderr.isatty(), ignoreKeys=ignore, pixelsOnly=pixels_only,
                                  explain=True)
    if png:
        found = [r.dataId for r in report.results]
        if len(found) != 1:
            raise UserError(f"--png draws one data ID; {len(found)} were compared in both versions: "
                            "give more KEY=VALUE items")
        images = [read_dataset(butler, dataset, DataId(found[0], tag=label), butler.getUri(
            dataset, DataId(found[0], tag=label))) for label in labels]
        render_difference(images[0], images[1], png, labels=labels,
                          title=f"{dataset} {format_items(found[0])}")
    if why:
        click.echo(json.dumps([e.to_dict() for e in report.explanations], indent=2) if fmt == "json"
                   else report.why_text())
    else:
        click.echo(report.to_json() if fmt == "json" else report.to_text())
    ctx.exit(0 if report.identical else EXIT_DIFFERENT)


#: how to get the ``dot`` program that ``--png`` needs
DOT_INSTALL_HINT = ("the dot program of Graphviz is not installed: install it (apt-get install graphviz, "
                    "brew install graphviz or conda install graphviz) and run again, or print --format dot")


@command()
@click.argument("root")
@click.argument("dataset")
@_DATA_ID
@click.option("--depth", type=click.IntRange(min=0), default=None,
              help="Levels of inputs to follow (default: all, through every repository that recorded them).")
@click.option("--png", type=_FILE,
              help="Draw the lineage to PNG (needs the dot program of Graphviz).")
@click.option("--force", is_flag=True, help="Overwrite PNG when it exists.")
@_format_option("text", "json", "prov-json", "dot")
@_reading_options
def provenance(root: str, dataset: str, data_id: tuple[str, ...], depth: int | None, png: str | None,
               force: bool, fmt: str, mapper: str | None, registry: str | None) -> None:
    """Print what produced a DATASET: its record, and the records of its inputs down their lineage.

    Text is a tree (each file with its path, SHA-256 and size; the run and
    quantum that wrote it, with its settings); json is the same as data;
    prov-json is W3C PROV; dot is Graphviz source.

    \b
    Examples:
      butler provenance DEMO/v2 src visit=101 detector=0
      butler provenance DEMO/v2 src visit=101 detector=0 --format prov-json > src.prov.json
      butler provenance DEMO/v2 src visit=101 detector=0 --png lineage.png
    """
    from .provenance import render

    butler = open_butler([root], mapper=mapper, registry=registry)
    dataId, _ = read_data_id(butler, dataset, data_id)
    record = butler.provenance(dataset, dataId, depth=depth)
    if png:
        _refuse_existing(png, force)
        _draw_lineage(render.to_dot(record), png)
        click.echo(f"wrote {png}")
        return
    if fmt == "json":
        click.echo(render.to_json(record))
    elif fmt == "prov-json":
        click.echo(render.to_prov_json(record))
    elif fmt == "dot":
        click.echo(render.to_dot(record).source)
    else:
        click.echo(render.to_text(record))


def _draw_lineage(graph: Any, png: str) -> None:
    """Render a `graphviz.Digraph` to a PNG file with the dot program (a `UserError` naming how to install it)."""
    import graphviz

    from .safeio import write_bytes

    try:
        data = graph.pipe(format="png")
    except graphviz.ExecutableNotFound:
        raise UserError(DOT_INSTALL_HINT) from None
    write_bytes(png, data)


@command()
@click.argument("root")
@click.argument("datasets", nargs=-1)
@_format_option("text", "json")
@click.pass_context
def verify(ctx: click.Context, root: str, datasets: tuple[str, ...], fmt: str) -> None:
    """Re-hash the files of ROOT and report each whose bytes differ from its provenance record.

    Also reports records whose file is gone and, when no DATASET is given,
    files that no record describes. With DATASET names, only the records of
    those dataset types are checked. Exit code 1 when any file differs or
    lacks a record.

    \b
    Examples:
      butler verify DEMO/v2
      butler verify DEMO/v2 src postISRCCD
    """
    import attrs  # here: ``butler --help`` and the other commands load attrs only if the library does

    from .provenance import verify_repository
    from .storage import Storage

    storage = Storage.openExisting(_check_root(root))
    if storage is None:
        raise UserError(f"no such repository root: {root}")
    checked, problems = verify_repository(storage, datasets)
    if fmt == "json":
        click.echo(json.dumps({"root": storage.root, "checked": checked,
                               "problems": [attrs.asdict(p) for p in problems]}, indent=2))
    else:
        for problem in problems:
            click.echo(problem.describe())
        verdict = "OK" if not problems else f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        click.echo(f"verify {storage.root}: {checked} recorded file{'s' if checked != 1 else ''} re-hashed: "
                   f"{verdict}")
    ctx.exit(EXIT_DIFFERENT if problems else 0)


@command()
@click.argument("root")
@click.argument("files", nargs=-1, required=True)
@click.option("--mode", type=click.Choice(["link", "copy", "move", "skip"]), default="link", show_default=True,
              help="How raw files reach the repository: symlink, copy, move, or left where they are.")
@click.option("--ignore-ingested", is_flag=True,
              help="Skip files already in the registry instead of failing; with the same command, completes "
                   "an ingest that was interrupted.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes reading headers (default: the number of CPUs, at most 8; 1 reads them here).")
@click.pass_context
def ingest(ctx: click.Context, root: str, files: tuple[str, ...], mode: str, ignore_ingested: bool,
           workers: int | None) -> None:
    """Ingest raw FILES into the repository at ROOT and record them in its registry.

    The repository's mapper places the files and its camera's translator reads
    their headers. Exit code 1 when some files could not be ingested. An
    interrupted ingest is completed by running it again with --ignore-ingested:
    files already in place with the same content are registered, not copied again.

    \b
    Example:
      butler ingest /data/repo /incoming/*.fits --mode copy
    """
    from .ingest import ingest_raws

    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise UserError(f"no such file: {missing[0]}" + (f" (and {len(missing) - 1} more)" if missing[1:] else ""))
    repo = open_butler([root]).repositories()[0]
    report = ingest_raws(repo.root, list(files), mode=mode, mapper=repo.mapper, ignore_ingested=ignore_ingested,
                         workers=workers, progress=sys.stderr.isatty())
    for item in report.ingested:
        click.echo(f"{item.source} -> {item.destination}")
    # failures are logged as warnings by the library: echoed only when that log is not shown
    logged = logging.getLogger("butler.ingest").isEnabledFor(logging.WARNING)
    for problem in report.skipped + ([] if logged else report.failed):
        click.echo(str(problem), err=True)
    click.echo(report.summary())
    ctx.exit(1 if report.failed else 0)


@cli.group("registry", context_settings={"help_option_names": ["-h", "--help"]})
def registry_group() -> None:
    """Work with registries (copy a SQLite registry into PostgreSQL)."""


@registry_group.command("copy")
@click.argument("source")
@click.argument("destination")
@_user_errors
def registry_copy(source: str, destination: str) -> None:
    """Copy the SQLite registry SOURCE (tables, rows, indexes) into PostgreSQL at DESTINATION, in one transaction.

    DESTINATION is postgresql://[user@]host[:port]/database[?schema=NAME] (a
    host may be a percent-encoded Unix-socket directory); its tables must not
    exist yet. The password, if one is needed, comes from ~/.pgpass,
    PGPASSFILE or PGPASSWORD.

    \b
    Example:
      butler registry copy repo/registry.sqlite3 postgresql://me@dbhost/butler?schema=repo
    """
    from .registry.base import is_postgres_uri
    from .registry.postgres import copy_sqlite_registry

    if not os.path.isfile(source):
        raise UserError(f"no such registry file: {source}")
    if not is_postgres_uri(destination):
        raise UserError(f"the destination must be a postgresql:// URI, not {destination!r}")
    for table, rows in copy_sqlite_registry(source, destination).items():
        click.echo(f"{table}: {rows} rows")


@command()
@click.argument("roots", nargs=-1, required=True, metavar="ROOT [ROOT ...]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: a free port, printed).")
@click.option("--token-file", type=_FILE, metavar="FILE",
              help="Require a bearer token: one of the tokens in FILE, one per line.")
def serve(roots: tuple[str, ...], host: str, port: int, token_file: str | None) -> None:
    """Serve the repositories at ROOT (and their parents) read-only over HTTP.

    A JSON API under /api/v1/ (its OpenAPI description at /api/v1/openapi.json),
    a browser view at /, and repositories a Butler reads as inputs:
    Butler(inputs="http://HOST:PORT/NAME"), NAME being the root's directory name.
    The URL is printed once the server listens; stop it with Ctrl-C.

    \b
    Example:
      butler serve DEMO/v1 DEMO/v2 --port 8080
    """
    from .utils import require_extra

    for module in ("starlette", "uvicorn", "jinja2"):
        require_extra(module, "serve", "butler serve")
    from .service import serve as run_server
    from .service.app import read_tokens

    checked = [_check_root(root) for root in roots]
    tokens = read_tokens(token_file) if token_file else frozenset()
    run_server(checked, host=host, port=port, tokens=tokens,
               announce=lambda url: click.echo(f"serving {len(checked)} repositories at {url}", nl=True))


def resolve_function(spec: str) -> Callable:
    """Return the function ``PKG.MOD:FUNC`` names, importing ``PKG.MOD``: named on the command line, it is trusted.

    Raises
    ------
    UserError
        ``spec`` is not ``MODULE:NAME``, the module does not import, or the name is not a callable in it.
    """
    import importlib

    module_name, sep, qualname = spec.partition(":")
    if not sep or not all(part.isidentifier() for part in (*module_name.split("."), *qualname.split("."))):
        raise UserError(f"{spec!r} does not name a function: expected PKG.MOD:FUNC, e.g. mytasks.isr:run")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module failing to import is the user's to fix
        raise UserError(f"cannot import {module_name!r} (of {spec}): {type(exc).__name__}: {exc}") from None
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if not callable(found):
        raise UserError(f"{spec}: module {module_name!r} has no function {qualname!r}")
    return found


@contextlib.contextmanager
def _map_executor(scheduler: str | None) -> Iterator[Any]:
    """A Dask cluster's executor for ``--scheduler`` (closed afterwards), else None (`butler.parallel.map`'s pool)."""
    if scheduler is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs Dask: pip install 'butler[dask]'") from None
    try:
        client = Client(scheduler, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        yield client.get_executor()
    finally:
        client.close()


@command("map")
@click.argument("function", metavar="PKG.MOD:FUNC")
@click.argument("root")
@click.argument("dataset")
@_DATA_ID
@click.option("--output", type=_DIRECTORY,
              help="Repository to write to (made if new, with ROOT as its parent). Default: ROOT itself, opened "
                   "read-write.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes (default: the number of CPUs).")
@click.option("--scheduler", metavar="ADDR", help="Run on the Dask cluster of this scheduler (tcp://HOST:PORT) "
                                                  "instead of local processes.")
@click.option("--chunksize", type=click.IntRange(min=1), default=None,
              help="dataRefs sent to a worker at once (default: about four chunks per worker).")
@click.option("--skip-existing", "skipExisting", is_flag=True,
              help="Skip the data IDs whose outputs all exist already: reruns finish only what is missing.")
@click.option("--outputs", metavar="TYPE,TYPE",
              help="The dataset types FUNC writes, which --skip-existing checks (default: FUNC.outputs).")
@click.pass_context
def map_command(ctx: click.Context, function: str, root: str, dataset: str, data_id: tuple[str, ...],
                output: str | None, workers: int | None, scheduler: str | None, chunksize: int | None,
                skipExisting: bool, outputs: str | None) -> None:
    """Run FUNC(dataRef) for every DATASET dataRef of ROOT matching KEY=VALUE, in parallel.

    FUNC is a module-level function, named as PKG.MOD:FUNC; its module is
    imported here and in each worker (it must be importable there). A failure
    of one dataRef does not stop the others: the summary counts them, each is
    listed with its data ID and error, and the exit code is 1. A dataRef whose
    worker died is reported too; rerun with --skip-existing to finish what is missing.

    \b
    Example:
      butler map mytasks.isr:run /data/repo raw visit=1 --output /data/rerun --workers 8
    """
    from . import parallel
    from .butler import Butler
    from .cfg import RepositoryArgs

    if workers is not None and scheduler is not None:
        raise UserError("give --workers or --scheduler, not both")
    func = resolve_function(function)
    root = _check_root(root)
    if output is None:
        butler = Butler(outputs=RepositoryArgs(root=root, mode="rw"))
    else:
        butler = Butler(inputs=RepositoryArgs(root=root, mode="r"),
                        outputs=RepositoryArgs(root=os.path.abspath(output), mode="rw"))
    dataId, _ = read_data_id(butler, dataset, data_id)
    refs = butler.subset(dataset, dataId=dataId)
    with _map_executor(scheduler) as executor:
        results = parallel.map(func, refs, executor=executor, chunksize=chunksize, skipExisting=skipExisting,
                               outputs=outputs.split(",") if outputs else None, workers=workers,
                               progress=sys.stderr.isatty())
    failed = parallel.failures(results)
    # failures are logged as warnings by the library: listed here only when that log is not shown
    if not logging.getLogger(parallel.__name__).isEnabledFor(logging.WARNING):
        for result in failed:
            click.echo(f"failed: {result}", err=True)
    click.echo(f"{function} over {dataset}: {parallel.summary(results)}")
    ctx.exit(1 if failed else 0)
