"""The ``butler demo``: a small camera repository, processed twice, the versions compared.

`run_demo` makes, in a few seconds:

1. ``input/``: a repository of the demo camera (`mappers.demo.DemoMapper`)
   with real FITS raws made with numpy and astropy (a few visits x detectors,
   with realistic headers and a TAN WCS), registered by `butler.ingest.ingest_raws`,
   plus a bias and a flat per detector with validity ranges in
   ``calibRegistry.sqlite3``;
2. ``v1/``: the two-step processing (`isr`: bias subtraction and flat-fielding
   into ``postISRCCD``; `detect_sources`: a source table ``src``), written to
   an output repository chained to ``input``;
3. ``v2/``: the same processing with one parameter changed (the detection
   threshold);
4. the comparison of ``v1`` and ``v2`` through one Butler whose inputs are
   tagged ``v1`` and ``v2`` (`butler.compare.compare_versions`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from .safeio import makedirs, remove_tree

if TYPE_CHECKING:
    from astropy.nddata import CCDData
    from astropy.table import Table

__all__ = ["DemoSpec", "DemoResult", "run_demo", "make_raws", "make_calibs", "make_input_repository", "isr",
           "detect_sources", "process"]

_log = logging.getLogger(__name__)

MAPPER = "mappers.demo.DemoMapper"
#: calibration validity: this many days either side of the calibration date
VALIDITY_DAYS = 30


@attrs.frozen
class DemoSpec:
    """What the demo makes.

    Attributes
    ----------
    visits : `tuple` of ``(visit, filter, MJD)``
        The exposures.
    detectors : `tuple` of `int`
        The detectors of the camera.
    shape : ``(rows, columns)``
        Pixels of one detector.
    nStars : `int`
        Stars per detector (the same sky in every visit).
    seed : `int`
        Seed of the random generator: the demo is reproducible.
    thresholds : ``(v1, v2)``
        Detection threshold (in noise sigmas) of the two processings.
    """

    visits: tuple = ((101, "g", 60400.10), (102, "r", 60400.12), (103, "r", 60401.11))
    detectors: tuple = (0, 1)
    shape: tuple = (96, 128)
    nStars: int = 30
    seed: int = 20240417
    thresholds: tuple = (5.0, 4.0)
    calibDate: str = "2024-04-15"


@attrs.frozen
class DemoResult:
    """Where the demo put its repositories, and the comparisons of v1 and v2."""

    directory: str
    input: str
    v1: str
    v2: str
    reports: tuple


# -- synthetic data --------------------------------------------------------------------------


def _bias_frame(spec: DemoSpec, detector: int) -> Any:
    import numpy as np

    rows = np.arange(spec.shape[0])[:, None]
    return (1000.0 + 20 * detector + 0.05 * rows + np.zeros(spec.shape)).astype(np.float32)


def _flat_frame(spec: DemoSpec, detector: int, filter: str) -> Any:
    import numpy as np

    y, x = np.indices(spec.shape)
    cy, cx = (spec.shape[0] - 1) / 2, (spec.shape[1] - 1) / 2
    r2 = ((y - cy) / spec.shape[0]) ** 2 + ((x - cx) / spec.shape[1]) ** 2
    tilt = 0.03 if filter == "g" else -0.02
    return (1.0 - 0.3 * r2 + tilt * (x / spec.shape[1] - 0.5) + 0.002 * detector).astype(np.float32)


def _stars(spec: DemoSpec, detector: int) -> tuple[Any, Any, Any]:
    """Positions (y, x) and fluxes of the stars of one detector (the same in every visit)."""
    import numpy as np

    rng = np.random.default_rng(spec.seed + detector)
    y = rng.uniform(4, spec.shape[0] - 5, spec.nStars)
    x = rng.uniform(4, spec.shape[1] - 5, spec.nStars)
    flux = 10 ** rng.uniform(2.3, 4.3, spec.nStars)
    return y, x, flux


def _raw_header(spec: DemoSpec, visit: int, filter: str, mjd: float, detector: int) -> Any:
    from astropy.io import fits
    from astropy.time import Time

    ny, nx = spec.shape
    ra, dec = 150.1 + 0.02 * detector, 2.2
    cards = [
        ("ORIGIN", "butler demo", "synthetic data made by `butler demo`"),
        ("TELESCOP", "DEMO-1m", "telescope"),
        ("INSTRUME", "DemoCam", "instrument"),
        ("OBSERVAT", "DEMO", "observatory"),
        ("OBSTYPE", "OBJECT", "type of exposure"),
        ("OBJECT", "COSMOS-demo", "target field"),
        ("EXPID", visit, "exposure (visit) number"),
        ("OBSID", f"DM_O_{visit:07d}", "observation identifier"),
        ("DATE-OBS", Time(mjd, format="mjd", scale="tai").isot, "start of exposure (TAI)"),
        ("MJD-OBS", mjd, "[d] start of exposure (TAI)"),
        ("TIMESYS", "TAI", "time scale"),
        ("EXPTIME", 30.0, "[s] exposure time"),
        ("DARKTIME", 30.4, "[s] dark time"),
        ("FILTER", filter, "filter name"),
        ("DETECTOR", detector, "detector number"),
        ("DETNAME", f"S{detector:02d}", "detector name"),
        ("CCDTEMP", -100.0 + 0.1 * detector, "[C] detector temperature"),
        ("GAIN", 1.0, "[e-/adu] gain"),
        ("RDNOISE", 5.0, "[e-] read noise"),
        ("AIRMASS", round(1.1 + 0.05 * (visit % 7), 3), "airmass at start"),
        ("RA", ra, "[deg] telescope right ascension"),
        ("DEC", dec, "[deg] telescope declination"),
        ("BUNIT", "adu", "pixel unit"),
        ("CTYPE1", "RA---TAN", ""), ("CTYPE2", "DEC--TAN", ""),
        ("CRVAL1", ra, "[deg]"), ("CRVAL2", dec, "[deg]"),
        ("CRPIX1", (nx + 1) / 2, ""), ("CRPIX2", (ny + 1) / 2, ""),
        ("CD1_1", -5.5e-5, ""), ("CD1_2", 0.0, ""), ("CD2_1", 0.0, ""), ("CD2_2", 5.5e-5, ""),
    ]
    return fits.Header(cards)


def _raw_pixels(spec: DemoSpec, visit: int, filter: str, detector: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(spec.seed * 1000 + visit * 10 + detector)
    y, x, flux = _stars(spec, detector)
    yy, xx = np.indices(spec.shape)
    sigma = 1.3 + 0.1 * (visit % 3)
    sky = np.full(spec.shape, 180.0 if filter == "g" else 250.0)
    for y0, x0, f in zip(y, x, flux):
        sky += f / (2 * np.pi * sigma**2) * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma**2))
    electrons = rng.poisson(sky * _flat_frame(spec, detector, filter))
    pixels = electrons + _bias_frame(spec, detector) + rng.normal(0, 5.0, spec.shape)
    return np.clip(np.round(pixels), 0, 65535).astype(np.uint16)


def make_raws(directory: str, spec: DemoSpec) -> list[str]:
    """Write one raw FITS file per visit and detector into ``directory`` (created if missing), each through
    the storage's atomic write; return their paths."""
    from astropy.io import fits

    from .storage import Storage

    storage = Storage.makeFromURI(directory, create=True)
    paths = []
    for visit, filter, mjd in spec.visits:
        for detector in spec.detectors:
            hdu = fits.PrimaryHDU(_raw_pixels(spec, visit, filter, detector),
                                  header=_raw_header(spec, visit, filter, mjd, detector))
            name = f"DM_{visit:07d}_{detector:02d}.fits"
            with storage.writer(name) as tmp:
                hdu.writeto(tmp, overwrite=True)  # the writer's temporary exists, empty
            paths.append(storage.locationWithRoot(name))
    return paths


def make_calibs(spec: DemoSpec) -> list[tuple[str, dict, CCDData]]:
    """Return ``(datasetType, dataId, image)`` of a bias per detector and a flat per detector and filter."""
    from astropy.io import fits
    from astropy.nddata import CCDData

    calibs = []
    filters = sorted({filter for _, filter, _ in spec.visits})
    for detector in spec.detectors:
        header = fits.Header([("OBSTYPE", "BIAS"), ("DETECTOR", detector), ("CALIBDT", spec.calibDate)])
        calibs.append(("bias", {"detector": detector, "calibDate": spec.calibDate, "filter": "NONE"},
                       CCDData(_bias_frame(spec, detector), unit="adu", meta=header)))
        for filter in filters:
            header = fits.Header([("OBSTYPE", "FLAT"), ("DETECTOR", detector), ("FILTER", filter),
                                  ("CALIBDT", spec.calibDate)])
            calibs.append(("flat", {"detector": detector, "calibDate": spec.calibDate, "filter": filter},
                           CCDData(_flat_frame(spec, detector, filter), unit="", meta=header)))
    return calibs


# -- the two processing steps ----------------------------------------------------------------


def isr(raw: CCDData, bias: CCDData, flat: CCDData) -> CCDData:
    """Instrument signature removal: subtract the bias, divide by the flat."""
    import numpy as np
    from astropy.nddata import CCDData

    data = (np.asarray(raw.data, dtype=np.float32) - bias.data) / flat.data
    header = raw.meta.copy()
    header["ISR_BIAS"] = (bias.meta.get("CALIBDT", "unknown"), "bias subtracted (calibration date)")
    header["ISR_FLAT"] = (flat.meta.get("CALIBDT", "unknown"), "flat-fielded (calibration date)")
    return CCDData(data.astype(np.float32), unit="adu", meta=header, wcs=raw.wcs)


def detect_sources(image: CCDData, threshold: float) -> Table:
    """Find sources: local maxima more than ``threshold`` noise sigmas above the background.

    The background is the median, the noise the scaled median absolute
    deviation; each source's flux is the background-subtracted sum of the 5x5
    box around its peak.
    """
    import numpy as np
    from astropy.table import Table

    data = np.asarray(image.data, dtype=np.float64)
    background = float(np.median(data))
    sigma = float(1.4826 * np.median(np.abs(data - background)))
    padded = np.pad(data, 1, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    peaks = (data >= windows.max(axis=(2, 3))) & (data > background + threshold * sigma)
    peaks[:2, :] = peaks[-2:, :] = peaks[:, :2] = peaks[:, -2:] = False
    ys, xs = np.nonzero(peaks)
    flux = [float(np.sum(data[y - 2:y + 3, x - 2:x + 3] - background)) for y, x in zip(ys, xs)]
    table = Table({"id": np.arange(1, len(ys) + 1), "x": xs.astype(np.int32), "y": ys.astype(np.int32),
                   "peak": data[ys, xs] - background, "flux": np.array(flux, dtype=np.float64)})
    table["flux"].unit = "adu"
    table.meta.update({"THRESH": threshold, "BKG": round(background, 3), "NOISE": round(sigma, 3)})
    return table


def process(inputRoot: str, outputRoot: str, threshold: float) -> int:
    """Run both steps on every raw of ``inputRoot`` into a new output chained to it.

    Returns
    -------
    count : `int`
        The number of raws processed.
    """
    from .butler import Butler

    butler = Butler(inputs=inputRoot, outputs=outputRoot)
    settings = {"threshold": threshold}  # recorded with each output: `butler compare --why` names a change
    count = 0
    for ref in butler.subset("raw"):
        with butler.quantum("process", config=settings):
            image = isr(ref.get("raw"), ref.get("bias"), ref.get("flat"))
            ref.put(image, "postISRCCD")
            ref.put(detect_sources(image, threshold), "src")
        count += 1
    _log.info("processed %d raws from %s into %s", count, inputRoot, outputRoot)
    return count


# -- the demo --------------------------------------------------------------------------------


#: the columns of the demo calibration registry's tables (``bias``, ``flat``), ``id`` excluded
CALIB_COLUMNS = (("filter", "TEXT"), ("detector", "INT"), ("calibDate", "TEXT"), ("validStart", "TEXT"),
                 ("validEnd", "TEXT"))


def _write_calib_registry(root: str, spec: DemoSpec, calibs: list[tuple[str, dict, Any]]) -> None:
    """Record the calibrations, valid `VALIDITY_DAYS` either side of their date."""
    import datetime

    from .registry import SqliteRegistry

    day = datetime.date.fromisoformat(spec.calibDate)
    span = datetime.timedelta(days=VALIDITY_DAYS)
    start, end = (day - span).isoformat(), (day + span).isoformat()
    with SqliteRegistry(os.path.join(root, "calibRegistry.sqlite3"), readOnly=False) as registry, \
            registry.transaction():
        for table in ("bias", "flat"):
            registry.create_table(table, CALIB_COLUMNS, unique=("filter", "detector", "calibDate"),
                                  primary_key="id")
        for datasetType, dataId, _ in calibs:
            registry.insert(datasetType, [{"filter": dataId["filter"], "detector": dataId["detector"],
                                           "calibDate": dataId["calibDate"], "validStart": start,
                                           "validEnd": end}])


def make_input_repository(root: str, spec: DemoSpec) -> tuple[int, int]:
    """Make the demo camera repository: raws ingested, calibrations written and registered.

    Returns
    -------
    counts : ``(raws, calibs)``
    """
    from .butler import Butler
    from .cfg import RepositoryArgs
    from .errors import IngestError
    from .ingest import ingest_raws

    butler = Butler(outputs=RepositoryArgs(root=root, mapper=MAPPER))
    mapper = butler.outputRepositories()[0].mapper
    # staged beside the repository (one file system: the move is a hard link), gone once they are moved in
    with tempfile.TemporaryDirectory(prefix=".incoming-", dir=os.path.dirname(root)) as staging:
        raws = make_raws(staging, spec)
        report = ingest_raws(root, raws, mode="move", mapper=mapper, workers=1, progress=False)
    if report.failed:
        raise IngestError(f"demo ingest failed: {report.failed[0].source}: {report.failed[0].reason}")
    calibs = make_calibs(spec)
    for datasetType, dataId, image in calibs:
        butler.put(image, datasetType, dataId)
    _write_calib_registry(root, spec, calibs)
    return len(report.ingested), len(calibs)


def _fresh_directory(directory: str | None) -> str:
    """``directory`` (absolute), created when missing; `FileExistsError` when it holds anything. None: a new
    private temporary directory."""

    if directory is None:
        return tempfile.mkdtemp(prefix="butler-demo-")
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and os.listdir(directory):
        raise FileExistsError(f"demo directory {directory} exists and is not empty")
    makedirs(directory)
    return directory


def run_demo(directory: str | None = None, spec: DemoSpec = DemoSpec(),
             echo: Callable[[str], None] = print, keep: bool = True) -> DemoResult:
    """Make the demo repositories in ``directory`` (default: a fresh temporary folder) and compare v1 and v2.

    Parameters
    ----------
    directory : `str`, optional
        An empty or missing directory.
    spec : `DemoSpec`
        What to make.
    echo : callable
        Receives the lines to print.
    keep : `bool`, optional
        When False, the directory is removed at the end (even when the demo fails).

    Returns
    -------
    result : `DemoResult`
    """
    directory = _fresh_directory(directory)
    try:
        return _run_demo_in(directory, spec, echo, keep)
    finally:
        if not keep:
            remove_tree(directory)
            echo(f"removed {directory} (keep it with --keep or by giving a directory)")


def _run_demo_in(directory: str, spec: DemoSpec, echo: Callable[[str], None], keep: bool) -> DemoResult:
    from .butler import Butler
    from .cfg import RepositoryArgs
    from .compare import compare_versions

    root, v1, v2 = (os.path.join(directory, name) for name in ("input", "v1", "v2"))
    echo(f"butler demo in {directory}")
    nraw, ncalib = make_input_repository(root, spec)
    echo(f"1. input  {root}")
    echo(f"   {nraw} raws ({len(spec.visits)} visits x {len(spec.detectors)} detectors, "
         f"{spec.shape[1]}x{spec.shape[0]} px) ingested into registry.sqlite3; "
         f"{ncalib} calibrations (bias, flat) valid {VALIDITY_DAYS} days either side of {spec.calibDate}")
    for name, path, threshold in (("v1", v1, spec.thresholds[0]), ("v2", v2, spec.thresholds[1])):
        count = process(root, path, threshold)
        step = 2 if name == "v1" else 3
        echo(f"{step}. {name}     {path}")
        echo(f"   {count} x (bias-subtract + flat-field -> postISRCCD; detect > {threshold:g} sigma -> src), "
             f"chained to input")
    butler = Butler(inputs=[RepositoryArgs(root=v1, tags="v1"), RepositoryArgs(root=v2, tags="v2")])
    echo("4. compare v1 and v2 through one Butler with inputs tagged v1, v2")
    reports = []
    for datasetType in ("postISRCCD", "src"):
        report = compare_versions(butler, datasetType, {}, "v1", "v2", explain=True)
        reports.append(report)
        echo("")
        echo(report.to_text())
    if keep:
        echo("")
        echo(f"try: butler show {v1}")
        echo(f"     butler query {root} raw --format table")
        echo(f"     butler compare {v1} {v2} src visit={spec.visits[0][0]}")
        echo(f"     butler compare {v1} {v2} src --why")
        echo(f"     butler provenance {v2} src visit={spec.visits[0][0]} detector={spec.detectors[0]}")
    return DemoResult(directory, root, v1, v2, tuple(reports))
