"""Data layer. Shared by every task: splits, errors, verified downloads, batch sampling. Per modality:
:mod:`attnkit.data.text` (sources, built-in corpora, tokenizers) and :mod:`attnkit.data.vision` (images).

The text names are re-exported here, as they were before the modalities were split."""

from attnkit.data.errors import DataError, DatasetNotFoundError
from attnkit.data.sampling import BucketBatchSampler
from attnkit.data.splits import Splits, label_vocab, make_splits, stratified_partition
from attnkit.data.text.batching import Batch, EncodedDataset, collate
from attnkit.data.text.builtin import (
    DATASETS,
    BuiltinDataset,
    RemoteFile,
    builtin_path,
    cache_root,
    data_root,
    load_builtin,
    load_builtin_with_report,
    parse_20newsgroups_archive,
    parse_ag_news_csv,
    parse_imdb_archive,
    parse_mr_archive,
    parse_sst2_archive,
)
from attnkit.data.text.embedded import EMBEDDED_SPLITS, EmbeddedStats, load_embedded, read_embedded_corpus
from attnkit.data.text.inspect import format_report, inspect_examples, inspect_source
from attnkit.data.text.sources import (
    LoadReport,
    TextExample,
    check_trainable,
    load_file_with_report,
    load_source,
    load_source_with_report,
)
from attnkit.data.text.tokenizer import (
    PAD_ID,
    PAD_TOKEN,
    UNK_ID,
    UNK_TOKEN,
    Encoding,
    TextTokenizer,
    TokenizerConfig,
    detect_level,
)

__all__ = [
    "DATASETS",
    "EMBEDDED_SPLITS",
    "PAD_ID",
    "PAD_TOKEN",
    "UNK_ID",
    "UNK_TOKEN",
    "Batch",
    "BucketBatchSampler",
    "BuiltinDataset",
    "DataError",
    "DatasetNotFoundError",
    "EmbeddedStats",
    "EncodedDataset",
    "Encoding",
    "LoadReport",
    "RemoteFile",
    "Splits",
    "TextExample",
    "TextTokenizer",
    "TokenizerConfig",
    "builtin_path",
    "cache_root",
    "check_trainable",
    "collate",
    "data_root",
    "detect_level",
    "format_report",
    "inspect_examples",
    "inspect_source",
    "label_vocab",
    "load_builtin",
    "load_builtin_with_report",
    "load_embedded",
    "load_file_with_report",
    "load_source",
    "load_source_with_report",
    "make_splits",
    "parse_20newsgroups_archive",
    "parse_ag_news_csv",
    "parse_imdb_archive",
    "parse_mr_archive",
    "parse_sst2_archive",
    "read_embedded_corpus",
    "stratified_partition",
]
