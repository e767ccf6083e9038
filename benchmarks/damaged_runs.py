"""Damage a trained run directory in every way we know, run every command over it, and count clear errors.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/damaged_runs.py --work /tmp/damaged \
        --json benchmarks/results/damaged-runs.json

One tiny run is trained (bag-attn on 160 synthetic texts, 1 epoch, ``train.threads=1``). Then, for each damage of
:data:`DAMAGES` (weights missing, empty, truncated, garbage, from another run, with a renamed tensor or a NaN;
``labels.json``, ``config.yaml``, ``tokenizer/`` and ``calibration.json`` missing, empty, garbage or edited), a
copy of the run is damaged and every command that reads it (``predict``, ``explain``, ``evaluate``,
``calibrate``, ``export``, ``serve``, ``train --resume``) runs through ``attnkit.cli.main``, in this process.
:data:`ENSEMBLE_DAMAGES` damages a member of a tiny 2-member ensemble (weights truncated or of another
vocabulary, labels or tokenizer damaged) and runs ``train --resume`` over it.
:data:`INPUTS` adds the user-input cases (out-of-range ``--set`` values, an empty ``--config``, ``--out`` naming a
file, evaluation data with unseen labels, calibration data of one class).

Each run is one of:

- ``clear``: exit code 2 and exactly one line on stderr, ``attnkit CMD: error: ...``, that names the file (or
  the setting) at fault;
- ``unnamed``: exit code 2 and one line, but it does not name the file;
- ``traceback``: an exception escaped ``main`` (what a user sees as a traceback), or another exit code;
- ``accepted``: the command ran (a damage it does not read, e.g. ``calibrate`` over a damaged
  ``calibration.json``, which it replaces).

``tests/test_damaged_runs.py`` imports this file and checks every case is ``clear`` (or ``accepted`` where that
is right).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

POSITIVE, NEGATIVE = ["great", "superb", "loved", "wonderful"], ["awful", "boring", "hated", "dull"]
FILLER = ["the", "a", "film", "plot", "was", "and", "very", "it", "acting", "story"]

#: The commands that read a run directory; ``{run}``, ``{work}`` and ``{test}`` are filled in.
LOAD_COMMANDS: dict[str, list[str]] = {
    "predict": ["predict", "{run}", "a great film"],
    "explain": ["explain", "{run}", "a great film", "--format", "json"],
    "evaluate": ["evaluate", "{run}", "--data", "{test}"],
    "calibrate": ["calibrate", "{run}", "--data", "{test}"],
    "export": ["export", "{run}", "--out", "{work}/out.onnx", "--no-check"],
    "serve": ["serve", "{run}"],
}
RESUME = {"resume": ["train", "--resume", "{run}", "--no-progress"]}


def write_data(folder: Path, n: int, seed: int) -> Path:
    """A JSONL file of ``n`` texts whose label is decided by one planted cue word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(5, 15))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    path = folder / f"data-{seed}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def train_tiny_run(work: Path) -> dict[str, Path]:
    """Train the run every damage starts from; returns the run, its train and test files."""
    from attnkit.cli import main

    work.mkdir(parents=True, exist_ok=True)
    train, test = write_data(work, 160, seed=1), write_data(work, 40, seed=2)
    run = work / "pristine"
    shutil.rmtree(run, ignore_errors=True)
    argv = ["train", "--data", str(train), "--test", str(test), "--model", "bag-attn", "--out", str(run),
            "--epochs", "1", "--no-progress", "--set", "tokenizer.vocab_size=100", "--set", "train.threads=1",
            "--set", "model.options={embed_dim: 8, bigram_buckets: 31}", "--set", "optim.batch_size=16"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise RuntimeError(f"training the tiny run failed with exit code {code}")
    return {"run": run, "train": train, "test": test}


def train_tiny_ensemble(work: Path) -> dict[str, Path]:
    """Train a 2-member ensemble of the tiny run (one ``members/<m>`` run each); returns it and its data files."""
    from attnkit.cli import main

    work.mkdir(parents=True, exist_ok=True)
    train, test = write_data(work, 160, seed=1), write_data(work, 40, seed=2)
    run = work / "pristine-ensemble"
    shutil.rmtree(run, ignore_errors=True)
    argv = ["train", "--data", str(train), "--test", str(test), "--model", "bag-attn", "--out", str(run),
            "--epochs", "1", "--no-progress", "--set", "tokenizer.vocab_size=100", "--set", "train.threads=1",
            "--set", "model.options={embed_dim: 8, bigram_buckets: 31}", "--set", "optim.batch_size=16",
            "--set", "model.ensemble=2"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise RuntimeError(f"training the tiny ensemble failed with exit code {code}")
    return {"run": run, "train": train, "test": test}


# -- damages --------------------------------------------------------------------------------------------


@dataclass
class Damage:
    """One way a run directory can be damaged.

    Attributes:
        name: short id.
        apply: ``apply(run_dir)`` damages the copy in place.
        names: the error must name one of these (paths relative to the run directory; "" is the directory).
        commands: the commands that must refuse it (the others are not run).
        accepted: commands that rightly run despite it.
    """

    name: str
    apply: Callable[[Path], object]
    names: tuple[str, ...]
    commands: tuple[str, ...] = tuple(LOAD_COMMANDS)
    accepted: tuple[str, ...] = ()


def _write(relative: str, content: str | bytes) -> Callable[[Path], object]:
    def apply(run: Path) -> None:
        path = run / relative
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return apply


def _remove(relative: str) -> Callable[[Path], object]:
    def apply(run: Path) -> None:
        path = run / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return apply


def _truncate(relative: str, keep: float) -> Callable[[Path], object]:
    def apply(run: Path) -> None:
        path = run / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return apply


def _flip_bytes(relative: str, count: int) -> Callable[[Path], object]:
    def apply(run: Path) -> None:
        path = run / relative
        data = bytearray(path.read_bytes())
        rng = random.Random(count)
        for _ in range(count):  # anywhere after the 8-byte header length
            data[rng.randrange(8, len(data))] ^= 0xFF
        path.write_bytes(bytes(data))

    return apply


def _edit_text(relative: str, old: str, new: str) -> Callable[[Path], object]:
    def apply(run: Path) -> None:
        path = run / relative
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise AssertionError(f"{path} does not contain {old!r}")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return apply


def _edit_tensors(edit: Callable[[dict[str, torch.Tensor]], object]) -> Callable[[Path], object]:
    def apply(run: Path) -> None:
        path = run / "model.safetensors"
        tensors = load_file(str(path))
        edit(tensors)
        save_file(tensors, str(path))

    return apply


def _grow_embedding(tensors: dict[str, torch.Tensor]) -> None:
    """Weights of a run with a larger vocabulary."""
    tensors["embedding.weight"] = torch.cat([tensors["embedding.weight"], torch.zeros(7, 8)])


def _rename_tensor(tensors: dict[str, torch.Tensor]) -> None:
    tensors["head.weights"] = tensors.pop("head.weight")


def _add_nan(tensors: dict[str, torch.Tensor]) -> None:
    tensors["head.bias"][0] = float("nan")


def _foreign_tokenizer(run: Path) -> None:
    """The tokenizer of another run (a smaller vocabulary)."""
    from attnkit.data import TextTokenizer, TokenizerConfig

    shutil.rmtree(run / "tokenizer")
    texts = ["a b c", "d e f", "the film was great"]
    TextTokenizer.fit(texts, TokenizerConfig(level="word", vocab_size=100, max_length=500)).save(
        run / "tokenizer"
    )


W, L, C, T, K = "model.safetensors", "labels.json", "config.yaml", "tokenizer", "calibration.json"
CONFIG_READERS = (*LOAD_COMMANDS, "resume")
NOT_CALIBRATE = tuple(c for c in LOAD_COMMANDS if c != "calibrate")

DAMAGES: list[Damage] = [
    Damage("weights-missing", _remove(W), (W,)),
    Damage("weights-empty", _write(W, b""), (W,)),
    Damage("weights-truncated-half", _truncate(W, 0.5), (W,)),
    Damage("weights-truncated-last-byte", _truncate(W, 0.9999), (W,)),
    Damage("weights-header-only", _truncate(W, 0.002), (W,)),
    Damage("weights-garbage", _write(W, random.Random(0).randbytes(6000)), (W,)),
    Damage("weights-text", _write(W, "not weights\n"), (W,)),
    Damage("weights-zeros", _write(W, bytes(4096)), (W,)),
    Damage("weights-flipped-bytes", _flip_bytes(W, 40), (W,)),
    Damage("weights-other-vocabulary", _edit_tensors(_grow_embedding), (W,)),
    Damage("weights-renamed-tensor", _edit_tensors(_rename_tensor), (W,)),
    Damage("weights-nan", _edit_tensors(_add_nan), (W,)),
    Damage("labels-missing", _remove(L), (L,), CONFIG_READERS),
    Damage("labels-empty", _write(L, ""), (L,), CONFIG_READERS),
    Damage("labels-garbage", _write(L, '["neg", "po'), (L,), CONFIG_READERS),
    Damage("labels-not-a-list", _write(L, '{"neg": 0, "pos": 1}'), (L,), CONFIG_READERS),
    Damage("labels-numbers", _write(L, "[0, 1]"), (L,), CONFIG_READERS),
    Damage("labels-one", _write(L, '["neg"]'), (L,), CONFIG_READERS),
    Damage("labels-duplicate", _write(L, '["neg", "neg"]'), (L,), CONFIG_READERS),
    Damage("labels-extra-class", _write(L, '["neg", "pos", "mixed"]'), (L, W), CONFIG_READERS),
    Damage("config-missing", _remove(C), ("",), CONFIG_READERS),  # "RUN is not an attnkit run directory"
    Damage("config-empty", _write(C, ""), (C,), CONFIG_READERS),
    Damage("config-comment-only", _write(C, "# nothing here\n"), (C,), CONFIG_READERS),
    Damage("config-garbage", _write(C, "model: [bag\n  x: :\n"), (C,), CONFIG_READERS),
    Damage("config-binary", _write(C, b"\x89PNG\r\n\x1a\n\x00\xff"), (C,), CONFIG_READERS),
    Damage("config-a-list", _write(C, "- data\n- model\n"), (C,), CONFIG_READERS),
    Damage("config-unknown-key", _edit_text(C, "optim:", "colour: red\noptim:"), (C,), CONFIG_READERS),
    Damage("config-threads--1", _edit_text(C, "threads: 1", "threads: -1"), (C,), CONFIG_READERS),
    # Trained on a bigger machine: inference ignores a training-time thread count it cannot use.
    Damage("config-threads-100000", _edit_text(C, "threads: 1", "threads: 100000"), (C,), ("resume",), ("predict",)),
    Damage("config-smoothing-5", _edit_text(C, "label_smoothing: 0.0", "label_smoothing: 5"), (C,), CONFIG_READERS),
    Damage("config-bad-option", _edit_text(C, "    embed_dim: 8", "    embed_dim: 8\n    colour: 3"), (C,), CONFIG_READERS),
    Damage("config-embed-dim-edited", _edit_text(C, "embed_dim: 8", "embed_dim: 16"), (C, W)),
    Damage("config-embed-dim-1e9", _edit_text(C, "embed_dim: 8", "embed_dim: 1000000000"), (C,), CONFIG_READERS),
    Damage("config-model-edited", _edit_text(C, "name: bag-attn", "name: cnn-attn"), (C, W)),
    Damage("tokenizer-missing", _remove(T), (T,), CONFIG_READERS),
    Damage("tokenizer-json-missing", _remove(f"{T}/tokenizer.json"), (T,), CONFIG_READERS),
    Damage("tokenizer-json-empty", _write(f"{T}/tokenizer.json", ""), (T,), CONFIG_READERS),
    Damage("tokenizer-json-garbage", _write(f"{T}/tokenizer.json", "{oops"), (T,), CONFIG_READERS),
    Damage("tokenizer-json-truncated", _truncate(f"{T}/tokenizer.json", 0.5), (T,), CONFIG_READERS),
    Damage("tokenizer-config-garbage", _write(f"{T}/tokenizer_config.json", "[1, 2]"), (T,), CONFIG_READERS),
    Damage("tokenizer-other-run", _foreign_tokenizer, (T, W)),
    Damage("calibration-empty-object", _write(K, "{}"), (K,), NOT_CALIBRATE, ("calibrate",)),
    Damage("calibration-garbage", _write(K, "{temperature"), (K,), NOT_CALIBRATE, ("calibrate",)),
    Damage("calibration-empty", _write(K, ""), (K,), NOT_CALIBRATE, ("calibrate",)),
    Damage("calibration-negative", _write(K, '{"temperature": -2.0}'), (K,), NOT_CALIBRATE, ("calibrate",)),
    Damage("calibration-nan", _write(K, '{"temperature": NaN}'), (K,), NOT_CALIBRATE, ("calibrate",)),
    Damage("calibration-string", _write(K, '{"temperature": "1.5"}'), (K,), NOT_CALIBRATE, ("calibrate",)),
]  # fmt: skip

#: Damages of a finished member of an ensemble: ``train --resume`` reassembles the ensemble from every member's
#: files, so it must refuse them in one line naming the member's file (the ensemble's own files are rewritten).
M0, M1 = "members/0", "members/1"
ENSEMBLE_DAMAGES: list[Damage] = [
    Damage("ensemble-weights-truncated-half", _truncate(f"{M1}/{W}", 0.5), (f"{M1}/{W}",), ("resume",)),
    Damage("ensemble-weights-header-only", _truncate(f"{M0}/{W}", 0.002), (f"{M0}/{W}",), ("resume",)),
    Damage("ensemble-weights-other-vocabulary", lambda run: _edit_tensors(_grow_embedding)(run / M1),
           (f"{M1}/{W}",), ("resume",)),
    Damage("ensemble-labels-garbage", _write(f"{M1}/{L}", '["neg", "po'), (f"{M1}/{L}",), ("resume",)),
    Damage("ensemble-labels-not-a-list", _write(f"{M0}/{L}", '{"neg": 0}'), (f"{M0}/{L}",), ("resume",)),
    Damage("ensemble-labels-other-classes", _write(f"{M1}/{L}", '["neg", "so-so"]'), (f"{M1}/{L}",), ("resume",)),
    Damage("ensemble-tokenizer-garbage", _write(f"{M1}/{T}/tokenizer.json", "{oops"), (f"{M1}/{T}",), ("resume",)),
]  # fmt: skip


@dataclass
class Input:
    """A user-input case: a command line (``{run}``, ``{work}``, ``{train}``, ``{test}`` filled in), the files it
    writes first, and what the one error line must name."""

    name: str
    argv: list[str]
    names: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)


def _train_with(*sets: str) -> list[str]:
    argv = ["train", "--data", "{train}", "--out", "{work}/new-run", "--epochs", "1", "--no-progress"]
    for item in sets:
        argv += ["--set", item]
    return argv


INPUTS: list[Input] = [
    Input("set-threads--1", _train_with("train.threads=-1"), ("train.threads",)),
    Input("set-threads-100000", _train_with("train.threads=100000"), ("train.threads",)),
    Input("set-smoothing-5", _train_with("optim.label_smoothing=5"), ("optim.label_smoothing",)),
    Input("set-embed-dim-1e9", _train_with("model.options={embed_dim: 1000000000}"), ("memory",)),
    Input("set-lr-nan", _train_with("optim.lr=.nan"), ("optim.lr",)),
    Input("set-weight-decay--1", _train_with("optim.weight_decay=-1"), ("optim.weight_decay",)),
    Input("set-grad-clip--1", _train_with("optim.grad_clip=-1"), ("optim.grad_clip",)),
    Input("set-max-seconds-0", _train_with("train.max_train_seconds=0"), ("train.max_train_seconds",)),
    Input("set-vocab-1e9", _train_with("tokenizer.vocab_size=1000000000"), ("tokenizer.vocab_size",)),
    Input("set-batch-0", _train_with("optim.batch_size=0"), ("optim.batch_size",)),
    Input("set-unknown-option", _train_with("model.options={colour: 3}"), ("colour",)),
    Input("set-bad-yaml", _train_with("model.options={a: 1"), ("model.options",)),
    Input("config-empty", ["train", "--config", "{work}/empty.yaml", "--out", "{work}/new-run"],
          ("empty.yaml",), {"empty.yaml": ""}),
    Input("config-garbage", ["train", "--config", "{work}/bad.yaml", "--out", "{work}/new-run"],
          ("bad.yaml",), {"bad.yaml": "optim: {lr: [1\n"}),
    Input("out-is-a-file", ["train", "--data", "{train}", "--out", "{work}/a-file", "--epochs", "1"],
          ("a-file",), {"a-file": "x"}),
    Input("resume-nothing", ["train", "--resume", "{work}/no-such-run"], ("no-such-run",)),
    Input("evaluate-unseen-labels", ["evaluate", "{run}", "--data", "{work}/unseen.jsonl"], ("unseen.jsonl",),
          {"unseen.jsonl": '{"text": "a great film", "label": "pos"}\n{"text": "dull", "label": "so-so"}\n'}),
    Input("evaluate-mixed-int-labels", ["evaluate", "{run}", "--data", "{work}/mixed.jsonl"], ("mixed.jsonl",),
          {"mixed.jsonl": '{"text": "a great film", "label": 1}\n{"text": "dull", "label": "neg"}\n'}),
    Input("evaluate-missing-data", ["evaluate", "{run}", "--data", "{work}/nothing.jsonl"], ("nothing.jsonl",)),
    Input("calibrate-one-class", ["calibrate", "{run}", "--data", "{work}/one.jsonl"], ("one.jsonl",),
          {"one.jsonl": '{"text": "a great film", "label": "pos"}\n{"text": "superb", "label": "pos"}\n'}),
    Input("predict-no-run", ["predict", "{work}/no-such-run", "text"], ("no-such-run",)),
    Input("predict-run-is-a-file", ["predict", "{work}/a-file", "text"], ("a-file",), {"a-file": "x"}),
    Input("export-out-is-a-folder", ["export", "{run}", "--out", "{work}", "--no-check"], ("--out",)),
]  # fmt: skip


# -- running one command --------------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")


@dataclass
class Outcome:
    """What one command did: ``kind`` is clear / unnamed / traceback / accepted (see the module docstring)."""

    case: str
    command: str
    kind: str
    code: int | None
    message: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "command": self.command,
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
        }


@contextlib.contextmanager
def _no_server() -> Iterator[None]:
    """``serve`` over a run that loads would block: stop right before the server starts."""
    import attnkit.serve

    def refuse(*_: object, **__: object) -> None:
        raise _Served

    original = attnkit.serve.run_server
    attnkit.serve.run_server = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        attnkit.serve.run_server = original  # type: ignore[assignment]


class _Served(BaseException):
    """Raised instead of starting the server: the run loaded."""


def run_cli(argv: list[str], names: tuple[str, ...], case: str, command: str) -> Outcome:
    """Run ``attnkit.cli.main(argv)`` in this process and classify what a user would see."""
    from attnkit.cli import main

    err, out = io.StringIO(), io.StringIO()
    code: int | None
    try:
        with _no_server(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    except _Served:
        return Outcome(case, command, "accepted", 0, "")
    except SystemExit as exit_:  # argparse usage errors
        return Outcome(case, command, "traceback", None, f"SystemExit({exit_.code}): {err.getvalue()[-300:]}")
    except BaseException as exc:  # anything escaping main is what a user sees as a traceback
        lines = traceback.format_exception_only(type(exc), exc)
        return Outcome(case, command, "traceback", None, "".join(lines).strip()[-300:])
    lines = [line for line in err.getvalue().splitlines() if line.strip() and not _LOG_LINE.match(line)]
    if code == 0:
        return Outcome(case, command, "accepted", 0, "")
    message = " // ".join(lines)
    if code != 2 or len(lines) != 1 or not lines[0].startswith(f"attnkit {argv[0]}: error: "):
        return Outcome(case, command, "traceback", code, message[-300:])
    kind = "clear" if any(name in lines[0] for name in names) else "unnamed"
    return Outcome(case, command, kind, code, lines[0])


def fill(argv: list[str], **paths: Path) -> list[str]:
    """Replace ``{run}``, ``{work}``... (not ``str.format``: option values hold braces, ``{embed_dim: 8}``)."""
    filled = []
    for part in argv:
        for key, path in paths.items():
            part = part.replace("{" + key + "}", str(path))
        filled.append(part)
    return filled


def damaged_copy(pristine: Path, work: Path, damage: Damage) -> Path:
    run = work / "damaged" / damage.name
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(pristine, run)
    if not (run / K).exists() and damage.names[0] == K:  # a run may have no calibration.json to damage
        (run / K).write_text('{"temperature": 1.0}', encoding="utf-8")
    damage.apply(run)
    return run


def run_damage(damage: Damage, command: str, paths: dict[str, Path], work: Path) -> Outcome:
    """Damage a fresh copy of the run and run ``command`` over it."""
    run = damaged_copy(paths["run"], work, damage)
    argv = fill({**LOAD_COMMANDS, **RESUME}[command], run=run, work=work, test=paths["test"])
    names = tuple(str(run / name) for name in damage.names)
    return run_cli(argv, names, damage.name, command)


def run_input(case: Input, paths: dict[str, Path], work: Path) -> Outcome:
    folder = work / "inputs" / case.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, text in case.files.items():
        (folder / name).write_text(text, encoding="utf-8")
    argv = fill(case.argv, run=paths["run"], work=folder, train=paths["train"], test=paths["test"])
    return run_cli(argv, case.names, case.name, argv[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/attnkit-damaged-runs"))
    parser.add_argument("--json", type=Path, help="write every outcome and the counts here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    paths = train_tiny_run(args.work)
    outcomes = [run_damage(d, c, paths, args.work) for d in DAMAGES for c in (*d.commands, *d.accepted)]
    outcomes += [run_input(case, paths, args.work) for case in INPUTS]
    ensemble = train_tiny_ensemble(args.work)
    outcomes += [run_damage(d, "resume", ensemble, args.work) for d in ENSEMBLE_DAMAGES]
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
    expected_accepted = sum(len(d.accepted) for d in DAMAGES)
    for outcome in outcomes:
        if outcome.kind != "clear" and not (outcome.kind == "accepted" and outcome.command == "calibrate"):
            print(f"{outcome.kind:10} {outcome.case} / {outcome.command}: {outcome.message}")
    summary = {
        "cases": len(outcomes),
        "damages": len(DAMAGES),
        "ensemble_damages": len(ENSEMBLE_DAMAGES),
        "inputs": len(INPUTS),
        "counts": counts,
        "expected_accepted": expected_accepted,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {**summary, "outcomes": [o.to_json_dict() for o in outcomes]}
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
