"""Measure fae's drop-in modules with the original clients' own test suites.

pymemcache ships its tests inside its package (``pymemcache/test/``); its integration tests
(``test_integration.py``) run against a live memcached, ``test_serde.py`` checks its serde
module. (Its other test files drive the clients over mock sockets: internals, not API.) This script copies them into a
temporary directory twice, runs one copy with the real pymemcache and the other with
``pymemcache`` aliased to ``fae.pymemcache`` (``sys.modules``, set up by a conftest in the
copy), each against a memcached it starts on a free 127.0.0.1 port, and prints both pass
counts. Nothing of theirs is written into this repository.

pylibmc's tests are in its sdist only: pass ``--pylibmc-sdist pylibmc-1.6.3.tar.gz`` (from
``pip download --no-binary :all: --no-deps pylibmc==1.6.3``) to measure ``fae.pylibmc`` the
same way (``pylibmc`` and its C module ``_pylibmc`` aliased to ``fae.pylibmc``).

    python tests/python/compat_suites.py [--pylibmc-sdist FILE] [-v]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import Memcached  # noqa: E402

ALIAS = '''
# Added by compat_suites.py: run these tests against {fae} instead of {orig}.
import importlib, sys
for _name in {modules!r}:
    _mod = importlib.import_module("{fae}" + _name[len("{orig}"):])
    sys.modules[_name] = _mod
'''

PYMEMCACHE_MODULES = [
    "pymemcache",
    "pymemcache.client",
    "pymemcache.client.base",
    "pymemcache.client.hash",
    "pymemcache.client.retrying",
    "pymemcache.exceptions",
    "pymemcache.serde",
]
PYLIBMC_MODULES = [
    "pylibmc",
    "pylibmc.client",
    "pylibmc.consts",
    "pylibmc.pools",
    "pylibmc.test",
    "pylibmc.autoconf",
]

# pylibmc's autoconf tests read the server from PylibmcTestCase's class attributes (default
# 127.0.0.1:11211) rather than the environment; point them at the test server, in both runs.
PYLIBMC_PORT = '''
import os as _os


def pytest_configure(config):
    import tests

    tests.PylibmcTestCase.memcached_port = _os.environ["MEMCACHED_PORT"]
'''


def run_pytest(path: str, extra: list, verbose: bool) -> dict:
    xml = os.path.join(path, "junit.xml")
    cmd = [sys.executable, "-m", "pytest", path, "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", "--rootdir", path] + extra
    out = subprocess.run(cmd, cwd=path, capture_output=not verbose, text=True)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if os.path.exists(xml):
        for suite in ET.parse(xml).getroot().iter("testsuite"):
            for k in counts:
                counts[k] += int(suite.get(k, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    if out.returncode not in (0, 1) and not counts["tests"]:
        sys.stderr.write((out.stdout or "") + (out.stderr or ""))
    return counts


def copy_tests(src_files: list, dest: str, alias: str | None) -> None:
    os.makedirs(dest)
    for f in src_files:
        shutil.copy(f, dest)
    conftest = os.path.join(dest, "conftest.py")
    body = open(conftest).read() if os.path.exists(conftest) else ""
    with open(conftest, "w") as fh:
        fh.write((alias or "") + body)


def line(name: str, c: dict) -> str:
    return (f"{name:<28} {c['passed']:>4} passed / {c['tests']:>4} "
            f"({c['failures']} failed, {c['errors']} errors, {c['skipped']} skipped)")


def pymemcache_suite(tmp: str, server: Memcached, verbose: bool) -> None:
    import pymemcache

    src = os.path.join(os.path.dirname(pymemcache.__file__), "test")
    files = [os.path.join(src, f) for f in ("conftest.py", "test_integration.py", "test_serde.py")]
    alias = ALIAS.format(fae="fae.pymemcache", orig="pymemcache", modules=PYMEMCACHE_MODULES)
    extra = ["--server", "127.0.0.1", "--port", str(server.port)]
    results = {}
    for name, a in (("pymemcache " + pymemcache.__version__, None), ("fae.pymemcache", alias)):
        d = os.path.join(tmp, "pymemcache-" + ("fae" if a else "orig"))
        copy_tests(files, d, a)
        results[name] = run_pytest(d, extra, verbose)
    print("pymemcache test_integration.py (against a live memcached) and test_serde.py:")
    for name, c in results.items():
        print("  " + line(name, c))


def pylibmc_suite(tmp: str, sdist: str, server: Memcached, verbose: bool) -> None:
    with tarfile.open(sdist) as t:
        t.extractall(os.path.join(tmp, "sdist"), filter="data")
    (root,) = os.listdir(os.path.join(tmp, "sdist"))
    src = os.path.join(tmp, "sdist", root, "tests")
    alias = ALIAS.format(fae="fae.pylibmc", orig="pylibmc", modules=PYLIBMC_MODULES)
    alias += '\nimport fae.pylibmc._pylibmc\nsys.modules["_pylibmc"] = fae.pylibmc._pylibmc\n'
    saved = {k: os.environ.get(k) for k in ("MEMCACHED_HOST", "MEMCACHED_PORT")}
    os.environ["MEMCACHED_HOST"], os.environ["MEMCACHED_PORT"] = "127.0.0.1", str(server.port)
    results = {}
    try:
        import pylibmc

        for name, a in (("pylibmc " + pylibmc.__version__, None), ("fae.pylibmc", alias)):
            d = os.path.join(tmp, "pylibmc-" + ("fae" if a else "orig"))
            # Their tests are a package (`from tests import ...`) under a root conftest.
            shutil.copytree(src, os.path.join(d, "tests"))
            with open(os.path.join(d, "conftest.py"), "w") as fh:
                fh.write((a or "") + PYLIBMC_PORT)
            results[name] = run_pytest(d, [], verbose)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    print("pylibmc tests/ (from its sdist) against a live memcached:")
    for name, c in results.items():
        print("  " + line(name, c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pylibmc-sdist", help="pylibmc sdist .tar.gz holding its tests/")
    ap.add_argument("-v", "--verbose", action="store_true", help="show pytest's output")
    args = ap.parse_args()
    server = Memcached()
    tmp = tempfile.mkdtemp(prefix="fae-compat-")
    try:
        pymemcache_suite(tmp, server, args.verbose)
        if args.pylibmc_sdist:
            pylibmc_suite(tmp, args.pylibmc_sdist, server, args.verbose)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
