"""The data layer: official token shards, tokenizer files, data sources.

Call :func:`prepare_data` with the ``data`` config to get concrete shard globs and the tokenizer (it
builds the embedded demo corpus when ``data.demo`` is set), and :func:`golf.data.shards.check_data` to
check the shards before a run. The run reads them with the kernel (:mod:`golf.kernel.data`: the
training loaders, the validation tokens and the bytes of val_bpb). The demo builder
(:mod:`golf.data.demo`) and the hub downloader (:mod:`golf.data.download`) are also command-line tools,
so they are imported from their modules rather than re-exported here. Data with a byte sidecar
(CaseOps, :mod:`golf.data.caseops`) is scored on its sidecar's bytes (:mod:`golf.data.sidecar` checks
it; :func:`golf.kernel.data.validation_bytes` is what every evaluator reads).
"""

from golf.data.config import DataConfig, DemoConfig, validate_data
from golf.data.corpus import CorpusError
from golf.data.paths import DataPaths, prepare_data
from golf.data.shards import (
    ShardError,
    check_data,
    list_shards,
    read_header,
    read_shard,
    write_shard,
    write_split_shards,
)
from golf.data.sidecar import load_validation_bytes
from golf.data.tokenizer import BOS_ID, TokenizerError, encode_documents, load_tokenizer, train_tokenizer

__all__ = [
    "BOS_ID",
    "CorpusError",
    "DataConfig",
    "DataPaths",
    "DemoConfig",
    "ShardError",
    "TokenizerError",
    "check_data",
    "encode_documents",
    "list_shards",
    "load_tokenizer",
    "load_validation_bytes",
    "prepare_data",
    "read_header",
    "read_shard",
    "train_tokenizer",
    "validate_data",
    "write_shard",
    "write_split_shards",
]
