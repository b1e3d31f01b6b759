"""Per-camera translation of raw FITS headers into ``raw`` registry rows.

A translator knows one camera's ``raw`` registry table (its ``columns``, the
``unique`` columns and the ``raw_visit`` columns) and turns the primary header
of one raw file into one row of that table (every column except ``id``).

Each column ``c`` is computed by the method ``to_c``; :class:`HeaderTranslator`
calls them, caches the results (rules may use other columns) and casts each
value by its SQL type.  The obs_lsst cameras share :class:`LsstTranslator`, and
differ from it only where the upstream rules differ: lsstCam, comCam and LATISS
name exposures after ``DAYOBS``/``SEQNUM``, the test stands (ts8, ts3, ucd)
after their observation time, the simulators (imsim, phosim) after ``OBSID``.

Mapper classes refer to their translator through a class attribute
(``translator = LsstCamTranslator``); :data:`TRANSLATORS` maps camera names to
the classes.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from butler.errors import IngestError
from butler.registry.base import TableSpec

if TYPE_CHECKING:  # astropy and erfa are imported where a header or a time is handled, not on import
    from astropy.io import fits

__all__ = [
    "HeaderTranslator",
    "LsstTranslator",
    "LsstCamTranslator",
    "LsstComCamTranslator",
    "LatissTranslator",
    "Ts8Translator",
    "Ts3Translator",
    "UcdTranslator",
    "ImsimTranslator",
    "PhosimTranslator",
    "TestCamTranslator",
    "TRANSLATORS",
    "mjd_to_isot",
    "observing_day",
]

Column = tuple[str, str]

_CASTS = {"TEXT": str, "INT": int, "DOUBLE": float}

_MJD_EPOCH = datetime.datetime(1858, 11, 17)
_UNIX_EPOCH_MJD = 40587.0
_OBSERVING_DAY_OFFSET_SECONDS = 8 * 3600.0


def mjd_to_isot(mjd: float) -> str:
    """Render an MJD as ``YYYY-MM-DDThh:mm:ss.sss``, rounded to the nearest millisecond.

    Parameters
    ----------
    mjd : `float`
        Modified Julian Date (days of 86400 s; no time scale conversion).

    Returns
    -------
    isot : `str`
        The ISO date and time with three decimals.
    """
    day = math.floor(mjd)
    milliseconds = round((mjd - day) * 86_400_000)
    stamp = _MJD_EPOCH + datetime.timedelta(days=day, milliseconds=milliseconds)
    return stamp.isoformat(timespec="milliseconds")


def observing_day(date_obs: str) -> str:
    """The observing day of a test-stand exposure.

    Parameters
    ----------
    date_obs : `str`
        ISO observation time, taken as UTC.

    Returns
    -------
    day : `str`
        ``YYYY-MM-DD`` of that time converted to TAI, minus 8 hours.
    """
    from astropy.time import Time, TimeDelta

    return (Time(date_obs, scale="utc").tai - TimeDelta(_OBSERVING_DAY_OFFSET_SECONDS, format="sec")).isot[:10]


def _without(columns: tuple[Column, ...], *names: str) -> tuple[Column, ...]:
    return tuple(column for column in columns if column[0] not in names)


def _empty_or(value: str) -> str:
    """A filter name, with blank and ``empty*`` names reduced to ``empty``."""
    return "empty" if not value or value.startswith("empty") else value


class HeaderTranslator:
    """Base of the camera translators: one instance per (header, file).

    Subclasses set the class attributes and define ``to_<column>`` for each
    column.  Use :meth:`translate`; instances are an implementation detail.

    Parameters
    ----------
    header : `astropy.io.fits.Header`
        The primary header of the raw file.
    filename : `str`
        The file the header came from (for messages and filename rules).
    """

    camera: ClassVar[str]
    """The camera name (a key of `TRANSLATORS`)."""
    columns: ClassVar[tuple[Column, ...]]
    """``(name, SQL type)`` of the ``raw`` table, ``id`` excluded, in table order."""
    unique: ClassVar[tuple[str, ...]]
    """The columns of the ``raw`` table's UNIQUE constraint."""
    visit_columns: ClassVar[tuple[str, ...]]
    """The columns of the ``raw_visit`` table."""
    extra_tables: ClassVar[tuple[TableSpec, ...]] = ()
    """Other tables the camera's policy queries in the exposure registry (``raw_skyTile``)."""

    def __init__(self, header: fits.Header, filename: str):
        self.header = header
        self.filename = filename
        self._values: dict[str, Any] = {}
        self._types = dict(self.columns)

    @classmethod
    def translate(cls, header: fits.Header, filename: str) -> dict[str, Any]:
        """Compute the registry row of one raw file.

        Parameters
        ----------
        header : `astropy.io.fits.Header`
            The primary header.
        filename : `str`
            The path of the file.

        Returns
        -------
        row : `dict`
            Every column of `columns`, in order, cast by its SQL type.

        Raises
        ------
        butler.errors.IngestError
            If a needed header key is missing or a value does not fit its column.
        """
        translator = cls(header, filename)
        return {name: translator.value(name) for name, _ in cls.columns}

    @classmethod
    def tables(cls) -> tuple[TableSpec, ...]:
        """Every table of the camera's exposure registry: ``raw``, ``raw_visit`` and `extra_tables`.

        ``raw`` has an ``id`` primary key and a UNIQUE constraint on `unique`;
        ``raw_visit`` is the projection of ``raw`` on `visit_columns`, unique
        on those of them that are in `unique`.
        """
        types = dict(cls.columns)
        raw = TableSpec("raw", cls.columns, unique=cls.unique, primary_key="id")
        visit = TableSpec("raw_visit", [(name, types[name]) for name in cls.visit_columns],
                          unique=[name for name in cls.visit_columns if name in cls.unique])
        return (raw, visit, *cls.extra_tables)

    # Columns most cameras take from the standard FITS keys; a camera overrides where it differs.

    def to_dateObs(self) -> str:
        return mjd_to_isot(self.require("MJD-OBS"))

    def to_expTime(self) -> Any:
        return self.require("EXPTIME")

    def value(self, column: str) -> Any:
        """The value of one column (computed once, cast by its SQL type).

        Parameters
        ----------
        column : `str`
            A column of `columns`.

        Returns
        -------
        value : `str`, `int` or `float`
        """
        if column not in self._values:
            raw = getattr(self, f"to_{column}")()
            try:
                self._values[column] = _CASTS[self._types[column]](raw)
            except (TypeError, ValueError) as err:
                raise IngestError(f"{self.filename}: {column} = {raw!r} is not "
                                  f"{self._types[column]}: {err}") from err
        return self._values[column]

    def get(self, key: str, default: Any = None) -> Any:
        """A header value, strings stripped; ``default`` when absent or undefined.

        Parameters
        ----------
        key : `str`
            Header keyword.
        default : optional
            Returned when the keyword is absent or has no value.
        """
        from astropy.io.fits.card import Undefined

        value = self.header.get(key)
        if value is None or isinstance(value, Undefined):
            return default
        return value.strip() if isinstance(value, str) else value

    def require(self, key: str) -> Any:
        """A header value that a rule cannot do without.

        Parameters
        ----------
        key : `str`
            Header keyword.

        Raises
        ------
        butler.errors.IngestError
            Naming the file and the key, when the keyword is absent.
        """
        value = self.get(key)
        if value is None:
            raise IngestError(f"{self.filename}: header has no {key}, needed for the "
                              f"{self.camera} raw registry")
        return value

    def fail(self, message: str) -> IngestError:
        """An `IngestError` about this file (for the caller to raise)."""
        return IngestError(f"{self.filename}: {message}")


_LSST_COLUMNS: tuple[Column, ...] = (
    ("run", "TEXT"), ("visit", "INT"), ("filter", "TEXT"), ("date", "TEXT"),
    ("dateObs", "TEXT"), ("expTime", "DOUBLE"), ("raftName", "TEXT"),
    ("detectorName", "TEXT"), ("detector", "INT"), ("snap", "INT"), ("object", "TEXT"),
    ("imageType", "TEXT"), ("testType", "TEXT"), ("lsstSerial", "TEXT"),
    ("wavelength", "INT"), ("controller", "TEXT"), ("obsid", "TEXT"), ("expGroup", "TEXT"),
    ("expId", "INT"), ("dayObs", "TEXT"), ("seqNum", "INT"),
)
_SIMULATION_COLUMNS = _without(_LSST_COLUMNS, "dayObs", "seqNum")
_TEST_STAND_COLUMNS = _without(_LSST_COLUMNS, "snap", "seqNum") + (("testSeqNum", "INT"),)
_LATISS_COLUMNS: tuple[Column, ...] = (
    ("dayObs", "TEXT"), ("seqNum", "INT"), ("visit", "INT"), ("detector", "INT"),
    ("detectorName", "TEXT"), ("filter", "TEXT"), ("dateObs", "TEXT"), ("date", "TEXT"),
    ("expTime", "DOUBLE"), ("object", "TEXT"), ("imageType", "TEXT"), ("wavelength", "INT"),
    ("expGroup", "TEXT"), ("obsid", "TEXT"), ("expId", "INT"),
)
_SLOT = re.compile(r"S(\d)(\d)")


class LsstTranslator(HeaderTranslator):
    """The obs_lsst rules that all eight obs_lsst cameras share.

    The detector number is the raft's first detector (`raft_id0`) plus the
    slot index ``3*row + col`` of the slot name ``S<row><col>``.
    """

    columns = _LSST_COLUMNS
    # Annotated again: the cameras below override these with tuples of other lengths.
    unique: ClassVar[tuple[str, ...]] = ("expId", "detector", "visit")
    visit_columns: ClassVar[tuple[str, ...]] = ("visit", "filter", "dateObs", "expTime")
    raft_id0: ClassVar[Mapping[str, int]] = MappingProxyType({})
    """First detector number of each raft (only the rafts of the shipped data)."""

    def detector_number(self, raft: str, slot: str) -> int:
        """The detector number of ``raft``/``slot`` from the camera map."""
        match = _SLOT.fullmatch(slot)
        if raft not in self.raft_id0 or match is None:
            raise self.fail(f"{raft}_{slot} is not in the {self.camera} detector map")
        return self.raft_id0[raft] + 3 * int(match[1]) + int(match[2])

    def to_run(self) -> Any:
        return self.get("RUNNUM", "unknown")

    def to_visit(self) -> int:
        return int(self.value("expGroup"))

    def to_date(self) -> str:
        return self.value("dateObs")


    def to_detector(self) -> int:
        return self.detector_number(self.value("raftName"), self.value("detectorName"))

    def to_snap(self) -> Any:
        return self.get("SNAP", 0)

    def to_object(self) -> str:
        return "UNKNOWN"

    def to_imageType(self) -> str:
        image_type = str(self.require("IMGTYPE")).upper()
        return "SKYEXP" if image_type == "OBJECT" else image_type

    def to_testType(self) -> str:
        return str(self.require("TESTTYPE")).upper()

    def to_lsstSerial(self) -> Any:
        return self.require("LSST_NUM")

    def to_wavelength(self) -> int:
        wavelength = self.get("MONOWL")
        return -666 if wavelength is None or wavelength < 0 else round(wavelength)

    def to_controller(self) -> str:
        controller = self.get("CONTRLLR")
        if controller is None:
            return "C"
        if controller:
            return controller
        fields = self.value("obsid").split("_")
        return fields[1] if len(fields) > 1 and len(fields[1]) == 1 else "O"

    def to_obsid(self) -> Any:
        return self.require("OBSID")

    def to_expGroup(self) -> Any:
        return self.get("GROUPID") or self.value("expId")


class _DaqTranslator(LsstTranslator):
    """Cameras whose exposures are named ``<controller><DAYOBS>_<SEQNUM>``."""

    def to_dayObs(self) -> str:
        day = str(self.require("DAYOBS"))
        return f"{day[:4]}-{day[4:6]}-{day[6:]}"

    def to_seqNum(self) -> Any:
        return self.require("SEQNUM")

    def to_expId(self) -> int:
        day = int(self.require("DAYOBS"))
        if self.get("CONTRLLR") == "C":
            day += 10_000_000
        return int(f"{day}{self.value('seqNum'):05d}")


class LsstCamTranslator(_DaqTranslator):
    """LSSTCam: raft and slot from ``RAFTBAY``/``CCDSLOT``; filter ``FILTER[~FILTER2]``."""

    camera = "lsstCam"
    raft_id0 = MappingProxyType({"R10": 27, "R22": 90})
    keeps_filter2_without_filter: ClassVar[bool] = False
    """Whether ``FILTER2`` still counts when ``FILTER`` is absent."""

    def physical_filter(self, name: str) -> str:
        """The name of a ``FILTER`` value that is present."""
        return _empty_or(name)

    def to_filter(self) -> str:
        name = self.get("FILTER")
        second = self.get("FILTER2")
        if name is None:
            name = "unknown"
            if not self.keeps_filter2_without_filter:
                second = None
        else:
            name = self.physical_filter(name)
        if second is not None and _empty_or(second) != "empty":
            name = f"{name}~{second}"
        return name

    def to_raftName(self) -> Any:
        return self.require("RAFTBAY")

    def to_detectorName(self) -> Any:
        return self.require("CCDSLOT")


class LsstComCamTranslator(LsstCamTranslator):
    """ComCam: one raft; an ``r`` or blank ``FILTER`` is ``r_03`` (``empty`` after 2020-03-13)."""

    camera = "comCam"
    raft_id0 = MappingProxyType({"R22": 0})
    keeps_filter2_without_filter = True

    def physical_filter(self, name: str) -> str:
        if name in ("r", ""):
            return "empty" if self.value("dateObs") > "2020-03-13" else "r_03"
        return super().physical_filter(name)


class LatissTranslator(_DaqTranslator):
    """LATISS: one detector; filter ``FILTER~GRATING``; type from ``OBSTYPE``."""

    camera = "latiss"
    columns = _LATISS_COLUMNS
    unique = ("expId", "visit")
    visit_columns = tuple(name for name, _ in _LATISS_COLUMNS)

    def to_detector(self) -> int:
        return 0

    def to_detectorName(self) -> str:
        return "S00"

    def to_filter(self) -> str:
        parts = (self.get(key) for key in ("FILTER", "GRATING"))
        return "~".join("unknown" if part is None else _empty_or(part) for part in parts)

    def to_imageType(self) -> str:
        if self.get("OBSTYPE") is not None:
            return str(self.get("OBSTYPE")).upper()
        if self.get("IMGTYPE") is not None:
            return super().to_imageType()
        return "BIAS" if self.value("expTime") == 0 else "UNKNOWN"

    def to_object(self) -> Any:
        return self.get("OBJECT", "UNKNOWN")

    def to_obsid(self) -> Any:
        obsid = self.get("OBSID")
        return self.require("IMGNAME") if obsid is None else obsid


class _TestStandTranslator(LsstTranslator):
    """Test stands: exposures are named after their observation time."""

    columns = _TEST_STAND_COLUMNS
    visit_columns = tuple(name for name, _ in _TEST_STAND_COLUMNS)

    def exposure_time_stamp(self) -> str:
        """The time string whose digits form the exposure id (to 0.1 s)."""
        return str(self.require("DATE-OBS"))[:21]

    def to_expId(self) -> int:
        return int(re.sub(r"\D", "", self.exposure_time_stamp()))

    def to_dayObs(self) -> str:
        return observing_day(self.value("dateObs"))

    def to_testSeqNum(self) -> Any:
        return self.get("SEQNUM", 0)

    def to_detectorName(self) -> str:
        return "S00"

    def to_filter(self) -> Any:
        return self.require("FILTER")

    def to_obsid(self) -> str:
        return os.path.splitext(str(self.require("FILENAME")))[0]


class Ts8Translator(_TestStandTranslator):
    """TS8: one raft on the stand; the slot is looked up by the sensor serial."""

    camera = "ts8"
    raft_id0 = MappingProxyType({"RTM-010": 63})
    slot_of_serial: ClassVar[Mapping[str, Mapping[str, str]]] = MappingProxyType(
        {"RTM-010": {"E2V-CCD250-179": "S11"}})
    """Per raft: sensor serial -> slot."""
    filter_of_position: ClassVar[Mapping[int, str]] = MappingProxyType(
        {2: "g", 3: "r", 4: "i", 5: "z", 6: "y"})

    def to_raftName(self) -> str:
        match = re.search(r"RTM-\d{3}", str(self.require("RAFTNAME")))
        if match is None:
            raise self.fail(f"RAFTNAME {self.get('RAFTNAME')!r} names no RTM-nnn raft")
        return match[0]

    def to_detectorName(self) -> str:
        raft, serial = self.value("raftName"), self.value("lsstSerial")
        try:
            return self.slot_of_serial[raft][serial]
        except KeyError:
            raise self.fail(f"sensor {serial} of raft {raft} is not in the ts8 serial table") from None

    def to_lsstSerial(self) -> str:
        return re.sub(r"-Dev$", "", str(super().to_lsstSerial()))

    def to_filter(self) -> str:
        return self.filter_of_position.get(self.get("FILTPOS"), "NONE")


class Ts3Translator(_TestStandTranslator):
    """TS3: single sensors; the raft is the one that holds the sensor serial."""

    camera = "ts3"
    raft_id0 = MappingProxyType({"R071": 71, "R433": 433})
    raft_of_serial: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"ITL-3800C-098": "R071", "E2V-CCD250-411": "R433"})

    def to_run(self) -> str:
        return self.value("dateObs")[:10]

    def to_raftName(self) -> str:
        serial = self.value("lsstSerial")
        if serial not in self.raft_of_serial:
            raise self.fail(f"sensor {serial} is not in the ts3 serial table")
        return self.raft_of_serial[serial]


class UcdTranslator(_TestStandTranslator):
    """UC Davis: time from ``MJD``; raft and detector from a serial table."""

    camera = "ucd"
    detector_of_serial: ClassVar[Mapping[str, tuple[str, int]]] = MappingProxyType(
        {"E2V-CCD250-112-04": ("R00", 0), "ITL-3800C-002": ("R02", 2)})
    """Sensor serial -> (raft, detector)."""

    def _serial_entry(self) -> tuple[str, int]:
        serial = self.value("lsstSerial")
        if serial not in self.detector_of_serial:
            raise self.fail(f"sensor {serial} is not in the ucd serial table")
        return self.detector_of_serial[serial]

    def exposure_time_stamp(self) -> str:
        return self.value("dateObs")[:19]

    def to_dateObs(self) -> str:
        return mjd_to_isot(float(self.require("MJD")))

    def to_run(self) -> str:
        return self.value("dateObs")[:10]

    def to_raftName(self) -> str:
        return self._serial_entry()[0]

    def to_detector(self) -> int:
        return self._serial_entry()[1]

    def to_filter(self) -> str:
        return str(super().to_filter()).lower()

    def to_obsid(self) -> str:
        return os.path.basename(super().to_obsid())


class _SimulationTranslator(LsstTranslator):
    """Simulated cameras: exposures are numbered by ``OBSID``."""

    columns = _SIMULATION_COLUMNS
    raft_id0 = MappingProxyType({"R11": 36})

    def to_expId(self) -> Any:
        return self.require("OBSID")

    def to_obsid(self) -> str:
        return str(self.value("expId"))

    def to_raftName(self) -> Any:
        return self.require("RAFTNAME")

    def to_detectorName(self) -> Any:
        return self.require("SENSNAME")

    def to_controller(self) -> str:
        return "S"

    def to_filter(self) -> Any:
        return self.require("FILTER")


class ImsimTranslator(_SimulationTranslator):
    """imSim: the filter carries the version of the ``throughputs`` package."""

    camera = "imsim"

    def to_filter(self) -> str:
        for key in self.header:
            if key.startswith("PKG") and self.get(key) == "throughputs":
                version = self.require("VER" + key[3:])
                return f"{super().to_filter()}_sim_{version}"
        raise self.fail("header has no PKGnnnnn = 'throughputs' (for the imsim filter)")


class PhosimTranslator(_SimulationTranslator):
    """PhoSim: every exposure is a sky exposure."""

    camera = "phosim"

    def to_imageType(self) -> str:
        return "SKYEXP"


class TestCamTranslator(HeaderTranslator):
    """The obs_test camera: visit from the file name, ``taiObs`` the UTC time of ``TAI``.

    The headers carry no visit number, so it is read from the file name
    (``raw_v<visit>_f<filter>...``), as the obs_test raw template writes it.
    """

    camera = "test"
    columns = (("visit", "INT"), ("filter", "TEXT"), ("taiObs", "TEXT"), ("expTime", "DOUBLE"))
    unique = ("visit",)
    visit_columns = ("visit", "filter", "taiObs", "expTime")
    #: as in the shipped obs_test registry; ingest does not compute sky tiles (each raw gets a NULL one)
    extra_tables = (TableSpec("raw_skyTile", [("id", "INTEGER"), ("skyTile", "INTEGER")],
                              indexes=[("ix_skyTile_id", ["id"]), ("ix_skyTile_tile", ["skyTile"])],
                              row_per_raw=True),)

    def to_visit(self) -> int:
        match = re.search(r"_v(\d+)_f", os.path.basename(self.filename))
        if match is None:
            raise self.fail("the file name has no _v<visit>_f part (obs_test visits come from it)")
        return int(match[1])

    def to_filter(self) -> Any:
        return self.require("FILTER")

    def to_taiObs(self) -> str:
        """``TAI`` (an MJD) in UTC, to the nanosecond of its float value."""
        import erfa

        nanoseconds = int((self.require("TAI") - _UNIX_EPOCH_MJD) * 86400e9)
        seconds, fraction = divmod(nanoseconds, 10**9)
        stamp = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
        day_fraction = (stamp.hour * 3600 + stamp.minute * 60 + stamp.second) / 86400
        stamp -= datetime.timedelta(seconds=erfa.dat(stamp.year, stamp.month, stamp.day, day_fraction))
        return f"{stamp.isoformat(timespec='seconds')}.{fraction:09d}"


TRANSLATORS: Mapping[str, type[HeaderTranslator]] = MappingProxyType({
    translator.camera: translator
    for translator in (LsstCamTranslator, LsstComCamTranslator, LatissTranslator, Ts8Translator,
                       Ts3Translator, UcdTranslator, ImsimTranslator, PhosimTranslator,
                       TestCamTranslator)
})
"""Camera name -> translator class."""
