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

from embedviz import catalogue, hub
from embedviz.errors import ConfigError, EmbedvizError, ModelLoadError
from embedviz.extractors import registry
from embedviz.identity import folder_identity, model_identity
from embedviz.modelref import ModelRef
from embedviz.progress import ProgressCallback
from embedviz.settings import WHISPER_MODES, check_device_name

if TYPE_CHECKING:
    from embedviz.extractors.base import Extractor

logger = logging.getLogger(__name__)

# Parameters a base model has that released checkpoints may lack because inference never
# uses them (wav2vec2's SpecAugment mask embedding).
_UNUSED_AT_INFERENCE: tuple[str, ...] = ("masked_spec_embed",)


def resolve_device(device: str = "auto") -> str:
    """``'auto'`` -> ``'cuda'``, else ``'mps'``, else ``'cpu'``; an explicit device is checked.

    Raises:
        ConfigError: the device is unknown or not available on this machine.
    """
    import torch

    wanted = check_device_name(device)
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
    check_device_name(device)  # also for weightless families, which run on the CPU anyway
    ref = ModelRef.parse(name)
    name = str(ref)
    spec = catalogue.model_spec(ref)
    family = registry.family(spec.family)
    options = {"whisper_mode": whisper_mode}  # every option a family may declare as numeric
    if not family.has_weights:
        return family.build(None, info=None, device="cpu", preprocessor={}, options=options)
    resolved = resolve_device(device)

    if ref.kind == "random_init":
        model = _random_init(ref, seed)
        # The real checkpoint's preprocessing, so the control differs from it only in weights.
        preprocessor = catalogue.default_preprocessor(ref.id)
        key = model_identity(ref, seed=seed)
        source = f"random init, seed {seed}"
    elif ref.kind == "local_folder":
        folder = Path(ref.id)
        model, preprocessor = _load_folder(name, folder, spec.family)
        key = folder_identity(folder)
        source = str(folder)
    else:
        model, preprocessor, commit = _load_hub(name, spec.family, local_files_only, progress)
        key = f"{name}@{commit}"
        source = f"{name}@{commit[:10]}"
    return _make_extractor(name, family, model, preprocessor, key=key, device=resolved, options=options,
                           source=source)


# ---------------------------------------------------------------------- sources


def build_config(model_id: str) -> Any:
    """The transformers config object of catalogue model ``model_id`` (from the embedded config)."""
    model_type, kwargs = catalogue.embedded_config(model_id)
    family = registry.family_for_model_type(model_type)
    assert family is not None, model_type  # embedded entries use registered model types
    return family.config_cls()(**kwargs)


def _random_init(ref: ModelRef, seed: int) -> Any:
    import torch

    config = build_config(ref.id)
    family = registry.family_for_model_type(config.model_type)
    assert family is not None, config.model_type
    # fork_rng keeps the caller's global RNG state untouched; only this init is seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.build_random(config) if family.build_random else family.model_cls()(config)
    logger.info("%s: built %s with random weights (seed %d)", ref, type(model).__name__, seed)
    return model.eval()


def _from_pretrained(name: str, family: str, source: str, *, fix: str = "check the model files", **kwargs: Any) -> Any:
    import torch

    cls = registry.family(family).model_cls()
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
        raise ModelLoadError(f"{name}: loading the {family} weights failed: {error}; {fix}") from error
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
    found = registry.family_for_model_type(actual)
    if found is None or found.name != family:
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


def _preprocessor_or_default(name: str, family: str, model: Any, found: dict[str, Any] | None) -> dict[str, Any]:
    if found is not None:
        return found
    if name in catalogue.catalogue_ids():
        defaults = catalogue.default_preprocessor(name)
    else:
        make_default = registry.family(family).default_preprocessor
        defaults = make_default(model.config) if make_default else {}
    logger.warning("%s: no preprocessor_config.json; using %s defaults %s", name, family, defaults)
    return defaults


def _folder_fix(folder: Path) -> str:
    return f"copy or save the complete model into {folder} again"


def _cache_fix(name: str) -> str:
    return (f"delete {hub.repo_cache_folder(name)} and download {name} again "
            f"(e.g. `hf download {name}`)")


def _load_folder(name: str, folder: Path, family: str) -> tuple[Any, dict[str, Any]]:
    catalogue.check_weight_files(folder, _folder_fix(folder))
    model = _from_pretrained(name, family, str(folder), local_files_only=True, fix=_folder_fix(folder))
    _warn_if_pickle(name, folder)
    found = _read_preprocessor(folder / "preprocessor_config.json")
    return model, _preprocessor_or_default(name, family, model, found)


def _load_hub(
    name: str, family: str, local_files_only: bool | None, progress: ProgressCallback | None = None
) -> tuple[Any, dict[str, Any], str]:
    cache_dir = str(hub.hub_cache_dir())
    commit = hub.cached_commit(name)
    offline = hub.hub_offline()
    if commit is None:
        if offline:
            raise hub.not_available(name, "HF_HUB_OFFLINE is set")
        if local_files_only:
            raise hub.not_available(name, "local_files_only=True forbids the network")
        if not hub.hub_reachable():
            raise hub.not_available(name, "the Hugging Face hub cannot be reached")
        try:
            hub.download(name, progress)
        except EmbedvizError:
            raise
        except Exception as error:
            raise ModelLoadError(f"{name}: download failed ({error}); check the network and try again") from error
        commit = hub.cached_commit(name)
        revision: str | None = commit
        files_only = commit is not None
    elif local_files_only is False and not offline:
        revision, files_only = None, False  # the caller asked for the hub's latest revision
    else:
        # Pin to the cached commit: config, weights and preprocessor all come from one snapshot.
        revision, files_only = commit, True

    if files_only:
        snapshot = hub.cached_snapshot(name, revision)
        if snapshot is not None:
            catalogue.check_weight_files(snapshot, _cache_fix(name))
    model = _from_pretrained(name, family, name, revision=revision, cache_dir=cache_dir, local_files_only=files_only,
                             fix=_cache_fix(name))
    loaded_commit = hub.cached_commit(name, revision) or commit
    if loaded_commit is None:
        logger.warning("%s: could not find the loaded snapshot in %s; recording revision 'main'", name, cache_dir)
        loaded_commit = "main"
    snapshot = hub.cached_snapshot(name, revision)
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
    family: registry.FamilySpec,
    model: Any,
    preprocessor: Mapping[str, Any],
    *,
    key: str,
    device: str,
    options: Mapping[str, Any],
    source: str,
) -> Extractor:
    from embedviz.extractors.base import ModelInfo

    if family.prepare_model is not None:
        model = family.prepare_model(model)  # e.g. Whisper keeps only its encoder
    config = model.config
    sample_rate = int(preprocessor.get("sampling_rate") or getattr(config, "sampling_rate", 0) or 16000)
    info = ModelInfo(
        name=name,
        family=family.name,
        key=key,
        sample_rate=sample_rate,
        layer_names=tuple(family.layer_names(config)),
        n_params=int(sum(p.numel() for p in model.parameters())),
        options=tuple((k, str(options[k])) for k in family.numeric_options),
    )
    logger.info("%s: loaded %s (%s, %d parameters) on %s", name, type(model).__name__, source, info.n_params, device)
    return family.build(model, info=info, device=device, preprocessor=preprocessor, options=options)
