"""Small value objects of a camera: filters, detectors, the camera, exposure-ID info."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import attrs

__all__ = ["FilterLabel", "FilterDefinition", "best_filter", "Detector", "Camera", "ExposureIdInfo"]


@attrs.frozen
class FilterLabel:
    """A filter as a band and/or a physical filter name (either may be None)."""

    band: str | None = None
    physical: str | None = None


@attrs.frozen
class FilterDefinition:
    """One filter a camera knows.

    Parameters
    ----------
    physical : `str`
        The physical filter name.
    band : `str`, optional
        The abstract band.
    aliases : iterable of `str`
        Other names of the physical filter.
    afw_name : `str`, optional
        A legacy name; among several matches, the one *without* it is preferred.
    """

    physical: str
    band: str | None = None
    aliases: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)
    afw_name: str | None = None

    def matches(self, name: str) -> bool:
        """Return whether ``name`` is one of this filter's names."""
        return name in (self.physical, self.band, self.afw_name) or name in self.aliases

    def label(self) -> FilterLabel:
        """Return this filter's `FilterLabel`."""
        return FilterLabel(band=self.band, physical=self.physical)


def best_filter(definitions: Iterable[FilterDefinition], stored: FilterLabel | None,
                idFilter: str | None) -> FilterLabel | None:
    """Return the filter label best matching a stored label and a data-ID filter.

    The candidates are the definitions matching every name given (``idFilter``,
    ``stored.physical``, ``stored.band``). One candidate gives its label;
    several give the only one without an ``afw_name``, else a band-only label
    when nothing was stored and they share one band, else None. No candidate
    leaves ``stored`` unchanged, and so does an empty set of definitions.
    """
    candidates = set(definitions)
    if not candidates:
        return stored
    names = [idFilter] + ([stored.physical, stored.band] if stored is not None else [])
    for name in names:
        if name is not None:
            candidates = {d for d in candidates if d.matches(name)}
    if not candidates:
        return stored
    if len(candidates) == 1:
        return candidates.pop().label()
    plain = [d for d in candidates if d.afw_name is None]
    if len(plain) == 1:
        return plain[0].label()
    bands = {d.band for d in candidates}
    if stored is None and len(bands) == 1:
        return FilterLabel(band=bands.pop())
    return None


@attrs.frozen
class Detector:
    """A detector of a camera: its name and integer id."""

    name: str
    id: int


@attrs.define
class Camera:
    """A camera: a name and its detectors, looked up by detector name.

    A camera made by `lazy` holds no detector until one is asked for, so
    making it costs nothing whatever the size of the registry it reads.

    Parameters
    ----------
    name : `str`
        The camera name.
    detectors : `dict` [`str`, `Detector`]
        The detectors known so far, by name.
    find : callable, optional
        ``find(name)``: the detector of that name, or None when there is none.
        Asked once per name not yet known.
    findAll : callable, optional
        ``findAll()``: every detector. Asked once, when the camera is iterated
        or counted; afterwards the camera is complete.
    """

    name: str
    detectors: dict[str, Detector] = attrs.field(factory=dict)
    _find: Callable[[str], Detector | None] | None = attrs.field(default=None, kw_only=True, eq=False,
                                                                repr=False)
    _findAll: Callable[[], Iterable[Detector]] | None = attrs.field(default=None, kw_only=True, eq=False,
                                                                    repr=False)

    @classmethod
    def from_detectors(cls, name: str, detectors: Iterable[Detector]) -> Camera:
        """Make a camera from its detectors."""
        return cls(name, {det.name: det for det in detectors})

    @classmethod
    def lazy(cls, name: str, find: Callable[[str], Detector | None],
             findAll: Callable[[], Iterable[Detector]]) -> Camera:
        """Make a camera that finds its detectors when they are asked for (see the class parameters)."""
        return cls(name, find=find, findAll=findAll)

    def __getitem__(self, name: str) -> Detector:
        detector = self.detectors.get(name)
        if detector is None and self._find is not None:
            detector = self._find(name)
            if detector is not None:
                self.detectors[name] = detector
        if detector is None:
            raise KeyError(f"camera {self.name!r} has no detector {name!r}")
        return detector

    def _all(self) -> dict[str, Detector]:
        """Every detector, found on first use."""
        if self._findAll is not None:
            self.detectors.update((det.name, det) for det in self._findAll())
            self._find = self._findAll = None
        return self.detectors

    def __iter__(self) -> Iterator[Detector]:
        return iter(self._all().values())

    def __len__(self) -> int:
        return len(self._all())


@attrs.frozen
class ExposureIdInfo:
    """An exposure id and the number of bits it uses."""

    expId: int
    expBits: int
