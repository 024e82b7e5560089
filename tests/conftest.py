"""Shared fixtures.

Real challenge data lives outside the repository, in ``../shared/data`` next to the project root.
Tests that need it use the fixtures below and skip cleanly when it is absent (a user's fresh clone).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real challenge data not found at {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``../shared/data`` directory (skips when absent)."""
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def sp_model_path(shared_data: Path) -> Path:
    """The official 1024-token SentencePiece model."""
    return _need(shared_data / "tokenizers" / "fineweb_1024_bpe.model")


@pytest.fixture(scope="session")
def caseops_sp_path(shared_data: Path) -> Path:
    """The 8192-piece CaseOps SentencePiece model of the records from PR #1729 to #1855."""
    return _need(shared_data / "tokenizers" / "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model")


@pytest.fixture(scope="session")
def val_prefix_docs_path(shared_data: Path) -> Path:
    """The 901 complete documents of the validation prefix, as text (jsonl; evaluation/tests only)."""
    return _need(shared_data / "text" / "fineweb_val_prefix_docs.jsonl")


@pytest.fixture(scope="session")
def val_prefix_shard(shared_data: Path) -> Path:
    """The first 1,040,298 tokens of the official FineWeb validation shard (evaluation/tests only)."""
    return _need(shared_data / "datasets" / "fineweb10B_sp1024_valprefix" / "fineweb_val_000000.bin")


@pytest.fixture(scope="session")
def verify_docs_path(shared_data: Path) -> Path:
    """200 raw FineWeb documents (jsonl, one {"text": ...} per line)."""
    return _need(shared_data / "text" / "verify_docs.jsonl")
