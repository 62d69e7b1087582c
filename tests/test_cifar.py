"""CIFAR-10 reading and checked downloads, on tiny fixtures written in the real formats."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from dnas.data import cifar
from dnas.data.download import download, md5_file, safe_extract_tar
from dnas.errors import UserError
from tests.py2pickle import dumps_py2

TRAIN_SIZES = [4, 4, 4, 4, 4]
TEST_SIZE = 3


def make_batches(seed: int = 0) -> dict:
    """Random planar (N, 3072) uint8 data and labels for 5 train batches and a test batch."""
    rng = np.random.default_rng(seed)
    names = [*cifar.TRAIN_BATCHES, cifar.TEST_BATCH]
    sizes = [*TRAIN_SIZES, TEST_SIZE]
    return {
        name: (
            rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            rng.integers(0, 10, n).tolist(),
        )
        for name, n in zip(names, sizes, strict=True)
    }


def write_bin_dir(root, batches) -> object:
    d = root / cifar.BIN_DIR
    d.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (d / f"{name}.bin").write_bytes(records.tobytes())
    return d


def write_py_dir(root, batches) -> object:
    """The python version as its authors wrote it: Python 2 cPickle, protocol 2, numpy 1 (a
    dict of Python 2 strings, which Python 3 reads as b'data' etc. with encoding="bytes")."""
    d = root / cifar.PY_DIR
    d.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        }
        (d / name).write_bytes(dumps_py2(batch))
    return d


def write_archive(path, src_dir) -> object:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src_dir, arcname=src_dir.name)
    return path


def check_arrays(arrays, batches):
    data = np.concatenate([batches[n][0] for n in cifar.TRAIN_BATCHES])
    labels = np.concatenate([batches[n][1] for n in cifar.TRAIN_BATCHES])
    assert arrays["train_x"].shape == (sum(TRAIN_SIZES), 32, 32, 3)
    assert arrays["test_x"].shape == (TEST_SIZE, 32, 32, 3)
    assert arrays["train_x"].dtype == np.uint8 and arrays["train_y"].dtype == np.int64
    np.testing.assert_array_equal(arrays["train_y"], labels)
    np.testing.assert_array_equal(arrays["test_y"], batches[cifar.TEST_BATCH][1])
    # Pixel (row 2, col 5) of image 6 (batch 2, image 2): R, G, B planes 1024 bytes apart.
    offset = 2 * 32 + 5
    expected = [data[6, offset], data[6, 1024 + offset], data[6, 2048 + offset]]
    assert arrays["train_x"][6, 2, 5].tolist() == [int(v) for v in expected]
    np.testing.assert_array_equal(
        arrays["train_x"], data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )
    test_data = batches[cifar.TEST_BATCH][0]
    np.testing.assert_array_equal(
        arrays["test_x"], test_data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )


@pytest.fixture
def batches():
    return make_batches()


# --- the three formats -------------------------------------------------------------------


def test_binary_directory(tmp_path, batches):
    bin_dir = write_bin_dir(tmp_path / "src", batches)
    check_arrays(cifar.load(str(tmp_path / "src"), tmp_path / "raw"), batches)
    check_arrays(cifar.load(str(bin_dir), tmp_path / "raw"), batches)  # the batch dir itself


def test_python_directory(tmp_path, batches):
    py_dir = write_py_dir(tmp_path / "src", batches)
    check_arrays(cifar.load(str(tmp_path / "src"), tmp_path / "raw"), batches)
    check_arrays(cifar.load(str(py_dir), tmp_path / "raw"), batches)


def test_archives_of_either_version(tmp_path, batches):
    bin_archive = write_archive(tmp_path / "bin.tar.gz", write_bin_dir(tmp_path / "b", batches))
    py_archive = write_archive(tmp_path / "py.tar.gz", write_py_dir(tmp_path / "p", batches))
    raw = tmp_path / "raw"
    check_arrays(cifar.load(str(bin_archive), raw), batches)
    assert (raw / cifar.BIN_DIR / "test_batch.bin").is_file()
    check_arrays(cifar.load(str(py_archive), raw), batches)
    assert not (raw / cifar.BIN_DIR).exists()  # the earlier extraction is not read instead


def test_canonical_archive_name_is_checksummed(tmp_path, batches):
    archive = write_archive(
        tmp_path / "cifar-10-binary.tar.gz", write_bin_dir(tmp_path / "b", batches)
    )
    with pytest.raises(UserError, match="cifar-10-binary.tar.gz has MD5 .*expected c32a1d4a"):
        cifar.load(str(archive), tmp_path / "raw")


def test_download_path_end_to_end(tmp_path, batches, monkeypatch):
    archive = write_archive(
        tmp_path / "cifar-10-binary.tar.gz", write_bin_dir(tmp_path / "b", batches)
    )
    monkeypatch.setattr(cifar, "URL", archive.as_uri())
    monkeypatch.setattr(cifar, "MD5", md5_file(archive))
    raw = tmp_path / "raw"
    check_arrays(cifar.load(None, raw), batches)
    assert md5_file(raw / "cifar-10-binary.tar.gz") == md5_file(archive)
    check_arrays(cifar.load(None, raw), batches)  # a second run reuses the checked archive


# --- damaged and missing inputs ----------------------------------------------------------


def test_truncated_bin_names_the_file(tmp_path, batches):
    bin_dir = write_bin_dir(tmp_path, batches)
    bad = bin_dir / "data_batch_3.bin"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(UserError, match="data_batch_3.bin is corrupt or truncated"):
        cifar.load(str(tmp_path), tmp_path / "raw")


def test_bad_labels_rejected(tmp_path, batches):
    bin_dir = write_bin_dir(tmp_path, batches)
    bad = bin_dir / "test_batch.bin"
    raw = bytearray(bad.read_bytes())
    raw[0] = 10
    bad.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="test_batch.bin has labels outside 0..9"):
        cifar.load(str(tmp_path), tmp_path / "raw")


def test_missing_batch_names_file_and_param(tmp_path, batches):
    bin_dir = write_bin_dir(tmp_path, batches)
    (bin_dir / "data_batch_5.bin").unlink()
    with pytest.raises(UserError, match="data_batch_5.bin.*prepare.paths.cifar10"):
        cifar.load(str(tmp_path), tmp_path / "raw")


def test_nonexistent_path(tmp_path):
    with pytest.raises(UserError, match="prepare.paths.cifar10"):
        cifar.load(str(tmp_path / "nope"), tmp_path / "raw")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no CIFAR-10 batches.*prepare.paths.cifar10"):
        cifar.load(str(tmp_path / "empty"), tmp_path / "raw")


def test_truncated_archive(tmp_path, batches):
    archive = write_archive(tmp_path / "a.tar.gz", write_bin_dir(tmp_path / "b", batches))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match="a.tar.gz is corrupt or truncated"):
        safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out" / cifar.BIN_DIR).exists()


def test_tar_path_traversal_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(UserError, match="refusing to extract"):
        safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_not_executed(tmp_path, batches):
    py_dir = write_py_dir(tmp_path, batches)
    marker = tmp_path / "pwned"
    (py_dir / "data_batch_1").write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(UserError, match=r"refusing to unpickle \S*system from .*data_batch_1"):
        cifar.load(str(tmp_path), tmp_path / "raw")
    assert not marker.exists()


def test_python_batch_fixture_is_pickled_as_python_2_wrote_it(tmp_path, batches):
    """Python 2 strings (no _codecs.encode, no unicode opcodes), numpy 1's module names; read
    back as the CIFAR page says the real batches read: bytes keys with encoding="bytes"."""
    import pickletools

    blob = (write_py_dir(tmp_path, batches) / "data_batch_1").read_bytes()
    ops = list(pickletools.genops(blob))
    names = {op.name for op, _, _ in ops}
    assert blob[:2] == b"\x80\x02" and {"SHORT_BINSTRING", "BINSTRING"} <= names
    assert not names & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    assert {arg for op, arg, _ in ops if op.name == "GLOBAL"} == {
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype",
    }  # fmt: skip
    batch = pickle.loads(blob, encoding="bytes")
    assert list(batch) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (4, 3072)
    assert all(type(v) is int for v in batch[b"labels"])
    assert np.array_equal(batch[b"data"], batches["data_batch_1"][0])


def test_restricted_load_allows_only_listed_globals(tmp_path):
    f = tmp_path / "arr.pkl"
    f.write_bytes(pickle.dumps({"a": np.arange(3, dtype=np.uint8)}, protocol=2))
    loaded = cifar.restricted_load(f, cifar.NUMPY_ARRAY_GLOBALS, "a CIFAR batch")
    assert loaded["a"].tolist() == [0, 1, 2]
    with pytest.raises(UserError, match="refusing to unpickle .*not a CIFAR batch"):
        cifar.restricted_load(f, set(), "a CIFAR batch")


# --- download ----------------------------------------------------------------------------


@pytest.fixture
def remote(tmp_path):
    """A 300 kB local file standing in for a remote one, and its MD5."""
    src = tmp_path / "remote" / "blob.tar.gz"
    src.parent.mkdir()
    src.write_bytes(np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    return src, md5_file(src)


def test_download_file_url(tmp_path, remote):
    src, md5 = remote
    dest = tmp_path / "dl" / "blob.tar.gz"
    assert download(src.as_uri(), dest, md5) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert not dest.with_name("blob.tar.gz.part").exists()
    src.unlink()  # present with the right MD5: not fetched again
    assert download(src.as_uri(), dest, md5) == dest


def test_download_resumes_part_file(tmp_path, remote):
    src, md5 = remote
    dest = tmp_path / "blob.tar.gz"
    data = src.read_bytes()
    part = tmp_path / "blob.tar.gz.part"
    part.write_bytes(data[: len(data) // 2])
    download(src.as_uri(), dest, md5)
    assert dest.read_bytes() == data and not part.exists()
    # The part file is continued, not refetched: a wrong first half fails the checksum.
    dest.unlink()
    part.write_bytes(bytes(len(data) // 2))
    with pytest.raises(UserError, match="checksum mismatch"):
        download(src.as_uri(), dest, md5)
    assert not part.exists() and not dest.exists()


def test_download_wrong_md5(tmp_path, remote):
    src, _ = remote
    dest = tmp_path / "blob.tar.gz"
    with pytest.raises(UserError, match=f"blob.tar.gz.*expected MD5 {'0' * 32}, got "):
        download(src.as_uri(), dest, "0" * 32)
    assert not dest.exists()
    assert not dest.with_name("blob.tar.gz.part").exists()


@pytest.mark.parametrize("url", ["http://example.com/x.tar.gz", "ftp://example.com/x.tar.gz"])
def test_download_refuses_other_schemes(tmp_path, url):
    with pytest.raises(UserError, match="only https:// and file://"):
        download(url, tmp_path / "x.tar.gz", "0" * 32)


class _FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int, headers: dict):
        super().__init__(body)
        self.status, self.headers = status, headers


def _fake_server(data: bytes, honour_range: bool, requests: list):
    def urlopen(request, timeout=None):
        requests.append(request.get_header("Range"))
        rng = request.get_header("Range")
        if rng and honour_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            return _FakeResponse(data[start:], 206, headers)
        return _FakeResponse(data, 200, {"Content-Length": str(len(data))})

    return urlopen


@pytest.mark.parametrize("honour_range", [True, False])
def test_https_range_resume_and_restart(tmp_path, remote, monkeypatch, honour_range):
    src, md5 = remote
    data = src.read_bytes()
    requests = []
    monkeypatch.setattr(urllib.request, "urlopen", _fake_server(data, honour_range, requests))
    dest = tmp_path / "blob.tar.gz"
    dest.with_name("blob.tar.gz.part").write_bytes(data[:1000])
    download("https://example.com/blob.tar.gz", dest, md5)
    assert requests == ["bytes=1000-"]
    assert dest.read_bytes() == data  # 206: appended; 200: restarted from zero


def test_network_failure_names_the_param(tmp_path, monkeypatch):
    def offline(request, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match="no network.*prepare.paths.cifar10"):
        cifar.load(None, tmp_path / "raw")
    with pytest.raises(
        UserError, match=r"download of https://\S+ failed.*prepare\.paths\.<dataset>"
    ):
        download("https://example.com/x.tar.gz", tmp_path / "x.tar.gz", "0" * 32)
