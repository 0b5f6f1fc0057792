"""What models exist, what their layers are, and whether they can run right now.

Everything here works offline and without torch: the app lists the catalogue before any
model is loaded. Layer names come from configs EMBEDDED below (the few architecture
fields that decide the layers, as in each checkpoint's ``config.json``), passed to each
extractor module's ``layer_names_for_config``; no weights or network are needed.

Names a user can ask for:

* a catalogue id (``facebook/wav2vec2-base``, ``openai/whisper-tiny``, ``descript/dac_16khz``, ...);
* ``random-init:<catalogue id>``: that architecture with seeded random weights (a control);
* ``baseline:mel``: log-mel / MFCC features (no weights);
* a local folder in Hugging Face format (``config.json`` + weights + ``preprocessor_config.json``);
* any other hub id already in the Hugging Face cache whose ``model_type`` is supported.

``import embedviz.catalogue`` imports neither torch nor numpy; ``CATALOGUE`` is built on
first access (it imports the light extractor modules, which import numpy but not torch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
import types
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from embedviz.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from types import MappingProxyType

logger = logging.getLogger(__name__)

Family = Literal["wav2vec2", "hubert", "wavlm", "whisper", "dac", "baseline"]
FAMILIES: tuple[str, ...] = ("wav2vec2", "hubert", "wavlm", "whisper", "dac", "baseline")

#: transformers ``model_type`` -> embedviz family, for folders and cached repos.
MODEL_TYPE_FAMILY: Mapping[str, str] = {
    "wav2vec2": "wav2vec2",
    "hubert": "hubert",
    "wavlm": "wavlm",
    "whisper": "whisper",
    "dac": "dac",
}

RANDOM_INIT_PREFIX = "random-init:"
BASELINE_ID = "baseline:mel"
BASELINE_IDENTITY = "baseline:mel:v1"
#: Bump when the random-init recipe changes (it changes the weights for a given seed).
RANDOM_INIT_VERSION = "v1"

#: Weight files transformers can load, in order of preference.
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """One model the app can offer, described without loading it.

    Attributes:
        id: catalogue id, ``random-init:<id>``, ``baseline:mel``, a hub id or a folder path.
        family: ``wav2vec2 | hubert | wavlm | whisper | dac | baseline``.
        n_params: approximate parameter count of the published model (0 for baselines).
        sample_rate: audio rate the model expects, Hz.
        layers: layer names in network order (see docs/architecture.md).
        description: one sentence for the model picker.
        label: short display name.
    """

    id: str
    family: str
    n_params: int
    sample_rate: int
    layers: tuple[str, ...]
    description: str
    label: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ConfigError("ModelSpec.id must be a non-empty string")
        if self.family not in FAMILIES:
            raise ConfigError(f"{self.id}: family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if not isinstance(self.n_params, int) or self.n_params < 0:
            raise ConfigError(f"{self.id}: n_params must be a non-negative int, got {self.n_params!r}")
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ConfigError(f"{self.id}: sample_rate must be a positive int, got {self.sample_rate!r}")
        if not isinstance(self.layers, tuple) or not self.layers or not all(isinstance(x, str) for x in self.layers):
            raise ConfigError(f"{self.id}: layers must be a non-empty tuple of strings")
        if len(set(self.layers)) != len(self.layers):
            raise ConfigError(f"{self.id}: layer names must be unique, got {list(self.layers)}")
        if not isinstance(self.label, str) or not self.label.strip():
            raise ConfigError(f"{self.id}: label must be a non-empty string")

    @property
    def is_random_init(self) -> bool:
        return self.id.startswith(RANDOM_INIT_PREFIX)

    @property
    def is_baseline(self) -> bool:
        return self.family == "baseline"


@dataclass(frozen=True)
class Availability:
    """Whether a model can run now.

    ``status``: ``builtin`` (baseline / random-init, nothing to fetch), ``local`` (a folder),
    ``cached`` (in the Hugging Face cache), ``download`` (will be fetched from the hub),
    ``offline`` (not cached and the hub cannot be reached). ``detail`` says why, for display.
    """

    status: Literal["builtin", "cached", "local", "download", "offline"]
    detail: str

    def __post_init__(self) -> None:
        if self.status not in ("builtin", "cached", "local", "download", "offline"):
            raise ConfigError(f"Availability.status {self.status!r} is not a known status")

    @property
    def ready(self) -> bool:
        """True when loading needs no network."""
        return self.status in ("builtin", "cached", "local")


# ---------------------------------------------------------------------- embedded configs


@dataclass(frozen=True)
class _Entry:
    id: str
    model_type: str
    label: str
    n_params: int
    description: str
    config: Mapping[str, Any]  # kwargs of the transformers config class (architecture fields only)
    preprocessor: Mapping[str, Any]  # preprocessor_config.json defaults (used for random-init)


def _w2v_pp(*, normalize: bool = True, mask: bool = False) -> dict[str, Any]:
    return {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": 16000,
        "padding_value": 0.0,
        "padding_side": "right",
        "do_normalize": normalize,
        "return_attention_mask": mask,
    }


def _whisper_pp(n_mels: int) -> dict[str, Any]:
    return {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": n_mels,
        "sampling_rate": 16000,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
        "padding_value": 0.0,
        "return_attention_mask": False,
    }


def _dac_pp(sampling_rate: int, hop_length: int) -> dict[str, Any]:
    return {
        "feature_extractor_type": "DacFeatureExtractor",
        "feature_size": 1,
        "sampling_rate": sampling_rate,
        "padding_value": 0.0,
        "hop_length": hop_length,
    }


_W2V_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
_W2V_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
_GROUP = {"feat_extract_norm": "group", "do_stable_layer_norm": False, "conv_bias": False}
_LAYER = {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True}

# (d_model, layers, heads, ffn) of the released Whisper sizes.
_WHISPER_SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (384, 4, 6, 1536),
    "base": (512, 6, 8, 2048),
    "small": (768, 12, 12, 3072),
    "medium": (1024, 24, 16, 4096),
    "large": (1280, 32, 20, 5120),
}
_WHISPER_PARAMS = {"tiny": 39_000_000, "base": 74_000_000, "small": 244_000_000, "medium": 769_000_000,
                   "large": 1_550_000_000}


def _whisper(size: str, *, english: bool = False, version: str = "") -> _Entry:
    d_model, layers, heads, ffn = _WHISPER_SIZES[size]
    n_mels = 128 if version == "v3" else 80
    vocab = 51864 if english else (51866 if version == "v3" else 51865)
    suffix = (".en" if english else "") + (f"-{version}" if version else "")
    label = f"Whisper {size}{suffix}"
    what = "English-only" if english else "multilingual"
    return _Entry(
        id=f"openai/whisper-{size}{suffix}",
        model_type="whisper",
        label=label,
        n_params=_WHISPER_PARAMS[size],
        description=(
            f"OpenAI Whisper {size}{suffix} ({what} speech recognition); encoder only: "
            f"{layers} layers x {d_model}-d, {n_mels} mel bins, 30 s window."
        ),
        config={
            "d_model": d_model,
            "encoder_layers": layers,
            "decoder_layers": layers,
            "encoder_attention_heads": heads,
            "decoder_attention_heads": heads,
            "encoder_ffn_dim": ffn,
            "decoder_ffn_dim": ffn,
            "num_mel_bins": n_mels,
            "vocab_size": vocab,
            "max_source_positions": 1500,
        },
        preprocessor=_whisper_pp(n_mels),
    )


def _dac(khz: str, ratios: list[int], n_codebooks: int, rate: int, n_params: int) -> _Entry:
    hop = 1
    for r in ratios:
        hop *= r
    return _Entry(
        id=f"descript/dac_{khz}khz",
        model_type="dac",
        label=f"DAC {khz} kHz",
        n_params=n_params,
        description=(
            f"Descript Audio Codec at {rate} Hz: conv encoder (hop {hop}) and {n_codebooks} residual "
            "codebooks; layers are encoder blocks, latent, quantized and per-codebook vectors."
        ),
        config={
            "encoder_hidden_size": 64,
            "downsampling_ratios": ratios,
            "decoder_hidden_size": 1536,
            "n_codebooks": n_codebooks,
            "codebook_size": 1024,
            "codebook_dim": 8,
            "sampling_rate": rate,
        },
        preprocessor=_dac_pp(rate, hop),
    )


_ENTRIES: tuple[_Entry, ...] = (
    _Entry(
        "facebook/wav2vec2-base", "wav2vec2", "wav2vec2-base", 95_000_000,
        "Wav2Vec2 base, self-supervised on LibriSpeech 960 h (no fine-tuning); 12 layers x 768-d.",
        {**_W2V_BASE, **_GROUP}, _w2v_pp(),
    ),
    _Entry(
        "facebook/wav2vec2-base-960h", "wav2vec2", "wav2vec2-base-960h", 95_000_000,
        "Wav2Vec2 base fine-tuned for English ASR (CTC) on LibriSpeech 960 h; 12 layers x 768-d.",
        {**_W2V_BASE, **_GROUP}, _w2v_pp(),
    ),
    _Entry(
        "facebook/wav2vec2-large-960h", "wav2vec2", "wav2vec2-large-960h", 317_000_000,
        "Wav2Vec2 large, pre-trained and fine-tuned (CTC) on LibriSpeech 960 h; 24 layers x 1024-d.",
        {**_W2V_LARGE, **_GROUP}, _w2v_pp(),
    ),
    _Entry(
        "facebook/wav2vec2-large-960h-lv60", "wav2vec2", "wav2vec2-large-960h-lv60", 317_000_000,
        "Wav2Vec2 large pre-trained on Libri-Light 60k h, fine-tuned (CTC) on LibriSpeech 960 h; "
        "24 layers x 1024-d.",
        {**_W2V_LARGE, **_LAYER}, _w2v_pp(mask=True),
    ),
    _Entry(
        "facebook/wav2vec2-large-960h-lv60-self", "wav2vec2", "wav2vec2-large-960h-lv60-self", 317_000_000,
        "Wav2Vec2 large (Libri-Light 60k h) with self-training, fine-tuned (CTC) on LibriSpeech 960 h; "
        "24 layers x 1024-d.",
        {**_W2V_LARGE, **_LAYER}, _w2v_pp(mask=True),
    ),
    _whisper("tiny"),
    _whisper("base"),
    _whisper("small"),
    _whisper("medium"),
    _whisper("large"),
    _whisper("large", version="v2"),
    _whisper("large", version="v3"),
    _whisper("tiny", english=True),
    _whisper("base", english=True),
    _whisper("small", english=True),
    _whisper("medium", english=True),
    _dac("16", [2, 4, 5, 8], 12, 16000, 74_000_000),
    _dac("24", [2, 4, 5, 8], 32, 24000, 75_000_000),
    _dac("44", [2, 4, 8, 8], 9, 44100, 77_000_000),
    _Entry(
        "facebook/hubert-base-ls960", "hubert", "HuBERT base", 95_000_000,
        "HuBERT base, self-supervised (masked prediction of clustered units) on LibriSpeech 960 h; "
        "12 layers x 768-d.",
        {**_W2V_BASE, **_GROUP, "feat_proj_layer_norm": True}, _w2v_pp(normalize=False),
    ),
    _Entry(
        "microsoft/wavlm-base", "wavlm", "WavLM base", 95_000_000,
        "WavLM base, self-supervised with denoising on LibriSpeech 960 h; 12 layers x 768-d.",
        {**_W2V_BASE, **_GROUP, "num_buckets": 320, "max_bucket_distance": 800}, _w2v_pp(normalize=False, mask=True),
    ),
)
_ENTRY_BY_ID: dict[str, _Entry] = {e.id: e for e in _ENTRIES}

# Defaults of the transformers config classes for the fields that decide layer names, used
# when a local config.json leaves them out.
_LAYER_FIELD_DEFAULTS: dict[str, dict[str, Any]] = {
    "wav2vec2": {"num_hidden_layers": 12},
    "hubert": {"num_hidden_layers": 12},
    "wavlm": {"num_hidden_layers": 12},
    "whisper": {"encoder_layers": 4},
    "dac": {"downsampling_ratios": [2, 4, 8, 8], "n_codebooks": 9, "sampling_rate": 16000},
}


def layer_names_for(family: str, config: Any) -> tuple[str, ...]:
    """Layer names of ``family`` for ``config`` (a transformers config or any object with its fields)."""
    if family in ("wav2vec2", "hubert", "wavlm"):
        from embedviz.extractors.ssl import layer_names_for_config
    elif family == "whisper":
        from embedviz.extractors.whisper import layer_names_for_config
    elif family == "dac":
        from embedviz.extractors.dac import layer_names_for_config
    elif family == "baseline":
        from embedviz.extractors.baseline import layer_names_for_config
    else:
        raise ModelLoadError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return tuple(layer_names_for_config(config))


def _namespace(family: str, fields: Mapping[str, Any]) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{**_LAYER_FIELD_DEFAULTS.get(family, {}), **dict(fields)})


def _spec_from_entry(entry: _Entry) -> ModelSpec:
    family = MODEL_TYPE_FAMILY[entry.model_type]
    return ModelSpec(
        id=entry.id,
        family=family,
        n_params=entry.n_params,
        sample_rate=int(entry.preprocessor["sampling_rate"]),
        layers=layer_names_for(family, _namespace(family, entry.config)),
        description=entry.description,
        label=entry.label,
    )


def _baseline_spec() -> ModelSpec:
    return ModelSpec(
        id=BASELINE_ID,
        family="baseline",
        n_params=0,
        sample_rate=16000,
        layers=layer_names_for("baseline", None),
        description="Signal-processing baseline: 80-band log-mel spectrogram and 13 MFCCs + deltas (39-d), "
        "25 ms windows every 10 ms. No weights.",
        label="Log-mel / MFCC baseline",
    )


_CATALOGUE: Mapping[str, ModelSpec] | None = None
_CATALOGUE_LOCK = threading.Lock()


def _catalogue() -> Mapping[str, ModelSpec]:
    global _CATALOGUE
    with _CATALOGUE_LOCK:
        if _CATALOGUE is None:
            from types import MappingProxyType

            specs = {e.id: _spec_from_entry(e) for e in _ENTRIES}
            specs[BASELINE_ID] = _baseline_spec()
            _CATALOGUE = MappingProxyType(specs)
        return _CATALOGUE


def __getattr__(name: str) -> Any:
    # CATALOGUE is built lazily so that importing this module stays cheap (no numpy).
    if name == "CATALOGUE":
        return _catalogue()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    CATALOGUE: MappingProxyType[str, ModelSpec]


def catalogue_ids() -> tuple[str, ...]:
    """Ids of the real (hub) catalogue entries, in display order (no baseline, no random-init)."""
    return tuple(e.id for e in _ENTRIES)


def embedded_config(model_id: str) -> tuple[str, dict[str, Any]]:
    """``(model_type, config kwargs)`` embedded for catalogue id ``model_id``.

    Raises:
        ModelLoadError: ``model_id`` is not a catalogue model.
    """
    entry = _ENTRY_BY_ID.get(model_id)
    if entry is None:
        raise ModelLoadError(
            f"{model_id!r} is not in the catalogue; random-init needs one of: {', '.join(_ENTRY_BY_ID)}"
        )
    return entry.model_type, dict(entry.config)


def default_preprocessor(model_id: str) -> dict[str, Any]:
    """The ``preprocessor_config.json`` contents embedded for catalogue id ``model_id``."""
    entry = _ENTRY_BY_ID.get(model_id)
    if entry is None:
        raise ModelLoadError(f"{model_id!r} is not in the catalogue")
    return dict(entry.preprocessor)


# ---------------------------------------------------------------------- name resolution


def is_random_init(name: str) -> bool:
    return name.startswith(RANDOM_INIT_PREFIX)


def random_init_base(name: str) -> str:
    """``random-init:<id>`` -> ``<id>`` (validated against the catalogue)."""
    base = name[len(RANDOM_INIT_PREFIX):].strip()
    if base not in _ENTRY_BY_ID:
        raise ModelLoadError(
            f"{name!r}: random-init needs a catalogue model id after 'random-init:', e.g. "
            f"'random-init:facebook/wav2vec2-base'; {base!r} is not one"
        )
    return base


def looks_like_path(name: str) -> bool:
    """True for names that can only be folders (absolute, ./, ~/, or with a backslash)."""
    return name.startswith(("/", ".", "~")) or "\\" in name or (os.sep in name and not _HUB_ID_RE.match(name))


def local_folder(name: str | os.PathLike[str]) -> Path | None:
    """The folder ``name`` points to, if it is an existing directory."""
    path = Path(os.path.expanduser(str(name)))
    return path.resolve() if path.is_dir() else None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{path.parent}: no {path.name}; {what}") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: cannot read {path.name} ({error}); fix or replace the file") from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: {path.name} is not a JSON object")
    return data


def folder_family(folder: Path) -> str:
    """Family of an HF-format model folder, from ``config.json`` ``model_type``.

    Raises:
        ModelLoadError: no config.json, unreadable, or an unsupported ``model_type``.
    """
    config = _read_json(folder / "config.json", "it is not a Hugging Face model folder (expected config.json, "
                        "model.safetensors and preprocessor_config.json)")
    model_type = config.get("model_type")
    family = MODEL_TYPE_FAMILY.get(str(model_type))
    if family is None:
        raise ModelLoadError(
            f"{folder}: model_type {model_type!r} in config.json is not supported; embedviz loads "
            f"{', '.join(MODEL_TYPE_FAMILY)} models"
        )
    return family


def _safetensors_param_count(path: Path) -> int:
    """Sum of tensor sizes from a safetensors header (reads only the header)."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        if size > 100_000_000:
            raise ValueError("implausible safetensors header")
        header = json.loads(handle.read(size))
    total = 0
    for key, value in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in value.get("shape", []):
            count *= int(dim)
        total += count
    return total


def _folder_param_count(folder: Path) -> int:
    try:
        shards = sorted(folder.glob("*.safetensors"))
        if shards:
            return sum(_safetensors_param_count(p) for p in shards)
        bins = sorted(folder.glob("pytorch_model*.bin"))
        return sum(p.stat().st_size for p in bins) // 4  # float32 estimate
    except (OSError, ValueError) as error:
        logger.debug("cannot count parameters in %s: %s", folder, error)
        return 0


def _spec_from_folder(folder: Path, spec_id: str) -> ModelSpec:
    family = folder_family(folder)
    config = _read_json(folder / "config.json", "")
    preprocessor_path = folder / "preprocessor_config.json"
    preprocessor = _read_json(preprocessor_path, "") if preprocessor_path.is_file() else {}
    sample_rate = int(preprocessor.get("sampling_rate") or config.get("sampling_rate") or 16000)
    try:
        layers = layer_names_for(family, _namespace(family, config))
    except (TypeError, ValueError, AttributeError) as error:
        raise ModelLoadError(f"{folder}: config.json does not describe a usable {family} model: {error}") from error
    return ModelSpec(
        id=spec_id,
        family=family,
        n_params=_folder_param_count(folder),
        sample_rate=sample_rate,
        layers=layers,
        description=f"{family} model from {folder}",
        label=folder.name if spec_id == str(folder) else spec_id,
    )


def model_spec(name: str) -> ModelSpec:
    """Describe ``name`` (catalogue id, ``random-init:<id>``, ``baseline:mel``, folder or cached hub id).

    Raises:
        ModelLoadError: the folder is not a supported model, the random-init base is unknown,
            or a hub id is neither in the catalogue nor in the Hugging Face cache.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError("model name is empty; pick a catalogue model, a local folder or 'baseline:mel'")
    name = name.strip()
    catalogue = _catalogue()
    if name in catalogue:
        return catalogue[name]
    if is_random_init(name):
        base = catalogue[random_init_base(name)]
        return ModelSpec(
            id=name,
            family=base.family,
            n_params=base.n_params,
            sample_rate=base.sample_rate,
            layers=base.layers,
            description=f"Control: {base.label} architecture with random (seeded) weights, no training.",
            label=f"{base.label} (random init)",
        )
    folder = local_folder(name)
    if folder is not None:
        return _spec_from_folder(folder, str(folder))
    if _HUB_ID_RE.match(name) and not looks_like_path(name):
        snapshot = cached_snapshot(name)
        if snapshot is not None:
            return _spec_from_folder(snapshot, name)
        raise ModelLoadError(
            f"{name!r} is not in the catalogue and not in the Hugging Face cache ({hub_cache_dir()}); "
            "pick a catalogue model, or download it into the cache or a local folder first"
        )
    raise ModelLoadError(f"{name!r}: no such model folder; give a folder containing config.json, or a catalogue id")


# ---------------------------------------------------------------------- HF cache and hub


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set (read at call time)."""
    return _is_true(os.environ.get("HF_HUB_OFFLINE")) or _is_true(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, honouring HF_HUB_CACHE / HF_HOME (read at call time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expanduser(os.environ[var]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def _cached_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache_dir()), revision=revision)
    except (ValueError, OSError) as error:  # malformed id or unreadable cache
        logger.debug("cache lookup %s/%s failed: %s", repo_id, filename, error)
        return None
    return Path(found) if isinstance(found, str) else None


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The HF-cache snapshot folder of ``repo_id`` if it holds config.json and complete weights."""
    config = _cached_file(repo_id, "config.json", revision)
    if config is None:
        return None
    snapshot = config.parent
    for weights in WEIGHT_FILES:
        found = _cached_file(repo_id, weights, revision)
        if found is None:
            continue
        if not weights.endswith(".index.json"):
            return snapshot
        try:
            shards = set(json.loads(found.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if all(_cached_file(repo_id, shard, revision) is not None for shard in shards):
            return snapshot
    return None


def cached_commit(repo_id: str, revision: str | None = None) -> str | None:
    """Commit hash of the cached snapshot of ``repo_id`` (None if not fully cached)."""
    snapshot = cached_snapshot(repo_id, revision)
    return snapshot.name if snapshot is not None else None


_REACH_TTL_S = 60.0
_REACH_TIMEOUT_S = 2.0
_reach_lock = threading.Lock()
_reach_memo: tuple[float, str, bool] | None = None  # (checked at, endpoint, reachable)


def _probe(url: str, result: list[bool]) -> None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "embedviz"})
    try:
        with urllib.request.urlopen(request, timeout=_REACH_TIMEOUT_S):
            result.append(True)
    except urllib.error.HTTPError:
        result.append(True)  # the server answered, even if with an error status
    except (urllib.error.URLError, OSError, ValueError):
        result.append(False)


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers within ~2 s (memoised for 60 s; False when offline mode is set).

    The probe runs on a daemon thread and is abandoned after the timeout, so a slow DNS
    lookup cannot hang the caller.
    """
    global _reach_memo
    if hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    with _reach_lock:
        now = time.monotonic()
        if _reach_memo is not None and _reach_memo[1] == endpoint and now - _reach_memo[0] < _REACH_TTL_S:
            return _reach_memo[2]
        result: list[bool] = []
        thread = threading.Thread(target=_probe, args=(endpoint + "/api/whoami-v2", result), daemon=True)
        thread.start()
        thread.join(_REACH_TIMEOUT_S + 0.5)
        reachable = bool(result and result[0])
        _reach_memo = (time.monotonic(), endpoint, reachable)
        return reachable


def availability(name: str, *, check_hub: bool = True) -> Availability:
    """Whether ``name`` can run now, without loading it. Never blocks for more than ~2.5 s.

    ``check_hub=False`` skips the network probe: uncached hub models report ``download``
    (or ``offline`` when HF_HUB_OFFLINE is set).

    Raises:
        ModelLoadError: ``name`` is a path that does not exist, a bad random-init name,
            or a folder that is not a supported model.
    """
    name = (name or "").strip()
    if name == BASELINE_ID:
        return Availability("builtin", "computed from the audio; no weights")
    if is_random_init(name):
        random_init_base(name)
        return Availability("builtin", "random weights built from the embedded config; no download")
    folder = local_folder(name)
    if folder is not None:
        folder_family(folder)
        return Availability("local", f"local folder {folder}")
    if looks_like_path(name) or not _HUB_ID_RE.match(name):
        raise ModelLoadError(f"{name!r}: no such model folder, and not a hub id like 'org/name'")
    commit = cached_commit(name)
    if commit is not None:
        return Availability("cached", f"in the Hugging Face cache {hub_cache_dir()} (commit {commit[:10]})")
    if hub_offline():
        return Availability(
            "offline",
            "not in the Hugging Face cache and HF_HUB_OFFLINE is set; download it on a machine with "
            "network access (or point HF_HUB_CACHE at a cache that has it, or use a local folder)",
        )
    if not check_hub:
        return Availability("download", "not cached; will be downloaded from the Hugging Face hub")
    if hub_reachable():
        return Availability("download", "not cached; will be downloaded from the Hugging Face hub")
    return Availability(
        "offline",
        "not in the Hugging Face cache and the hub cannot be reached; connect to the network, or "
        "copy the model into the cache or a local folder",
    )


# ---------------------------------------------------------------------- identity


_hash_lock = threading.Lock()
_file_hashes: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        cached = _file_hashes.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _file_hashes[key] = value
    return value


def _identity_files(folder: Path) -> list[Path]:
    names = {"config.json", "preprocessor_config.json"}
    files = [p for p in folder.iterdir() if p.is_file() and (
        p.name in names or p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json"))]
    return sorted(files, key=lambda p: p.name)


def folder_identity(folder: Path) -> str:
    """``local:<sha256>`` over config.json, preprocessor_config.json and the weight files.

    Each file's hash is memoised by (path, size, mtime), so repeated calls do not re-read
    multi-GB weights unless they change.
    """
    digest = hashlib.sha256()
    for path in _identity_files(folder):
        digest.update(f"{path.name}\0{_file_sha256(path)}\n".encode())
    return "local:" + digest.hexdigest()


def model_identity(name: str, *, seed: int = 0) -> str:
    """A cheap, stable identity of the weights ``name`` would load (nothing is loaded).

    ``<id>@<commit>`` for cached hub models (``<id>@main`` when not cached yet),
    ``local:<sha256>`` for folders, ``random-init:<id>:seed<seed>:v1``, ``baseline:mel:v1``.
    """
    name = (name or "").strip()
    if name == BASELINE_ID:
        return BASELINE_IDENTITY
    if is_random_init(name):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        return f"{RANDOM_INIT_PREFIX}{random_init_base(name)}:seed{seed}:{RANDOM_INIT_VERSION}"
    folder = local_folder(name)
    if folder is not None:
        folder_family(folder)
        return folder_identity(folder)
    if looks_like_path(name) or not _HUB_ID_RE.match(name):
        raise ModelLoadError(f"{name!r}: no such model folder, and not a hub id like 'org/name'")
    commit = cached_commit(name)
    return f"{name}@{commit or 'main'}"


# ---------------------------------------------------------------------- local folders


def _is_model_folder(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        logger.debug("skipping %s: unreadable config.json", path)
        return False
    return isinstance(data, dict) and str(data.get("model_type")) in MODEL_TYPE_FAMILY


def list_local_models(roots: Sequence[Path | str]) -> list[Path]:
    """HF-format model folders with a supported ``model_type``, directly under or one level below each root.

    Missing roots are skipped. Hidden folders are ignored. Sorted, without duplicates.
    """
    found: set[Path] = set()
    for root in roots:
        root_path = Path(os.path.expanduser(str(root)))
        if not root_path.is_dir():
            logger.debug("model root %s does not exist", root_path)
            continue
        try:
            children = [p for p in root_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError as error:
            logger.warning("cannot list model root %s: %s", root_path, error)
            continue
        for child in children:
            if _is_model_folder(child):
                found.add(child.resolve())
                continue
            try:
                grandchildren = [p for p in child.iterdir() if p.is_dir() and not p.name.startswith(".")]
            except OSError:
                continue
            found.update(g.resolve() for g in grandchildren if _is_model_folder(g))
    return sorted(found)
