"""The ``attnkit`` command: a thin adapter from subcommands to library functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnkit import __version__

if TYPE_CHECKING:
    from attnkit.data.text.sources import InputRows
    from attnkit.predictor import Predictor

Handler = Callable[[argparse.Namespace], int]


def _cmd_example(args: argparse.Namespace) -> int:
    from attnkit.example import format_worked_example, worked_example

    example = worked_example()
    if args.json:
        print(json.dumps(example.to_json_dict(), indent=2))
    else:
        print(format_worked_example(example))
    return 0


def _add_example(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("example", help="the seed article's worked attention example, done right")
    p.add_argument("--json", action="store_true", help="print JSON (tokens, similarities, weights, output)")
    p.set_defaults(handler=_cmd_example)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from attnkit.bench import attention as bench_attention

    p = sub.add_parser("bench", help="benchmarks")
    bench_sub = p.add_subparsers(dest="bench_name", required=True)
    pa = bench_sub.add_parser("attention", help="time and memory of every attention variant vs torch SDPA")
    bench_attention.add_arguments(pa)
    pa.set_defaults(handler=bench_attention.main)


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when there is one), cpu, cuda[:N] or mps (default: auto)",
    )


def _thread_setting(value: str) -> int | str:
    from attnkit.threads import check_thread_setting

    try:
        setting = check_thread_setting(value, "--threads", allow_null=False)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    assert setting is not None
    return setting


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        dest="compute_threads",
        metavar="N|auto",
        type=_thread_setting,
        default="auto",
        help="CPU compute threads: auto (the cores other processes leave idle) or a number (default: auto)",
    )


def _is_main_process() -> bool:
    """False in the non-zero ranks of a ``torchrun`` job: only rank 0 prints results."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _cmd_train(args: argparse.Namespace) -> int:
    from attnkit.api import build_config
    from attnkit.runs import check_new_run_dir
    from attnkit.train.loop import fit

    if args.resume:
        given = [
            flag
            for flag, value in (
                ("--out", args.out), ("--config", args.config), ("--data", args.data), ("--test", args.test),
                ("--model", args.model), ("--epochs", args.epochs), ("--seed", args.seed),
                ("--device", args.device), ("--set", args.set), ("--overwrite", args.overwrite or None),
            )
            if value is not None
        ]  # fmt: skip
        if given:
            raise UserError(
                f"--resume RUN_DIR continues a run with its own config; drop {', '.join(given)} (or train a new "
                "run with --out)"
            )
        result = fit(build_config(), args.resume, resume=True)
    else:
        if args.out is None:
            raise UserError("--out RUN_DIR is required (or --resume RUN_DIR)")
        out = check_new_run_dir(args.out, overwrite=args.overwrite)
        # Flags win over the YAML file; --set wins over both.
        flags = [("data.train", args.data), ("data.test", args.test)]
        flags += [("train.progress", False if args.no_progress else None)]
        overrides = [f"{key}={json.dumps(value)}" for key, value in flags if value is not None]
        config = build_config(
            config=args.config,
            model=args.model,
            epochs=args.epochs,
            seed=args.seed,
            device=args.device,
            overrides=overrides + (args.set or []),
        )
        result = fit(config, out)
    if not _is_main_process():
        return 0
    summary = {k: result.metrics[k]["accuracy"] for k in ("val", "test") if k in result.metrics}
    print(
        json.dumps(
            {
                "run_dir": str(result.run_dir),
                "accuracy": summary,
                "train_seconds": round(result.metrics["train_seconds"], 1),
            }
        )
    )
    return 0


def _model_choices() -> str:
    from attnkit.models.registry import available_models

    return ", ".join(available_models())


def _add_train(sub: argparse._SubParsersAction) -> None:
    from attnkit.train.config import ModelSection, TrainConfig

    p = sub.add_parser(
        "train",
        help="train a classifier of texts, images or audio (also under torchrun for several processes)",
    )
    p.add_argument("--data", help="training data: file, folder, or built-in name (imdb, sst2, embedded, ...)")
    p.add_argument("--test", help="held-out test data (never used for model selection)")
    p.add_argument(
        "--model",
        help=f"model: {_model_choices()} (default {ModelSection.name}: the most accurate for little time in "
        "BENCHMARKS.md; bilstm-attn is the article's Embedding -> BiLSTM -> attention -> Dense)",
    )
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--epochs", type=int, help=f"training epochs (default {TrainConfig.epochs})")
    p.add_argument("--seed", type=int, help=f"random seed (default {TrainConfig.seed})")
    p.add_argument("--device", help="auto (default: a GPU when there is one), cpu or cuda[:N]")
    p.add_argument(
        "--config",
        help="a YAML file or a shipped config's name (attnkit config list); attnkit config show prints every key",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config key, e.g. optim.lr=1e-3 (repeatable; keys: attnkit config show)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="train into an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from attnkit.api import build_config
    from attnkit.configs import shipped_configs

    if args.config_command == "list":
        for name in shipped_configs():
            print(name)
        return 0
    config = build_config(config=args.config, model=args.model, overrides=args.set or [])
    raw = config.to_dict()
    if args.model_options:
        from attnkit.models.registry import model_config_from_dict

        fields = model_config_from_dict(
            config.model_name, config.model.options, modality=config.modality
        ).to_dict()
        for key in (
            "vocab_size",
            "num_classes",
            "max_length",
            "image_size",
            "channels",
        ):  # set from the data and the tokenizer
            fields.pop(key, None)
        raw["model"]["options"] = fields
    print(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), end="")
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the full run config with its defaults, or list shipped configs")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    ps = config_sub.add_parser(
        "show", help="the resolved config as YAML: every key --set accepts, with its value"
    )
    ps.add_argument("--config", help="start from this YAML file or shipped config (default: the defaults)")
    ps.add_argument("--model", help=f"model: {_model_choices()}")
    ps.add_argument("--set", action="append", metavar="KEY=VALUE", help="overrides, as for train")
    ps.add_argument(
        "--model-options",
        action="store_true",
        help="also fill model.options with every field of the model's config and its default",
    )
    ps.set_defaults(handler=_cmd_config)
    pl = config_sub.add_parser("list", help="the shipped configs, by name (use with --config NAME)")
    pl.set_defaults(handler=_cmd_config)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from attnkit.predictor import evaluate_run

    report = evaluate_run(args.run_dir, args.data, device=args.device)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{args.data}: n={report['n']}  accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}"
        f"  ECE {report['ece']:.4f}"
        + (f" (uncalibrated {report['ece_uncalibrated']:.4f})" if "ece_uncalibrated" in report else "")
    )
    print(f"{'class':<28}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for label, m in report["per_class"].items():
        print(f"{label:<28}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>9}")
    print("confusion matrix (rows = true, columns = predicted):")
    for label, row in zip(report["labels"], report["confusion_matrix"], strict=True):
        print(f"  {label:<26}" + " ".join(f"{v:>6}" for v in row))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class P/R, confusion matrix, ECE")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="labelled data: file, folder or built-in name[:split]")
    p.add_argument("--json", action="store_true")
    _add_device(p)
    _add_threads(p)
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from attnkit.predictor import calibrate_run

    calibration = calibrate_run(args.run_dir, args.data, device=args.device)
    if args.json:
        print(json.dumps(calibration.to_dict(), indent=2))
        return 0
    print(calibration.describe())  # the decision (fitted, clipped, skipped, kept at 1), its numbers and why
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="fit the run's temperature (probabilities only; labels never change)"
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--data", help="labelled data to fit on (default: the run's validation split); never the test data"
    )
    p.add_argument("--json", action="store_true")
    _add_device(p)
    _add_threads(p)
    p.set_defaults(handler=_cmd_calibrate)


def _read_texts(args: argparse.Namespace, text_field: str | None = None) -> InputRows:
    """The rows to predict or explain: ``--file`` read like training data, else the arguments, else stdin lines.

    Rows that cannot be read (empty text, invalid JSON, a ragged CSV row) are reported on stderr and left out.
    """
    from attnkit.data.text.sources import InputRows, read_rows

    if args.file and args.texts:
        raise UserError("give texts as arguments or with --file F, not both")
    if args.file:
        inputs = read_rows(args.file, text_field=args.text_field or text_field)
    elif args.texts:
        inputs = InputRows.from_texts(args.texts)
    else:
        lines = [] if sys.stdin.isatty() else [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        if not lines:
            raise UserError("give texts as arguments, with --file F, or on standard input (one per line)")
        inputs = InputRows.from_texts(lines, source="<stdin>")
    if inputs.skipped:
        print(f"attnkit {args.command}: {inputs.skipped_summary()}", file=sys.stderr)
    return inputs


#: What one raw input of each file-based modality is called in messages.
_FILE_NOUNS = {"image": "image", "audio": "recording"}


def _file_noun(modality: str) -> str:
    return _FILE_NOUNS.get(modality, f"{modality} file")


def _cmd_predict(args: argparse.Namespace) -> int:
    from attnkit.batch_predict import check_output_path, predict_files, predict_rows, write_predictions
    from attnkit.predictor import Predictor

    if args.out is not None:
        check_output_path(args.out)
        if args.file and Path(args.out).expanduser().resolve() == Path(args.file).expanduser().resolve():
            raise UserError(f"--out {args.out} is the input file; write the predictions to another file")
    predictor = Predictor(args.run_dir, device=args.device, max_image_pixels=args.max_image_pixels)
    from_files = predictor.task.input_suffixes is not None  # images, recordings: files, not texts
    if from_files:
        noun = _file_noun(predictor.modality)
        paths = [*args.texts, *([args.file] if args.file else [])]
        if not paths:
            raise UserError(f"give the {noun}s to predict as arguments (files or folders of them)")
        batch = predict_files(predictor, paths)
        if batch.inputs.skipped:
            print(f"attnkit predict: {batch.inputs.skipped_summary()}", file=sys.stderr)
        if not batch.predictions:
            raise UserError(f"no readable {noun} to predict")
    else:
        batch = predict_rows(predictor, _read_texts(args, predictor.config.data.text_field))
    if args.out is not None:
        path = write_predictions(batch, args.out)
        print(f"wrote {path} ({len(batch.predictions)} rows)", file=sys.stderr)
        return 0
    for prediction in batch.predictions:
        key = "file" if from_files else "text"
        print(json.dumps({key: prediction.text, **prediction.to_json_dict()}, ensure_ascii=False))
    return 0


_FILE_HELP = (
    "read texts from a file, like train --data: CSV/TSV with a header, JSONL (.gz), .json, Parquet, .txt (one "
    "text per line) or a folder of .txt files; a label column is kept, never read as text"
)
_TEXT_FIELD_HELP = (
    "text column of --file (default: the run's data.text_field, else text, sentence, review...)"
)


def _add_max_image_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        metavar="N",
        help="image runs: refuse images declaring more pixels than N (default: the run's image.max_pixels, "
        "64,000,000 unless set when training)",
    )


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict labels: JSON lines, or the rows with predictions (--out)")
    p.add_argument("run_dir")
    p.add_argument(
        "texts",
        nargs="*",
        help="texts to classify (else --file or standard input, one per line); for an image or audio run, image "
        "or audio files (wav, flac, ogg) or folders of them",
    )
    p.add_argument(
        "--file", help=_FILE_HELP + "; for an image or audio run, one such file or a folder of them"
    )
    p.add_argument("--text-field", help=_TEXT_FIELD_HELP)
    p.add_argument(
        "--out",
        help="write the input rows, every column kept, plus predicted_label and one prob_<label> column per "
        "class, in input order, to .csv, .jsonl or .parquet (default: JSON lines on stdout)",
    )
    _add_max_image_pixels(p)
    _add_device(p)
    _add_threads(p)
    p.set_defaults(handler=_cmd_predict)


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from attnkit.demo import run_demo
    from attnkit.explain.render import render_terminal

    console = Console()
    if args.task == "vision":
        from attnkit.demo import run_vision_demo

        result = run_vision_demo(args.out or "runs/demo-vision", epochs=args.epochs or 2, seed=args.seed)
        test = result.metrics.get("test", result.metrics["val"])
        console.print(
            f"[bold]Fashion-MNIST test accuracy {test['accuracy']:.4f}[/bold] (macro-F1 {test['macro_f1']:.4f}, "
            f"n = {test['n']}), trained {result.metrics['train_seconds']:.0f} s"
        )
        console.print(f"report (one test image per class, with heatmaps): {result.report_path}")
        return 0
    result = run_demo(
        args.out or "runs/demo", epochs=args.epochs, seed=args.seed, model=args.model, baseline=args.baseline
    )
    test = result.metrics.get("test", result.metrics["val"])
    console.print(
        f"[bold]{args.model}: held-out test accuracy {test['accuracy']:.4f}[/bold] (macro-F1 "
        f"{test['macro_f1']:.4f}, n = {test['n']}), trained {result.metrics['train_seconds']:.0f} s"
    )
    if result.baseline is not None:
        base = result.baseline
        console.print(
            f"baseline, {base['name']} (fitted on train + validation): {base['accuracy']:.4f} on the same "
            f"{base['n']} reviews, {base['train_seconds']:.0f} s"
        )
    if args.model != "bilstm-attn":
        console.print(
            "the seed article's BiLSTM + attention on the same data: attnkit demo --model bilstm-attn"
        )
    console.print(
        "Test reviews, tokens shaded by their attention weight:"
        if args.model == "bilstm-attn"
        else "Test reviews, tokens shaded by their exact share of the decision (attention-value):"
    )
    render_terminal([item.to_json_dict() for item in result.examples], console)
    console.print(f"report: {result.report_path}")
    return 0


#: The text demo's models (attnkit.demo.DEMO_MODELS, repeated so that --help does not import torch).
DEMO_MODEL_CHOICES = ("nb-attn", "bilstm-attn")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train, evaluate and explain on the embedded corpus (offline), or on Fashion-MNIST (--task vision)",
    )
    p.add_argument(
        "--task",
        choices=["text", "vision"],
        default="text",
        help="text: the embedded Chinese reviews, offline (default); vision: Fashion-MNIST from $ATTNKIT_DATA "
        "(else downloaded once, checksum verified), attention over image regions",
    )
    p.add_argument("--out", help="run directory (default runs/demo, or runs/demo-vision)")
    p.add_argument(
        "--epochs", type=int, help="epochs (default 2 for nb-attn, 4 for bilstm-attn, 2 for vision)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--model",
        choices=DEMO_MODEL_CHOICES,
        default=DEMO_MODEL_CHOICES[0],
        help="text demo: nb-attn (default, the most accurate: attention over character n-gram evidence) or "
        "bilstm-attn (the seed article's Embedding -> BiLSTM -> attention -> Dense, over Chinese words)",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="text demo: skip the character n-gram TF-IDF + logistic regression shown beside the model",
    )
    p.set_defaults(handler=_cmd_demo)


def _method_list(values: list[str] | None) -> list[str]:
    """``--method a --method b,c`` -> ``[a, b, c]`` (default: attention)."""
    names = [name.strip() for value in values or ["attention"] for name in value.split(",") if name.strip()]
    return names or ["attention"]


def _numbered_paths(out: Path, count: int) -> list[Path]:
    """``out`` for one item, else ``out-0``, ``out-1``, ... (zero-padded to sort in order) with the same suffix."""
    if count == 1:
        return [out]
    width = len(str(count - 1))
    return [out.with_name(f"{out.stem}-{i:0{width}d}{out.suffix}") for i in range(count)]


def _cmd_explain(args: argparse.Namespace) -> int:
    from attnkit.atomic import write_text
    from attnkit.explain import explain, render
    from attnkit.predictor import Predictor

    if args.format is None:  # from the --out suffix (explanation.html, .png, .json), else the terminal
        by_suffix = {".html": "html", ".htm": "html", ".png": "png", ".json": "json"}
        suffix_format = by_suffix.get(Path(args.out).suffix.lower()) if args.out else "terminal"
        if suffix_format is None:
            raise UserError(
                f"cannot tell the format from --out {args.out}; end it in .html, .png or .json, or give --format"
            )
        args.format = suffix_format
    suffix = {"html": "html", "png": "png", "head-view": "html", "model-view": "html"}
    if args.format in suffix and args.out is None:
        args.out = (
            f"explanation.{suffix[args.format]}" if args.format in ("html", "png") else f"{args.format}.html"
        )
    predictor = Predictor(args.run_dir, device=args.device, max_image_pixels=args.max_image_pixels)
    if predictor.task.input_suffixes is not None:  # images, recordings: files, not texts
        return _explain_files(args, predictor)
    written: list[Path] = []
    texts = _read_texts(args, predictor.config.data.text_field).texts
    has_layers = predictor.model.has_layer_attentions()
    if args.format in ("head-view", "model-view") and not has_layers:
        raise UserError(
            f"--format {args.format} needs a model with self-attention layers (the transformer); this run's "
            f"model is {predictor.config.model.label}"
        )
    with_layers = args.layers or (has_layers and args.format in ("html", "head-view", "model-view"))
    explanations = explain(
        predictor,
        texts,
        _method_list(args.method),
        target=args.target,
        layers=with_layers,
        ig_steps=args.ig_steps,
    )
    payload = [e.to_json_dict() for e in explanations]

    if args.format == "terminal":
        render.render_terminal(payload)
    elif args.format == "json":
        text = render.render_json(payload)
        if args.out:
            write_text(Path(args.out), text + "\n")
            written.append(Path(args.out))
        else:
            print(text)
    elif args.format == "html":
        write_text(Path(args.out), render.render_html(payload))
        written.append(Path(args.out))
    else:  # one file per text
        for item, path in zip(payload, _numbered_paths(Path(args.out), len(payload)), strict=True):
            if args.format == "png":
                render.render_png(item, path)
            else:
                page = (
                    render.head_view_html(item)
                    if args.format == "head-view"
                    else render.model_view_html(item)
                )
                write_text(path, page)
            written.append(path)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _explain_files(args: argparse.Namespace, predictor: Predictor) -> int:
    """``attnkit explain`` for a run whose inputs are files: per-unit scores of images (boxes) or recordings
    (frames), in the modality's renderers; an unreadable file is skipped and named."""
    from attnkit.atomic import write_text
    from attnkit.batch_predict import read_input_files

    noun = _file_noun(predictor.modality)
    if args.format in ("head-view", "model-view") or args.layers:
        raise UserError(
            f"{'--layers' if args.layers else '--format ' + args.format} is for text runs; an {predictor.modality} "
            "run's explanations are terminal, html, png or json"
        )
    if args.file or args.text_field:
        raise UserError(f"give the {noun}s (files or folders) as arguments; --file is for text runs")
    if not args.texts:
        raise UserError(f"give the {noun}s to explain as arguments (files or folders of them)")
    contents, names, skipped = read_input_files(predictor, list(args.texts))
    for item in skipped:  # decoded as the training inputs were; an unreadable one is skipped
        print(f"attnkit explain: skipped {item.location}: {item.reason}", file=sys.stderr)
    if not contents:
        raise UserError(f"no readable {noun} to explain")
    methods = _method_list(args.method)
    if predictor.modality == "audio":
        from attnkit.explain import explain_recordings
        from attnkit.explain import render_audio as renderer

        found: Sequence[Any] = explain_recordings(
            predictor, contents, methods=methods, target=args.target, ig_steps=args.ig_steps, sources=names
        )
        terminal, to_json = renderer.render_audio_terminal, renderer.render_audio_json
        to_html, to_png = renderer.render_audio_html, renderer.render_audio_png
    else:
        from attnkit.explain import explain_images
        from attnkit.explain import render_images as renderer_images

        found = explain_images(
            predictor, contents, methods, target=args.target, ig_steps=args.ig_steps, sources=names
        )
        terminal, to_json = renderer_images.render_image_terminal, renderer_images.render_image_json
        to_html, to_png = renderer_images.render_image_html, renderer_images.render_image_png
    items = [e.to_json_dict() for e in found]
    written: list[Path] = []
    if args.format == "terminal":
        terminal(items)
    elif args.format == "json":
        text = to_json(items)
        if args.out:
            write_text(Path(args.out), text + "\n")
            written.append(Path(args.out))
        else:
            print(text)
    elif args.format == "html":
        write_text(Path(args.out), to_html(items))
        written.append(Path(args.out))
    else:  # png: one file per input
        for item, path in zip(items, _numbered_paths(Path(args.out), len(items)), strict=True):
            to_png(item, path)
            written.append(path)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="the prediction plus per-token (text), per-box (image) or per-frame (audio) importance by attention, "
        "gradients, IG, LOO",
    )
    p.add_argument("run_dir")
    p.add_argument(
        "texts",
        nargs="*",
        help="texts to explain (else --file or standard input, one per line); for an image or audio run, image or "
        "audio files or folders of them",
    )
    p.add_argument("--file", help=_FILE_HELP)
    p.add_argument("--text-field", help=_TEXT_FIELD_HELP)
    p.add_argument(
        "--method",
        action="append",
        help="attention, attention-value, gradient, grad-input, ig, loo or all (repeat or comma-separate; default "
        "attention; transformers and ViTs add rollout to attention; for images loo is occlusion of each box, for "
        "recordings it deletes the frame)",
    )
    p.add_argument(
        "--format",
        choices=("terminal", "html", "png", "json", "head-view", "model-view"),
        default=None,
        help="default: from the --out suffix (.html, .png, .json), else terminal. head-view / model-view: "
        "standalone pages of every layer and head (text transformer). For an image run, png shows per method "
        "the image, the heatmap and the overlay; html switches between methods and shows a box's score on hover. "
        "For an audio run, png shows the spectrogram with one score strip per method under it; html plays the "
        "clip and follows it on the strips",
    )
    p.add_argument(
        "--out",
        help="output file (html/png default explanation.html/.png; json default stdout). png, head-view and "
        "model-view write one file per text, image or recording: with several, OUT-0.png, OUT-1.png, ... in input order "
        "(numbers zero-padded to the same width); every file written is printed",
    )
    p.add_argument("--target", help="explain this label instead of the predicted one")
    p.add_argument(
        "--layers", action="store_true", help="include every layer/head attention map (text transformer)"
    )
    _add_max_image_pixels(p)
    p.add_argument("--ig-steps", type=int, default=50, help="Integrated Gradients steps (default 50)")
    _add_device(p)
    _add_threads(p)
    p.set_defaults(handler=_cmd_explain)


def _cmd_faithfulness(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from attnkit.explain.faithfulness import faithfulness_report, format_report, plot_report, read_inputs
    from attnkit.explain.synthetic import plausibility, read_cue_task
    from attnkit.predictor import Predictor

    predictor = Predictor(args.run_dir, device=args.device)
    inputs, labels = read_inputs(predictor, args.data)  # texts, images (H, W, C) uint8 or waveforms (S,)
    total = min(args.n, len(inputs))
    unit = "text" if predictor.modality == "text" else _file_noun(predictor.modality)
    bar = tqdm(total=total, desc="faithfulness", unit=unit, disable=args.no_progress, file=sys.stderr)

    def advance(done: int) -> None:
        bar.update(done - bar.n)

    with bar:
        report = faithfulness_report(
            predictor,
            inputs,
            labels=labels,
            methods=_method_list(args.method or ["all"]),
            n=args.n,
            seed=args.seed,
            ig_steps=args.ig_steps,
            source=args.data,
            progress=advance,
        )
    cue_examples = read_cue_task(args.data) if predictor.modality == "text" else None
    if cue_examples is not None:
        report.plausibility = plausibility(
            predictor, cue_examples, _method_list(args.method or ["all"]), n=args.n, seed=args.seed,
            ig_steps=args.ig_steps,
        )  # fmt: skip
    if args.plot:
        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report.to_json_dict(), indent=2))
    else:
        print(format_report(report))
    return 0


def _add_faithfulness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "faithfulness",
        help="ERASER comprehensiveness (deletion)/sufficiency, insertion, flips and rank agreement",
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--data",
        required=True,
        help="labelled data to measure on: file, folder or built-in name[:split] (fashion-mnist:test for images, "
        "fsdd:test for speech)",
    )
    p.add_argument("--n", type=int, default=500, help="texts, images or recordings sampled (default 500)")
    p.add_argument("--method", action="append", help="methods to measure (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", help="write the deletion, sufficiency and insertion curves to this PNG")
    p.add_argument("--no-progress", action="store_true")
    _add_device(p)
    _add_threads(p)
    p.set_defaults(handler=_cmd_faithfulness)


def _cmd_data_synthetic(args: argparse.Namespace) -> int:
    from attnkit.explain.synthetic import write_cue_task

    paths = write_cue_task(
        args.out_dir, train=args.train, test=args.test, seed=args.seed, num_classes=args.classes
    )
    print(json.dumps({split: str(path) for split, path in paths.items()}))
    return 0


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from attnkit.data import format_report, inspect_source
    from attnkit.data.inspect_media import format_media_report, inspect_media
    from attnkit.data.modality import source_modality

    if source_modality(args.source) is not None:  # a built-in image or audio dataset, or a folder of them
        report = inspect_media(args.source, test=args.test, allow_download=not args.offline)
        print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_media_report(report))
        return 0
    report = inspect_source(args.source, test=args.test, allow_download=not args.offline)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    pi = data_sub.add_parser(
        "inspect", help="label counts, lengths or sizes, duplicates, train/test overlap (text, images, audio)"
    )
    pi.add_argument("source")
    pi.add_argument("--test", help="a test source to check for overlap with the training data")
    pi.add_argument(
        "--offline",
        action="store_true",
        help="never download built-in data; list the splits not found locally",
    )
    pi.add_argument("--json", action="store_true")
    pi.set_defaults(handler=_cmd_data_inspect)
    ps = data_sub.add_parser("synthetic", help="write a planted-cue task (train/test JSONL with cue spans)")
    ps.add_argument("out_dir")
    ps.add_argument("--train", type=int, default=4000)
    ps.add_argument("--test", type=int, default=500)
    ps.add_argument("--classes", type=int, default=2)
    ps.add_argument("--seed", type=int, default=0)
    ps.set_defaults(handler=_cmd_data_synthetic)


def _cmd_serve(args: argparse.Namespace) -> int:
    from attnkit.serve import (
        ConnectionLimits,
        Limits,
        ServeConfig,
        check_exposure,
        check_port_free,
        load_backend,
        read_api_key,
        run_server,
    )

    limits = Limits(
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        max_explain_texts=args.max_explain_texts,
        max_images=args.max_images,
        max_explain_images=args.max_explain_images,
        max_image_body_bytes=args.max_image_body_bytes,
        max_image_pixels=args.max_image_pixels,
        max_audios=args.max_audios,
        max_explain_audios=args.max_explain_audios,
        max_audio_body_bytes=args.max_audio_body_bytes,
        max_audio_channels=args.max_audio_channels,
    )
    connections = ConnectionLimits(
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        keep_alive_timeout_s=args.keep_alive_timeout,
        max_connections=args.max_connections,
        max_header_bytes=args.max_header_bytes,
        backlog=args.backlog,
    )
    config = ServeConfig(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_pending_explains=args.max_pending_explains,
        explain_workers=args.explain_workers,
        explain_threads=args.explain_threads,
        explain_timeout_s=args.explain_timeout,
        explain_isolation=args.explain_isolation,
        explain_nice=args.explain_nice,
        predict_threads=args.threads,
        limits=limits,
        api_key=read_api_key(args.api_key_file),
        allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        allow_unauthenticated=args.allow_unauthenticated,
        connections=connections,
    )
    config = check_exposure(config, args.host)  # before loading the model: a refused bind fails at once
    check_port_free(args.host, args.port)
    backend = load_backend(
        args.run_dir, args.backend, onnx_path=args.onnx, threads=args.threads, device=args.device
    )
    run_server(backend, config, host=args.host, port=args.port)
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    def port_number(value: str) -> int:
        try:
            port = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise argparse.ArgumentTypeError(f"{port} is not a port: use 0..65535 (0: any free port)")
        return port

    p = sub.add_parser(
        "serve",
        help="REST API and web page for a trained run (FastAPI on uvicorn)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=port_number, default=8000, help="TCP port, 0..65535")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--onnx", help="ONNX file for --backend onnx (default RUN_DIR/model.onnx)")
    _add_device(p)  # where the PyTorch model runs: the same names as predict/explain/evaluate
    p.add_argument(
        "--threads",
        type=int,
        help="compute threads of /predict (default: auto, at most the cores the explain workers leave, fewer "
        "while other processes keep cores busy)",
    )
    p.add_argument("--max-batch-size", type=int, default=32, help="texts per model call")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="wait for a batch to fill")
    p.add_argument("--max-queue", type=int, default=1024, help="texts waiting before 503")
    p.add_argument("--max-texts", type=int, default=64, help="texts per /predict request")
    p.add_argument("--max-explain-texts", type=int, default=8, help="texts per /explain request")
    p.add_argument("--max-chars", type=int, default=20_000, help="characters per text")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request body limit in bytes")
    g = p.add_argument_group("images (image runs: multipart uploads or base64 JSON)")
    g.add_argument("--max-images", type=int, default=16, help="images per /predict request")
    g.add_argument("--max-explain-images", type=int, default=2, help="images per /explain request")
    g.add_argument(
        "--max-image-body-bytes",
        type=int,
        default=20_000_000,
        help="request body limit of an image run in bytes (also the most one image file may have)",
    )
    g.add_argument(
        "--max-image-pixels",
        type=int,
        default=40_000_000,
        help="pixels (width x height) an image may declare; larger ones get 413 before decoding",
    )
    g = p.add_argument_group("recordings (audio runs: multipart uploads or base64 JSON)")
    g.add_argument("--max-audios", type=int, default=16, help="recordings per /predict request")
    g.add_argument("--max-explain-audios", type=int, default=2, help="recordings per /explain request")
    g.add_argument(
        "--max-audio-body-bytes",
        type=int,
        default=20_000_000,
        help="request body limit of an audio run in bytes (also the most one audio file may have)",
    )
    g.add_argument(
        "--max-audio-channels",
        type=int,
        default=32,
        help="channels a recording may have (mixed down to mono); more get 413",
    )
    g = p.add_argument_group("explanations (their own workers, apart from /predict)")
    g.add_argument("--explain-workers", type=int, default=1, help="explanations computed at once")
    g.add_argument("--explain-threads", type=int, default=1, help="compute threads per explain worker")
    g.add_argument(
        "--max-pending-explains", type=int, default=4, help="explanations running or waiting before 503"
    )
    g.add_argument(
        "--explain-timeout", type=float, default=30.0, help="seconds per /explain request before 504"
    )
    g.add_argument(
        "--explain-isolation",
        choices=["process", "thread"],
        default="process",
        help="process: workers with their own GIL and a lower CPU priority, killed past the time limit; "
        "thread: in the server process",
    )
    g.add_argument(
        "--explain-nice", type=int, default=5, help="CPU priority offset of process workers (0-19)"
    )
    g = p.add_argument_group("connections")
    g.add_argument("--header-timeout", type=float, default=10.0, help="seconds to receive a request head")
    g.add_argument("--body-timeout", type=float, default=30.0, help="seconds to receive a request body")
    g.add_argument(
        "--keep-alive-timeout", type=float, default=5.0, help="seconds an idle connection is kept open"
    )
    g.add_argument(
        "--max-connections", type=int, default=1000, help="open connections (idle ones are closed first)"
    )
    g.add_argument("--max-header-bytes", type=int, default=65536, help="size of a request head")
    g.add_argument("--backlog", type=int, default=2048, help="connections queued by the kernel")
    g = p.add_argument_group("access (required beyond loopback)")
    g.add_argument(
        "--api-key-file",
        help="file whose first line is the API key (else $ATTNKIT_API_KEY); clients send "
        "'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
    )
    g.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve beyond loopback without an API key (refused otherwise)",
    )
    g.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a Host name clients use (repeatable; '*': any). Default: localhost, 127.0.0.1, ::1 and the "
        "bound address; no check when bound to 0.0.0.0 or ::",
    )
    g.add_argument("--rate-limit", type=float, help="requests per second per client address (default: none)")
    g.add_argument("--rate-burst", type=int, default=20, help="requests a client may send at once")
    p.set_defaults(handler=_cmd_serve)


def _cmd_export(args: argparse.Namespace) -> int:
    from attnkit.export import export_onnx

    report = export_onnx(
        args.run_dir, args.out, opset=args.opset, check=not args.no_check, quantize=args.int8
    )
    print(json.dumps(report.to_json_dict()))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a trained run to ONNX (dynamic batch and length), optionally int8"
    )
    p.add_argument("run_dir")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", help="output file (default RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--int8", action="store_true", help="also write an int8 dynamically quantized model")
    p.add_argument("--no-check", action="store_true", help="skip comparing ONNX Runtime with PyTorch")
    p.set_defaults(handler=_cmd_export)


#: One example per command, shown at the end of its --help.
EXAMPLES: dict[str, str] = {
    "example": "attnkit example --json",
    "demo": "attnkit demo --out runs/demo\n  attnkit demo --task vision     # Fashion-MNIST, heatmaps over image regions",
    "train": "attnkit train --data reviews.csv --out runs/reviews\n"
    "  attnkit train --config imdb-nb-attn --out runs/imdb --set train.threads=1",
    "config": "attnkit config show --model nb-attn --model-options\n  attnkit config list",
    "config show": "attnkit config show --config imdb-nb-attn --set optim.lr=1e-3",
    "config list": "attnkit config list",
    "evaluate": "attnkit evaluate runs/reviews --data test.csv",
    "calibrate": "attnkit calibrate runs/reviews --data calibration.csv",
    "predict": 'attnkit predict runs/reviews "a wonderful film" "dull"\n'
    "  attnkit predict runs/reviews --file data.csv --out predictions.csv\n"
    "  attnkit predict runs/digits clip.wav recordings/ --out predictions.csv",
    "explain": 'attnkit explain runs/reviews "a wonderful film" --method attention,ig\n'
    "  attnkit explain runs/digits clip.wav --method attention,ig --out clip.html",
    "faithfulness": "attnkit faithfulness runs/reviews --data test.csv --n 200\n"
    "  attnkit faithfulness runs/digits --data fsdd:test --n 100",
    "data": "attnkit data inspect reviews.csv --test test.csv",
    "data inspect": "attnkit data inspect imdb --offline",
    "data synthetic": "attnkit data synthetic cues/",
    "bench": "attnkit bench attention --lengths 256 1024",
    "bench attention": "attnkit bench attention --lengths 256 1024 --variants sdpa chunked",
    "serve": "attnkit serve runs/reviews --port 8000",
    "export": "attnkit export runs/reviews --int8",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks, appends ``(default: X)`` to options whose help does not name one, and
    never breaks a line at a hyphen (``crnn-attn`` stays one word)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if (
            "default" in help_text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return action.help
        return f"{help_text} (default: %(default)s)"


def _finish(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every subcommand its description, example, default-showing formatter and ``-v`` (anywhere)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            full = f"{path} {name}".strip()
            child.formatter_class = HelpFormatter
            child.description = child.description or helps.get(name)
            if full in EXAMPLES:
                child.epilog = "example:\n  " + EXAMPLES[full]
            if not any("--verbose" in a.option_strings for a in child._actions):
                child.add_argument(
                    "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
                )
            _finish(child, full)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnkit",
        description="Build, train, explain, measure and serve attention models.",
        formatter_class=HelpFormatter,
        epilog="run `attnkit COMMAND --help` for a command's options and an example",
    )
    parser.add_argument("--version", action="version", version=f"attnkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_example(sub)
    _add_demo(sub)
    _add_train(sub)
    _add_config(sub)
    _add_evaluate(sub)
    _add_calibrate(sub)
    _add_predict(sub)
    _add_explain(sub)
    _add_faithfulness(sub)
    _add_data(sub)
    _add_bench(sub)
    _add_serve(sub)
    _add_export(sub)
    _finish(parser)
    return parser


def configure_logging(verbose: bool) -> None:
    """Timestamped log lines on stderr; only warnings from non-zero ``torchrun`` ranks; no matplotlib debug flood."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level if _is_main_process() else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("matplotlib", "PIL", "urllib3", "asyncio", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class UserError(Exception):
    """Raised by handlers for a mistake the user can fix; printed as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    handler: Handler = args.handler
    try:
        if getattr(args, "compute_threads", None) is not None:
            from attnkit.threads import ThreadGovernor

            ThreadGovernor(args.compute_threads).start(probe_seconds=0.1)
        return handler(args)
    # ValueError covers attnkit's own (ConfigError, DataError, RunError); OSError a path that is a file, not a
    # folder, a permission, a full disk: one line that names the file, not a traceback.
    except (ValueError, OSError, UserError) as err:
        if args.verbose:
            raise
        print(f"attnkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
