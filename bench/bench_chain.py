"""Rerun-chain benchmark: a camera read through nine rerun repositories, against its syscall floor.

    python bench/bench_chain.py [--loops 200] [--repeat 7] [--dir DIR]

Everything is written in a temporary directory; the obs_test input under
``shared/`` is only read (it is the chain's first parent). A bottom
repository holds one obs_test ``calexp`` (a small FITS image, put by the
butler); nine rerun repositories are chained above it, and a reader opened on
the top one gets the ``calexp`` with a full data ID, so every repository above
the bottom one is searched and missed first.

* ``rerun chain``: `Butler.get` of the ``calexp``. Floor: one `os.stat` of the
  templated path in each of the nine repositories above, then
  `astropy.io.fits.getdata` of the file. Target <= 1.5x.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData
from timing import best_in_slices, stat_each

from butler import Butler

TARGET = 1.5
DEPTH = 9
DATA_ID = {"visit": 1, "filter": "g"}
TEMPLATE = "calexp/calexp_v%(visit)d_f%(filter)s.fits"
DEFAULT_INPUT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "obs_test", "data", "input")




def make_chain(work: str, camera_input: str) -> list[str]:
    """The bottom repository (holding the calexp) then the reruns above it, bottom first."""
    roots = [os.path.join(work, f"rerun{i}") for i in range(DEPTH + 1)]
    bottom = Butler(inputs=camera_input, outputs=roots[0])
    bottom.put(CCDData(np.arange(64 * 64, dtype=np.float32).reshape(64, 64), unit="adu"), "calexp", **DATA_ID)
    for parent, child in zip(roots, roots[1:]):
        Butler(inputs=parent, outputs=child)
    return roots


def bench_rerun_chain(work: str, camera_input: str, loops: int, repeat: int) -> tuple[float, float]:
    """Best seconds per get of the butler and of the floor."""
    roots = make_chain(work, camera_input)
    reader = Butler(inputs=roots[-1])
    relpath = TEMPLATE % DATA_ID
    above = [os.path.join(root, relpath) for root in roots[1:]]
    target = os.path.join(roots[0], relpath)
    expected = fits.getdata(target)
    np.testing.assert_array_equal(reader.get("calexp", **DATA_ID).data, expected)

    def butler_get(_: int) -> None:
        reader.get("calexp", **DATA_ID)

    def floor_get(_: int) -> None:
        stat_each(above)
        fits.getdata(target)

    # one get (a millisecond or two) per timed slice: see timing.best_in_slices
    butler_s, floor_s = best_in_slices(repeat, loops, butler_get, floor_get)
    return butler_s / loops, floor_s / loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=200, help="gets timed (each the best of --repeat)")
    parser.add_argument("--repeat", type=int, default=7, help="best of this many runs of each get")
    parser.add_argument("--input", default=os.path.normpath(DEFAULT_INPUT),
                        help="the obs_test input repository (read only)")
    parser.add_argument("--dir", default=None, help="where to make the chain (default: the system temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-chain-", dir=args.dir) as work:
        butler_s, floor_s = bench_rerun_chain(work, args.input, args.loops, args.repeat)
    ratio = butler_s / floor_s
    verdict = "ok" if ratio <= TARGET else f"OVER target {TARGET}x"
    print(f"{'rerun chain':<12} butler {butler_s * 1e6:9.1f} us  floor {floor_s * 1e6:9.1f} us  "
          f"ratio {ratio:5.2f}x {verdict}")


if __name__ == "__main__":
    main()
