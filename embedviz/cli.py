"""``python -m embedviz``: the catalogue, datasets, batch extraction, export and analysis."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from embedviz.errors import EmbedvizError
from embedviz.progress import ProgressEvent
from embedviz.settings import (
    TIME_GRID_ENV,
    TIME_GRID_FLAG,
    WHISPER_MODES,
    ExtractionSettings,
    default_cache_dir,
    time_grid_requested,
)

logger = logging.getLogger("embedviz")


def _words_arg(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


def _human_params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}k" if n else "-"


def cmd_models(args: argparse.Namespace) -> int:
    from embedviz.catalogue import CATALOGUE, availability

    rows = [("model", "family", "params", "rate", "layers", "availability")]
    for spec in CATALOGUE.values():
        status = availability(spec.id, check_hub=not args.no_hub_check)
        rows.append(
            (spec.id, spec.family, _human_params(spec.n_params), f"{spec.sample_rate}",
             str(len(spec.layers)), f"{status.status}: {status.detail}" if args.verbose else status.status)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\nAlso: random-init:<model id> (seeded untrained control of any model above), "
          "or a local Hugging Face model folder.")
    return 0


def cmd_words(args: argparse.Namespace) -> int:
    from embedviz.datasets import open_dataset

    ds = open_dataset(args.dataset)
    table = ds.words()
    print(f"dataset: {ds.root}")
    print(table.to_string(index=False))
    print(f"{len(table)} words, {int(table['clips'].sum())} clips")
    _print_problems(ds)
    return 0


def _print_problems(ds) -> None:  # type: ignore[no-untyped-def]
    """Name every entry of the dataset's word folders that discovery could not use, with the reason."""
    if ds.problems:
        print(f"{len(ds.problems)} file(s) in the dataset folder cannot be used, so they are not clips:")
        for problem in ds.problems:
            print(f"  skipped {problem.path}: {problem.reason}")


class _TqdmProgress:
    """Turns ProgressEvents into a tqdm bar on stderr."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar = None

    def __call__(self, event: ProgressEvent) -> bool:
        from tqdm import tqdm

        if self.bar is None or self.bar.total != event.total or self.bar.desc != f"{self.desc} {event.stage}":
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=event.total, desc=f"{self.desc} {event.stage}", unit="clip",
                            file=sys.stderr, dynamic_ncols=True)
        self.bar.n = event.done
        if event.message:
            self.bar.set_postfix_str(event.message, refresh=False)
        self.bar.refresh()
        return False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _settings(args: argparse.Namespace, model: str) -> ExtractionSettings:
    return ExtractionSettings(model=model, whisper_mode=args.whisper_mode, seed=args.model_seed)


def _store(args: argparse.Namespace):
    from embedviz.store import EmbeddingStore

    return EmbeddingStore(Path(args.cache) if args.cache else default_cache_dir())


def _run_extraction(args: argparse.Namespace, manifest, settings: ExtractionSettings, store, progress):
    """One model's extraction on the chosen engine (local, or Ray with --engine ray)."""
    if args.engine == "ray":
        from embedviz.ray_engine import RayConfig, extract_on_ray

        config = RayConfig(address=args.ray_address, actors=args.ray_actors,
                           gpus_per_actor=args.ray_gpus_per_actor, cpus_per_actor=args.ray_cpus_per_actor)
        return extract_on_ray(manifest, settings, store=store, ray_config=config, device=args.device,
                              batch_size=args.batch_size, progress=progress, time_grid=args.time_grid)
    from embedviz.pipeline import extract

    return extract(manifest, settings, store=store, device=args.device, batch_size=args.batch_size,
                   progress=progress, time_grid=args.time_grid)


def _ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="run here (local) or on a Ray cluster (needs requirements-ray.txt)")
    p.add_argument("--ray-address", default=None,
                   help="'auto' or a cluster address (default: start a private local Ray instance)")
    p.add_argument("--ray-actors", type=_positive_int, default=2, help="extractor actors (each loads the model once)")
    p.add_argument("--ray-gpus-per-actor", type=_float_at_least(0.0), default=0.0, help="GPUs per actor (0: CPU)")
    p.add_argument("--ray-cpus-per-actor", type=_float_at_least(0.0, strictly=True), default=1.0, help="CPUs per actor")


def cmd_extract(args: argparse.Namespace) -> int:
    from embedviz.datasets import open_dataset

    ds = open_dataset(args.dataset)
    words = _words_arg(args.words) or ds.word_names
    manifest = ds.sample(words, args.samples, seed=args.seed)
    store = _store(args)
    print(f"dataset {ds.root}: {len(manifest)} clips of {len(words)} words; store {store.root}")
    _print_problems(ds)
    any_done = False
    for model in _words_arg(args.model):
        progress = _TqdmProgress(model)
        try:
            entry = store.entry_for(_settings(args, model))
            if time_grid_requested(args.time_grid) and entry.is_current and not entry.has_time_grid:
                print(f"  note: store entry {entry.id} of {model} exists without the time grid and keeps it that "
                      f"way ({TIME_GRID_FLAG} applies to new entries); delete it first (Data & cache page, or "
                      f"the folder {entry.path}) to store the grid", file=sys.stderr)
            damaged_before = entry.damaged_parts()
            report = _run_extraction(args, manifest, _settings(args, model), store, progress)
        except EmbedvizError as exc:
            progress.close()
            print(f"error: {model}: {exc}", file=sys.stderr)
            continue
        progress.close()
        print(report.summary() + (f", {len(report.notices)} with notices" if report.notices else ""))
        if report.entry:
            from embedviz.store import damaged_note

            note = damaged_note(store.entry_at(report.entry), damaged_before, cancelled=report.cancelled)
            if note:
                print(f"  {note}")
        for line in report.details():
            print(line)
        any_done = any_done or (report.computed + report.cached) > 0
    return 0 if any_done else 1


def cmd_export(args: argparse.Namespace) -> int:
    import pandas as pd

    from embedviz.store import read_layers

    layer = read_layers(_store(args), _settings(args, args.model), [args.layer], args.pooling)[args.layer]
    df = layer.clips.drop(columns=["clip_key"])
    df["layer"] = args.layer
    df["pooling"] = args.pooling
    df["embedding"] = [row.tolist() for row in layer.X]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        df.assign(embedding=[" ".join(f"{v:.7g}" for v in e) for e in df["embedding"]]).to_csv(out, index=False)
    elif out.suffix.lower() == ".parquet":
        pd.DataFrame(df).to_parquet(out, index=False)
    else:
        print(f"error: --out must end in .csv or .parquet, got {out}", file=sys.stderr)
        return 2
    print(f"wrote {len(df)} clips x {layer.X.shape[1]} dims to {out}")
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    from embedviz.analysis import analyse_entry

    progress = _TqdmProgress("analyse")
    try:
        table = analyse_entry(
            _store(args), _settings(args, args.model), pooling=args.pooling, words=_words_arg(args.words) or None,
            layers=_words_arg(args.layers) or None, figures_dir=Path(args.figures) if args.figures else None,
            reduction=args.reduction, probe=not args.no_probe, measures=args.measures, progress=progress,
        )
    finally:
        progress.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    with_pd_options = table.round(3).to_string(index=False)
    print(with_pd_options)
    if "abx_across" in table.columns:  # name each ABX column's condition
        from embedviz.measures import abx_legend

        print("\n".join(abx_legend()))
    print(f"wrote {out}" + (f" and figures in {args.figures}" if args.figures else ""))
    return 0


class _TqdmBytes:
    """A tqdm bar in bytes (MB, rate, ETA) for the fetcher's ``downloading``/``extracting`` stages."""

    def __init__(self) -> None:
        self.bar = None
        self.stage = ""

    def __call__(self, event: ProgressEvent) -> bool:
        from tqdm import tqdm

        if self.bar is None or event.stage != self.stage or (event.total and self.bar.total != event.total):
            self.close()
            self.stage = event.stage
            self.bar = tqdm(total=event.total or None, initial=event.done, desc=event.stage, unit="B",
                            unit_scale=True, unit_divisor=1024, file=sys.stderr, dynamic_ncols=True)
        self.bar.n = event.done
        self.bar.refresh()
        return False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_fetch_speech_commands(args: argparse.Namespace) -> int:
    from embedviz.fetch import fetch_speech_commands

    progress = _TqdmBytes()
    try:
        result = fetch_speech_commands(
            args.dest, version=args.version, url=args.url, words=_words_arg(args.words) or None,
            background_noise=args.with_background_noise, split_lists=args.split_lists,
            keep_archive=args.keep_archive, progress=progress, retries=args.retries,
        )
    finally:
        progress.close()
    if result.restarted:
        print("note: the server ignored the resume request, so the download started over")
    elif result.resumed:
        print("resumed a partial download")
    for name, why in result.refused:
        print(f"  refused archive member {name!r}: {why}")
    if result.missing_words:
        print(f"warning: not in the archive: {', '.join(result.missing_words)}")
    width = max([4, *(len(w) for w in result.counts)])
    print(f"{'word'.ljust(width)}  clips")
    for word, n in result.counts.items():
        print(f"{word.ljust(width)}  {n:>5}")
    print(f"{len(result.counts)} words, {result.clips} clips in {result.dest} "
          f"({result.extracted} files written, {len(result.refused)} members refused); "
          "it is now an allowed dataset root: python -m embedviz words --dataset " + result.dest)
    return 0 if result.clips else 1


def _add_fetch_parser(sub: argparse._SubParsersAction) -> None:
    from embedviz.fetch import ARCHIVE_URLS

    p = sub.add_parser("fetch-speech-commands", help="download and unpack Speech Commands (resumable)")
    p.add_argument("--dest", required=True, help="folder to unpack into (becomes an allowed dataset root)")
    p.add_argument("--version", choices=list(ARCHIVE_URLS), default="v0.02")
    p.add_argument("--url", help="archive address (http/https; default: the official archive of --version)")
    p.add_argument("--words", help="comma-separated words to unpack (default: all)")
    p.add_argument("--with-background-noise", action="store_true", help="also unpack _background_noise_")
    p.add_argument("--with-split-lists", dest="split_lists", action="store_true", default=True,
                   help="unpack validation_list.txt and testing_list.txt (default)")
    p.add_argument("--no-split-lists", dest="split_lists", action="store_false")
    p.add_argument("--keep-archive", action="store_true", help="keep the downloaded .tar.gz in DEST/.download")
    p.add_argument("--retries", type=_non_negative_int, default=5,
                   help="retries in a row after a dropped connection (each resumes)")
    p.set_defaults(func=cmd_fetch_speech_commands)


def _int_at_least(low: int):
    """An argparse type: a whole number >= ``low`` (argparse names the argument in its error)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value

    convert.__name__ = f"whole number >= {low}"
    return convert


_non_negative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


def _float_at_least(low: float, *, strictly: bool = False):
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (value > low if strictly else value >= low) or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {'more than' if strictly else 'at least'} {low:g}, got {text}")
        return value

    convert.__name__ = "number"
    return convert


def _checked_by(check):
    """An argparse type that validates the text with a library function (its message, the argument's name)."""

    def convert(text: str) -> str:
        try:
            check(text)
        except EmbedvizError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    convert.__name__ = check.__name__
    return convert


def _device_arg(text: str) -> str:
    from embedviz.settings import check_device_name

    return _checked_by(check_device_name)(text)


def _pooling_arg(text: str) -> str:
    from embedviz.pooling import parse_pooling

    return _checked_by(parse_pooling)(text)
def cmd_nearest(args: argparse.Namespace) -> int:
    """Embed one clip, list its k nearest stored clips and their vote (see embedviz.placement)."""
    import json

    from embedviz.catalogue import model_spec
    from embedviz.models import load_extractor
    from embedviz.placement import default_layer, load_clip, nearest_stored

    settings = _settings(args, args.model)
    layer = args.layer or default_layer(model_spec(args.model).layers)
    from embedviz.store import read_layers

    stored = read_layers(_store(args), settings, [layer], args.pooling)[layer]
    X, clips = stored.X, stored.clips
    if args.dataset:
        from embedviz.datasets import open_dataset

        root = str(Path(open_dataset(args.dataset).root).resolve())
        keep = [str(Path(p).resolve()).startswith(root + "/") for p in clips["path"]]
        X, clips = X[keep], clips[keep].reset_index(drop=True)
    extractor = load_extractor(args.model, device=args.device, whisper_mode=args.whisper_mode, seed=args.model_seed)
    try:
        from embedviz.placement import embed_clip

        wave = load_clip(args.clip, extractor.sample_rate, name=args.clip)
        vector = embed_clip(extractor, wave, args.pooling, [layer])[layer]
    finally:
        extractor.close()
    placement = nearest_stored(X, clips, vector, args.k, layer=layer)
    if args.json:
        print(json.dumps(placement.to_json()))
        return 0
    print(f"{args.clip} with {args.model}, layer {layer}, pooling {args.pooling}, {len(clips)} stored clips")
    print(placement.neighbours[["word", "speaker", "path", "similarity"]].round({"similarity": 4}).to_string(index=False))
    print(f"vote: {placement.vote.predicted} ({placement.vote.share:.0%} of {placement.vote.k})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m embedviz", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="the model catalogue with availability")
    p.add_argument("--no-hub-check", action="store_true", help="do not ask the hub (faster offline)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("words", help="words of a dataset with clip and speaker counts")
    p.add_argument("--dataset", help="dataset root (default: the bundled demo)")
    p.set_defaults(func=cmd_words)

    def model_options(p: argparse.ArgumentParser, many: bool = False) -> None:
        p.add_argument("--model", required=True,
                       help="catalogue id, random-init:<id>, baseline:mel or a local folder"
                            + (" (comma-separated for several)" if many else ""))
        p.add_argument("--cache", help="store folder (default: $EMBEDVIZ_CACHE or the user cache)")
        p.add_argument("--whisper-mode", choices=WHISPER_MODES, default="padded")
        p.add_argument("--model-seed", type=_non_negative_int, default=0, help="seed of random-init models")

    p = sub.add_parser("extract", help="embed clips (only those not stored yet)")
    p.add_argument("--dataset", help="dataset root (default: the bundled demo)")
    p.add_argument("--words", help="comma-separated words (default: all)")
    p.add_argument("--samples", type=_positive_int, default=24, help="clips per word")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="sampling seed")
    p.add_argument("--device", type=_device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="clips per forward pass (default: the family's measured size, see docs/PERFORMANCE.md)")
    # store_const with default None: without the flag, $EMBEDVIZ_TIME_GRID still decides
    # (embedviz.settings.time_grid_requested is the one place that reads both).
    p.add_argument(TIME_GRID_FLAG, dest="time_grid", action="store_const", const=True, default=None,
                   help="also store the 0.1 s time grid behind time:<s> pooling in new store entries (about 3x "
                        f"the space; the same as {TIME_GRID_ENV}=1)")
    model_options(p, many=True)
    _ray_options(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("export", help="write one layer's stored embeddings to Parquet or CSV")
    model_options(p)
    p.add_argument("--layer", required=True)
    p.add_argument("--pooling", type=_pooling_arg, default="mean")
    p.add_argument("--out", required=True, help="FILE.parquet or FILE.csv")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("analyse", aliases=["analyze"], help="per-layer separability table and figures")
    model_options(p)
    p.add_argument("--pooling", type=_pooling_arg, default="mean")
    p.add_argument("--words", help="comma-separated words (default: all stored)")
    p.add_argument("--layers", help="comma-separated layers (default: all)")
    p.add_argument("--reduction", default="pca", choices=["pca", "tsne", "umap"])
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe (the slow part on big sets)")
    p.add_argument("--measures", action="store_true",
                   help="add PWCCA with one-hot words, k-means word NMI and word ABX across speakers "
                        "(on at most 2,000 clips, column measures_n); with --figures also "
                        "speaker_word.html and measures.html")
    p.add_argument("--out", required=True, help="FILE.csv")
    p.add_argument("--figures", help="folder for standalone HTML figures")
    p.set_defaults(func=cmd_analyse)

    _add_fetch_parser(sub)
    p = sub.add_parser("nearest", help="embed your own clip and list its nearest stored clips with the k-NN vote")
    model_options(p)
    p.add_argument("--clip", required=True, help="audio file (wav, flac, ogg, mp3)")
    p.add_argument("--dataset", help="only stored clips under this dataset root (default: every stored clip)")
    p.add_argument("--layer", help="layer to compare in (default: the model's last layer; the catalogue "
                                   "records no best layer per model)")
    p.add_argument("--pooling", type=_pooling_arg, default="mean")
    p.add_argument("--k", type=_positive_int, default=5, help="neighbours that vote")
    p.add_argument("--device", type=_device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--json", action="store_true",
                   help='print {"predicted", "share", "neighbours": [{"path", "word", "speaker", "similarity"}]}')
    p.set_defaults(func=cmd_nearest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except EmbedvizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished batches are stored; run again to resume", file=sys.stderr)
        return 130
