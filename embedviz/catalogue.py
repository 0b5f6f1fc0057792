"""What models exist, what their layers are, and whether they can run right now.

Everything here works offline and without torch: the app lists the catalogue before any
model is loaded. Layer names come from configs EMBEDDED below (the few architecture
fields that decide the layers, as in each checkpoint's ``config.json``), passed to each
family's ``layer_names`` (see :mod:`embedviz.extractors.registry`); no weights or network
are needed.

Names a user can ask for are parsed once into a :class:`~embedviz.modelref.ModelRef`
(catalogue id, ``random-init:<id>``, ``baseline:mel``, a local folder, or another hub id
already in the Hugging Face cache). The hub cache and downloads live in :mod:`embedviz.hub`,
weight identity in :mod:`embedviz.identity`.

``import embedviz.catalogue`` imports neither torch nor numpy; ``CATALOGUE`` is built on
first access (it imports the light extractor modules, which import numpy but not torch).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from embedviz import hub
from embedviz.errors import ConfigError, ModelLoadError
from embedviz.extractors import registry
from embedviz.identity import BASELINE_IDENTITY, folder_identity, model_identity  # noqa: F401  (re-exported)
from embedviz.modelref import BASELINE_ID, RANDOM_INIT_PREFIX, ModelRef, local_folder, looks_like_path  # noqa: F401

if TYPE_CHECKING:
    from types import MappingProxyType

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One model the app can offer, described without loading it.

    Attributes:
        id: catalogue id, ``random-init:<id>``, ``baseline:mel``, a hub id or a folder path.
        family: a registered family (:func:`embedviz.extractors.registry.families`).
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
        known = registry.families()
        if self.family not in known:
            raise ConfigError(f"{self.id}: family {self.family!r} is not one of {', '.join(known)}")
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


def layer_names_for(family: str, config: Any) -> tuple[str, ...]:
    """Layer names of ``family`` for ``config`` (a transformers config or any object with its fields)."""
    return tuple(registry.family(family).layer_names(config))


def _namespace(family: str, fields: Mapping[str, Any]) -> types.SimpleNamespace:
    defaults = registry.family(family).config_defaults
    return types.SimpleNamespace(**{**dict(defaults), **dict(fields)})


def _spec_from_entry(entry: _Entry) -> ModelSpec:
    spec = registry.family_for_model_type(entry.model_type)
    assert spec is not None, entry.model_type  # the embedded entries use registered model types
    return ModelSpec(
        id=entry.id,
        family=spec.name,
        n_params=entry.n_params,
        sample_rate=int(entry.preprocessor["sampling_rate"]),
        layers=layer_names_for(spec.name, _namespace(spec.name, entry.config)),
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
    ref = ModelRef.parse(name)
    if ref.kind != "random_init":
        raise ModelLoadError(f"{name!r} is not a 'random-init:<catalogue id>' name")
    return ref.id


def model_spec(name: str | ModelRef) -> ModelSpec:
    """Describe ``name`` (catalogue id, ``random-init:<id>``, ``baseline:mel``, folder or cached hub id).

    Raises:
        ModelLoadError: the folder is not a supported model, the random-init base is unknown,
            or a hub id is neither in the catalogue nor in the Hugging Face cache.
    """
    ref = ModelRef.parse(name)
    catalogue = _catalogue()
    if ref.kind in ("catalogue", "baseline"):
        return catalogue[ref.id]
    if ref.kind == "random_init":
        base = catalogue[ref.id]
        return ModelSpec(
            id=str(ref),
            family=base.family,
            n_params=base.n_params,
            sample_rate=base.sample_rate,
            layers=base.layers,
            description=f"Control: {base.label} architecture with random (seeded) weights, no training.",
            label=f"{base.label} (random init)",
        )
    if ref.kind == "local_folder":
        return _spec_from_folder(Path(ref.id), ref.id)
    snapshot = hub.cached_snapshot(ref.id)
    if snapshot is not None:
        return _spec_from_folder(snapshot, ref.id)
    raise ModelLoadError(
        f"{ref.id!r} is not in the catalogue and not in the Hugging Face cache ({hub.hub_cache_dir()}); "
        "pick a catalogue model, or download it into the cache or a local folder first"
    )


def availability(name: str | ModelRef, *, check_hub: bool = True) -> Availability:
    """Whether ``name`` can run now, without loading it. Never blocks for more than ~2.5 s.

    ``check_hub=False`` skips the network probe: uncached hub models report ``download``
    (or ``offline`` when HF_HUB_OFFLINE is set).

    Raises:
        ModelLoadError: ``name`` is a path that does not exist, a bad random-init name,
            or a folder that is not a supported model.
    """
    ref = ModelRef.parse(name)
    if ref.kind == "baseline":
        return Availability("builtin", "computed from the audio; no weights")
    if ref.kind == "random_init":
        return Availability("builtin", "random weights built from the embedded config; no download")
    if ref.kind == "local_folder":
        folder_family(Path(ref.id))
        return Availability("local", f"local folder {ref.id}")
    commit = hub.cached_commit(ref.id)
    if commit is not None:
        return Availability("cached", f"in the Hugging Face cache {hub.hub_cache_dir()} (commit {commit[:10]})")
    if hub.hub_offline():
        return Availability(
            "offline",
            "not in the Hugging Face cache and HF_HUB_OFFLINE is set; download it on a machine with "
            "network access (or point HF_HUB_CACHE at a cache that has it, or use a local folder)",
        )
    if not check_hub:
        return Availability("download", "not cached; will be downloaded from the Hugging Face hub")
    if hub.hub_reachable():
        return Availability("download", "not cached; will be downloaded from the Hugging Face hub")
    return Availability(
        "offline",
        "not in the Hugging Face cache and the hub cannot be reached; connect to the network, or "
        "copy the model into the cache or a local folder",
    )


# ---------------------------------------------------------------------- local folders


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
    spec = registry.family_for_model_type(model_type)
    if spec is None:
        raise ModelLoadError(
            f"{folder}: model_type {model_type!r} in config.json is not supported; embedviz loads "
            f"{', '.join(registry.model_types())} models"
        )
    return spec.name


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


def check_weight_files(folder: Path, fix: str) -> None:
    """Raise a ModelLoadError naming what is wrong if ``folder``'s weights are missing or damaged.

    Checks, without loading: a weight file exists; every shard an ``*.index.json`` names is there;
    each safetensors file has a readable header and is as long as that header says (a truncated
    download is caught here, not as a traceback inside transformers). ``fix`` says what to do.
    """
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    weights = [w for w in hub.WEIGHT_FILES if w in present]
    if not weights:
        raise ModelLoadError(f"{folder}: the folder lacks its weights (none of {', '.join(hub.WEIGHT_FILES)}); {fix}")
    chosen = weights[0]
    files = [chosen]
    if chosen.endswith(".index.json"):
        index = _read_json(folder / chosen, fix)
        shards = sorted(set((index.get("weight_map") or {}).values())) if isinstance(index.get("weight_map"), dict) \
            else []
        if not shards:
            raise ModelLoadError(f"{folder / chosen}: the index names no weight shards; {fix}")
        missing = [s for s in shards if s not in present]
        if missing:
            raise ModelLoadError(f"{folder}: the folder lacks weight shard(s) {', '.join(missing[:3])}; {fix}")
        files = shards
    for name in files:
        if name.endswith(".safetensors"):
            _check_safetensors(folder / name, fix)


def _check_safetensors(path: Path, fix: str) -> None:
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a safetensors header")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > min(size, 100_000_000):
                raise ValueError("implausible header length")
            header = json.loads(handle.read(header_len))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ModelLoadError(f"{path}: damaged safetensors file ({error}); {fix}") from error
    if 8 + header_len + end != size:
        raise ModelLoadError(
            f"{path}: truncated or damaged safetensors file ({size} bytes, the header describes "
            f"{8 + header_len + end}); {fix}"
        )


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


def _is_model_folder(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        logger.debug("skipping %s: unreadable config.json", path)
        return False
    return isinstance(data, dict) and registry.family_for_model_type(data.get("model_type")) is not None


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
