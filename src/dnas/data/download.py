"""Checked, resumable downloads and safe archive extraction.

`download` fetches a URL into `<dest>.part`, continuing an earlier partial file with an HTTP
`Range` request, and renames it over `dest` only when its MD5 matches, so a broken download
never looks like a finished one. `safe_extract_tar` refuses members that would land outside
the target directory.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from dnas.errors import UserError

SCHEMES = ("https", "file")
TIMEOUT_S = 60
CHUNK = 1 << 20
DEFAULT_HINT = "download it elsewhere and set prepare.paths.<dataset> to the local copy instead"


def md5_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _network_error(url: str, exc: BaseException, hint: str | None) -> UserError:
    return UserError(
        f"download of {url} failed ({exc}): no network or the URL is unreachable; "
        f"{hint or DEFAULT_HINT}"
    )


def _open_file_url(url: str, offset: int):
    """Open a file:// URL at byte `offset` (0 if the file is shorter); (stream, offset, size)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise UserError(f"refusing to download {url}: file:// URLs must name a local file")
    f = open(urllib.request.url2pathname(parsed.path), "rb")  # the caller closes it
    size = os.fstat(f.fileno()).st_size
    if offset > size:
        offset = 0
    f.seek(offset)
    return f, offset, size


def _open_https(url: str, offset: int):
    """GET `url`, asking for bytes from `offset` on; (response, offset actually used, size)."""
    headers = {"User-Agent": "dnas"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
        resp = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is already as long as the remote one
            return _open_https(url, 0)
        raise
    content_range = resp.headers.get("Content-Range", "")
    if offset and resp.status == 206 and content_range.startswith(f"bytes {offset}-"):
        total = content_range.rpartition("/")[2]
        return resp, offset, int(total) if total.isdigit() else None
    if offset and resp.status == 206:  # not the range we asked for: start again without one
        resp.close()
        return _open_https(url, 0)
    length = resp.headers.get("Content-Length")
    return resp, 0, int(length) if length and length.isdigit() else None


def download(
    url: str, dest: Path, md5: str, desc: str | None = None, hint: str | None = None
) -> Path:
    """Download `url` to `dest` unless it is already there with MD5 `md5`; return `dest`.

    Bytes go to `<dest>.part`, which a rerun continues; `hint` (what to set instead, e.g.
    `prepare.paths.cifar10`) ends the message shown when the network fails.
    """
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        raise UserError(f"refusing to download {url}: only https:// and file:// URLs are allowed")
    dest = Path(dest)
    md5 = md5.lower()
    if dest.is_file() and md5_file(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    have = part.stat().st_size if part.is_file() else 0

    opener = _open_file_url if scheme == "file" else _open_https
    try:
        stream, offset, total = opener(url, have)
    except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
        raise _network_error(url, exc, hint) from None

    interactive = sys.stderr.isatty()
    if not interactive:
        resuming = f" (resuming at byte {offset})" if offset else ""
        print(f"downloading {url} to {dest}{resuming}", file=sys.stderr)
    with (
        stream,
        open(part, "ab" if offset else "wb") as out,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc or dest.name,
            disable=not interactive,
        ) as bar,
    ):
        while True:
            try:
                block = stream.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _network_error(url, exc, hint) from None  # the .part file is kept
            if not block:
                break
            out.write(block)
            bar.update(len(block))

    got = part.stat().st_size
    if total is not None and got < total:
        raise UserError(
            f"download of {url} stopped after {got} of {total} bytes; run again to resume it, "
            f"or {hint or DEFAULT_HINT}"
        )
    actual = md5_file(part)
    if actual != md5:
        part.unlink()
        raise UserError(
            f"checksum mismatch for {dest.name} downloaded from {url}: expected MD5 {md5}, "
            f"got {actual}; the partial file was deleted, run again to download it afresh"
        )
    os.replace(part, dest)
    return dest


def safe_extract_tar(archive: Path, dest_dir: Path) -> None:
    """Extract `archive` into `dest_dir`, refusing members that escape it (filter="data").

    Members are extracted into a temporary directory first and moved into place, so a corrupt
    archive leaves no half-extracted files behind.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not hasattr(tarfile, "data_filter"):
        raise UserError(
            "extracting archives safely needs tarfile's filter='data' (Python >= 3.10.12 or "
            ">= 3.11.4); upgrade Python"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.FilterError as exc:
            raise UserError(f"refusing to extract {archive}: unsafe member ({exc})") from None
        except (
            tarfile.ReadError,
            tarfile.CompressionError,
            EOFError,
            zlib.error,
            gzip.BadGzipFile,
            lzma.LZMAError,
        ) as exc:
            raise UserError(
                f"archive {archive} is corrupt or truncated ({exc}); delete it and download it "
                "again"
            ) from None
        for entry in tmp.iterdir():
            target = dest_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
