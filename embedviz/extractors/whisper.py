"""Whisper encoder frames, layer by layer.

Layers are named ``'0'`` .. ``'N'`` (``N = config.encoder_layers``) and follow the encoder's
``hidden_states`` as transformers returns them:

* ``'0'``: after the convolutional stem (conv1, GELU, conv2, GELU) plus the sinusoidal
  positional embedding, i.e. the input of the first transformer layer;
* ``'1'`` .. ``'N-1'``: the residual stream after each transformer layer (no layer norm);
* ``'N'``: the output of the last layer *after* the encoder's final ``layer_norm`` (this is
  ``last_hidden_state``; transformers ties the last hidden state to it).

Every layer has one frame per 20 ms (50 frames/s at 16 kHz: mel hop 160 samples, conv2 stride 2).

Two modes:

* ``'padded'`` (default, exact): every clip is padded with silence to the encoder's fixed 30 s
  window (3000 mel frames), the way Whisper was trained and the way transformers'
  ``WhisperEncoder.forward`` requires, and only the frames that cover the real audio are kept:
  ``ceil(samples / 320)``, at most 1500. Items are independent, so batching is exact.
* ``'crop'`` (approximation): the encoder runs on the clip's own length (its mel frames, made
  even) with the positional embeddings sliced to that length. Whisper was trained only on 30 s
  windows, so this is an out-of-distribution approximation; it is much cheaper for short clips.
  Shapes (valid frames, widths) equal padded mode's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from embedviz.errors import ConfigError, ExtractionError, ModelLoadError
from embedviz.extractors.base import (
    Extractor,
    FrameFeatures,
    ModelInfo,
    check_waveform,
    forward_errors,
    free_device_memory,
)
from embedviz.settings import WHISPER_MODES

if TYPE_CHECKING:
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

logger = logging.getLogger(__name__)

WhisperMode = Literal["padded", "crop"]

#: Clips per forward pass in crop mode when the caller gives none (see ``batch_size_hint``).
CROP_BATCH_SIZE = 16

#: Text stored in ``ModelInfo.options`` (key ``'approximation'``) of crop-mode extractors.
CROP_APPROXIMATION_NOTE = (
    "crop mode: the encoder ran on each clip's own length, not the 30 s window Whisper was "
    "trained on; features are an approximation"
)

# WhisperFeatureExtractor.__init__ arguments we forward from preprocessor_config.json. Other keys
# (feature_extractor_type, processor_class, n_samples, nb_max_frames, ...) are derived or irrelevant.
_FEATURE_EXTRACTOR_KEYS = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft", "padding_value")


def layer_names_for_config(config: WhisperConfig) -> tuple[str, ...]:
    """Layer names a Whisper model with ``config`` exposes, without loading weights.

    ``'0'`` .. ``str(config.encoder_layers)``: the encoder's ``hidden_states`` indices.
    """
    return tuple(str(i) for i in range(int(config.encoder_layers) + 1))


class WhisperExtractor(Extractor):
    """Per-layer encoder frames of a Whisper model (see the module docstring for layers and modes).

    Args:
        model: a transformers ``WhisperModel`` (or ``WhisperForConditionalGeneration``) or a bare
            ``WhisperEncoder``. Only the encoder is kept (moved to ``device``, put in eval mode);
            the decoder is freed once the caller drops its own reference.
        info: what was loaded. ``layer_names`` is checked against the model; ``options`` gets
            ``('whisper_mode', mode)`` and, in crop mode, ``('approximation', CROP_APPROXIMATION_NOTE)``.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:0'``, ``'mps'``.
        preprocessor: the checkpoint's ``preprocessor_config.json`` as a dict (may be empty:
            Whisper's defaults are used). ``feature_size`` always follows the model's
            ``num_mel_bins``; dithering is disabled so features are reproducible.
        mode: ``'padded'`` (exact) or ``'crop'`` (approximation, see module docstring).
    """

    def __init__(
        self,
        model: Any,
        *,
        info: ModelInfo,
        device: str,
        preprocessor: Mapping[str, Any],
        mode: WhisperMode = "padded",
    ) -> None:
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if mode not in WHISPER_MODES:
            raise ConfigError(f"whisper mode must be one of {', '.join(WHISPER_MODES)}; got {mode!r}")
        if isinstance(model, WhisperEncoder):
            encoder = model
        elif hasattr(model, "get_encoder"):
            encoder = model.get_encoder()
        else:
            raise ModelLoadError(f"{info.name}: expected a Whisper model or encoder, got {type(model).__name__}")
        if not isinstance(encoder, WhisperEncoder):
            raise ModelLoadError(f"{info.name}: expected a Whisper encoder, got {type(encoder).__name__}")

        config = encoder.config
        self.mode: WhisperMode = mode
        self.device = device
        self._lock = threading.Lock()
        try:
            self._encoder: WhisperEncoder | None = encoder.to(device).eval()
        except (RuntimeError, AssertionError) as error:  # e.g. CUDA not available / not compiled in
            raise ModelLoadError(f"{info.name}: cannot move the model to device {device!r}: {error}") from error

        self._feature_extractor = _build_feature_extractor(WhisperFeatureExtractor, preprocessor, config, info.name)
        fe = self._feature_extractor
        # The encoder's window is fixed by its positional table: max_source_positions frames after
        # conv2's stride, so twice as many mel frames (3000 = 30 s for every released checkpoint).
        self._stride = int(encoder.conv1.stride[0]) * int(encoder.conv2.stride[0])
        self.max_frames = int(config.max_source_positions)
        self.window_mel_frames = self.max_frames * self._stride
        self.window_samples = self.window_mel_frames * int(fe.hop_length)
        self.samples_per_frame = int(fe.hop_length) * self._stride
        sample_rate = int(fe.sampling_rate)
        self.frame_rate = sample_rate / self.samples_per_frame
        self.max_seconds = self.window_samples / sample_rate
        self._width = int(config.d_model)

        if info.sample_rate != sample_rate:
            raise ModelLoadError(
                f"{info.name}: ModelInfo says {info.sample_rate} Hz but the preprocessor config says "
                f"{sample_rate} Hz; fix the loader so both agree"
            )
        expected = layer_names_for_config(config)
        if tuple(info.layer_names) != expected:
            logger.warning("%s: layer names %s replaced by the model's %s", info.name, info.layer_names, expected)
        options = [(k, v) for k, v in info.options if k not in ("whisper_mode", "approximation")]
        options.append(("whisper_mode", mode))
        if mode == "crop":
            options.append(("approximation", CROP_APPROXIMATION_NOTE))
        self.info = dataclasses.replace(info, layer_names=expected, options=tuple(options))
        # Crop mode runs 50 frames per 1 s clip instead of 1500: per-op overhead dominates at the
        # family's batch (sized for 30 s windows), so it takes twice as many clips per pass
        # (CPU s/clip with 2 threads: 0.118 at 8, 0.081 at 16; issue 8).
        self.batch_size_hint = CROP_BATCH_SIZE if mode == "crop" else None

    # ------------------------------------------------------------------ public API

    def extract(self, waveforms: Sequence[np.ndarray]) -> FrameFeatures:
        """Encoder frames of each mono float32 waveform (at ``sample_rate``), every layer.

        Returns ``(B, T, d_model)`` float32 arrays zero-padded past each item's valid frames
        (``ceil(samples / 320)`` at 16 kHz), valid lengths and 50 frames/s for every layer.

        Raises:
            ExtractionError: a clip is empty, not 1-D, not finite or longer than the 30 s window;
                the forward pass failed (``out_of_memory`` is True for GPU OOM).
        """
        lengths = self._check_waveforms(waveforms)
        names = self.info.layer_names
        if not waveforms:
            empty = np.zeros((0, 0, self._width), dtype=np.float32)
            return FrameFeatures(
                layers={n: empty.copy() for n in names},
                lengths={n: np.zeros(0, dtype=np.int64) for n in names},
                frame_rates={n: self.frame_rate for n in names},
            )
        valid = np.array(
            [min(self.max_frames, max(1, math.ceil(n / self.samples_per_frame))) for n in lengths], dtype=np.int64
        )
        # Padded mode needs the whole window; crop mode only the frames it feeds the encoder.
        features = self._log_mel(waveforms, None if self.mode == "padded" else int(valid.max()) * self._stride)

        batch, t_max = len(waveforms), int(valid.max())
        out = {n: np.zeros((batch, t_max, self._width), dtype=np.float32) for n in names}
        with self._lock, forward_errors(self.info.name, self.device):
            encoder = self._require_encoder()
            if self.mode == "padded":
                hidden = self._forward_padded(encoder, features)
                for name, h in zip(names, hidden):
                    out[name][:] = h[:, :t_max].float().cpu().numpy()
            else:
                # Items of one mel length share a forward pass; lengths never mix, so no padding
                # ever enters the attention of a cropped clip.
                for t in np.unique(valid):
                    idx = np.flatnonzero(valid == t)
                    hidden = self._forward_crop(encoder, features[idx, :, : int(t) * self._stride])
                    for name, h in zip(names, hidden):
                        out[name][idx, : int(t)] = h.float().cpu().numpy()
        for i, v in enumerate(valid):
            for name in names:
                out[name][i, v:] = 0.0
        return FrameFeatures(
            layers=out,
            lengths={n: valid.copy() for n in names},
            frame_rates={n: self.frame_rate for n in names},
        )

    def close(self) -> None:
        """Drop the encoder and release GPU memory. Safe to call twice."""
        with self._lock:
            if self._encoder is None:
                return
            self._encoder = None
        free_device_memory(self.device)

    # ------------------------------------------------------------------ internals

    def _require_encoder(self) -> WhisperEncoder:
        if self._encoder is None:
            raise ExtractionError(f"{self.info.name}: the extractor was closed; load the model again")
        return self._encoder

    def _check_waveforms(self, waveforms: Sequence[np.ndarray]) -> list[int]:
        lengths = []
        for i, wave in enumerate(waveforms):
            wave = check_waveform(self.info.name, i, wave)
            if wave.size > self.window_samples:
                raise ExtractionError(
                    f"{self.info.name}: clip {i} is {wave.size / self.sample_rate:.2f} s long; the Whisper encoder "
                    f"takes at most {self.max_seconds:g} s ({self.window_samples} samples). Trim the clip or "
                    f"lower the audio length limit"
                )
            lengths.append(int(wave.size))
        return lengths

    def _log_mel(self, waveforms: Sequence[np.ndarray], mel_frames: int | None = None) -> np.ndarray:
        """Log-mel of every clip, ``(B, n_mels, mel_frames)`` (default: the full window).

        Crop mode asks only for the frames it feeds the encoder, but the log-mel is computed
        on enough zero padding past the longest clip (two FFT windows) that every returned
        frame, and the per-clip normalisation (its maximum), equal the full-window values:
        the frames past that only ever see zeros, which floor at the minimum and never set
        the maximum. So crop mode no longer pays for a 30 s STFT per 1 s clip.
        """
        fe = self._feature_extractor
        if mel_frames is None or mel_frames >= self.window_mel_frames:
            length, mel_frames = self.window_samples, self.window_mel_frames
        else:
            longest = max(int(np.asarray(w).size) for w in waveforms)
            need = max(longest, mel_frames * int(fe.hop_length)) + 2 * int(fe.n_fft)
            length = min(self.window_samples, -(-need // int(fe.hop_length)) * int(fe.hop_length))
        batch = fe(
            [np.asarray(w, dtype=np.float32) for w in waveforms],
            sampling_rate=fe.sampling_rate,
            padding="max_length",
            max_length=length,
            truncation=True,
            return_tensors="np",
        )
        features = np.asarray(batch["input_features"], dtype=np.float32)
        expected_frames = length // int(fe.hop_length)
        expected = (len(waveforms), int(fe.feature_size), expected_frames)
        if features.shape != expected:
            raise ExtractionError(
                f"{self.info.name}: log-mel features have shape {features.shape}, expected {expected}; "
                "the preprocessor config does not match the model"
            )
        return features[:, :, :mel_frames]

    def _to_device(self, encoder: WhisperEncoder, features: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(features)).to(self.device, dtype=encoder.conv1.weight.dtype)

    def _forward_padded(self, encoder: WhisperEncoder, features: np.ndarray) -> tuple[torch.Tensor, ...]:
        import torch

        with torch.inference_mode():
            output = encoder(self._to_device(encoder, features), output_hidden_states=True)
        return tuple(output.hidden_states)

    def _forward_crop(self, encoder: WhisperEncoder, features: np.ndarray) -> list[torch.Tensor]:
        """Same computation as ``WhisperEncoder.forward`` (eval mode), for any even mel length.

        transformers rejects inputs that are not exactly the 30 s window, so the submodules are
        called here in the same order; the only change is the positional table sliced to the
        input's length.
        """
        import torch
        from torch import nn

        with torch.inference_mode():
            x = self._to_device(encoder, features)
            x = nn.functional.gelu(encoder.conv1(x))
            x = nn.functional.gelu(encoder.conv2(x))
            x = x.permute(0, 2, 1)
            hidden = x + encoder.embed_positions.weight[: x.shape[1]]
            states = [hidden]
            for layer in encoder.layers:
                # No attention mask: every position is real audio (transformers passes None too).
                hidden = layer(hidden, None)
                states.append(hidden)
            states[-1] = encoder.layer_norm(hidden)
        return states


def _build_feature_extractor(
    cls: type[WhisperFeatureExtractor], preprocessor: Mapping[str, Any], config: WhisperConfig, name: str
) -> WhisperFeatureExtractor:
    kwargs = {k: preprocessor[k] for k in _FEATURE_EXTRACTOR_KEYS if k in preprocessor}
    mel_bins = int(config.num_mel_bins)
    if "feature_size" in kwargs and int(kwargs["feature_size"]) != mel_bins:
        logger.warning(
            "%s: preprocessor feature_size %s differs from the model's num_mel_bins %s; using %s",
            name,
            kwargs["feature_size"],
            mel_bins,
            mel_bins,
        )
    kwargs["feature_size"] = mel_bins
    # Dither adds random noise to every frame: embeddings would change from run to run.
    kwargs["dither"] = 0.0
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{name}: preprocessor config is not usable for Whisper: {error}") from error





def estimate_seconds_per_clip(
    config: WhisperConfig, mode: WhisperMode, clip_seconds: float, gflops: float
) -> float:
    """Rough encoder time per clip in ``mode`` for clips of ``clip_seconds``, at ``gflops``.

    Counts the encoder's multiply-adds (conv stem, attention projections and scores, MLP)
    on the frames each mode runs: the whole 1500-frame window in padded mode, the clip's
    own frames in crop mode. ``gflops`` is the device's measured matmul throughput
    (:func:`embedviz.pipeline.matmul_gflops`). For the app to show both modes' ETAs.
    """
    if mode not in WHISPER_MODES:
        raise ConfigError(f"whisper mode must be one of {', '.join(WHISPER_MODES)}; got {mode!r}")
    if gflops <= 0 or clip_seconds <= 0:
        raise ConfigError(f"gflops and clip_seconds must be positive, got {gflops} and {clip_seconds}")
    window = int(config.max_source_positions)
    frames = window if mode == "padded" else min(window, max(1, math.ceil(clip_seconds * 50)))
    d, ff, mels = int(config.d_model), int(config.encoder_ffn_dim), int(config.num_mel_bins)
    per_layer = frames * (4 * d * d + 2 * d * ff) + 2 * frames * frames * d
    stem = 2 * frames * (mels * d * 3) + frames * (d * d * 3)
    flops = 2.0 * (int(config.encoder_layers) * per_layer + stem)
    return flops / (gflops * 1e9)


#: The Whisper encoder's FLOP rate (by :func:`estimate_seconds_per_clip`'s count) over the
#: 1024x1024 matmul rate of :func:`embedviz.pipeline.matmul_gflops`, per mode, measured by
#: ``bench/bench_extraction.py`` on the 2-core dev CPU: the padded 30 s window runs large
#: matmuls faster than the 1024x1024 probe; crop's short sequences pay per-op overhead.
ETA_RATE_FACTOR = {"padded": 1.7, "crop": 0.9}


def whisper_config_for(model: str) -> WhisperConfig:
    """The ``WhisperConfig`` of ``model`` without loading weights (catalogue, ``random-init:``, folder).

    Raises:
        ConfigError: ``model`` is not a Whisper model, or its config is not known without the hub.
    """
    from transformers import WhisperConfig

    from embedviz import catalogue
    from embedviz.errors import EmbedvizError
    from embedviz.modelref import ModelRef

    try:
        ref = ModelRef.parse(model)
        if ref.kind in ("random_init", "catalogue"):
            model_type, kwargs = catalogue.embedded_config(ref.id)
            if model_type == "whisper":
                return WhisperConfig(**kwargs)
        elif ref.kind == "local_folder":
            import json
            from pathlib import Path

            # WhisperConfig.from_pretrained would relabel any config as whisper: check the file's own type.
            fields = json.loads((Path(ref.id) / "config.json").read_text(encoding="utf-8"))
            if fields.get("model_type") == "whisper":
                return WhisperConfig.from_pretrained(ref.id, local_files_only=True)
    except (EmbedvizError, OSError, ValueError) as error:
        raise ConfigError(f"{model}: no Whisper config known without loading it ({error})") from error
    raise ConfigError(f"{model}: not a Whisper model with a config known without loading it")


def mode_etas(
    model: str, n_clips: int, clip_seconds: float, gflops: float, efficiency: float = 1.0
) -> dict[str, float]:
    """Estimated seconds to embed ``n_clips`` clips of ``clip_seconds`` with ``model``, per mode.

    ``{'padded': s, 'crop': s}`` from :func:`estimate_seconds_per_clip` at
    ``gflops * ETA_RATE_FACTOR[mode] * efficiency`` (``gflops``:
    :func:`embedviz.pipeline.matmul_gflops` of this machine), so the app can show what each
    Whisper input mode would cost before the user picks one.

    Raises:
        ConfigError: not a Whisper model (see :func:`whisper_config_for`), or bad numbers.
    """
    if n_clips < 0 or not 0 < efficiency <= 1:
        raise ConfigError(f"n_clips must be >= 0 and efficiency in (0, 1], got {n_clips} and {efficiency}")
    config = whisper_config_for(model)
    return {
        mode: n_clips * estimate_seconds_per_clip(config, mode, clip_seconds,
                                                  gflops * ETA_RATE_FACTOR[mode] * efficiency)
        for mode in WHISPER_MODES
    }


# ---------------------------------------------------------------------- registration


def default_preprocessor(config: Any) -> dict[str, Any]:
    """``WhisperFeatureExtractor`` defaults (with the model's mel bins) for a checkpoint without one."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=int(config.num_mel_bins)).to_dict()


def encoder_only(model: Any) -> Any:
    """The encoder of a Whisper model (the decoder is freed with the caller's last reference)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return model if isinstance(model, WhisperEncoder) else model.get_encoder()


def _random_encoder(config: Any) -> Any:
    # Only the encoder is ever used: building the decoder would double the time and memory.
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder(config)


def _construct(model: Any, *, info: ModelInfo, device: str, preprocessor: Mapping[str, Any],
               options: Mapping[str, Any]) -> WhisperExtractor:
    return WhisperExtractor(model, info=info, device=device, preprocessor=preprocessor,
                            mode=options.get("whisper_mode", "padded"))


def _register() -> None:
    from embedviz.extractors.registry import FamilySpec, register

    register(FamilySpec(
        name="whisper",
        model_types=("whisper",),
        model_class="WhisperModel",
        config_class="WhisperConfig",
        layer_names=layer_names_for_config,
        layer_widths=lambda config: {n: int(config.d_model) for n in layer_names_for_config(config)},
        construct=_construct,
        default_preprocessor=default_preprocessor,
        numeric_options=("whisper_mode",),
        preferred_batch_size=8,  # padded mode runs a 30 s window per clip: bigger batches only add memory
        config_defaults={"encoder_layers": 4},
        build_random=_random_encoder,
        prepare_model=encoder_only,
    ))


_register()
