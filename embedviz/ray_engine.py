"""The same extraction as :func:`embedviz.pipeline.extract`, run on a Ray cluster.

The driver finds the manifest rows the store does not have yet (exactly like the local
engine), orders them into the same batches, and turns them into a Ray Dataset. A pool
of actors (:class:`_EmbedActor`, ``map_batches`` with ``concurrency``) each loads the
extractor once, then decodes, forwards and pools its batches through the local engine's
own :func:`embedviz.pipeline.embed_batch` and writes each batch as one store part with
:meth:`embedviz.store.StoreEntry.write_batch` (temporary file + ``os.replace``). So the
results land in the same store, under the same keys, atomically; a killed run keeps its
finished parts and the next run computes only what is missing. Actors send back only a
small status table per batch (computed / skipped with the reason, whether decoding rejected
the clip, and each computed clip's decode notices), from which the driver reports progress
and builds the usual :class:`~embedviz.pipeline.ExtractionReport`: the same skips and notices
as the local engine, in its order. Like the local engine, the driver reports clips the
store already knows to be unusable without sending them to an actor, and remembers the
clips decoding rejects. Whether a new entry keeps the time grid is decided on the driver
(:func:`embedviz.settings.time_grid_requested`) and passed to the actors, whose environment
may differ.

Ray is optional (``pip install -r requirements-ray.txt``) and imported only inside the
functions here; nothing else in embedviz imports this module's dependencies.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from embedviz.errors import Cancelled, ConfigError, EmbedvizError, ExtractionError
from embedviz.progress import ProgressCallback, ProgressReporter
from embedviz.settings import ExtractionSettings
from embedviz.store import EmbeddingStore, keys_in

if TYPE_CHECKING:
    from embedviz.pipeline import ExtractionReport

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install -r requirements-ray.txt"
#: The manifest columns an actor needs (the rest of the manifest stays on the driver).
_COLUMNS = ["clip_key", "clip_id", "path", "word", "speaker", "duration"]
#: Batches per Ray block at most: bounds how many clips one progress update waits for.
_MAX_BATCHES_PER_BLOCK = 16


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide the Ray engine runs.

    Attributes:
        address: ``None`` starts a private local Ray instance for this run (stopped at the
            end); ``"auto"`` joins the cluster this machine belongs to (``ray start``);
            anything else is a cluster address such as ``ray://head:10001`` or ``head:6379``.
        actors: extractor actors (each loads the model once).
        gpus_per_actor: GPUs reserved per actor (fractions share a GPU); ``> 0`` runs the
            model on ``cuda``.
        cpus_per_actor: CPUs reserved per actor (also its torch thread count).
        local_cpus: CPUs of the local instance (default: what the actors need).
    """

    address: str | None = None
    actors: int = 2
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ConfigError(f"--ray-address must be 'auto' or a cluster address, got {self.address!r}")
        if not isinstance(self.actors, int) or isinstance(self.actors, bool) or not 1 <= self.actors <= 4096:
            raise ConfigError(f"--ray-actors must be an integer from 1 to 4096, got {self.actors!r}")
        if not 0 <= float(self.gpus_per_actor) <= 8:
            raise ConfigError(f"--ray-gpus-per-actor must be between 0 and 8, got {self.gpus_per_actor!r}")
        if not 0 < float(self.cpus_per_actor) <= 256:
            raise ConfigError(f"--ray-cpus-per-actor must be above 0 and at most 256, got {self.cpus_per_actor!r}")
        if self.local_cpus is not None and (not isinstance(self.local_cpus, int) or self.local_cpus < 1):
            raise ConfigError(f"local_cpus must be a positive integer, got {self.local_cpus!r}")

    def device(self, requested: str) -> str:
        """The torch device actors use: ``cuda`` when they hold GPUs, else the request (auto -> cpu)."""
        if self.gpus_per_actor > 0:
            return "cuda" if requested in ("auto", "cpu") else requested
        return "cpu" if requested == "auto" else requested


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks it)
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray Data, which is not installed ({exc}); run '{INSTALL_HINT}'"
        ) from exc
    return ray


def ray_available() -> bool:
    """True when Ray Data can be imported (the ``--engine ray`` dependency)."""
    try:
        _import_ray()
    except ConfigError:
        return False
    return True


def _package_parent() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _start(ray: Any, config: RayConfig) -> bool:
    """Connect to (or start) Ray; True when this call started it and must stop it."""
    if ray.is_initialized():
        return False
    # Workers import embedviz from the same place as the driver (an unpacked checkout
    # has no installed package); on a cluster that path must exist on every node.
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [_package_parent(), os.environ.get("PYTHONPATH")]))}}
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING, runtime_env=runtime_env)
    try:
        if config.address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry from a private instance
            cpus = config.local_cpus or max(1, math.ceil(config.actors * config.cpus_per_actor))
            ray.init(
                num_cpus=cpus,
                num_gpus=None if config.gpus_per_actor > 0 else 0,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",  # loopback only: nothing listens beyond this machine
                object_store_memory=256 * 1024 * 1024,  # only manifests and status tables travel
                **quiet,
            )
        else:
            ray.init(address=config.address, **quiet)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError, depending on how it fails
        where = "a local Ray instance" if config.address is None else f"the Ray cluster at {config.address!r}"
        raise ConfigError(
            f"cannot start or reach {where}: {exc}. Start a cluster with 'ray start --head' "
            "or leave --ray-address out for a local instance"
        ) from exc
    return True


class _EmbedActor:
    """One Ray actor: loads the extractor once, then embeds and stores batches.

    Returns, per batch, one status row per clip (``status`` computed / skipped / cached
    with the ``reason``, ``rejected`` when decoding refused the file, ``notices`` a JSON list
    of ``[kind, detail]``) and the batch's forward-pass count; the embeddings themselves go
    straight to the store and never travel back to the driver.
    """

    def __init__(self, settings: ExtractionSettings, store_root: str, device: str, expected_key: str,
                 threads: int, time_grid: bool = False) -> None:
        import torch

        from embedviz.models import load_extractor
        from embedviz.pipeline import open_entry

        torch.set_num_threads(max(1, threads))
        self.settings = settings
        self.extractor = load_extractor(settings.model, device=device, whisper_mode=settings.whisper_mode,
                                        seed=settings.seed)
        self.entry = open_entry(EmbeddingStore(store_root), settings, self.extractor, time_grid=time_grid)
        # A hub model resolved to a revision the driver did not know: clips stored under
        # that revision are already done.
        self.already = self.entry.stored_keys() if self.extractor.info.key != expected_key else set()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from embedviz.pipeline import ExtractionReport, embed_batch

        todo = batch[~keys_in(batch["clip_key"], self.already)]
        report = ExtractionReport(model=self.settings.model)
        rejected: dict[str, str] = {}
        self.entry.write_batch(embed_batch(self.extractor, todo, self.settings, report, rejected))
        reasons = {s.clip_id: s.reason for s in report.skipped}
        notices: dict[str, list[list[str]]] = {}
        for n in report.notices:
            notices.setdefault(n.clip_id, []).append([n.kind, n.detail])
        status = ["cached" if k in self.already else ("skipped" if c in reasons else "computed")
                  for k, c in zip(batch["clip_key"], batch["clip_id"])]
        return pd.DataFrame(
            {
                "clip_id": batch["clip_id"].astype(str).to_numpy(),
                "path": batch["path"].astype(str).to_numpy(),
                "status": status,
                "reason": [reasons.get(c, "") for c in batch["clip_id"]],
                "rejected": [c in rejected for c in batch["clip_id"]],
                # JSON text: a plain string column travels through Arrow blocks unchanged.
                "notices": [json.dumps(notices.get(c, [])) for c in batch["clip_id"]],
                "forward_passes": [report.forward_passes] + [0] * (len(batch) - 1),
                "entry": self.entry.id,
            }
        )


def _blocks(todo: pd.DataFrame, batch_size: int, actors: int) -> list[pd.DataFrame]:
    """The local engine's batches, grouped into Ray blocks of whole batches.

    Block boundaries fall on batch boundaries, so every actor call sees exactly the clips
    one local batch would (the same padding, hence the same numbers), and there are
    enough blocks to keep every actor busy.
    """
    from embedviz.pipeline import _batches

    batches = _batches(todo[_COLUMNS].assign(path=todo["path"].astype(str)), batch_size)
    per_block = max(1, min(_MAX_BATCHES_PER_BLOCK, len(batches) // (4 * actors)))
    return [pd.concat(batches[i : i + per_block]) for i in range(0, len(batches), per_block)]


def _user_error(exc: BaseException) -> BaseException:
    """The embedviz error inside a Ray error (a model that fails to load, a full disk), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, EmbedvizError):
            return seen
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else (seen.__cause__ or seen.__context__)
    return exc


def extract_on_ray(
    manifest: pd.DataFrame,
    settings: ExtractionSettings,
    *,
    store: EmbeddingStore,
    ray_config: RayConfig | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    time_grid: bool | None = None,
) -> "ExtractionReport":
    """Embed every clip of ``manifest`` the store lacks, on Ray; same contract as ``extract``.

    Without anything to compute, Ray is not even started. Bad clips are skipped with their
    reason and odd ones get their notices, as locally; a stop request from ``progress`` ends
    the run after the parts in flight (the finished ones are kept) and sets
    ``report.cancelled``. ``time_grid``: see :func:`embedviz.pipeline.open_entry`.

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
        ModelLoadError / StoreError: as the local engine (raised on an actor, re-raised here).
        ExtractionError: any other failure of the Ray job.
    """
    from embedviz.hashing import has_content
    from embedviz.pipeline import (
        ClipNotice,
        ExtractionReport,
        SkippedClip,
        _family,
        _known_unusable,
        _with_keys,
        batch_size_for,
    )
    from embedviz.settings import time_grid_requested

    if batch_size is None:
        batch_size = batch_size_for(_family(settings.model))  # the local engine's default too
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    config = ray_config or RayConfig()
    t0 = time.perf_counter()
    report = ExtractionReport(model=settings.model)
    entry = store.entry_for(settings)
    key = entry.model_key
    report.entry = entry.id
    m = _with_keys(manifest)
    stored = entry.stored_keys()
    done = keys_in(m["clip_key"], stored)
    todo = m[~done].drop_duplicates("clip_key")
    report.cached = int(done.sum())
    # Clips known to be unusable are reported without starting Ray (as the local engine does).
    bad, known_skips = _known_unusable(todo, store.unusable_clips())
    report.skipped.extend(known_skips)
    todo = todo[~bad]
    if todo.empty:
        report.seconds = time.perf_counter() - t0
        return report
    if entry.path.exists() and not entry.is_current:
        # Rebuild a stale-format entry here, once, not in racing actors.
        logger.warning("store entry %s was written by another format version: rebuilding it", entry.path)
        store.delete(entry.id)

    blocks = _blocks(todo, batch_size, config.actors)
    # Blocks come back in any order; the report lists clips in the local engine's batch order.
    position = {c: i for i, c in enumerate(c for block in blocks for c in block["clip_id"])}
    key_of = dict(zip(todo["clip_id"], todo["clip_key"]))
    found_skips: list[SkippedClip] = []
    found_notices: list[ClipNotice] = []
    rejected: dict[str, str] = {}  # clip key -> reason, for clips decoding rejected in this run
    ray = _import_ray()
    reporter = ProgressReporter(progress, total=len(todo), stage="starting Ray")
    reporter.report(f"{config.actors} actor(s) of {settings.model}")
    started = _start(ray, config)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller's progress callback is the display
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        results = ray.data.from_pandas(blocks).map_batches(
            _EmbedActor,
            fn_constructor_kwargs=dict(
                settings=settings, store_root=str(store.root.resolve()), device=config.device(device),
                expected_key=key, threads=max(1, int(config.cpus_per_actor)),
                time_grid=time_grid_requested(time_grid),
            ),
            batch_size=batch_size,
            batch_format="pandas",
            zero_copy_batch=False,
            concurrency=config.actors,
            num_cpus=config.cpus_per_actor,
            num_gpus=config.gpus_per_actor or None,
        )
        reporter = ProgressReporter(progress, total=len(todo), stage="extracting")
        reporter.report()
        for out in results.iter_batches(batch_size=None, batch_format="pandas"):
            for row in out.itertuples(index=False):
                if row.status == "computed":
                    report.computed += 1
                    found_notices.extend(ClipNotice(row.clip_id, row.path, kind, detail)
                                         for kind, detail in json.loads(row.notices))
                elif row.status == "cached":
                    report.cached += 1
                else:
                    found_skips.append(SkippedClip(row.clip_id, row.path, row.reason))
                    if row.rejected and row.clip_id in key_of:
                        rejected[key_of[row.clip_id]] = row.reason
                report.forward_passes += int(row.forward_passes)
                report.entry = row.entry
            reporter.advance(len(out), f"{report.computed} computed, {len(report.skipped) + len(found_skips)} "
                                       "skipped")
    except Cancelled:
        report.cancelled = True
        logger.info("Ray extraction of %s cancelled; finished parts are kept", settings.model)
    except EmbedvizError:
        raise
    except Exception as exc:  # a RayTaskError and friends: surface the embedviz error inside
        inner = _user_error(exc)
        if isinstance(inner, EmbedvizError):
            raise inner from exc
        raise ExtractionError(f"the Ray job extracting {settings.model} failed: {exc}") from exc
    finally:
        if started:
            ray.shutdown()
        report.skipped.extend(sorted(found_skips, key=lambda s: position.get(s.clip_id, len(position))))
        report.notices.extend(sorted(found_notices, key=lambda n: position.get(n.clip_id, len(position))))
        # Decoding rejections depend on the file alone: remembered, so the next run names them
        # without decoding again (forward-pass failures may not recur and are not remembered).
        store.remember_unusable({k: r for k, r in rejected.items() if has_content(k)})
        report.seconds = time.perf_counter() - t0
    return report
