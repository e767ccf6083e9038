"""Text classification: texts -> token ids with a tokenizer fitted on the training split; units are tokens.

Dimension legend: ``B`` batch, ``T`` tokens.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from attnkit.data import (
    BucketBatchSampler,
    EncodedDataset,
    TextExample,
    TextTokenizer,
    TokenizerConfig,
    check_trainable,
    collate,
    label_vocab,
    load_source,
    make_splits,
)
from attnkit.tasks.base import Batch, BatchSampler, Task

if TYPE_CHECKING:
    from attnkit.models.base import AttentionModel
    from attnkit.train.config import RunConfig

log = logging.getLogger(__name__)

#: Built-in datasets whose official held-out split is used as the test set when none is given.
OFFICIAL_TEST_SPLITS = {"imdb": "test", "20newsgroups": "test", "sst2": "dev", "ag_news": "test"}
#: Texts tokenized per step of the progress bar (large enough that the batch encoder stays fast).
ENCODE_CHUNK = 4096
#: Tokens that end a sentence, for HAN's sentence split (their ids in the run's tokenizer).
SENTENCE_END_TOKENS = (".", "!", "?", "。", "！", "？", "…")


def load_text_splits(
    config: RunConfig,
) -> tuple[list[TextExample], list[TextExample], list[TextExample] | None]:
    """Read train/val/test examples as the config says; val is carved from train when not given."""
    data = config.data

    def read(source: str) -> list[TextExample]:
        return load_source(source, text_field=data.text_field, label_field=data.label_field)

    if data.train == "embedded" and data.test is None and data.val is None:
        from attnkit.data import load_embedded

        embedded = load_embedded(seed=data.split_seed, val_fraction=data.val_fraction)
        return embedded.train, embedded.val, embedded.test
    train = read(data.train)
    check_trainable(train, data.train)
    test_source = data.test
    builtin_name = data.train.split(":")[0]
    if test_source is None and builtin_name in OFFICIAL_TEST_SPLITS and not Path(data.train).exists():
        test_source = f"{builtin_name}:{OFFICIAL_TEST_SPLITS[builtin_name]}"
    test = read(test_source) if test_source else None
    if data.val:
        val = read(data.val)
    else:
        splits = make_splits(train, None, val_fraction=data.val_fraction, seed=data.split_seed)
        train, val = splits.train, splits.val
    return train, val, test


def encode_texts(tokenizer: TextTokenizer, examples: list[TextExample], labels: list[str]) -> EncodedDataset:
    """Token ids and label ids of ``examples``; an empty encoding gets one ``[UNK]`` position.

    Raises:
        ValueError: a label does not occur in ``labels`` (the training data's).
    """
    label_ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted({ex.label for ex in examples} - set(label_ids))
    if unknown:
        raise ValueError(
            f"labels {', '.join(unknown[:5])} do not occur in the training data (known: {', '.join(labels)})"
        )
    texts = [ex.text for ex in examples]
    ids: list[list[int]] = []
    chunk = ENCODE_CHUNK
    with tqdm(
        total=len(texts),
        desc="tokenizing",
        unit="text",
        disable=len(texts) <= chunk or not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(texts), chunk):  # chunked so that a large corpus shows its progress
            ids += tokenizer.encode_ids(texts[start : start + chunk])
            bar.update(min(chunk, len(texts) - start))
    # An empty encoding (text of only stripped markup) still needs one position to attend to.
    ids = [row if row else [tokenizer.unk_id] for row in ids]
    return EncodedDataset(ids, [label_ids[ex.label] for ex in examples])


def vocabulary_strings(tokenizer: TextTokenizer) -> list[str]:
    """The vocabulary entry of every id, in id order, with "" for ``[PAD]`` and ``[UNK]``."""
    special = {tokenizer.pad_id, tokenizer.unk_id}
    return ["" if i in special else tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]


class TextClassificationTask(Task):
    """Classify texts: a tokenizer fitted on the training texts, length-bucketed batches, tokens as units.

    Args:
        config: the run's config (``data``, ``tokenizer``, ``optim`` sections).
        tokenizer: a fitted tokenizer (a loaded run's); else :meth:`fit_preparation` or :meth:`load_preparation`
            provides one.
    """

    modality: ClassVar[str] = "text"
    input_name: ClassVar[str] = "texts"
    preparation_name: ClassVar[str] = "tokenizer"

    def __init__(self, config: RunConfig, tokenizer: TextTokenizer | None = None) -> None:
        super().__init__(config)
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            raise RuntimeError("the task's tokenizer is not fitted or loaded yet")
        return self._tokenizer

    # -- data -------------------------------------------------------------------------------------------

    def read_splits(self) -> tuple[list[TextExample], list[TextExample], list[TextExample] | None]:
        return load_text_splits(self.config)

    def read_source(self, source: str) -> list[TextExample]:
        data = self.config.data
        return load_source(source, text_field=data.text_field, label_field=data.label_field)

    def labels_in(self, examples: list[TextExample]) -> list[str]:
        return [ex.label for ex in examples]

    def label_names(self, train: list[TextExample]) -> list[str]:
        return label_vocab(train)

    def fit_preparation(self, train: list[TextExample]) -> None:
        t = self.config.tokenizer
        tok_config = TokenizerConfig(
            level=t.level,
            vocab_size=t.vocab_size,
            min_freq=t.min_freq,
            lowercase=t.lowercase,
            max_length=t.max_length,
            truncation=t.truncation,
        )
        start = time.perf_counter()
        log.info("fitting the tokenizer on %d training texts", len(train))
        self._tokenizer = TextTokenizer.fit([ex.text for ex in train], tok_config)
        log.info("tokenizer: vocabulary %d (%.1f s)", self._tokenizer.vocab_size, time.perf_counter() - start)

    def encode(self, examples: list[TextExample], labels: list[str]) -> EncodedDataset:
        return encode_texts(self.tokenizer, examples, labels)

    def train_sampler(self, dataset: EncodedDataset, batch_size: int, seed: int) -> BatchSampler:
        return BucketBatchSampler([len(ids) for ids in dataset.ids], batch_size, shuffle=True, seed=seed)

    def eval_batches(self, dataset: EncodedDataset, batch_size: int) -> Iterable[list[int]]:
        order = np.argsort([len(ids) for ids in dataset.ids], kind="stable")  # similar lengths pad little
        return (order[start : start + batch_size].tolist() for start in range(0, len(order), batch_size))

    def collate(
        self,
        dataset: EncodedDataset,
        indices: Sequence[int],
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Batch:
        labels = None if dataset.labels is None else [dataset.labels[i] for i in indices]
        padded = collate([dataset.ids[i] for i in indices], labels)
        return Batch(padded.input_ids, padded.attention_mask, padded.labels)

    # -- the run directory ------------------------------------------------------------------------------

    def save_preparation(self, run_dir: Path) -> None:
        from attnkit.runs import TOKENIZER_DIR

        self.tokenizer.save(run_dir / TOKENIZER_DIR)

    def load_preparation(self, run_dir: Path) -> None:
        from attnkit.runs import read_tokenizer

        self._tokenizer = read_tokenizer(run_dir)  # checked: a one-line RunError naming the file

    def adopt_preparation(self, other: Task) -> None:
        if not isinstance(other, TextClassificationTask):
            raise ValueError(f"a text task cannot prepare inputs like a {other.modality} task")
        self._tokenizer = other.tokenizer

    def same_preparation(self, other: Task) -> bool:
        return isinstance(other, TextClassificationTask) and vocabulary_strings(
            other.tokenizer
        ) == vocabulary_strings(self.tokenizer)

    # -- the model --------------------------------------------------------------------------------------

    def model_fields(self, num_classes: int) -> dict[str, Any]:
        tokenizer = self.tokenizer
        fields: dict[str, Any] = {
            "vocab_size": tokenizer.vocab_size,
            "num_classes": num_classes,
            "max_length": self.config.tokenizer.max_length,
        }
        if self.config.model_name == "han" and "sentence_end_ids" not in self.config.model.options:
            ids = {tokenizer.token_to_id(tok) for tok in SENTENCE_END_TOKENS} - {tokenizer.unk_id}
            fields["sentence_end_ids"] = tuple(sorted(ids))
        return fields

    def attach(self, model: AttentionModel) -> None:
        set_vocabulary = getattr(model, "set_vocabulary", None)
        if set_vocabulary is not None:
            set_vocabulary(vocabulary_strings(self.tokenizer))

    def init_model(self, model: AttentionModel, train: EncodedDataset) -> None:
        init_from_data = getattr(model, "init_from_data", None)
        if init_from_data is not None and train.labels is not None:
            init_from_data(train.ids, train.labels)

    # -- raw inputs -------------------------------------------------------------------------------------

    def encode_inputs(self, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        """``texts`` -> ``input_ids (B, T)``, ``attention_mask (B, T)``; an empty text gets one ``[UNK]``."""
        encodings = self.tokenizer.encode_batch(list(items))
        ids = [enc.ids if enc.ids else [self.tokenizer.unk_id] for enc in encodings]
        padded = collate(ids, [0] * len(ids))
        return padded.input_ids, padded.attention_mask
