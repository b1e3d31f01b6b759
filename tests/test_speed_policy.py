"""Issue #12, command start-up: what is kept between processes is never answered stale.

A process keeps the parsed tree of a policy file in the cache directory
(``BUTLER_CACHE_DIR``) under the hash of the file's bytes, so a file rewritten
by another process (even with the same size and modification time) is parsed
again, a damaged kept file is ignored, and a cache that cannot be written only
costs a parse. The table of ``butler.mappers`` entry points is kept under a
fingerprint of the installed distributions: a distribution installed later
is seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from butler.utils import CACHE_ENV

READ = """
    import sys
    from butler.policy import Policy
    print(Policy(sys.argv[1])["camera.gain"])
"""


def _read_in_a_new_process(policy: Path, cache: str) -> str:
    """``camera.gain`` of the policy file, read by a fresh process using ``cache``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]), **{CACHE_ENV: cache})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(READ), str(policy)], env=env, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout.strip()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "camera.yaml"
    path.write_text("camera:\n  gain: 1.5\n  name: test\n")
    return path


def test_a_policy_rewritten_by_another_process_is_read_anew(policy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _read_in_a_new_process(policy, str(cache)) == "1.5"
    assert len(list((cache / "policy").iterdir())) == 1  # the first process kept its parse
    before = policy.stat()
    policy.write_text("camera:\n  gain: 2.5\n  name: test\n")  # same size, then the same times
    os.utime(policy, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert policy.stat().st_size == before.st_size
    assert _read_in_a_new_process(policy, str(cache)) == "2.5"
    assert _read_in_a_new_process(policy, str(cache)) == "2.5"
    assert len(list((cache / "policy").iterdir())) == 2


def test_a_damaged_kept_parse_is_ignored(policy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _read_in_a_new_process(policy, str(cache)) == "1.5"
    (kept,) = (cache / "policy").iterdir()
    kept.write_bytes(b"\x00not marshal")
    assert _read_in_a_new_process(policy, str(cache)) == "1.5"


def test_an_unwritable_cache_and_no_cache_still_read_the_file(policy: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert _read_in_a_new_process(policy, str(blocker / "cache")) == "1.5"
    assert _read_in_a_new_process(policy, "") == "1.5"  # empty: nothing kept anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "camera.yaml"]


ENTRY = """
    import sys
    from butler.utils import doImport, resolve_mapper
    print(doImport("lsst.obs.test.testMapper.TestMapper").__name__)
    try:
        print(resolve_mapper("lsst.obs.extra.ExtraMapper", "test").__name__)
    except Exception as exc:
        print(type(exc).__name__)
"""


def _entry_points_in_a_new_process(cache: Path, site: Path) -> list[str]:
    """A fresh process (``site`` on its path) resolves a project entry point and a third-party one."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), str(site), *sys.path]),
               **{CACHE_ENV: str(cache)})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(ENTRY)], env=env, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout.split()


def test_a_mapper_entry_point_installed_later_is_found(tmp_path: Path) -> None:
    cache, site = tmp_path / "cache", tmp_path / "site"
    site.mkdir()
    assert _entry_points_in_a_new_process(cache, site) == ["TestMapper", "UntrustedMapperError"]
    assert len(list((cache / "entry-points").iterdir())) == 1  # the scan was kept
    # another process installs a distribution whose entry point names a mapper
    (site / "extra_camera.py").write_text("from mappers.test import TestMapper\n\n\n"
                                          "class ExtraMapper(TestMapper):\n    pass\n")
    info = site / "extra_camera-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-camera\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[butler.mappers]\nlsst.obs.extra.ExtraMapper = extra_camera:ExtraMapper\n")
    assert _entry_points_in_a_new_process(cache, site) == ["TestMapper", "ExtraMapper"]
    assert len(list((cache / "entry-points").iterdir())) == 2
