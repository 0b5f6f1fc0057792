"""Tiny randomly initialised speech models, saved exactly like real checkpoints.

Tests never download weights: every family embedviz supports is built here from a
transformers config with tiny sizes, seeded, and written with ``save_pretrained``
(safetensors) next to a matching ``preprocessor_config.json``. The folders load through
the same ``from_pretrained`` code path as a real hub checkpoint.

Two layouts:

* :func:`save_tiny_model` writes a plain HF model folder (a "local model").
* :func:`save_into_hf_cache` writes an HF-cache-shaped repo
  (``models--org--name/{blobs,refs,snapshots/<commit>}``) so that, with ``HF_HUB_CACHE``
  pointed at it and ``HF_HUB_OFFLINE=1``, a hub id resolves from the cache.

Runnable: ``python -m tests.tiny_models OUT_DIR`` writes every family to
``OUT_DIR/<family>`` (used as a model root by the end-to-end tests).

Sizes are chosen so the conv front ends keep their real strides (wav2vec2 family: 20 ms
frames; DAC: hop 320 at 16 kHz; Whisper: 80 mel bins, 1500 positions), so frame counts
and rates in tests are the real ones; only widths and depths are tiny.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Families with a tiny builder, in the order ``python -m tests.tiny_models`` writes them.
FAMILIES: tuple[str, ...] = ("wav2vec2", "hubert", "wavlm", "whisper", "dac")

#: Variants per family ('' is the default). wav2vec2 'layer' is the lv60-style model:
#: feat_extract_norm='layer', stable layer norm, attention mask, saved as a CTC head model.
VARIANTS: dict[str, tuple[str, ...]] = {
    "wav2vec2": ("", "layer"),
    "hubert": ("",),
    "wavlm": ("",),
    "whisper": ("",),
    "dac": ("",),
}

SEED = 1234

# Tiny transformer sizes shared by the wav2vec2 family; conv kernels/strides are the real
# ones so the frame-count formula and 50 frames/s hold.
_SSL_COMMON: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 16, 16, 16, 16, 16, 16),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    vocab_size=8,
    layerdrop=0.0,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    final_dropout=0.0,
    mask_time_prob=0.0,
    apply_spec_augment=False,
)


def _check_family(family: str, variant: str) -> None:
    if family not in VARIANTS:
        raise ValueError(f"unknown tiny family {family!r}; expected one of {FAMILIES}")
    if variant not in VARIANTS[family]:
        raise ValueError(f"unknown variant {variant!r} for {family}; expected one of {VARIANTS[family]}")


def tiny_config(family: str, variant: str = "", **overrides: Any) -> Any:
    """The transformers config object of the tiny ``family`` model (no weights).

    ``overrides`` replace constructor arguments (derived sizes such as DAC's hop length
    follow them), for tests that need another shape.
    """
    _check_family(family, variant)
    if family == "wav2vec2":
        from transformers import Wav2Vec2Config

        if variant == "layer":
            return Wav2Vec2Config(**{**_SSL_COMMON, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
                                     "conv_bias": True, **overrides})
        return Wav2Vec2Config(**{**_SSL_COMMON, "feat_extract_norm": "group", "do_stable_layer_norm": False,
                                 **overrides})
    if family == "hubert":
        from transformers import HubertConfig

        return HubertConfig(**{**_SSL_COMMON, "feat_extract_norm": "group", "feat_proj_layer_norm": True, **overrides})
    if family == "wavlm":
        from transformers import WavLMConfig

        return WavLMConfig(**{**_SSL_COMMON, "feat_extract_norm": "group", "num_buckets": 16,
                              "max_bucket_distance": 64, **overrides})
    if family == "whisper":
        from transformers import WhisperConfig

        return WhisperConfig(**{**dict(
            vocab_size=64,
            num_mel_bins=80,
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            max_source_positions=1500,
            max_target_positions=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            begin_suppress_tokens=None,
            suppress_tokens=None,
        ), **overrides})
    from transformers import DacConfig

    # hidden_size is derived: encoder_hidden_size * 2**len(downsampling_ratios) = 8 * 16 = 128.
    return DacConfig(**{**dict(
        encoder_hidden_size=8,
        downsampling_ratios=[2, 4, 5, 8],
        decoder_hidden_size=32,
        n_codebooks=4,
        codebook_size=64,
        codebook_dim=8,
        sampling_rate=16000,
    ), **overrides})


def tiny_preprocessor(family: str, variant: str = "", config: Any = None) -> Any:
    """The feature extractor (preprocessor) matching :func:`tiny_config` (or ``config``)."""
    _check_family(family, variant)
    config = config if config is not None else tiny_config(family, variant)
    if family in ("wav2vec2", "hubert", "wavlm"):
        from transformers import Wav2Vec2FeatureExtractor

        return Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=16000,
            padding_value=0.0,
            do_normalize=True,
            return_attention_mask=variant == "layer",
        )
    if family == "whisper":
        from transformers import WhisperFeatureExtractor

        return WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=16000)
    from transformers import DacFeatureExtractor

    return DacFeatureExtractor(feature_size=1, sampling_rate=config.sampling_rate, hop_length=config.hop_length)


def build_tiny_model(family: str, variant: str = "", *, seed: int = SEED, **overrides: Any) -> Any:
    """A seeded, randomly initialised tiny model of ``family`` in eval mode.

    The class is the one real checkpoints are saved with, so loading exercises the same
    prefix handling: wav2vec2 'layer' is a ``Wav2Vec2ForCTC`` (like -960h-lv60-self),
    Whisper a ``WhisperForConditionalGeneration`` (like openai/whisper-*).
    """
    import torch

    config = tiny_config(family, variant, **overrides)
    torch.manual_seed(seed)
    if family == "wav2vec2":
        from transformers import Wav2Vec2ForCTC, Wav2Vec2Model

        model = Wav2Vec2ForCTC(config) if variant == "layer" else Wav2Vec2Model(config)
    elif family == "hubert":
        from transformers import HubertModel

        model = HubertModel(config)
    elif family == "wavlm":
        from transformers import WavLMModel

        model = WavLMModel(config)
    elif family == "whisper":
        from transformers import WhisperForConditionalGeneration

        model = WhisperForConditionalGeneration(config)
    else:
        from transformers import DacModel

        model = DacModel(config)
    return model.eval()


def save_tiny_model(family: str, out_dir: Path, *, variant: str = "", seed: int = SEED, **overrides: Any) -> Path:
    """Write the tiny ``family`` model as an HF folder (safetensors + preprocessor config).

    Returns ``out_dir``; it then holds ``config.json``, ``model.safetensors`` and
    ``preprocessor_config.json`` and loads with ``<ModelClass>.from_pretrained(out_dir)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(family, variant, seed=seed, **overrides)
    model.save_pretrained(out_dir, safe_serialization=True)
    tiny_preprocessor(family, variant, model.config).save_pretrained(out_dir)
    # generation_config.json is irrelevant to embeddings; keep folders like a minimal repo.
    (out_dir / "generation_config.json").unlink(missing_ok=True)
    return out_dir


def save_into_hf_cache(
    family: str,
    cache_dir: Path,
    repo_id: str,
    commit: str = "0" * 40,
    *,
    variant: str = "",
    seed: int = SEED,
) -> Path:
    """Lay the tiny model out as ``repo_id`` at ``commit`` inside an HF hub cache.

    Mirrors huggingface_hub's layout: content in ``blobs/<sha256>``, symlinks in
    ``snapshots/<commit>/``, and ``refs/main`` holding the commit. Returns the snapshot
    folder. Point ``HF_HUB_CACHE`` at ``cache_dir`` to use it.
    """
    if "/" not in repo_id:
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    cache_dir = Path(cache_dir)
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    blobs = repo_dir / "blobs"
    snapshot = repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = save_tiny_model(family, Path(tmp) / "model", variant=variant, seed=seed)
        for src in sorted(staged.iterdir()):
            digest = hashlib.sha256(src.read_bytes()).hexdigest()
            blob = blobs / digest
            if not blob.exists():
                shutil.copyfile(src, blob)
            link = snapshot / src.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def save_all(out_dir: Path) -> dict[str, Path]:
    """Write every family's default tiny model to ``out_dir/<family>``."""
    out_dir = Path(out_dir)
    return {family: save_tiny_model(family, out_dir / family) for family in FAMILIES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write tiny random speech models (one folder per family).")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for family, path in save_all(args.out_dir).items():
        logger.info("%s -> %s", family, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
