"""Ray engine overhead against the local engine, measured in one run on the same clips.

    OMP_NUM_THREADS=1 python bench/bench_ray_engine.py [--clips-per-word 24] [--actors 2]

Both engines run the tiny random wav2vec2 of tests/tiny_models.py and baseline:mel on the
demo dataset into fresh stores. Ray's time includes starting a private local instance.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedviz.datasets import open_dataset  # noqa: E402
from embedviz.pipeline import extract  # noqa: E402
from embedviz.ray_engine import RayConfig, extract_on_ray  # noqa: E402
from embedviz.settings import ExtractionSettings  # noqa: E402
from embedviz.store import EmbeddingStore  # noqa: E402
from tests.tiny_models import save_tiny_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips-per-word", type=int, default=24)
    ap.add_argument("--actors", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    tiny = save_tiny_model("wav2vec2", tmp / "tiny-w2v2")
    ds = open_dataset()
    manifest = ds.sample(ds.word_names, args.clips_per_word, seed=0)
    print(f"| model | clips | local s | ray s ({args.actors} actors) | ray / local |")
    print("|---|---|---|---|---|")
    for model in ("baseline:mel", str(tiny)):
        settings = ExtractionSettings(model=model)
        t = time.perf_counter()
        extract(manifest, settings, store=EmbeddingStore(tmp / "local" / str(hash(model))), batch_size=8)
        local_s = time.perf_counter() - t
        t = time.perf_counter()
        extract_on_ray(manifest, settings, store=EmbeddingStore(tmp / "ray" / str(hash(model))),
                       ray_config=RayConfig(actors=args.actors), batch_size=8)
        ray_s = time.perf_counter() - t
        name = "tiny wav2vec2" if model != "baseline:mel" else model
        print(f"| {name} | {len(manifest)} | {local_s:.1f} | {ray_s:.1f} | {ray_s / local_s:.2f} |")


if __name__ == "__main__":
    main()
