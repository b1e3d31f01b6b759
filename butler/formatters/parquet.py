"""`ParquetStorage`: an astropy `~astropy.table.Table` in a Parquet file (needs pyarrow).

Tables are written by astropy's Parquet writer, which records units and table
metadata as YAML in the file's schema metadata. They are read back with
pyarrow alone (astropy's reader also needs pandas), restoring those units and
that metadata.
"""

from __future__ import annotations

from typing import Any

from .base import Formatter
from .parameters import TABLE_PARAMETERS, columns_of, rows_of

__all__ = ["ParquetStorage"]

_META_KEY = b"table_meta_yaml"


def _read_table(path: str, parameters: dict | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table
    from astropy.table.meta import get_header_from_yaml

    parameters = parameters or {}
    with pq.ParquetFile(path) as parquet:  # closed here, not by a later collection
        names = columns_of(parameters, parquet.schema_arrow.names, path) if "columns" in parameters else None
        arrow = parquet.read(columns=names)  # only the column chunks of those columns are read
    rows = rows_of(parameters)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(arrow.num_rows)
        arrow = arrow.slice(start, max(stop - start, 0)) if step == 1 else arrow.take(list(range(start, stop, step)))
    elif rows is not None:
        arrow = arrow.take(rows)
    columns = {}
    for name, column in zip(arrow.column_names, arrow.columns):
        values = column.to_numpy(zero_copy_only=False)
        columns[name] = values.astype(str) if pa.types.is_string(column.type) else values
    table = Table(columns)
    yaml_text = (arrow.schema.metadata or {}).get(_META_KEY)
    if yaml_text:
        header = get_header_from_yaml(yaml_text.decode("utf-8").splitlines())
        table.meta.update(header.get("meta", {}))
        for description in header.get("datatype", []):
            if description.get("unit") and description["name"] in table.colnames:
                table[description["name"]].unit = description["unit"]
    return table


class ParquetStorage(Formatter):
    """Parquet tables (plain columns, units and table metadata); registered only if pyarrow is installed.

    The read parameters ``columns`` and ``rows`` read only those columns (their
    column chunks) and keep only those rows.
    """

    storageName = "ParquetStorage"
    extensions = (".parq", ".parquet")
    writes = "astropy Tables and what Table() accepts (mappings of columns, structured arrays)"
    parameters = TABLE_PARAMETERS

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict,
                  parameters: dict | None = None) -> Any:
        return _read_table(path, parameters)

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        from astropy.table import Table

        table = obj if isinstance(obj, Table) else Table(obj)
        table.write(path, format="parquet", overwrite=True)
