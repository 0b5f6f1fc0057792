"""Load any model name into a ready :class:`~embedviz.extractors.base.Extractor`.

One entry point, :func:`load_extractor`, for every source:

* hub ids (catalogue or already cached): ``<Family>Model.from_pretrained`` from the Hugging
  Face cache, downloading only when allowed and reachable; the commit loaded is recorded;
* local folders: the same ``from_pretrained`` code path on the folder; identity = content hash;
* ``random-init:<catalogue id>``: the embedded config with seeded random weights (no download);
* ``baseline:mel``: the log-mel / MFCC baseline.

Security: ``trust_remote_code=False`` is always passed explicitly; safetensors are preferred
(pickle ``.bin`` weights load with a warning, through transformers' weights-only loader).
Weights load as float32 whatever the checkpoint's dtype, so numbers do not depend on it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from embedviz import catalogue
from embedviz.errors import ConfigError, EmbedvizError, ModelLoadError
from embedviz.progress import ProgressCallback, ProgressReporter
from embedviz.settings import WHISPER_MODES

if TYPE_CHECKING:
    from embedviz.extractors.base import Extractor, ModelInfo

logger = logging.getLogger(__name__)


#: transformers model class per family (the base model, never a task head).
MODEL_CLASSES: Mapping[str, str] = {
    "wav2vec2": "Wav2Vec2Model",
    "hubert": "HubertModel",
    "wavlm": "WavLMModel",
    "whisper": "WhisperModel",
    "dac": "DacModel",
}
CONFIG_CLASSES: Mapping[str, str] = {
    "wav2vec2": "Wav2Vec2Config",
    "hubert": "HubertConfig",
    "wavlm": "WavLMConfig",
    "whisper": "WhisperConfig",
    "dac": "DacConfig",
}

# Parameters a base model has that released checkpoints may lack because inference never
# uses them (wav2vec2's SpecAugment mask embedding).
_UNUSED_AT_INFERENCE: tuple[str, ...] = ("masked_spec_embed",)


def resolve_device(device: str = "auto") -> str:
    """``'auto'`` -> ``'cuda'``, else ``'mps'``, else ``'cpu'``; an explicit device is checked.

    Raises:
        ConfigError: the device is unknown or not available on this machine.
    """
    import torch

    wanted = (device or "auto").strip().lower()
    mps_ok = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if wanted == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    if wanted == "cpu":
        return "cpu"
    if wanted == "cuda" or wanted.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here; use 'auto' or 'cpu'")
        if ":" in wanted:
            index = wanted.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ConfigError(
                    f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                    "use 'cuda' or 'cuda:0'"
                )
        return wanted
    if wanted == "mps":
        if not mps_ok:
            raise ConfigError("device 'mps' requested but Apple MPS is not available here; use 'auto' or 'cpu'")
        return "mps"
    raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:<n>' or 'mps'")


def load_extractor(
    name: str,
    *,
    device: str = "auto",
    whisper_mode: str = "padded",
    seed: int = 0,
    local_files_only: bool | None = None,
    progress: ProgressCallback | None = None,
) -> Extractor:
    """Load ``name`` (hub id, folder, ``random-init:<id>``, ``baseline:mel``) as an Extractor.

    Args:
        name: what to load (see :func:`embedviz.catalogue.model_spec`).
        device: ``'auto'`` (cuda, then mps, then cpu), ``'cpu'``, ``'cuda'``, ``'cuda:<n>'``, ``'mps'``.
        whisper_mode: ``'padded'`` (exact, 30 s window) or ``'crop'``; recorded in
            ``info.options`` for Whisper models only.
        seed: random-init seed (ignored for other sources).
        local_files_only: ``None``: use the cache when the model is there, download otherwise
            (never when ``HF_HUB_OFFLINE`` is set); ``True``: never touch the network;
            ``False``: ask the hub for the latest revision even if cached.
        progress: receives byte counts (stage ``downloading``) while a hub model downloads;
            returning True from it cancels the download.

    Raises:
        ConfigError: bad device, whisper_mode or seed.
        ModelLoadError: unknown name, bad folder, not cached while offline, or loading failed.
    """
    if whisper_mode not in WHISPER_MODES:
        raise ConfigError(f"whisper_mode must be one of {', '.join(WHISPER_MODES)}; got {whisper_mode!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    name = (name or "").strip()
    spec = catalogue.model_spec(name)
    if spec.family == "baseline":
        # numpy only: no torch import, and the device does not matter.
        from embedviz.extractors.baseline import MelBaselineExtractor, default_info

        return MelBaselineExtractor(info=default_info(), device="cpu")
    resolved = resolve_device(device)

    if spec.is_random_init:
        model = _random_init(name, seed)
        # The real checkpoint's preprocessing, so the control differs from it only in weights.
        preprocessor = catalogue.default_preprocessor(catalogue.random_init_base(name))
        key = catalogue.model_identity(name, seed=seed)
        source = f"random init, seed {seed}"
    else:
        folder = catalogue.local_folder(name)
        if folder is not None:
            model, preprocessor = _load_folder(name, folder, spec.family)
            key = catalogue.folder_identity(folder)
            source = str(folder)
        else:
            model, preprocessor, commit = _load_hub(name, spec.family, local_files_only, progress)
            key = f"{name}@{commit}"
            source = f"{name}@{commit[:10]}"
    return _make_extractor(
        name, spec.family, model, preprocessor, key=key, device=resolved, whisper_mode=whisper_mode, source=source
    )


# ---------------------------------------------------------------------- sources


def _model_class(family: str) -> Any:
    import transformers

    return getattr(transformers, MODEL_CLASSES[family])


def build_config(model_id: str) -> Any:
    """The transformers config object of catalogue model ``model_id`` (from the embedded config)."""
    import transformers

    model_type, kwargs = catalogue.embedded_config(model_id)
    family = catalogue.MODEL_TYPE_FAMILY[model_type]
    return getattr(transformers, CONFIG_CLASSES[family])(**kwargs)


def _random_init(name: str, seed: int) -> Any:
    import torch

    base = catalogue.random_init_base(name)
    config = build_config(base)
    family = catalogue.MODEL_TYPE_FAMILY[config.model_type]
    # fork_rng keeps the caller's global RNG state untouched; only this init is seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "whisper":
            # Only the encoder is ever used: building the decoder would double the time and memory.
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            model = WhisperEncoder(config)
        else:
            model = _model_class(family)(config)
    logger.info("%s: built %s with random weights (seed %d)", name, type(model).__name__, seed)
    return model.eval()


def _from_pretrained(name: str, family: str, source: str, **kwargs: Any) -> Any:
    import torch

    cls = _model_class(family)
    try:
        model, loading = cls.from_pretrained(
            source,
            trust_remote_code=False,
            use_safetensors=None,  # safetensors when present; .bin fallback is reported below
            dtype=torch.float32,
            output_loading_info=True,
            **kwargs,
        )
    except EmbedvizError:
        raise
    except Exception as error:  # transformers/hub raise many types; the user needs one message
        raise ModelLoadError(f"{name}: loading the {family} weights failed: {error}") from error
    missing = sorted(
        k for k in (loading or {}).get("missing_keys", ()) if not any(u in k for u in _UNUSED_AT_INFERENCE)
    )
    if missing:
        raise ModelLoadError(
            f"{name}: the checkpoint lacks {len(missing)} weight(s) a {cls.__name__} needs (e.g. "
            f"{', '.join(missing[:3])}); it is not a complete {family} checkpoint, and those weights would be "
            "random. Check the folder or re-download the model."
        )
    actual = getattr(model.config, "model_type", None)
    if catalogue.MODEL_TYPE_FAMILY.get(str(actual)) != family:
        raise ModelLoadError(f"{name}: expected a {family} checkpoint but config.json says model_type {actual!r}")
    return model.eval()


def _warn_if_pickle(name: str, folder: Path) -> None:
    if not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
        logger.warning(
            "%s: loaded pickle .bin weights (no safetensors available); they were read with torch's "
            "weights-only loader. Prefer a safetensors copy of this model.",
            name,
        )


def _read_preprocessor(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path}: cannot read preprocessor_config.json ({error}); fix or delete it") from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: preprocessor_config.json is not a JSON object")
    return data


def default_preprocessor_for(family: str, config: Any) -> dict[str, Any]:
    """Preprocessor settings of ``family`` when a checkpoint has no preprocessor_config.json."""
    if family == "whisper":
        from transformers import WhisperFeatureExtractor

        return WhisperFeatureExtractor(feature_size=int(config.num_mel_bins)).to_dict()
    if family == "dac":
        from transformers import DacFeatureExtractor

        return DacFeatureExtractor(sampling_rate=int(config.sampling_rate), hop_length=int(config.hop_length)).to_dict()
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=str(config.feat_extract_norm) == "layer"
    ).to_dict()


def _preprocessor_or_default(name: str, family: str, model: Any, found: dict[str, Any] | None) -> dict[str, Any]:
    if found is not None:
        return found
    if name in catalogue.catalogue_ids():
        defaults = catalogue.default_preprocessor(name)
    else:
        defaults = default_preprocessor_for(family, model.config)
    logger.warning("%s: no preprocessor_config.json; using %s defaults %s", name, family, defaults)
    return defaults


def _load_folder(name: str, folder: Path, family: str) -> tuple[Any, dict[str, Any]]:
    model = _from_pretrained(name, family, str(folder), local_files_only=True)
    _warn_if_pickle(name, folder)
    found = _read_preprocessor(folder / "preprocessor_config.json")
    return model, _preprocessor_or_default(name, family, model, found)


def _not_available(name: str, why: str) -> ModelLoadError:
    return ModelLoadError(
        f"{name} is not in the Hugging Face cache ({catalogue.hub_cache_dir()}) and needs a download, but "
        f"{why}. To make it available: download it on a machine with network access (e.g. "
        f"`hf download {name}`) and copy the cache (or set HF_HUB_CACHE to it), or save the model "
        "as a local folder and load that folder instead."
    )


#: What a model needs from its hub repository besides weights (never tokenizers, TF or Flax files).
_HUB_METADATA = ["config.json", "preprocessor_config.json", "generation_config.json"]


def weight_files(repo_files: list[str]) -> list[str]:
    """The weight files from_pretrained would read: safetensors first, else PyTorch pickles.

    Prefers a single ``model.safetensors``, then a sharded safetensors index; falls back to
    ``pytorch_model.bin`` (or its shards) only when the repository has no safetensors.
    """
    names = set(repo_files)
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if single in names:
            return [single]
        if index in names:
            prefix = single.rsplit(".", 1)[0] + "-"
            return [index] + sorted(f for f in names if f.startswith(prefix) and f.endswith(single.rsplit(".", 1)[1]))
    return []


class _DownloadProgress:
    """A tqdm stand-in for huggingface_hub that turns byte counts into ProgressEvents."""

    def __init__(self, reporter: ProgressReporter, *args: Any, **kwargs: Any) -> None:
        self.reporter = reporter
        self.total = int(kwargs.get("total") or 0)
        self.n = int(kwargs.get("initial") or 0)
        self.desc = str(kwargs.get("desc") or "")
        self.bytes = kwargs.get("unit") == "B"

    def update(self, n: float = 1) -> None:
        self.n += int(n or 0)
        if self.bytes and self.total:
            self.reporter.total = self.total
            self.reporter.done = self.n
            self.reporter.report(f"{self.n / 1e6:.0f} of {self.total / 1e6:.0f} MB")

    def __getattr__(self, name: str) -> Any:  # set_description, refresh, close, ...: nothing to do
        return lambda *args, **kwargs: None

    def __enter__(self) -> "_DownloadProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __iter__(self):  # hf_thread_map may iterate a bar over its inputs
        return iter(())


def _download(name: str, cache_dir: str, progress: ProgressCallback | None) -> None:
    """Fetch only the files a model needs into the HF cache, reporting bytes as they come."""
    from huggingface_hub import list_repo_files, snapshot_download

    files = list_repo_files(name)
    weights = weight_files(files)
    if not weights:
        raise ModelLoadError(f"{name}: the repository has no safetensors or PyTorch weights")
    if not any(w.endswith(".safetensors") for w in weights):
        logger.warning("%s has no safetensors weights; downloading PyTorch pickle files", name)
    reporter = ProgressReporter(progress, total=0, stage="downloading")

    def make_bar(*args: Any, **kwargs: Any) -> _DownloadProgress:
        return _DownloadProgress(reporter, *args, **kwargs)

    snapshot_download(name, cache_dir=cache_dir, allow_patterns=[*_HUB_METADATA, *weights],
                      tqdm_class=make_bar if progress else None)  # type: ignore[arg-type]


def _load_hub(
    name: str, family: str, local_files_only: bool | None, progress: ProgressCallback | None = None
) -> tuple[Any, dict[str, Any], str]:
    cache_dir = str(catalogue.hub_cache_dir())
    commit = catalogue.cached_commit(name)
    offline = catalogue.hub_offline()
    if commit is None:
        if offline:
            raise _not_available(name, "HF_HUB_OFFLINE is set")
        if local_files_only:
            raise _not_available(name, "local_files_only=True forbids the network")
        if not catalogue.hub_reachable():
            raise _not_available(name, "the Hugging Face hub cannot be reached")
        try:
            _download(name, cache_dir, progress)
        except EmbedvizError:
            raise
        except Exception as error:
            raise ModelLoadError(f"{name}: download failed ({error}); check the network and try again") from error
        commit = catalogue.cached_commit(name)
        revision: str | None = commit
        files_only = commit is not None
    elif local_files_only is False and not offline:
        revision, files_only = None, False  # the caller asked for the hub's latest revision
    else:
        # Pin to the cached commit: config, weights and preprocessor all come from one snapshot.
        revision, files_only = commit, True

    model = _from_pretrained(name, family, name, revision=revision, cache_dir=cache_dir, local_files_only=files_only)
    loaded_commit = catalogue.cached_commit(name, revision) or commit
    if loaded_commit is None:
        logger.warning("%s: could not find the loaded snapshot in %s; recording revision 'main'", name, cache_dir)
        loaded_commit = "main"
    snapshot = catalogue.cached_snapshot(name, revision)
    if snapshot is not None:
        _warn_if_pickle(name, snapshot)

    found: dict[str, Any] | None = None
    try:
        from transformers.utils import cached_file

        path = cached_file(
            name,
            "preprocessor_config.json",
            cache_dir=cache_dir,
            revision=revision,
            local_files_only=files_only,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        found = _read_preprocessor(Path(path)) if path else None
    except ModelLoadError:
        raise
    except Exception as error:  # a missing preprocessor is recoverable: defaults below
        logger.debug("%s: preprocessor_config.json lookup failed: %s", name, error)
    return model, _preprocessor_or_default(name, family, model, found), loaded_commit


# ---------------------------------------------------------------------- extractor


def _make_extractor(
    name: str,
    family: str,
    model: Any,
    preprocessor: Mapping[str, Any],
    *,
    key: str,
    device: str,
    whisper_mode: str,
    source: str,
) -> Extractor:
    from embedviz.extractors.base import ModelInfo

    options: tuple[tuple[str, str], ...] = ()
    if family == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if not isinstance(model, WhisperEncoder):
            model = model.get_encoder()  # the decoder is freed with the caller's last reference
        options = (("whisper_mode", whisper_mode),)
    config = model.config
    sample_rate = int(preprocessor.get("sampling_rate") or getattr(config, "sampling_rate", 0) or 16000)
    info = ModelInfo(
        name=name,
        family=family,
        key=key,
        sample_rate=sample_rate,
        layer_names=catalogue.layer_names_for(family, config),
        n_params=int(sum(p.numel() for p in model.parameters())),
        options=options,
    )
    logger.info("%s: loaded %s (%s, %d parameters) on %s", name, type(model).__name__, source, info.n_params, device)
    return _construct(family, model, info=info, device=device, preprocessor=dict(preprocessor), mode=whisper_mode)


def _construct(family: str, model: Any, *, info: ModelInfo, device: str, preprocessor: dict[str, Any],
               mode: str) -> Extractor:
    if family in ("wav2vec2", "hubert", "wavlm"):
        from embedviz.extractors.ssl import SSLExtractor

        return SSLExtractor(model, info=info, device=device, preprocessor=preprocessor)
    if family == "whisper":
        from embedviz.extractors.whisper import WhisperExtractor

        return WhisperExtractor(
            model, info=info, device=device, preprocessor=preprocessor, mode=mode  # type: ignore[arg-type]
        )
    if family == "dac":
        from embedviz.extractors.dac import DacExtractor

        return DacExtractor(model, info=info, device=device, preprocessor=preprocessor)
    raise ModelLoadError(f"{info.name}: no extractor for family {family!r}")
