"""Offline check: embedviz's DAC layers equal what the original ``descript-audio-codec`` computes.

embedviz runs DAC through transformers' ``DacModel`` (the original package cannot be a
dependency: its ``descript-audiotools`` pins ``protobuf<3.20``, which Streamlit cannot share,
and audiotools imports ``torchaudio``, which pins an old torch). This script builds the
*original* package's 16 kHz architecture (``dac.model.DAC`` with the ``weights_16khz.pth``
kwargs: encoder_dim 64, rates 2/4/5/8, 12 codebooks of 1024 x 8, decoder 1536 / 8/5/4/2) with
random weights, converts its state dict to a transformers ``DacModel`` with the same key
mapping as transformers' ``convert_dac_checkpoint.py`` (generalised to any number of blocks),
saves it as a model folder (``save_pretrained`` + ``DacFeatureExtractor``) and loads that
folder through embedviz (``embedviz.models.load_extractor``) the way the app loads
``descript/dac_16khz``. Then, on a few demo clips, it compares:

1. ``DAC.encode(x)`` of the original (weight-normed convs, as the package runs them) with
   ``DacModel.encode(x)``: ``z`` (encoder output), quantized representation, codes, latents;
2. every layer embedviz extracts (``block1..4``, ``z``, ``quantized``, ``latents``,
   ``codebook1..12``) with the same stage of the original model (encoder blocks read with
   forward hooks, codebook vectors looked up from the original's codes), frame for frame.

For each it prints the max absolute difference, the largest relative difference (max abs
diff / max abs value), the largest per-frame cosine distance, and for codes the fraction of
frames whose code differs. It exits 1 if a layer differs by more than float32 noise.

What cannot be checked offline: the published ``weights_16khz.pth`` (GitHub releases) and
``descript/dac_16khz`` (Hugging Face) cannot be downloaded here, so the check uses random
weights (same architecture and weight layout, every parameter randomised, including Snake
alphas and biases), not the trained numbers; and ``DAC.compress`` (audiotools'
``AudioSignal``: loudness normalisation, chunked inference) is not run, because audiotools
needs ``torchaudio``. embedviz feeds the model raw 16 kHz samples, like ``DAC.encode``.

Throwaway environment (nothing is installed into the product's venv; no torch download)::

    python -m venv --without-pip /tmp/dacvenv
    # reuse the product venv's torch / transformers / numpy (a .pth file appends its site-packages)
    echo "$VIRTUAL_ENV/lib/python3.11/site-packages" > /tmp/dacvenv/lib/python3.11/site-packages/_main.pth
    /tmp/dacvenv/bin/python -m pip install --no-deps descript-audio-codec einops
    /tmp/dacvenv/bin/python scripts/check_dac_parity.py [--variant 16khz|24khz|44khz] [--clips 4] [--seed 0]

``descript-audiotools`` is not needed: the model modules import only ``AudioSignal``,
``STFTParams`` and ``ml.BaseModel`` from it at module level (for ``compress``, the losses and
the discriminator), so this script puts small stand-ins for those names in ``sys.modules``
before importing ``dac.model`` and ``dac.nn`` (the package's ``dac/__init__.py``, which imports
the CLI helpers, is skipped). Run from the repository root.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: ``weights_16khz.pth`` metadata kwargs (descript-audio-codec 1.0.0, conf/final/16khz.yml).
DAC_16KHZ = dict(
    encoder_dim=64, encoder_rates=[2, 4, 5, 8], latent_dim=None, decoder_dim=1536, decoder_rates=[8, 5, 4, 2],
    n_codebooks=12, codebook_size=1024, codebook_dim=8, quantizer_dropout=False, sample_rate=16000,
)
#: The other published variants (``--variant``): same layout, other rates and codebook counts.
VARIANTS = {
    "16khz": DAC_16KHZ,
    "24khz": {**DAC_16KHZ, "n_codebooks": 32, "sample_rate": 24000},
    "44khz": {**DAC_16KHZ, "encoder_rates": [2, 4, 8, 8], "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9,
              "sample_rate": 44100},
}
#: float32 noise allowed between two implementations of the same convolutions (relative to the
#: layer's largest value); cosine distance allowed per frame.
MAX_RELATIVE_DIFF = 1e-4
MAX_COSINE_DISTANCE = 1e-6


def import_original_dac() -> types.ModuleType:
    """``dac.model.dac`` of the installed descript-audio-codec, with stand-ins for audiotools."""
    import torch.nn as nn

    spec = importlib.util.find_spec("dac")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("descript-audio-codec is not installed in this interpreter; see this script's docstring")
    if "audiotools" not in sys.modules:
        audiotools = types.ModuleType("audiotools")
        ml = types.ModuleType("audiotools.ml")

        class AudioSignal:  # only used by compress/decompress and the losses, never by encode
            pass

        class STFTParams:  # only used by the losses and the discriminator
            def __init__(self, *args, **kwargs) -> None:
                self.args, self.kwargs = args, kwargs

        class BaseModel(nn.Module):  # audiotools.ml.BaseModel adds save/load helpers only
            pass

        audiotools.AudioSignal, audiotools.STFTParams, audiotools.ml = AudioSignal, STFTParams, ml
        ml.BaseModel = BaseModel
        sys.modules.update({"audiotools": audiotools, "audiotools.ml": ml})
    package = types.ModuleType("dac")  # skip dac/__init__.py (CLI, argbind, real audiotools)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["dac"] = package
    import dac.model.dac as original

    return original


def randomise(model, seed: int) -> None:
    """Every parameter random (not DAC's init: biases 0 and alphas 1 would hide mapping errors)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(torch.rand(p.shape, generator=g) * 1.5 + 0.25)
            elif name.endswith("weight_g"):
                p.copy_(torch.rand(p.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            else:  # weight_v, codebooks
                p.copy_(torch.randn(p.shape, generator=g))


def folded_state_dict(model) -> dict:
    """``model``'s state dict with every weight norm folded into a plain ``weight`` (g * v / |v|).

    (A deepcopy plus ``remove_weight_norm`` is what one would write, but torch cannot deepcopy
    modules with the old-style weight norm.)
    """
    import torch

    state = dict(model.state_dict())
    for name in [k for k in state if k.endswith(".weight_g")]:
        prefix = name[: -len("weight_g")]
        g, v = state.pop(name), state.pop(prefix + "weight_v")
        state[prefix + "weight"] = torch._weight_norm(v, g, 0)  # the function weight_norm itself calls
    return state


def hf_key(name: str, n_blocks: int) -> str:
    """The transformers ``DacModel`` name of an original DAC parameter (weight norm folded)."""
    last = n_blocks + 1
    rules = [
        (r"^encoder\.block\.0\.(.+)$", lambda m: f"encoder.conv1.{m[1]}"),
        (rf"^encoder\.block\.{last}\.(.+)$", lambda m: f"encoder.snake1.{m[1]}"),
        (rf"^encoder\.block\.{last + 1}\.(.+)$", lambda m: f"encoder.conv2.{m[1]}"),
        (r"^encoder\.block\.(\d+)\.block\.([0-2])\.block\.([0-3])\.(.+)$",
         lambda m: f"encoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) + 1}."
                   f"{('snake1', 'conv1', 'snake2', 'conv2')[int(m[3])]}.{m[4]}"),
        (r"^encoder\.block\.(\d+)\.block\.3\.(.+)$", lambda m: f"encoder.block.{int(m[1]) - 1}.snake1.{m[2]}"),
        (r"^encoder\.block\.(\d+)\.block\.4\.(.+)$", lambda m: f"encoder.block.{int(m[1]) - 1}.conv1.{m[2]}"),
        (r"^quantizer\.(.+)$", lambda m: f"quantizer.{m[1]}"),
        (r"^decoder\.model\.0\.(.+)$", lambda m: f"decoder.conv1.{m[1]}"),
        (rf"^decoder\.model\.{last}\.(.+)$", lambda m: f"decoder.snake1.{m[1]}"),
        (rf"^decoder\.model\.{last + 1}\.(.+)$", lambda m: f"decoder.conv2.{m[1]}"),
        (r"^decoder\.model\.(\d+)\.block\.0\.(.+)$", lambda m: f"decoder.block.{int(m[1]) - 1}.snake1.{m[2]}"),
        (r"^decoder\.model\.(\d+)\.block\.1\.(.+)$", lambda m: f"decoder.block.{int(m[1]) - 1}.conv_t1.{m[2]}"),
        (r"^decoder\.model\.(\d+)\.block\.([2-4])\.block\.([0-3])\.(.+)$",
         lambda m: f"decoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) - 1}."
                   f"{('snake1', 'conv1', 'snake2', 'conv2')[int(m[3])]}.{m[4]}"),
    ]
    for pattern, target in rules:
        match = re.match(pattern, name)
        if match:
            return target(match)
    raise KeyError(f"no transformers name for original parameter {name!r}")


#: Two same-shaped tensors that --negative-control swaps (a mapping mistake the check must catch).
SWAPPED = ("encoder.block.0.res_unit1.conv1.weight", "encoder.block.0.res_unit2.conv1.weight")


def convert(original_model, kwargs: dict, swap: bool = False):
    """A transformers ``DacModel`` holding ``original_model``'s weights; every key used exactly once.

    ``swap``: exchange the two tensors in :data:`SWAPPED` (a deliberate mapping error).
    """
    import torch
    from transformers import DacConfig, DacModel

    config = DacConfig(
        encoder_hidden_size=kwargs["encoder_dim"], downsampling_ratios=kwargs["encoder_rates"],
        decoder_hidden_size=kwargs["decoder_dim"], upsampling_ratios=kwargs["decoder_rates"],
        n_codebooks=kwargs["n_codebooks"], codebook_size=kwargs["codebook_size"],
        codebook_dim=kwargs["codebook_dim"], quantizer_dropout=float(kwargs["quantizer_dropout"]),
        sampling_rate=kwargs["sample_rate"],
    )
    model = DacModel(config).eval()
    source = folded_state_dict(original_model)
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for name, value in source.items():
        key = hf_key(name, len(kwargs["encoder_rates"]))
        if key not in target:
            raise SystemExit(f"mapped {name} -> {key}, which DacModel does not have")
        if target[key].shape != value.shape:
            raise SystemExit(f"{name} -> {key}: shape {tuple(value.shape)} vs DacModel {tuple(target[key].shape)}")
        if key in mapped:
            raise SystemExit(f"two original parameters map to {key}")
        mapped[key] = value
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise SystemExit(f"DacModel parameters with no original counterpart: {missing[:8]}")
    if swap:
        mapped[SWAPPED[0]], mapped[SWAPPED[1]] = mapped[SWAPPED[1]], mapped[SWAPPED[0]]
    model.load_state_dict(mapped, strict=True)
    print(f"converted {len(mapped)} tensors ({sum(v.numel() for v in mapped.values()) / 1e6:.1f} M values); "
          "every original parameter maps to exactly one DacModel parameter of the same shape")
    return model


def demo_clips(n: int, rate: int = 16000) -> list:
    """``n`` demo clips of different words at 16 kHz; all but the first cut to lengths that are
    not a multiple of the hop (320), so the padding and the valid-frame counts are exercised."""
    from embedviz.audio import load_audio
    from embedviz.datasets import open_dataset

    manifest = open_dataset().manifest()
    picked = manifest.groupby("word", sort=True).head(1).head(n)
    clips = []
    for i, row in enumerate(picked.itertuples()):
        wave = load_audio(row.path, rate)
        clips.append((row.clip_id, wave[: max(321, len(wave) - 977 * i)]))
    return clips


def stats(a, b) -> tuple[float, float, float]:
    """(max abs diff, max abs diff / max |a|, max per-frame cosine distance) of (T, D) arrays."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    scale = float(np.abs(a).max()) or 1.0
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0) & (nb > 0)
    cos = (a[ok] * b[ok]).sum(axis=1) / (na[ok] * nb[ok])
    return diff, diff / scale, float((1 - cos).max()) if ok.any() else 0.0


def original_stages(original_model, wave, hop: int) -> dict:
    """Every stage of the original model for one clip, as (T, D) arrays (codes as (T, N))."""
    import math

    import numpy as np
    import torch

    padded = np.zeros(math.ceil(len(wave) / hop) * hop, dtype=np.float32)  # DAC.preprocess pads right
    padded[: len(wave)] = wave
    blocks = []
    handles = [b.register_forward_hook(lambda _m, _i, out: blocks.append(out))
               for b in list(original_model.encoder.block)[1:-2]]
    try:
        with torch.inference_mode():
            x = torch.from_numpy(padded)[None, None]
            z, codes, latents, _, _ = original_model.encode(x)
            enc = original_model.encoder(x)  # encode() returns the quantized z; the encoder output too
            vectors = [q.codebook(codes[:, i]) for i, q in enumerate(original_model.quantizer.quantizers)]
    finally:
        for h in handles:
            h.remove()
    out = {f"block{k}": blocks[k - 1][0].T.numpy() for k in range(1, len(blocks) // 2 + 1)}
    out.update({"z": enc[0].T.numpy(), "quantized": z[0].T.numpy(), "latents": latents[0].T.numpy(),
                "codes": codes[0].T.numpy()})
    out.update({f"codebook{i}": v[0].numpy() for i, v in enumerate(vectors, start=1)})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="demo clips to compare (different words)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="16khz", help="architecture to build")
    parser.add_argument("--negative-control", action="store_true",
                        help=f"swap {SWAPPED[0]} and {SWAPPED[1]} in the conversion; the check must then "
                        "report differences (exit 0 if it does, 1 if it misses them)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import DacFeatureExtractor

    from embedviz.models import load_extractor

    original = import_original_dac()
    torch.manual_seed(args.seed)
    kwargs = VARIANTS[args.variant]
    dac = original.DAC(**kwargs).eval()
    randomise(dac, args.seed)
    hf = convert(dac, kwargs, swap=args.negative_control)
    hop = int(np.prod(kwargs["encoder_rates"]))
    rate = int(kwargs["sample_rate"])
    worst = 0.0
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"dac_{args.variant}_random"
        hf.save_pretrained(folder)
        DacFeatureExtractor(sampling_rate=rate, hop_length=hop).save_pretrained(folder)
        ours = load_extractor(str(folder), device="cpu")
        clips = demo_clips(args.clips, rate)
        rows: dict[str, list[tuple[float, float, float]]] = {}
        code_mismatch = 0
        code_total = 0
        for clip_id, wave in clips:
            ref = original_stages(dac, wave, hop)
            # 1. DacModel.encode against DAC.encode (the same padded input).
            padded = np.zeros(int(np.ceil(len(wave) / hop) * hop), dtype=np.float32)
            padded[: len(wave)] = wave
            with torch.inference_mode():
                out = hf.encode(torch.from_numpy(padded)[None, None])
                z_hf = hf.encoder(torch.from_numpy(padded)[None, None])
            pairs = {"DacModel z (encoder output)": (ref["z"], z_hf[0].T.numpy()),
                     "DacModel quantized_representation": (ref["quantized"], out.quantized_representation[0].T.numpy()),
                     "DacModel projected_latents": (ref["latents"], out.projected_latents[0].T.numpy())}
            code_mismatch += int((out.audio_codes[0].T.numpy() != ref["codes"]).sum())
            code_total += ref["codes"].size
            # 2. embedviz's layers against the original's stages.
            features = ours.extract([wave])
            for layer in ours.layer_names:
                pairs[f"embedviz {layer}"] = (ref[layer][: features.valid(layer, 0).shape[0]], features.valid(layer, 0))
            for name, (a, b) in pairs.items():
                if a.shape != b.shape:
                    failed.append(f"{name} on {clip_id}: shape {a.shape} (original) vs {b.shape}")
                    continue
                rows.setdefault(name, []).append(stats(a, b))
        lengths = ", ".join(f"{c} ({len(w)} samples)" for c, w in clips)
        print(f"\nDAC {args.variant}, {len(clips)} demo clips at {rate} Hz: {lengths}; random weights, seed {args.seed}")
        print(f"{'compared with the original DAC':40s} {'max |diff|':>11s} {'rel. diff':>10s} {'cos. dist':>10s}")
        for name, values in rows.items():
            diff, rel, cos = (max(v[i] for v in values) for i in range(3))
            worst = max(worst, rel)
            flag = "" if rel <= MAX_RELATIVE_DIFF and cos <= MAX_COSINE_DISTANCE else "  <-- differs"
            if flag:
                failed.append(name)
            print(f"{name:40s} {diff:11.2e} {rel:10.2e} {cos:10.2e}{flag}")
        print(f"{'DacModel audio_codes':40s} {code_mismatch} of {code_total} codes differ")
        if code_mismatch:
            failed.append("audio_codes")
    if args.negative_control:
        print(f"\nnegative control ({SWAPPED[0]} <-> {SWAPPED[1]}): "
              + ("differences detected, as they must be" if failed else "NOT detected: the check is blind"))
        return 0 if failed else 1
    if failed:
        print("\nFAILED: " + "; ".join(failed))
        return 1
    print(f"\nOK: every layer within {MAX_RELATIVE_DIFF:g} relative difference and {MAX_COSINE_DISTANCE:g} "
          "cosine distance of the original package; every code equal.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
