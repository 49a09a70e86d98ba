"""A PEP 517 build backend for the memfit package, in the standard library only.

pip builds a project in an isolated environment into which it installs the
backend's requirements from an index; with no requirements (this backend is
in the tree, named by ``backend-path``), ``pip install ./python`` and
``pip wheel ./python`` work offline, on any Python 3.9+, with no setuptools.

The package is pure Python, so a wheel is a zip of ``memfit/*.py`` and a
``.dist-info`` folder (METADATA, WHEEL, RECORD: the wheel format, PEP 427).
Name, version and required Python come from ``pyproject.toml``'s
``[project]`` table, the one place they are written.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "memfit"


def _project():
    """name, version and requires-python from pyproject.toml's [project] table."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("[project]", 1)[1].split("\n[", 1)[0]
    fields = dict(re.findall(r'^([a-z-]+)\s*=\s*"([^"]*)"', table, re.M))
    for key in ("name", "version", "description", "requires-python"):
        if key not in fields:
            raise RuntimeError("pyproject.toml: [project] has no %s" % key)
    return fields


def _metadata(p):
    return (
        "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\nRequires-Python: %s\n"
        % (p["name"], p["version"], p["description"], p["requires-python"])
    )


def _sources():
    """(path in the archive, path on disk) of the package's files, sorted."""
    out = []
    base = os.path.join(ROOT, PACKAGE)
    for name in sorted(os.listdir(base)):
        if name.endswith(".py") or name == "py.typed":
            out.append((PACKAGE + "/" + name, os.path.join(base, name)))
    return out


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d\n" % (arcname, digest, len(data))


def _write_wheel(directory, files):
    """files: [(arcname, bytes)] without the dist-info; returns the wheel's name."""
    p = _project()
    dist_info = "%s-%s.dist-info" % (p["name"], p["version"])
    wheel_name = "%s-%s-py3-none-any.whl" % (p["name"], p["version"])
    files = list(files)
    files.append((dist_info + "/METADATA", _metadata(p).encode()))
    files.append(
        (
            dist_info + "/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: memfit_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = "".join(_record_line(a, d) for a, d in files) + dist_info + "/RECORD,,\n"
    files.append((dist_info + "/RECORD", record.encode()))
    # A fixed date: the same sources give the same wheel.
    stamp = (2020, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(os.path.join(directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files:
            info = zipfile.ZipInfo(arcname, stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return wheel_name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = []
    for arcname, path in _sources():
        with open(path, "rb") as f:
            files.append((arcname, f.read()))
    return _write_wheel(wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """A wheel holding only a .pth line that puts this folder on sys.path."""
    return _write_wheel(wheel_directory, [(PACKAGE + "_editable.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = "%s-%s" % (p["name"], p["version"])
    name = base + ".tar.gz"
    members = [("pyproject.toml", os.path.join(ROOT, "pyproject.toml"))]
    members.append(("README.md", os.path.join(ROOT, "README.md")))
    members.append(("_build/memfit_build.py", os.path.abspath(__file__)))
    members += _sources()
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as t:
        for arcname, path in members:
            with open(path, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(base + "/" + arcname)
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
        pkg_info = tarfile.TarInfo(base + "/PKG-INFO")
        meta = _metadata(p).encode()
        pkg_info.size = len(meta)
        pkg_info.mode = 0o644
        t.addfile(pkg_info, io.BytesIO(meta))
    return name
