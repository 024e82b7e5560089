"""Download the official FineWeb shards and tokenizer from the Hugging Face hub, verified and resumable.

Source: the challenge's ``data/cached_challenge_fineweb.py`` (spec ``data.md`` §1). The dataset repo
``willdepueoai/parameter-golf`` (repo type ``dataset``) holds, under ``datasets/``: ``manifest.json``
(per dataset: tokenizer name, vocab size, shard counts and token totals), the shards
``datasets/fineweb10B_<variant>/fineweb_{val,train}_%06d.bin`` and ``tokenizers/<name>.model|.vocab``.
Everything lands in the same layout under ``out`` (``out/datasets/fineweb10B_sp1024/...``,
``out/tokenizers/...``, ``out/manifest.json``): all validation shards and the first ``train_shards``
training shards.

The CaseOps variant (``--variant sp8192_caseops``: the records' data from PR #1729 to #1855, dataset
``romeerp/parameter-golf-caseops-v1``, spec ``frontier-1855.md`` §2.3) has the same layout under the
dataset name ``fineweb10B_sp8192_lossless_caps_caseops_v1_reserved``, plus one per-token byte sidecar
``fineweb_val_bytes_%06d.bin`` per validation shard (:mod:`golf.data.sidecar`); its manifest entry says
so with ``val_bytes_glob``, and any variant whose entry does gets its sidecars too.

Each file is checked before it is accepted: its size against the hub's metadata, its sha256 against the
hub's LFS ETag when the ETag is one, shards against the format (header, size, ids below the manifest's
vocab size) and the tokenizer by loading it (a CaseOps one must reserve ids 4-7 for its operators); a
sidecar must hold one entry per token of its validation shard and 0 bytes at every BOS; the validation
token total must match the manifest.
Files download to ``out/.download/`` through ``huggingface_hub`` (which retries and resumes interrupted
transfers within a call; a failed file restarts on the next run) and are moved into place only once
verified. ``out/.golf-download.json`` records verified files (size, mtime, ETag): a re-run skips them
without touching the network, and a file changed since (e.g. corrupted) is checked against the hub and
fetched again if it differs.

CLI: ``python -m golf.data.download --out data --train-shards 80 [--repo-id ...] [--endpoint URL] [--debug]``;
a failure is one line (the host that could not be reached, or the file that failed its check), its
traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

from golf.data.caseops_tokenizer import CASEOPS_DATASET, CASEOPS_TRANSFORM, check_caseops_tokenizer
from golf.data.shards import ShardError, read_header, read_shard
from golf.data.sidecar import sidecar_path, verify_sidecar_file
from golf.data.tokenizer import TokenizerError, load_tokenizer

log = logging.getLogger(__name__)

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
# variants that live in another dataset repository than the official one
CASEOPS_REPO = "romeerp/parameter-golf-caseops-v1"
# (sp8192_lossless_caps_caseops_v1_reserved: the name the record's own downloader takes)
VARIANT_REPOS = {"sp8192": "kevclark/parameter-golf", "sp8192_caseops": CASEOPS_REPO,
                 "sp8192_lossless_caps_caseops_v1_reserved": CASEOPS_REPO}
# variants whose dataset is not named fineweb10B_<variant>
VARIANT_DATASETS = {"sp8192_caseops": CASEOPS_DATASET}
DEFAULT_REMOTE_ROOT = "datasets"
RECORD_FILE = ".golf-download.json"
STAGING_DIR = ".download"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(RuntimeError):
    """A remote file is missing, or what arrived failed verification."""


@dataclass
class DownloadResult:
    """What :func:`download_challenge_data` left in ``out`` (paths are under ``out``)."""

    dataset_dir: Path
    tokenizer_path: Path
    val_files: list[Path]
    train_files: list[Path]
    fetched: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    val_bytes_files: list[Path] = field(default_factory=list)  # the byte sidecars, one per val file


class _Fetcher:
    """Fetch files of one hub repo into ``out``, verifying each one and recording what was verified."""

    def __init__(self, out: Path, repo_id: str, remote_root: str, revision: str | None,
                 endpoint: str | None, token: str | None, recheck: bool):
        self.out, self.repo_id, self.remote_root = out, repo_id, remote_root.strip("/")
        self.revision, self.endpoint, self.token, self.recheck = revision, endpoint, token, recheck
        self.record_path = out / RECORD_FILE
        self.records = json.loads(self.record_path.read_text()) if self.record_path.is_file() else {}
        self.fetched: list[Path] = []
        self.skipped: list[Path] = []

    def fetch(self, rel: str, check: Callable[[Path], None]) -> Path:
        """Make ``out/rel`` a verified copy of ``<remote_root>/rel``; ``check`` raises on bad content."""
        dest = self.out / rel
        remote = f"{self.remote_root}/{rel}" if self.remote_root else rel
        if not self.recheck and self._recorded(rel, dest):
            self.skipped.append(dest)
            return dest
        try:
            url = hf_hub_url(self.repo_id, remote, repo_type="dataset", revision=self.revision, endpoint=self.endpoint)
            meta = get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint)
        except Exception as e:
            self._raise_unreachable(e, url, remote)
            raise DownloadError(f"cannot get {remote} of {self.repo_id} ({type(e).__name__}: {e})") from e
        sha = meta.etag if meta.etag and _SHA256.fullmatch(meta.etag) else None
        if dest.is_file():
            problem = _problem(dest, meta.size, sha, check)
            if problem is None:
                self._record(rel, dest, meta.etag)
                self.skipped.append(dest)
                return dest
            log.warning("%s: %s; fetching it again", dest, problem)
        try:
            staged = Path(hf_hub_download(
                self.repo_id, remote, repo_type="dataset", revision=meta.commit_hash,
                local_dir=self.out / STAGING_DIR, endpoint=self.endpoint, token=self.token,
            ))
        except Exception as e:
            self._raise_unreachable(e, url, remote)
            raise DownloadError(f"downloading {remote} of {self.repo_id} failed ({type(e).__name__}: {e})") from e
        problem = _problem(staged, meta.size, sha, check)
        if problem is not None:
            staged.unlink(missing_ok=True)
            raise DownloadError(f"{self.repo_id}/{remote} is rejected: {problem}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, dest)
        self._record(rel, dest, meta.etag)
        self.fetched.append(dest)
        log.info("fetched %s (%d bytes)", dest, dest.stat().st_size)
        return dest

    def _raise_unreachable(self, err: Exception, url: str, remote: str) -> None:
        """A DownloadError naming the host when ``err`` is a failed connection (no network), with the way
        to go on without one."""
        if _unreachable(err):
            raise DownloadError(f"cannot reach {urlparse(url).netloc} to get {remote} of {self.repo_id} "
                                f"({type(err).__name__}: {err}); without a network, train on the built-in demo "
                                "corpus: data=demo") from err

    def _recorded(self, rel: str, dest: Path) -> bool:
        rec = self.records.get(rel)
        if rec is None or not dest.is_file():
            return False
        st = dest.stat()
        return rec["size"] == st.st_size and rec["mtime_ns"] == st.st_mtime_ns

    def _record(self, rel: str, dest: Path, etag: str | None) -> None:
        st = dest.stat()
        self.records[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "etag": etag}
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.records, indent=1, sort_keys=True))
        os.replace(tmp, self.record_path)


def _unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a failed connection: no route, no name resolution, refused, timed out."""
    while err is not None:
        names = {c.__name__ for c in type(err).__mro__}
        if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror)) or names & {"NetworkError", "TimeoutException"}:
            return True
        err = err.__cause__ or err.__context__
    return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _problem(path: Path, size: int | None, sha: str | None, check: Callable[[Path], None]) -> str | None:
    """Why ``path`` is not the expected file, or None if it passes every check."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual} bytes != {size} bytes reported by the hub"
    if sha is not None and (digest := _sha256(path)) != sha:
        return f"sha256 {digest} != {sha} (the hub's checksum)"
    try:
        check(path)
    except (ShardError, TokenizerError, ValueError) as e:
        return str(e)
    return None


def _check_manifest(path: Path) -> None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: manifest is not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("datasets"), list):
        raise ValueError(f"{path}: manifest has no 'datasets' list")


def _int_field(entry: dict, key: str, dataset: str) -> int:
    try:
        return int(entry[key])
    except (KeyError, TypeError, ValueError) as e:
        raise DownloadError(f"manifest entry of {dataset} has no integer {key!r} (found {entry.get(key)!r})") from e


def _relative(value: object, what: str) -> str:
    """A manifest path, which must stay inside the remote root."""
    p = PurePosixPath(str(value))
    if not str(value) or p.is_absolute() or ".." in p.parts:
        raise DownloadError(f"manifest {what} {value!r} is not a relative path inside the repository")
    return p.as_posix()


def repo_for_variant(variant: str) -> str:
    """The dataset repository a tokenizer variant is published in."""
    return VARIANT_REPOS.get(variant, DEFAULT_REPO_ID)


def dataset_for_variant(variant: str) -> str:
    """The manifest's (and the local directory's) name of a variant's dataset."""
    return VARIANT_DATASETS.get(variant, f"fineweb10B_{variant}")


def download_challenge_data(
    out: str | os.PathLike = "data",
    *,
    train_shards: int = 80,
    variant: str = "sp1024",
    repo_id: str | None = None,
    remote_root: str = DEFAULT_REMOTE_ROOT,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    recheck: bool = False,
) -> DownloadResult:
    """Fetch the manifest, every validation shard, ``train_shards`` training shards and the tokenizer.

    ``recheck`` verifies every local file against the hub even if it is recorded as verified.
    ``repo_id`` None = the variant's repository (:func:`repo_for_variant`).
    """
    repo_id = repo_id or repo_for_variant(variant)
    if train_shards < 0:
        raise DownloadError(f"train_shards must be >= 0, got {train_shards}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    fetcher = _Fetcher(out, repo_id, remote_root, revision, endpoint, token, recheck)

    manifest = json.loads(fetcher.fetch("manifest.json", _check_manifest).read_text(encoding="utf-8"))
    name = dataset_for_variant(variant)
    entry = next((d for d in manifest["datasets"] if d.get("name") == name), None)
    if entry is None:
        names = [d.get("name") for d in manifest["datasets"]]
        raise DownloadError(f"dataset {name!r} is not in the manifest of {repo_id} (it lists {names})")
    stats = entry.get("stats") or {}
    vocab_size = _int_field(entry, "vocab_size", name)
    files_train, files_val = _int_field(stats, "files_train", name), _int_field(stats, "files_val", name)
    if train_shards > files_train:
        raise DownloadError(f"{name} has {files_train} training shards on {repo_id}; {train_shards} requested")
    tok_entry = next((t for t in manifest.get("tokenizers", []) if t.get("name") == entry.get("tokenizer_name")), None)
    if tok_entry is None or not tok_entry.get("model_path"):
        raise DownloadError(f"tokenizer {entry.get('tokenizer_name')!r} of {name} has no model file in the manifest")

    def check_shard(path: Path) -> None:
        read_shard(path, vocab_size)

    transform = tok_entry.get("text_transform")
    caseops = name == CASEOPS_DATASET or transform == CASEOPS_TRANSFORM
    if name == CASEOPS_DATASET and transform not in (None, CASEOPS_TRANSFORM):
        raise DownloadError(f"tokenizer of {name} has text_transform {transform!r}; expected {CASEOPS_TRANSFORM!r}")

    def check_tokenizer(path: Path) -> None:
        sp = load_tokenizer(path, vocab_size)
        if caseops:
            check_caseops_tokenizer(sp, path)

    tokenizer = fetcher.fetch(_relative(tok_entry["model_path"], "model_path"), check_tokenizer)
    if tok_entry.get("vocab_path"):
        fetcher.fetch(_relative(tok_entry["vocab_path"], "vocab_path"), lambda path: None)
    shard_dir = f"datasets/{name}"
    val_files = [fetcher.fetch(f"{shard_dir}/fineweb_val_{i:06d}.bin", check_shard) for i in range(files_val)]
    val_bytes_files = []
    if caseops or entry.get("val_bytes_glob"):
        val_bytes_files = [
            fetcher.fetch(f"{shard_dir}/{sidecar_path(f).name}", lambda path, f=f: verify_sidecar_file(f, path))
            for f in val_files
        ]
    train_files = [fetcher.fetch(f"{shard_dir}/fineweb_train_{i:06d}.bin", check_shard) for i in range(train_shards)]
    _check_totals(val_files, stats.get("tokens_val"), "validation")
    if train_shards == files_train:
        _check_totals(train_files, stats.get("tokens_train"), "training")
    log.info("%s: %d files fetched, %d already present", out, len(fetcher.fetched), len(fetcher.skipped))
    return DownloadResult(out / shard_dir, tokenizer, val_files, train_files, fetcher.fetched, fetcher.skipped,
                          val_bytes_files)


def _check_totals(files: list[Path], expected: object, split: str) -> None:
    if expected is None:
        return
    total = sum(read_header(f) for f in files)
    if total != int(expected):
        raise DownloadError(f"{split} shards hold {total} tokens; the manifest says {int(expected)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Download the challenge's FineWeb shards and tokenizer.")
    parser.add_argument("--out", default="data", help="local data root (default: data)")
    parser.add_argument("--train-shards", type=int, default=80, help="training shards to fetch (default: 80)")
    parser.add_argument("--variant", default="sp1024",
                        help=f"tokenizer variant: dataset fineweb10B_<variant>; sp8192_caseops = {CASEOPS_DATASET}")
    parser.add_argument("--repo-id", default=None,
                        help=f"hub dataset repository (default: {DEFAULT_REPO_ID}; "
                             f"for sp8192 {VARIANT_REPOS['sp8192']}; for sp8192_caseops {CASEOPS_REPO})")
    parser.add_argument("--remote-root", default=DEFAULT_REMOTE_ROOT, help="folder of the export in the repo")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    parser.add_argument("--endpoint", default=None, help="hub URL (default: huggingface_hub's, i.e. HF_ENDPOINT)")
    parser.add_argument("--recheck", action="store_true", help="verify every local file against the hub")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = download_challenge_data(
            args.out, train_shards=args.train_shards, variant=args.variant, repo_id=args.repo_id,
            remote_root=args.remote_root, revision=args.revision, endpoint=args.endpoint, recheck=args.recheck,
        )
    except DownloadError as err:  # one line; the traceback with --debug
        if args.debug:
            raise
        print(f"golf.data.download: DownloadError: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    sidecars = f", {len(result.val_bytes_files)} val byte sidecar" if result.val_bytes_files else ""
    print(f"shards: {result.dataset_dir} ({len(result.val_files)} val, {len(result.train_files)} train{sidecars})")
    print(f"tokenizer: {result.tokenizer_path}")


if __name__ == "__main__":
    main()
