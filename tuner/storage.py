"""Folders in object storage (``s3://``, ``gs://``, any URI ``pyarrow.fs`` opens), and the node's
scratch folder that works in front of them.

Object stores have no rename and no file lock, so what egotune keeps in a bucket is written once
under a unique name wherever it can be (checkpoint files are named by epoch, table parts by a
random suffix) and every object is written whole: ``pyarrow.fs`` completes an upload only when its
stream closes, so a reader sees the old object or the new one, never half of one. A search on a
bucket works in a local copy of its experiment in the scratch folder (:func:`scratch_dir`): the
trials write their checkpoint files there and upload them off the training thread, the driver
writes its tables there and uploads them (:class:`TablePush`), and a node that has nothing of it
locally (a new cluster, a retried trial on another node) downloads what it needs.

Credentials come from pyarrow's standard chains (environment variables, config files, instance
roles and workload identity); ``AWS_ENDPOINT_URL`` points it at an S3-compatible server. Nothing
of them is written anywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuner.atomic import write_atomic
from tuner.cache import cache_dir

__all__ = [
    "PART_DIRS",
    "SCRATCH_ENV",
    "TABLE_FILES",
    "Bucket",
    "TablePush",
    "describe_error",
    "file_exists",
    "is_uri",
    "local_file",
    "local_name",
    "pull_tables",
    "read_file",
    "scratch_dir",
    "write_file",
]

SCRATCH_ENV = "EGOTUNE_SCRATCH_DIR"
"""The node's scratch folder for searches on a bucket (default: the cache's ``scratch``)."""
TABLE_FILES = ("experiment.json", "trials.parquet", "exploits.parquet")
"""An experiment's single-object tables, in the order they are uploaded (the trials table, which
lists the trials the parts belong to, after the parts)."""
PART_DIRS = ("predictions.parquet", "epochs.parquet")
"""Folders of write-once part files; predictions first: an epoch row promises its predictions."""
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_CHUNK = 1 << 20


def is_uri(storage: object) -> bool:
    """``storage`` names a filesystem by URI (``s3://...``) rather than a local folder."""
    return (
        isinstance(storage, str) and bool(_URI.match(storage)) and not storage.startswith("file:")
    )


def local_name(uri: str) -> Path:
    """``s3://bucket/a/b`` as the relative folder ``s3/bucket/a/b``."""
    scheme, _, rest = uri.partition("://")
    parts = [p for p in rest.split("/") if p and p not in (".", "..")]
    return Path(scheme, *parts)


def scratch_dir(uri: str | None = None) -> Path:
    """This node's scratch folder (``$EGOTUNE_SCRATCH_DIR``, else the cache's ``scratch``), or
    the local copy of ``uri`` in it."""
    configured = os.environ.get(SCRATCH_ENV)
    root = Path(configured).expanduser() if configured else cache_dir("scratch")
    return root / local_name(uri) if uri else root


def describe_error(exc: BaseException, uri: str | None = None) -> str:
    """What went wrong with a bucket, in a few words and pyarrow's own first line; ``uri``: the
    bucket, for a hint on where its credentials are looked for."""
    text = " ".join(str(exc).split())
    lowered = text.lower().replace("_", "")
    refused = ("credential", "accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch")
    if any(word in lowered for word in refused):
        return f"access refused: check the credentials ({text[:200]})"
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered:
        return f"no such bucket ({text[:200]})"
    if "networkconnection" in lowered or "curlcode" in lowered or "timed out" in lowered:
        return f"cannot reach it ({text[:300]})"
    if uri is not None and uri.startswith("s3://") and not _aws_credentials_visible():
        return (
            "refused, and no credentials were found (AWS_ACCESS_KEY_ID, AWS_PROFILE, "
            "~/.aws/credentials; an instance or pod role is used where there is one) "
            f"({text[:200]})"
        )
    return f"cannot use it ({text[:300]})"


def _aws_credentials_visible() -> bool:
    """Credentials the AWS chain would find before asking the machine's role."""
    named = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE")
    if any(os.environ.get(name) for name in named):
        return True
    if any(k.startswith("AWS_CONTAINER_CREDENTIALS") for k in os.environ):
        return True
    default = Path.home() / ".aws" / "credentials"
    files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or default]
    files.append(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    return any(Path(f).is_file() for f in files)


class Bucket:
    """A folder in object storage, named by URI; ``name`` arguments are relative to it."""

    def __init__(self, uri: str, *, _opened: tuple[Any, str] | None = None) -> None:
        import pyarrow.fs as pafs

        self.uri = uri.rstrip("/")
        filesystem, root = _opened or pafs.FileSystem.from_uri(self.uri)
        self.filesystem: Any = filesystem
        self.root: str = root.rstrip("/")

    def __repr__(self) -> str:
        return f"Bucket({self.uri!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Bucket, (self.uri,))  # a filesystem does not travel; it is opened again

    def child(self, *names: str) -> Bucket:
        joined = "/".join(names)
        return Bucket(f"{self.uri}/{joined}", _opened=(self.filesystem, f"{self.root}/{joined}"))

    def sibling(self, name: str) -> Bucket:
        """Folder ``name`` beside this one."""
        uri, root = self.uri.rsplit("/", 1)[0], self.root.rsplit("/", 1)[0]
        return Bucket(f"{uri}/{name}", _opened=(self.filesystem, f"{root}/{name}"))

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def info(self, name: str = "") -> Any:
        return self.filesystem.get_file_info(self._path(name))

    def exists(self, name: str = "") -> bool:
        """An object ``name``, or (``""``) anything under this folder."""
        import pyarrow.fs as pafs

        if name:
            return bool(self.info(name).type == pafs.FileType.File)
        selector = pafs.FileSelector(self.root, allow_not_found=True, recursive=False)
        return bool(self.filesystem.get_file_info(selector))

    def files(self, name: str = "") -> dict[str, Any]:
        """The objects directly in folder ``name`` by their names, with their file infos."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self._path(name), allow_not_found=True)
        infos = self.filesystem.get_file_info(selector)
        return {Path(i.path).name: i for i in infos if i.type == pafs.FileType.File}

    def folders(self) -> list[str]:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.root, allow_not_found=True)
        infos = self.filesystem.get_file_info(selector)
        return sorted(Path(i.path).name for i in infos if i.type == pafs.FileType.Directory)

    def read_bytes(self, name: str) -> bytes | None:
        """The object's content, or ``None`` when there is none."""
        try:
            with self.filesystem.open_input_stream(self._path(name)) as stream:
                data: bytes = stream.read()
        except FileNotFoundError:
            return None
        return data

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.filesystem.open_output_stream(self._path(name)) as stream:
            stream.write(data)

    def upload(self, local: Path, name: str | None = None) -> int:
        """Copy the local file to object ``name`` (default: its own name); returns its size."""
        path = self._path(name or local.name)
        with local.open("rb") as source, self.filesystem.open_output_stream(path) as target:
            while chunk := source.read(_CHUNK):
                target.write(chunk)
        return local.stat().st_size

    def download(self, name: str, local: Path) -> bool:
        """Copy object ``name`` to ``local`` (written whole under a temporary name, then renamed);
        ``False`` when there is no such object."""
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            path = self._path(name)
            with self.filesystem.open_input_stream(path) as source, partial.open("wb") as copy:
                while chunk := source.read(_CHUNK):
                    copy.write(chunk)
        except FileNotFoundError:
            partial.unlink(missing_ok=True)
            return False
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(local)
        return True

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_file(self._path(name))

    def copy(self, source: str, target: str) -> None:
        """Copy object ``source`` to ``target`` inside the store (server-side where it can)."""
        self.filesystem.copy_file(self._path(source), self._path(target))


def _object(uri: str | os.PathLike[str]) -> tuple[Bucket, str]:
    """The bucket folder of the object at ``uri``, and the object's name in it."""
    folder, _, name = str(uri).rpartition("/")
    return Bucket(folder), name


def file_exists(location: str | os.PathLike[str]) -> bool:
    """A file at ``location``: a local path or an object's URI."""
    if is_uri(location):
        bucket, name = _object(location)
        return bucket.exists(name)
    return Path(location).is_file()


def read_file(location: str | os.PathLike[str]) -> bytes | None:
    """The content of the file at ``location`` (a path or a URI), ``None`` when there is none."""
    if is_uri(location):
        bucket, name = _object(location)
        return bucket.read_bytes(name)
    try:
        return Path(location).read_bytes()
    except FileNotFoundError:
        return None


def write_file(location: str | os.PathLike[str], data: bytes) -> None:
    """Write the file at ``location`` (a path or a URI) whole: a reader sees the old content
    or the new one."""
    if is_uri(location):
        bucket, name = _object(location)
        bucket.write_bytes(name, data)
        return
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(location, lambda handle: handle.write(data))


def local_file(location: str) -> str:
    """A local path of the file at ``location``: itself, or, for a URI, a copy downloaded once
    into this node's scratch folder."""
    if not is_uri(location):
        return location
    local = scratch_dir(location)
    if not local.is_file():
        bucket, name = _object(location)
        if not bucket.download(name, local):
            raise FileNotFoundError(f"{location}: no such object")
    return str(local)


def pull_tables(bucket: Bucket, local: Path, *, tables: bool = True) -> None:
    """Bring ``local`` up to date with the experiment folder ``bucket``: its tables (``tables=
    False``: ``experiment.json`` and ``trials.parquet`` only), never its checkpoints. Files are
    compared by size and modification time; a file gone from the bucket goes from ``local``."""
    wanted: dict[str, Any] = {}
    singles = TABLE_FILES if tables else TABLE_FILES[:2]
    present = bucket.files()
    wanted.update({name: present[name] for name in singles if name in present})
    for folder in PART_DIRS if tables else ():
        parts = bucket.files(folder)
        wanted.update({f"{folder}/{n}": i for n, i in parts.items() if n.endswith(".parquet")})
    mirrored = [local / name for name in singles]
    for folder in PART_DIRS if tables else ():
        mirrored += (local / folder).glob("*.parquet")
    for gone in {str(p.relative_to(local)) for p in mirrored} - set(wanted):
        (local / gone).unlink(missing_ok=True)
    for name, info in wanted.items():
        target = local / name
        if not _same(target, info) and bucket.download(name, target) and info.mtime_ns:
            os.utime(target, ns=(info.mtime_ns, info.mtime_ns))


def _same(target: Path, info: Any) -> bool:
    if not target.is_file():
        return False
    stat = target.stat()
    return stat.st_size == info.size and (
        info.mtime_ns is None or stat.st_mtime_ns == info.mtime_ns
    )


class TablePush:
    """Uploads the tables of a local experiment folder to its bucket folder: each part file once,
    the single-object tables when they changed (by size and modification time), parts before the
    trials table that lists their trials. Parts deleted locally are deleted from the bucket."""

    def __init__(self, local: Path, bucket: Bucket) -> None:
        self.local = local
        self.bucket = bucket
        self._pushed: dict[str, tuple[int, int]] | None = None
        self.bytes_sent = 0

    def push(self) -> int:
        """Upload what changed since the last push; returns the bytes sent."""
        if self._pushed is None:
            self._pushed = self._already_there()
        sent = 0
        seen: set[str] = set()
        for name in self._names():
            path = self.local / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            seen.add(name)
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._pushed.get(name) == signature:
                continue
            sent += self.bucket.upload(path, name)
            self._pushed[name] = signature
        for name in [n for n in self._pushed if n not in seen and "/" in n]:
            self.bucket.delete(name)
            del self._pushed[name]
        self.bytes_sent += sent
        return sent

    def _names(self) -> Iterable[str]:
        for folder in PART_DIRS:
            parts = sorted((self.local / folder).glob("*.parquet"))
            yield from (f"{folder}/{p.name}" for p in parts)
        yield from TABLE_FILES

    def _already_there(self) -> dict[str, tuple[int, int]]:
        """Parts the bucket holds already (a resumed search pulled them): not sent again."""
        pushed: dict[str, tuple[int, int]] = {}
        for folder in PART_DIRS:
            for name, info in self.bucket.files(folder).items():
                path = self.local / folder / name
                if path.is_file() and path.stat().st_size == info.size:
                    pushed[f"{folder}/{name}"] = (info.size, path.stat().st_mtime_ns)
        return pushed
