"""The data layer: official token shards, the training stream, tokenizer byte accounting, data sources.

Call :func:`prepare_data` with the ``data`` config to get concrete shard globs and the tokenizer (it
builds the embedded demo corpus when ``data.demo`` is set), then :class:`DistributedTokenLoader` for
training (or, with ``data.shuffle``, the shuffled-sequence loader of :mod:`golf.data.shuffled`), :func:`load_validation_tokens` and :func:`build_byte_luts` for evaluation, or, for data
with a byte sidecar (CaseOps, :mod:`golf.data.caseops`), :func:`load_validation_bytes` instead of the
tables. The demo builder (:mod:`golf.data.demo`), the hub downloader (:mod:`golf.data.download`) and the
CaseOps builder (:mod:`golf.data.prepare_caseops`) are also command-line tools, so they are imported from
their modules rather than re-exported here.
"""

from golf.data.config import DataConfig, DemoConfig, validate_data
from golf.data.corpus import CorpusError
from golf.data.paths import DataPaths, prepare_data
from golf.data.shards import ShardError, list_shards, read_header, read_shard, write_shard, write_split_shards
from golf.data.sidecar import load_validation_bytes
from golf.data.stream import DistributedTokenLoader, TokenStream, load_validation_tokens
from golf.data.tokenizer import (
    BOS_ID,
    ByteLUTs,
    TokenizerError,
    build_byte_luts,
    encode_documents,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "BOS_ID",
    "ByteLUTs",
    "CorpusError",
    "DataConfig",
    "DataPaths",
    "DemoConfig",
    "DistributedTokenLoader",
    "ShardError",
    "TokenStream",
    "TokenizerError",
    "build_byte_luts",
    "encode_documents",
    "list_shards",
    "load_tokenizer",
    "load_validation_bytes",
    "load_validation_tokens",
    "prepare_data",
    "read_header",
    "read_shard",
    "train_tokenizer",
    "validate_data",
    "write_shard",
    "write_split_shards",
]
