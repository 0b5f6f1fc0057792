"""DAC (Descript Audio Codec) encoder and quantizer frames, stage by stage.

Layers, in order (``K = len(config.downsampling_ratios)``, ``N = config.n_codebooks``):

* ``block1`` .. ``blockK``: the output of each encoder block. Block ``k`` is
  ``encoder_hidden_size * 2**k`` wide and runs at ``sample_rate / (ratio_1 * ... * ratio_k)``
  frames/s (each block downsamples by its ratio).
* ``z``: the continuous encoder output (after the final Snake + conv), ``config.hidden_size`` wide
  (usually ``encoder_hidden_size * 2**K``, but a config may set another value).
* ``quantized``: the residual vector quantizer's ``quantized_representation`` of ``z`` (the sum of
  every codebook's contribution projected back to ``hidden_size``), what the decoder consumes.
* ``latents``: the projected latents, every codebook's low-dimensional input concatenated
  (``n_codebooks * codebook_dim`` wide), before quantization.
* ``codebook1`` .. ``codebookN``: for codebook ``i``, the codebook embedding row of the code chosen
  at each frame (``codebook_dim`` wide). Frames hold vectors, never code indices, so pooling
  averages vectors; codebooks are never mixed.

``z`` and everything after it run at ``sample_rate / hop_length`` frames/s
(``hop_length = prod(downsampling_ratios)``: 50 frames/s for ``descript/dac_16khz``).

DAC is fully convolutional, so zero padding leaks into the last valid frames of shorter items in
a padded batch. The extractor therefore batches only clips with identical sample counts and
reassembles the results in input order: a clip's features never depend on its batch-mates.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from embedviz.errors import ExtractionError, ModelLoadError
from embedviz.extractors.base import (
    Extractor,
    FrameFeatures,
    ModelInfo,
    check_waveform,
    forward_errors,
    free_device_memory,
)

if TYPE_CHECKING:
    import torch
    from transformers import DacConfig

logger = logging.getLogger(__name__)


def layer_names_for_config(config: DacConfig) -> tuple[str, ...]:
    """Layer names a DAC model with ``config`` exposes, without loading weights."""
    blocks = tuple(f"block{k}" for k in range(1, len(config.downsampling_ratios) + 1))
    codebooks = tuple(f"codebook{i}" for i in range(1, int(config.n_codebooks) + 1))
    return (*blocks, "z", "quantized", "latents", *codebooks)


def layer_widths_for_config(config: DacConfig) -> dict[str, int]:
    """Feature width of every layer of a DAC model with ``config``."""
    widths = {
        f"block{k}": int(config.encoder_hidden_size) * 2**k for k in range(1, len(config.downsampling_ratios) + 1)
    }
    # hidden_size is a field of its own in config.json: transformers' DacConfig derives a default
    # (encoder_hidden_size * 2**K) but a checkpoint may set another, and the encoder's last conv and
    # the quantizer's projections follow the field, not the formula.
    hidden_size = int(getattr(config, "hidden_size", None)
                      or int(config.encoder_hidden_size) * 2 ** len(config.downsampling_ratios))
    widths["z"] = hidden_size
    widths["quantized"] = hidden_size
    widths["latents"] = int(config.n_codebooks) * int(config.codebook_dim)
    for i in range(1, int(config.n_codebooks) + 1):
        widths[f"codebook{i}"] = int(config.codebook_dim)
    return widths


def layer_strides_for_config(config: DacConfig) -> dict[str, int]:
    """Samples per frame of every layer of a DAC model with ``config``."""
    ratios = [int(r) for r in config.downsampling_ratios]
    strides = {f"block{k}": math.prod(ratios[:k]) for k in range(1, len(ratios) + 1)}
    hop = math.prod(ratios)
    for name in layer_names_for_config(config):
        strides.setdefault(name, hop)
    return strides


class DacExtractor(Extractor):
    """Per-stage frames of a transformers ``DacModel`` (see the module docstring for the layers).

    Args:
        model: a transformers ``DacModel``. Only its encoder and quantizer are kept (moved to
            ``device``, eval mode); the decoder is never run.
        info: what was loaded; ``layer_names`` is checked against the model's config.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:0'``, ``'mps'``.
        preprocessor: the checkpoint's ``preprocessor_config.json`` as a dict (may be empty).
            Used: ``sampling_rate`` (must equal the model's), ``hop_length`` (must equal
            ``prod(downsampling_ratios)``), ``padding_value`` (default 0.0).
    """

    def __init__(
        self,
        model: Any,
        *,
        info: ModelInfo,
        device: str,
        preprocessor: Mapping[str, Any],
    ) -> None:
        encoder = getattr(model, "encoder", None)
        quantizer = getattr(model, "quantizer", None)
        config = getattr(model, "config", None)
        if encoder is None or quantizer is None or config is None or not hasattr(encoder, "block"):
            raise ModelLoadError(f"{info.name}: expected a transformers DacModel, got {type(model).__name__}")

        self.device = device
        self._lock = threading.Lock()
        self._config = config
        self._hop = math.prod(int(r) for r in config.downsampling_ratios)
        sample_rate = int(preprocessor.get("sampling_rate", config.sampling_rate))
        if sample_rate != int(config.sampling_rate):
            raise ModelLoadError(
                f"{info.name}: preprocessor sampling_rate {sample_rate} differs from the model's "
                f"{config.sampling_rate}; the checkpoint folder is inconsistent"
            )
        if info.sample_rate != sample_rate:
            raise ModelLoadError(
                f"{info.name}: ModelInfo says {info.sample_rate} Hz but the model runs at {sample_rate} Hz; "
                "fix the loader so both agree"
            )
        hop = int(preprocessor.get("hop_length", self._hop))
        if hop != self._hop:
            raise ModelLoadError(
                f"{info.name}: preprocessor hop_length {hop} differs from the model's total downsampling "
                f"{self._hop}; the checkpoint folder is inconsistent"
            )
        self._padding_value = float(preprocessor.get("padding_value", 0.0))

        try:
            self._encoder: Any = encoder.to(device).eval()
            self._quantizer: Any = quantizer.to(device).eval()
        except (RuntimeError, AssertionError) as error:  # e.g. CUDA not available / not compiled in
            raise ModelLoadError(f"{info.name}: cannot move the model to device {device!r}: {error}") from error

        expected = layer_names_for_config(config)
        if tuple(info.layer_names) != expected:
            logger.warning("%s: layer names %s replaced by the model's %s", info.name, info.layer_names, expected)
            info = dataclasses.replace(info, layer_names=expected)
        self.info = info
        self._widths = layer_widths_for_config(config)
        self._strides = layer_strides_for_config(config)
        self.frame_rates: dict[str, float] = {n: sample_rate / s for n, s in self._strides.items()}

    # ------------------------------------------------------------------ public API

    def extract(self, waveforms: Sequence[np.ndarray]) -> FrameFeatures:
        """Frames of every stage for each mono float32 waveform (at ``sample_rate``).

        Each clip is zero-padded to a multiple of ``hop_length``; a layer with ``s`` samples per
        frame keeps ``ceil(samples / s)`` valid frames. Clips of equal length run together.

        Raises:
            ExtractionError: a clip is empty, not 1-D or not finite; the forward pass failed
                (``out_of_memory`` is True for GPU OOM).
        """
        lengths = self._check_waveforms(waveforms)
        names = self.info.layer_names
        valid = {
            n: np.array([max(1, math.ceil(k / self._strides[n])) for k in lengths], dtype=np.int64) for n in names
        }
        t_max = {n: int(v.max()) if len(v) else 0 for n, v in valid.items()}
        out = {n: np.zeros((len(lengths), t_max[n], self._widths[n]), dtype=np.float32) for n in names}

        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(n, []).append(i)
        with self._lock, forward_errors(self.info.name, self.device):
            for n_samples, idx in groups.items():
                padded = math.ceil(n_samples / self._hop) * self._hop
                batch = np.full((len(idx), 1, padded), self._padding_value, dtype=np.float32)
                for row, i in enumerate(idx):
                    batch[row, 0, :n_samples] = waveforms[i]
                stages = self._forward(batch)
                for name in names:
                    v = int(valid[name][idx[0]])
                    out[name][idx, :v] = stages[name][:, :v]
        return FrameFeatures(
            layers=out,
            lengths=valid,
            frame_rates={n: self.frame_rates[n] for n in names},
        )

    def close(self) -> None:
        """Drop the encoder and quantizer and release GPU memory. Safe to call twice."""
        with self._lock:
            if self._encoder is None:
                return
            self._encoder = None
            self._quantizer = None
        free_device_memory(self.device)

    # ------------------------------------------------------------------ internals

    def _check_waveforms(self, waveforms: Sequence[np.ndarray]) -> list[int]:
        return [int(check_waveform(self.info.name, i, wave).size) for i, wave in enumerate(waveforms)]

    def _forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every stage of one equal-length batch ``(B, 1, samples)``, as ``(B, T, D)`` arrays.

        Runs ``encoder`` then ``quantizer`` exactly as ``DacModel.encode`` does; block outputs are
        read with forward hooks so the encoder's own forward stays the one that runs.
        """
        import torch

        if self._encoder is None:
            raise ExtractionError(f"{self.info.name}: the extractor was closed; load the model again")
        blocks: list[torch.Tensor] = []
        handles = [
            block.register_forward_hook(lambda _module, _inputs, output: blocks.append(output))
            for block in self._encoder.block
        ]
        try:
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(self.device, dtype=self._encoder.conv1.weight.dtype)
                z = self._encoder(x)
                quantized, codes, latents, _, _ = self._quantizer(z)
                # The chosen code's embedding row, the same lookup DacResidualVectorQuantizer.from_codes does.
                codebooks = [q.codebook(codes[:, i]) for i, q in enumerate(self._quantizer.quantizers)]
        finally:
            for handle in handles:
                handle.remove()

        def frames(t: torch.Tensor) -> np.ndarray:  # (B, D, T) -> (B, T, D)
            return t.transpose(1, 2).float().cpu().numpy()

        stages = {f"block{k}": frames(b) for k, b in enumerate(blocks, start=1)}
        stages["z"] = frames(z)
        stages["quantized"] = frames(quantized)
        stages["latents"] = frames(latents)
        for i, vectors in enumerate(codebooks, start=1):
            stages[f"codebook{i}"] = vectors.float().cpu().numpy()  # already (B, T, codebook_dim)
        return stages



# ---------------------------------------------------------------------- registration


def default_preprocessor(config: Any) -> dict[str, Any]:
    """``DacFeatureExtractor`` defaults (the model's rate and hop) for a checkpoint without one."""
    from transformers import DacFeatureExtractor

    hop = math.prod(int(r) for r in config.downsampling_ratios)
    return DacFeatureExtractor(sampling_rate=int(config.sampling_rate), hop_length=hop).to_dict()


def _construct(model: Any, *, info: ModelInfo, device: str, preprocessor: Mapping[str, Any],
               options: Mapping[str, Any]) -> DacExtractor:
    return DacExtractor(model, info=info, device=device, preprocessor=preprocessor)


def _register() -> None:
    from embedviz.extractors.registry import FamilySpec, register

    register(FamilySpec(
        name="dac",
        model_types=("dac",),
        model_class="DacModel",
        config_class="DacConfig",
        layer_names=layer_names_for_config,
        layer_widths=layer_widths_for_config,
        construct=_construct,
        default_preprocessor=default_preprocessor,
        numeric_options=(),
        # Forward pass, process CPU s/clip on the shared 2-core dev CPU (issue 8, docs/PERFORMANCE.md):
        # heavily loaded 2.03 at batch 1, 0.74 at 8 (0.67 with glibc malloc tuned, MALLOC_TUNED_FAMILIES);
        # lightly loaded 0.40 at 1, 0.39 at 8. Never slower batched once malloc is tuned.
        preferred_batch_size=8,
        config_defaults={"downsampling_ratios": [2, 4, 8, 8], "n_codebooks": 9, "sampling_rate": 16000},
    ))


_register()
