"""Time PCA, t-SNE (openTSNE and scikit-learn) and UMAP on embedding-sized data.

Usage::

    python bench/bench_reduction.py            # 1000 and 5000 points x 768 dims
    python bench/bench_reduction.py --quick    # 300 and 1000 points, fewer backends
    python bench/bench_reduction.py --stored DATASET STORE --sizes 5250 10500 21000 \
        --only "openTSNE bh" "openTSNE fft"      # stored log-mel embeddings instead

Data: seeded Gaussian clusters (35 "words", like Speech Commands) in 768 dimensions,
the width of a base-size transformer layer. Every backend gets the same matrix; times are
wall-clock seconds of one fit (best of ``--repeats``), and ratios are against PCA
measured in the same run on the same data. UMAP's numba code is compiled once on a
small warm-up set first, so its rows show steady-state cost (the one-off compile time
is printed separately).

``--stored DATASET STORE``: the baseline:mel ``logmel`` layer (80 dims, mean pooling) of
``n // words`` clips per word sampled from DATASET, read from STORE (extract them first:
``python -m embedviz extract --model baseline:mel --dataset DATASET --cache STORE``).
t-SNE's FFT gradient costs more on these maps than on the clusters (its grid follows the
map's extent), which moved the Barnes-Hut / FFT crossover (``reduction.FFT_MIN_POINTS``).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedviz.reduction import ReductionSettings, reduce  # noqa: E402

DIM = 768
N_CLUSTERS = 35


def clustered_data(n: int, dim: int = DIM, n_clusters: int = N_CLUSTERS, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian clusters with unequal spreads, float32 like stored embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(n_clusters, dim))
    labels = rng.integers(0, n_clusters, size=n)
    spread = rng.uniform(0.5, 1.5, size=n_clusters)[labels, None]
    return (centres[labels] + spread * rng.normal(0.0, 1.0, size=(n, dim))).astype(np.float32)


def stored_data(dataset: str, store: str, n: int, seed: int = 0) -> np.ndarray:
    """The stored baseline:mel ``logmel`` vectors of about ``n`` clips sampled evenly per word."""
    from embedviz.datasets import open_dataset
    from embedviz.settings import ExtractionSettings
    from embedviz.store import EmbeddingStore, read_layers

    ds = open_dataset(dataset)
    picked = ds.sample(ds.word_names, max(1, n // len(ds.word_names)), seed=seed, durations=False)
    lv = read_layers(EmbeddingStore(store), ExtractionSettings(model="baseline:mel"), ["logmel"], "mean",
                     manifest=picked)["logmel"]
    if lv.missing:
        raise SystemExit(f"{len(lv.missing)} sampled clips are not in {store}: extract baseline:mel first")
    return np.asarray(lv.X, dtype=np.float32)


def run_pca(X: np.ndarray, seed: int) -> np.ndarray:
    return reduce(X, ReductionSettings(method="pca", seed=seed)).coords


def run_library_tsne(X: np.ndarray, seed: int) -> np.ndarray:
    return reduce(X, ReductionSettings(method="tsne", seed=seed)).coords


def run_library_umap(X: np.ndarray, seed: int) -> np.ndarray:
    return reduce(X, ReductionSettings(method="umap", seed=seed)).coords


def opentsne(gradient: str, n_jobs: int) -> Callable[[np.ndarray, int], np.ndarray]:
    def run(X: np.ndarray, seed: int) -> np.ndarray:
        from openTSNE import TSNE

        tsne = TSNE(
            n_components=2,
            perplexity=30.0,
            initialization="pca",
            negative_gradient_method=gradient,
            n_jobs=n_jobs,
            random_state=seed,
        )
        return np.asarray(tsne.fit(X.astype(np.float64)))

    return run


def sklearn_tsne(threads: int | None) -> Callable[[np.ndarray, int], np.ndarray]:
    def run(X: np.ndarray, seed: int) -> np.ndarray:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        tsne = TSNE(n_components=2, perplexity=30.0, init="pca", method="barnes_hut", random_state=seed)
        # scikit-learn's Barnes-Hut gradient runs on OpenMP threads, not on n_jobs.
        with threadpool_limits(limits=threads):
            return tsne.fit_transform(X)

    return run


BACKENDS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "pca (library)": run_pca,
    "tsne openTSNE bh, 1 thread": opentsne("bh", 1),
    "tsne openTSNE fft, 1 thread": opentsne("fft", 1),
    "tsne openTSNE bh, 2 threads": opentsne("bh", 2),
    "tsne openTSNE fft, 2 threads": opentsne("fft", 2),
    "tsne sklearn bh, 1 thread": sklearn_tsne(1),
    "tsne sklearn bh, 2 threads": sklearn_tsne(None),
    "tsne (library: reduce)": run_library_tsne,
    "umap (library: reduce, seeded)": run_library_umap,
}
QUICK = ("pca (library)", "tsne openTSNE bh, 1 thread", "tsne openTSNE fft, 1 thread",
         "tsne sklearn bh, 1 thread", "umap (library: reduce, seeded)")


def warm_up_umap() -> None:
    """Compile umap's numba code before timing.

    Its exact-neighbour path (< 4096 points) and its NN-descent path (pynndescent)
    compile different functions; neither compile should be billed to a timed row.
    """
    t0 = time.perf_counter()
    run_library_umap(clustered_data(64, dim=16, seed=1), 0)
    run_library_umap(clustered_data(4200, dim=16, seed=1), 0)
    print(f"# umap warm-up (import + numba compile): {time.perf_counter() - t0:.1f} s")


def time_it(fn: Callable[[np.ndarray, int], np.ndarray], X: np.ndarray, repeats: int, seed: int) -> tuple[float, np.ndarray]:
    best = float("inf")
    out = np.empty(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(X, seed)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 and 1000 points, fewer backends")
    parser.add_argument("--sizes", type=int, nargs="+", help="numbers of points (default 1000 5000)")
    parser.add_argument("--repeats", type=int, default=1, help="fits per cell; the best time is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", metavar="SUBSTRING",
                        help="run only backends whose name contains one of these (PCA is always run)")
    parser.add_argument("--check-determinism", action="store_true",
                        help="fit every backend twice and report whether the coordinates are identical")
    parser.add_argument("--stored", nargs=2, metavar=("DATASET", "STORE"),
                        help="stored baseline:mel log-mel embeddings instead of Gaussian clusters")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    sizes = args.sizes or ([300, 1000] if args.quick else [1000, 5000])
    names = list(QUICK if args.quick else BACKENDS)
    if args.only:
        names = [n for n in names if n.startswith("pca") or any(s in n for s in args.only)]
    print(f"# bench_reduction  {time.strftime('%Y-%m-%d')}  {platform.machine()}  "
          f"{os.cpu_count()} cores  python {platform.python_version()}  "
          + (f"stored log-mel from {args.stored[0]}" if args.stored else f"dims={DIM}"))

    if any(name.startswith("umap") for name in names):
        warm_up_umap()

    results: dict[tuple[str, int], tuple[float, bool | None]] = {}
    for n in sizes:
        X = stored_data(*args.stored, n, seed=args.seed) if args.stored else clustered_data(n, seed=args.seed)
        for name in names:
            seconds, coords = time_it(BACKENDS[name], X, args.repeats, args.seed)
            same: bool | None = None
            if args.check_determinism:
                _, again = time_it(BACKENDS[name], X, 1, args.seed)
                same = bool(np.array_equal(coords, again))
            results[(name, n)] = (seconds, same)
            print(f"#   n={n:5d} {name:34s} {seconds:8.2f} s" + ("" if same is None else f"  identical={same}"),
                  flush=True)

    header = "| backend | " + " | ".join(f"n={n} s | ×PCA" for n in sizes) + " |"
    print()
    print(header)
    print("|---|" + "---:|---:|" * len(sizes))
    for name in names:
        cells = []
        for n in sizes:
            seconds, same = results[(name, n)]
            ratio = seconds / results[("pca (library)", n)][0]
            mark = "" if same is None else (" ✓" if same else " ✗")
            cells.append(f"{seconds:.2f}{mark} | {ratio:.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
