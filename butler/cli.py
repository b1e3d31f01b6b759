"""The ``butler`` command: a thin click layer over the library.

Subcommands: ``create``, ``mappers``, ``demo``, ``show``, ``query``, ``get``,
``compare`` and ``ingest``. Repositories given to ``show``, ``query``, ``get``
and ``compare`` are opened as read-only Butler inputs, whatever their kind
(new-style cfg, or legacy ``_mapper``/``_parent``), and are never written. They
all take ``--mapper`` and ``--registry`` for a root that names no mapper, such
as a directory of bare Gen2 registries.

Exit codes (`EXIT_CODES`): 0 success; 1 ``compare`` found differences (or
``ingest`` could not ingest some files); 2 a mistake in the input or the data,
reported on one line of standard error naming the file or repository (a package
error, `ButlerError`, or a file-system, YAML or decompression error); 3 a bug
in the library, reported with the last frames of its traceback.
``--log-level DEBUG`` also logs the traceback behind a one-line error.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import functools
import io
import json
import logging
import os
import sys
import traceback
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click
import yaml

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
    EXIT_DIFFERENT: "compare: the versions differ; ingest: some files were not ingested",
    EXIT_USER_ERROR: "a mistake in the input or the data (one line on standard error)",
    EXIT_BUG: "a bug in butler or a mapper (the end of its traceback on standard error)",
}

#: exceptions that mean "the input or the data is wrong", reported in one line: the package's
#: errors, and the built-ins the library lets through from files (the file system, a YAML file
#: that does not parse, a compressed file cut short)
USER_ERRORS: tuple[type[BaseException], ...] = (ButlerError, OSError, EOFError, yaml.YAMLError, zlib.error)

#: exceptions that a file decoder (astropy, gzip, numpy) raises for a corrupt file; raised while
#: reading a dataset from outside this package, they are reported as a user error naming the file
DECODE_ERRORS: tuple[type[BaseException], ...] = (*USER_ERRORS, ValueError, TypeError, IndexError, KeyError)

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
    if isinstance(exc, yaml.YAMLError):
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
        except USER_ERRORS as exc:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="WARNING", show_default=True, help="Logging level (messages go to standard error).")
@click.version_option(package_name="butler")
def cli(log_level: str) -> None:
    """Work with Gen2 data repositories: show them, query and get datasets, compare versions."""
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
        (an import string or a legacy Gen2 name, checked with `doImport`).
    registry : `str`, optional
        The registry to read the roots with (the mapper argument ``registry``)
        in place of ``ROOT/registry.sqlite3``.
    """
    roots = [_check_root(root) for root in roots]
    from .butler import Butler
    from .cfg import RepositoryArgs

    if mapper is not None:
        _check_mapper(mapper)
    mapperArgs = {"registry": registry} if registry else None
    tags = tags or [None] * len(roots)
    return Butler(inputs=[RepositoryArgs(root=root, mode="r", tags=tag, mapper=mapper, mapperArgs=mapperArgs)
                          for root, tag in zip(roots, tags)],
                  trustedMappers=[mapper] if mapper is not None else None)  # typed by the user: trusted


def _check_mapper(name: str) -> None:
    """Raise a `UserError` unless ``name`` resolves to a mapper class."""
    from .mapper import Mapper
    from .utils import doImport

    found = doImport(name)
    if not (isinstance(found, type) and issubclass(found, Mapper)):
        raise UserError(f"--mapper {name}: {found!r} is not a mapper class")


def dataset_keys(butler: Any, datasetType: str) -> dict:
    """Return ``{key: type}`` of a dataset type; a `UserError` when no input knows the type."""
    known = butler.getDatasetTypes()
    if not known:
        raise UserError("no mapper to read the repository with: it has no _mapper file or repositoryCfg.yaml "
                        "naming one; give --mapper NAME")
    if datasetType not in known:
        near = difflib.get_close_matches(datasetType, sorted(known), n=5)
        hint = f"; did you mean {', '.join(near)}?" if near else f" ({len(known)} dataset types known)"
        raise UserError(f"unknown dataset type {datasetType!r}{hint}")
    try:
        return dict(butler.getKeys(datasetType) or {})
    except KeyError:  # a type with no mapping of its own, such as a CameraMapper's ``flat_filename``
        return {}


def _known_keys(butler: Any, datasetType: str) -> set[str] | None:
    """Every key a data ID of ``datasetType`` may use: the mapper's keys and its registries' columns.

    None when no mapper can say (a mapper without ``getKeys(None)``), so nothing is refused.
    """
    try:
        allKeys = butler.getKeys(None)
    except (KeyError, TypeError, AttributeError):
        allKeys = None
    if not isinstance(allKeys, Mapping):
        return None
    known = set(allKeys) | set(dataset_keys(butler, datasetType))
    for repo in butler.repositories():
        mapper = repo.mapper if repo.cfg.mapper is not None else None
        for registry in (getattr(mapper, "registry", None), getattr(mapper, "calibRegistry", None)):
            for table in registry.tables() if registry is not None else ():
                known.update(registry.columns(table))
    return known


def check_data_id_keys(butler: Any, datasetType: str, dataId: Mapping[str, Any]) -> None:
    """Refuse a data-ID key that neither the mapper nor any of its registries knows (a typo).

    The library ignores such a key, as Gen2 did, so ``vist=1`` would match everything.
    """
    known = _known_keys(butler, datasetType)
    if known is None:
        return
    for key in dataId:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else \
                f"{datasetType} takes {', '.join(sorted(dataset_keys(butler, datasetType))) or 'no keys'}"
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
    check_data_id_keys(butler, datasetType, dataId)
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
    from .compare import text_table

    if fmt == "json":
        return json.dumps([dict(zip(names, row)) for row in rows], indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    count = f"({len(rows)} row{'' if len(rows) == 1 else 's'})"
    if not names:  # data IDs with no keys (a dataset whose template has none)
        return f"{count[:-1]}, no data ID keys)"
    return text_table(names, rows) + "\n" + count


def describe_object(obj: Any) -> str:
    """Return a one-line description of a dataset read by the butler."""
    text = _describe(obj)
    return text if len(text) <= MAX_LINE else text[:MAX_LINE - 3] + "..."


def _describe(obj: Any) -> str:
    kind = type(obj).__name__
    if hasattr(obj, "colnames"):
        return f"{kind}: {len(obj)} rows; columns {', '.join(obj.colnames)}"
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        unit = getattr(obj, "unit", None)
        return f"{kind}: shape {tuple(obj.shape)}, dtype {obj.dtype}" + (f", unit {unit}" if unit else "")
    if hasattr(obj, "cards"):
        return f"{kind}: {len(obj)} cards"
    if isinstance(obj, Mapping):
        return f"{kind}: {len(obj)} keys: {', '.join(map(str, list(obj)[:10]))}"
    if isinstance(obj, (list, tuple)):
        return f"{kind} of {len(obj)}: " + "; ".join(_describe(o) for o in obj[:5])
    return repr(obj)


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
    given = mapper if isinstance(mapper, str) else resolve_mapper_name(mapper)
    resolved = resolve_mapper_name(mapper)
    return given if resolved == given else f"{given} -> {resolved}"


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


def _registry_lines(repo: Any) -> list[str]:
    from .registry import SqliteRegistry

    paths = [os.path.join(repo.root, name) for name in REGISTRY_FILES]
    given = (repo.cfg.mapperArgs or {}).get("registry")
    if isinstance(given, (str, os.PathLike)):
        paths[0] = os.path.join(repo.root, given)
    lines = []
    for path in paths:
        if not os.path.isfile(path):
            continue
        registry = SqliteRegistry(path)
        try:
            counts = ", ".join(f"{t} {registry.rowCount(t)}" for t in registry.tables())
        finally:
            registry.close()
        lines.append(f"  {path}: {counts or 'no tables'}")
    return lines


def _files_under(root: str) -> list[str]:
    """Relative paths of the files under ``root`` (symlinked directories such as ``_parent`` not followed)."""
    files = []
    for directory, _, names in os.walk(root):
        relative = os.path.relpath(directory, root)
        files += [os.path.normpath(os.path.join(relative, name)) for name in names]
    return files


def _datasets_on_disk(repo: Any) -> str:
    """``type count, ...`` for the dataset types of a repository's mapper whose files are in its root."""
    from .registry import FsScanner

    mappings = getattr(repo.mapper, "mappings", None) if repo.cfg.mapper is not None else None
    mappings = mappings or {}
    files = _files_under(repo.root)
    # a file may be stored compressed under the template's name plus .gz or .fz
    files += [f[:-3] for f in files if f.endswith((".gz", ".fz"))]
    counts = []
    for datasetType in sorted(mappings):
        try:
            template = mappings[datasetType].template
        except USER_ERRORS:
            continue
        if template:
            scanner = FsScanner(template)
            count = sum(1 for f in files if scanner.match(f) is not None)
            if count:
                counts.append(f"{datasetType} {count}")
    return ", ".join(counts) or "none"


def repository_report(butler: Any, listTypes: bool = False) -> str:
    """Describe the first input of a Butler and its parents, as ``butler show`` prints it."""
    import textwrap

    repos = butler.repositories()
    top = repos[0]
    cfg = top.cfg
    lines = [
        f"repository: {top.root}",
        f"cfg:        {_repository_kind(top)}",
        f"mapper:     {_mapper_text(cfg.mapper)}",
    ]
    if cfg.mapperArgs:
        lines.append(f"mapperArgs: {dict(cfg.mapperArgs)}")
    if cfg.policy:
        lines.append(f"policy:     {', '.join(sorted(map(str, cfg.policy.names(topLevelOnly=True))))}")
    lines += [f"mode:       {top.mode} (opened read-only)",
              f"tags:       {', '.join(sorted(map(str, top.tags))) or 'none'}",
              "parents:", f"  {top.root}"]
    lines += ["  " + line for line in _parent_tree(top)]
    registries = [line for repo in repos for line in _registry_lines(repo)]
    lines += ["registries (rows per table):"] + (registries or ["  none"])
    lines.append("datasets on disk (files per dataset type):")
    for repo in repos:
        try:
            found = _datasets_on_disk(repo)
        except USER_ERRORS as exc:
            found = f"unknown ({' '.join(str(exc).split())})"
        lines.append(f"  {repo.root}: {found}")
    try:
        types = sorted(butler.getDatasetTypes())
    except USER_ERRORS as exc:
        lines.append(f"dataset types: unavailable ({' '.join(str(exc).split())})")
    else:
        if not listTypes:
            lines.append(f"dataset types: {len(types)} known to the mapper (--types lists them)")
        else:
            lines.append(f"dataset types ({len(types)}):")
            lines += textwrap.wrap(", ".join(types), width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


# -- commands ----------------------------------------------------------------------------------

_DATA_ID = click.argument("data_id", nargs=-1, metavar="[KEY=VALUE]...")


def _format_option(*choices: str) -> Callable:
    """The ``--format`` option of a command that can print ``choices`` (the first is the default)."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format.")


def _reading_options(func: Callable) -> Callable:
    """Add ``--mapper`` and ``--registry``, the arguments of `open_butler`, to a command."""
    func = click.option("--registry", type=click.Path(exists=True, dir_okay=False, resolve_path=True),
                        help="Registry to read the repository with, in place of its registry.sqlite3 "
                             "(a path relative to the current directory).")(func)
    return click.option("--mapper", metavar="NAME",
                        help="Mapper to read the repository with, for a root that names none (no _mapper "
                             "or repositoryCfg.yaml) or in place of its own: an import string such as "
                             "mappers.testing.MinMapper2, or a legacy Gen2 name.")(func)


@command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def demo(directory: str | None) -> None:
    """Make a demo camera repository, process it twice (v1, v2) and compare the versions.

    DIRECTORY must not exist yet or be empty; by default a fresh temporary
    folder is made (its name is printed).
    """
    from .demo import run_demo

    run_demo(directory, echo=click.echo)


@command()
@click.argument("root")
@click.option("--types", "listTypes", is_flag=True, help="List every dataset type the mapper knows.")
@_reading_options
def show(root: str, listTypes: bool, mapper: str | None, registry: str | None) -> None:
    """Describe the repository at ROOT: cfg, mapper, parents, registries, datasets, dataset types."""
    click.echo(repository_report(open_butler([root], mapper=mapper, registry=registry), listTypes))


@command()
@click.argument("root")
@click.argument("dataset")
@_DATA_ID
@click.option("--keys", help="Comma-separated keys to list (queryMetadata); "
                             "by default the data IDs of the dataset's level (subset).")
@_format_option("table", "json", "csv")
@_reading_options
def query(root: str, dataset: str, data_id: tuple[str, ...], keys: str | None, fmt: str, mapper: str | None,
          registry: str | None) -> None:
    """List the data IDs of DATASET in ROOT that match KEY=VALUE items."""
    butler = open_butler([root], mapper=mapper, registry=registry)
    dataId, datasetKeys = read_data_id(butler, dataset, data_id)
    if keys:
        names = [k.strip() for k in keys.split(",") if k.strip()]
        values = butler.queryMetadata(dataset, names, dataId)
        rows = [v if isinstance(v, tuple) else (v,) for v in values]
    else:
        ids = [dict(ref.dataId) for ref in butler.subset(dataset, dataId=dataId)]
        names = list(dict.fromkeys([*(k for d in ids for k in d), *([] if ids else [*dataId, *datasetKeys])]))
        rows = [tuple(d.get(k, "") for k in names) for d in ids]
    click.echo(render_rows(names, rows, fmt))


@command()
@click.argument("root")
@click.argument("dataset")
@_DATA_ID
@click.option("--uri", is_flag=True, help="Print only the path of the dataset.")
@click.option("--out", type=click.Path(dir_okay=False), help="Copy the dataset's file to OUT.")
@_reading_options
def get(root: str, dataset: str, data_id: tuple[str, ...], uri: bool, out: str | None, mapper: str | None,
        registry: str | None) -> None:
    """Find one dataset: print where it is and what it holds, or copy it."""
    butler = open_butler([root], mapper=mapper, registry=registry)
    dataId, _ = read_data_id(butler, dataset, data_id)
    if not butler.datasetExists(dataset, dataId):
        raise NoResults("no such dataset", dataset, dataId, [os.path.abspath(root)])
    path = butler.getUri(dataset, dataId)
    if uri:
        click.echo(path)
    elif out:
        from .location import split_hdu

        shutil.copyfile(split_hdu(path)[0], out)
        click.echo(f"copied {path} -> {out}")
    else:
        click.echo(path)
        click.echo(describe_object(butler.get(dataset, dataId)))


def version_labels(rootA: str, rootB: str) -> tuple[str, str]:
    """Tags for two versions: their directory names when distinct, else ``A`` and ``B``."""
    names = tuple(os.path.basename(os.path.normpath(os.path.abspath(r))) for r in (rootA, rootB))
    return names if names[0] != names[1] and all(names) else ("A", "B")


@command()
@click.argument("root_a")
@click.argument("root_b")
@click.argument("dataset")
@_DATA_ID
@click.option("--rtol", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Relative tolerance for numbers.")
@click.option("--atol", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Absolute tolerance for numbers.")
@_format_option("table", "json")
@_reading_options
@click.pass_context
def compare(ctx: click.Context, root_a: str, root_b: str, dataset: str, data_id: tuple[str, ...],
            rtol: float, atol: float, fmt: str, mapper: str | None, registry: str | None) -> None:
    """Compare every DATASET matching KEY=VALUE items in two versions ROOT_A and ROOT_B.

    Both are opened as read-only inputs of one Butler, tagged with their
    directory names. Exit code 0 when identical within tolerance, 1 when different.
    """
    from .compare import compare_versions

    labels = version_labels(root_a, root_b)
    butler = open_butler([root_a, root_b], labels, mapper=mapper, registry=registry)
    dataId, _ = read_data_id(butler, dataset, data_id)
    report = compare_versions(butler, dataset, dataId, *labels, rtol=rtol, atol=atol,
                              progress=sys.stderr.isatty())
    click.echo(report.to_json() if fmt == "json" else report.to_text())
    ctx.exit(0 if report.identical else 1)


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
