"""Benchmark raw ingest against its floor: reading the same headers with astropy.

Generates 500 small gzip-compressed raws with LSSTCam-like headers (named
``.fits``, like the obs_lsst test data) in a temporary directory, then times

* the floor: ``astropy.io.fits.getheader`` of every file, serially;
* ``ingest_raws`` with 1 worker and with 2 workers, each into an empty
  repository, in mode ``skip`` (register only: headers, translation, registry)
  and in mode ``link`` (plus one symlink per file).

Each figure is the best of 5 runs: the machine may be shared, and file-system
metadata operations (symlink, create) vary a lot from run to run.

Run: ``python bench/bench_ingest.py [n_files]``.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tempfile
import time

import numpy as np
from astropy.io import fits

from butler.ingest import ingest_raws
from mappers.translators import LsstCamTranslator

TEMPLATE = "raw/%(dayObs)s/%(expId)013d/%(expId)013d-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
RAFTS = ("R10", "R22")  # the rafts the lsstCam detector map knows
SLOTS = tuple(f"S{row}{col}" for row in range(3) for col in range(3))


def make_raw(path: str, seq: int, raft: str, slot: str) -> None:
    """Write one small raw: an LSSTCam-like primary header and one 64x64 amplifier."""
    header = fits.Header()
    cards = {
        "DATE-OBS": "2019-03-22T15:31:01.904", "MJD-OBS": 58564.64654981485 + seq / 86400,
        "DAYOBS": "20190322", "SEQNUM": seq, "CONTRLLR": "C", "OBSID": f"MC_C_20190322_{seq:06d}",
        "RAFTBAY": raft, "CCDSLOT": slot, "RAFTNAME": "LCA-11021_RTM-003_ETU2",
        "FILTER": "SDSSi", "FILTER2": "ND_OD0.5", "RUNNUM": "6489D", "IMGTYPE": "FLAT",
        "TESTTYPE": "FLAT", "LSST_NUM": "ITL-3800C-103", "EXPTIME": 1.0, "INSTRUME": "lsstCam",
        "TELESCOP": "LSST", "CCD_MANU": "ITL", "CCD_TYPE": "3800C", "DETSIZE": "[1:4072,1:4000]",
        "CCDTEMP": -102.7, "DARKTIME": 1.4, "HEADVER": 2,
    }
    header.update(cards)
    amplifier = fits.ImageHDU(np.zeros((64, 64), dtype=np.int16), name="Segment10")
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(header=header), amplifier]).writeto(buffer)
    with open(path, "wb") as stream:
        stream.write(gzip.compress(buffer.getvalue(), compresslevel=1))


def generate(directory: str, count: int) -> list[str]:
    paths = []
    detectors = [(raft, slot) for raft in RAFTS for slot in SLOTS]
    for index in range(count):
        seq, (raft, slot) = 1 + index // len(detectors), detectors[index % len(detectors)]
        path = os.path.join(directory, f"MC_C_20190322_{seq:06d}_{raft}_{slot}.fits")
        make_raw(path, seq, raft, slot)
        paths.append(path)
    return paths


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def read_headers(paths: list[str]) -> None:
    for path in paths:
        fits.getheader(path, 0)


def main(count: int = 500, repeats: int = 5) -> None:
    with tempfile.TemporaryDirectory() as work:
        sources = os.path.join(work, "sources")
        os.mkdir(sources)
        paths = generate(sources, count)
        read_headers(paths)  # warm the page cache and imports
        floor = min(timed(read_headers, paths) for _ in range(repeats))
        print(f"{count} raws, best of {repeats}")
        print(f"  floor (astropy getheader, serial): {floor:6.3f} s")
        for mode in ("skip", "link"):
            best = {}
            for workers in (1, 2):
                best[workers] = min(
                    timed(ingest_raws, os.path.join(work, f"repo-{mode}-{workers}-{attempt}"), paths,
                          mode=mode, translator=LsstCamTranslator, template=TEMPLATE, workers=workers,
                          progress=False)
                    for attempt in range(repeats))
                print(f"  ingest_raws {mode}, {workers} worker(s): {best[workers]:6.3f} s  "
                      f"ratio to floor {best[workers] / floor:5.2f}")
            print(f"  {mode}: speed-up from 1 to 2 workers {best[1] / best[2]:5.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
