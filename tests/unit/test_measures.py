"""Known-answer tests for embedviz.measures (PWCCA, cluster NMI, ABX) and the
speaker-vs-word k-NN numbers of embedviz.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedviz import measures
from embedviz.errors import Cancelled, ConfigError
from embedviz.measures import (
    MEASURE_COLUMNS,
    abx_across_speakers,
    cluster_word_nmi,
    layer_measures,
    measures_table,
    nmi_chance,
    pwcca_words,
)
from embedviz.metrics import SPEAKER_WORD_COLUMNS, metrics_table, speaker_knn_across_words, speaker_knn_within_word


def design(n_words: int, n_speakers: int, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Word and speaker codes: every speaker says every word ``repeats`` times."""
    words = np.repeat(np.arange(n_words), n_speakers * repeats)
    speakers = np.tile(np.repeat(np.arange(n_speakers), repeats), n_words)
    return words, speakers


def rotated_one_hot(words: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """The one-hot word labels, rotated into ``dim`` dimensions (no noise)."""
    rng = np.random.default_rng(seed)
    n_words = int(words.max()) + 1
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:n_words]
    return np.eye(n_words)[words] @ rotation


# --- a layer that IS the words --------------------------------------------------------------


def test_one_hot_labels_score_perfectly_on_every_measure() -> None:
    words, speakers = design(n_words=5, n_speakers=6, repeats=2)
    X = rotated_one_hot(words, dim=24)
    out = layer_measures(X, words.astype(str), speakers.astype(str))
    assert out["pwcca"] == pytest.approx(1.0, abs=1e-9)
    assert out["pwcca_folds"] == measures.PWCCA_FOLDS
    assert out["cluster_nmi"] == pytest.approx(1.0, abs=1e-9)
    assert out["abx_across"] == 1.0 and out["abx_distractor"] == 1.0  # ABX error 0
    assert out["measures_n"] == out["n_clips"] == len(words)
    # Scale and an extra constant offset change nothing.
    assert pwcca_words(3.0 * X + 1.0, words).value == pytest.approx(1.0, abs=1e-9)


# --- a layer that knows nothing -------------------------------------------------------------


def test_pure_noise_scores_near_chance_within_sampling_error() -> None:
    n_words, n_speakers, repeats = 6, 20, 3
    words, speakers = design(n_words, n_speakers, repeats)
    n = len(words)  # 360
    X = np.random.default_rng(1).normal(size=(n, 16))

    # PWCCA: held-out correlations of directions fitted on other clips have mean 0 and
    # standard error ~1/sqrt(n_test) each; averaged over the folds, ~1/sqrt(n).
    assert abs(pwcca_words(X, words).value) < 4 / math.sqrt(n)

    # NMI: under independence 2n * MI is chi-square with df = (C-1)(K-1) (mean df / 2n:
    # nmi_chance), standard deviation sqrt(2 df) / 2n, both divided by H(word).
    nmi, chance = cluster_word_nmi(X, words)
    h = math.log(n_words)
    df = (n_words - 1) ** 2
    assert chance == pytest.approx(nmi_chance(n, n_words, n_words, h))
    assert abs(nmi - chance) < 4 * math.sqrt(2 * df) / (2 * n) / h

    # ABX: 0.5 under the null; triplets sharing an X are correlated, so take the number
    # of clips (not of triplets) as the effective sample: sd <= 0.5 / sqrt(n).
    for condition in ("across", "distractor"):
        result = abx_across_speakers(X, words, speakers, condition=condition, max_triplets=5000)
        assert not result.exhaustive and result.triplets == 5000
        assert abs(result.score - 0.5) < 4 * 0.5 / math.sqrt(n), (condition, result)


# --- ABX by hand --------------------------------------------------------------------------------


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_tiny_abx_example_checked_by_hand() -> None:
    # Words a, b; speakers s1, s2; one clip each, placed at angles (cosine distance = 1 - cos).
    X = np.array([unit(0), unit(30), unit(90), unit(20)])  # a1, a2, b1, b2
    words = np.array(["a", "a", "b", "b"])
    speakers = np.array(["s1", "s2", "s1", "s2"])
    # across (B by A's speaker):                     d(A,X)        d(B,X)
    #   X=a1 A=a2 B=b2: 1-cos30=0.134 vs 1-cos20=0.060 -> 0
    #   X=a2 A=a1 B=b1: 1-cos30=0.134 vs 1-cos60=0.500 -> 1
    #   X=b1 A=b2 B=a2: 1-cos70=0.658 vs 1-cos60=0.500 -> 0
    #   X=b2 A=b1 B=a1: 1-cos70=0.658 vs 1-cos20=0.060 -> 0
    across = abx_across_speakers(X, words, speakers, condition="across")
    assert (across.score, across.triplets, across.exhaustive) == (0.25, 4, True)
    assert across.error == 0.75
    # distractor (B by X's speaker):
    #   X=a1 A=a2 B=b1: 0.134 vs 1-cos90=1.000 -> 1
    #   X=a2 A=a1 B=b2: 0.134 vs 1-cos10=0.015 -> 0
    #   X=b1 A=b2 B=a1: 0.658 vs 1.000           -> 1
    #   X=b2 A=b1 B=a2: 0.658 vs 0.015           -> 0
    distractor = abx_across_speakers(X, words, speakers, condition="distractor")
    assert (distractor.score, distractor.triplets) == (0.5, 4)
    # Sampling (a cap below the 4 valid triplets) draws only valid triplets.
    sampled = abx_across_speakers(X, words, speakers, max_triplets=3)
    assert sampled.triplets == 3 and not sampled.exhaustive and sampled.score in (0.0, 1 / 3, 2 / 3)


def test_abx_ties_count_one_half_and_undefined_cases_are_nan() -> None:
    X = np.array([unit(0), unit(0), unit(0), unit(0)])  # every distance equal
    words = np.array(["a", "a", "b", "b"])
    speakers = np.array(["s1", "s2", "s1", "s2"])
    assert abx_across_speakers(X, words, speakers).score == 0.5
    one_speaker = abx_across_speakers(X, words, np.array(["s"] * 4))
    assert math.isnan(one_speaker.score) and one_speaker.triplets == 0
    with pytest.raises(ConfigError, match="condition"):
        abx_across_speakers(X, words, speakers, condition="sideways")  # type: ignore[arg-type]
    no_repeats = abx_across_speakers(X, words, speakers, condition="within")  # nobody said a word twice
    assert math.isnan(no_repeats.score) and no_repeats.triplets == 0


def test_tiny_within_speaker_abx_checked_by_hand() -> None:
    """Within speaker: A, B and X all by X's speaker; only speakers who said X's word twice count."""
    #                  a by s1    a by s1     b by s1    a by s2   b by s2   b by s2
    X = np.array([unit(0), unit(10), unit(90), unit(0), unit(5), unit(100)])
    words = np.array(["a", "a", "b", "a", "b", "b"])
    speakers = np.array(["s1", "s1", "s1", "s2", "s2", "s2"])
    #   X=a(0)   A=a(10)  B=b(90):  1-cos10 =0.015 vs 1-cos90 =1.000 -> 1
    #   X=a(10)  A=a(0)   B=b(90):  0.015          vs 1-cos80 =0.826 -> 1
    #   X=b(5)   A=b(100) B=a(0):   1-cos95 =1.087 vs 1-cos5  =0.004 -> 0
    #   X=b(100) A=b(5)   B=a(0):   1.087          vs 1-cos100=1.174 -> 1
    #   (X=b by s1, X=a by s2: no second token of their word by their speaker)
    within = abx_across_speakers(X, words, speakers, condition="within")
    assert (within.score, within.triplets, within.exhaustive) == (0.75, 4, True)
    sampled = abx_across_speakers(X, words, speakers, condition="within", max_triplets=3, seed=1)
    assert sampled.triplets == 3 and not sampled.exhaustive and sampled.score in (1 / 3, 2 / 3, 1.0)


@pytest.mark.parametrize("max_triplets", [measures.ABX_MAX_TRIPLETS, 500])  # exact, and sampled
def test_abx_conditions_on_a_layer_of_word_plus_a_loud_voice(max_triplets: int) -> None:
    """Known answers: each clip is its word's one-hot plus 5 x its speaker's one-hot (orthogonal)
    plus a tiny token jitter. Across speakers (B by A's speaker) the voice is the same in A and B,
    so the word decides every triplet: 1. Within speaker likewise: 1. With B by X's speaker the
    voice decides every triplet against the word: 0."""
    words, speakers = design(n_words=3, n_speakers=4, repeats=2)
    jitter = 1e-4 * np.random.default_rng(0).normal(size=(len(words), 3 + 4))
    X = np.hstack([np.eye(3)[words], 5.0 * np.eye(4)[speakers]]) + jitter
    scores = {c: abx_across_speakers(X, words, speakers, condition=c, max_triplets=max_triplets)
              for c in measures.ABX_CONDITIONS}
    assert scores["across"].score == 1.0 and scores["within"].score == 1.0 and scores["distractor"].score == 0.0
    # Triplet counts (exact case): per X, across = 3 other speakers x 2 tokens of A x 4 B clips of
    # that speaker; within = 1 other token x 4 clips of other words by X's speaker; distractor = 6 x 4.
    if max_triplets == measures.ABX_MAX_TRIPLETS:
        n = len(words)
        assert [scores[c].triplets for c in ("across", "within", "distractor")] == [n * 24, n * 4, n * 24]
    assert set(measures.ABX_CONDITION_LABELS) == set(measures.ABX_CONDITIONS)
    assert "B by A's speaker" in measures.ABX_CONDITION_LABELS["across"]


def test_speaker_coded_layer_puts_x_nearer_the_distractor() -> None:
    """A layer that holds only the voice: 0.5 when A and B share a speaker, ~0 when B is X's."""
    words, speakers = design(n_words=4, n_speakers=5, repeats=1)
    voices = np.random.default_rng(2).normal(size=(5, 12))
    X = voices[speakers] + 0.01 * np.random.default_rng(3).normal(size=(len(words), 12))
    assert abx_across_speakers(X, words, speakers, condition="distractor").score < 0.05
    assert abs(abx_across_speakers(X, words, speakers, condition="across").score - 0.5) < 0.15


# --- speaker vs word k-NN -------------------------------------------------------------------


def coded_layers(repeats: int = 2, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Three layers of the same clips: speaker only, both, word only."""
    words, speakers = design(n_words=5, n_speakers=8, repeats=repeats)
    rng = np.random.default_rng(seed)
    voice = rng.normal(size=(8, 20))[speakers]
    word = rng.normal(size=(5, 20))[words]
    noise = 0.05 * rng.normal(size=(len(words), 20))
    layers = {"first": voice + noise, "middle": voice + word + noise, "last": word + noise}
    return layers, words.astype(str), speakers.astype(str)


def test_speaker_and_word_knn_curves_cross() -> None:
    layers, words, speakers = coded_layers(repeats=2)
    table = metrics_table(layers, words, speakers, probe=False).set_index("layer")
    assert set(SPEAKER_WORD_COLUMNS) <= set(table.columns)
    speaker, word = table["speaker_knn_within_word"], table["speaker_disjoint_knn"]
    # Speaker encoded, word not: the speaker is told apart within a word, the word is not
    # told across speakers (neighbours of other speakers are random w.r.t. the word).
    assert speaker["first"] == 1.0 and word["first"] < 0.5
    # Word encoded, speaker not: the reverse. The curves cross.
    assert word["last"] == 1.0 and speaker["last"] < 0.5
    assert (speaker - word)["first"] > 0 > (speaker - word)["last"]
    # Chance within a word: (clips of the speaker - 1) / (clips of the word - 1).
    assert table["speaker_within_word_chance"].iloc[0] == pytest.approx((2 - 1) / (8 * 2 - 1))
    assert table["speaker_within_word_n"].iloc[0] == len(words)  # every speaker said each word twice
    # Across words the speaker is recognised from their other words when voice is encoded.
    assert table["speaker_knn_across_words"]["first"] == 1.0
    assert table["speaker_knn_across_words"]["last"] < 0.5
    assert table["speaker_across_words_chance"].iloc[0] == pytest.approx((5 * 2 - 2) / (5 * 8 * 2 - 8 * 2))


def test_speaker_within_word_needs_a_speaker_who_said_a_word_twice() -> None:
    layers, words, speakers = coded_layers(repeats=1)  # like the demo: one clip per speaker and word
    value, chance, n = speaker_knn_within_word(layers["first"], words, speakers)
    assert math.isnan(value) and math.isnan(chance) and n == 0
    value, chance, n = speaker_knn_across_words(layers["first"], words, speakers)
    assert value == 1.0 and n == len(words) and chance == pytest.approx(4 / 32)
    # One clip twice by one speaker: only those two clips are scored.
    extra_words = np.concatenate([words, words[:1]])
    extra_speakers = np.concatenate([speakers, speakers[:1]])
    X = np.vstack([layers["first"], layers["first"][:1] + 0.01])
    value, chance, n = speaker_knn_within_word(X, extra_words, extra_speakers)
    assert n == 2 and value == 1.0 and chance == pytest.approx(1 / 8)


# --- table, caps, progress ----------------------------------------------------------------


def test_measures_table_order_subsample_and_progress() -> None:
    layers, words, speakers = coded_layers(repeats=2)
    events = []
    table = measures_table(layers, words, speakers, model="m", max_n=40, progress=lambda e: events.append(e) and False)
    assert list(table.columns) == ["layer", "model", "depth", *MEASURE_COLUMNS]
    assert list(table["layer"]) == ["first", "middle", "last"]
    assert (table["measures_n"] == 40).all() and (table["n_clips"] == 80).all()
    assert [e.done for e in events] == [0, 1, 2, 3]
    last, first = table.iloc[2], table.iloc[0]
    assert last["pwcca"] > 0.95 and last["cluster_nmi"] > 0.9 and last["abx_across"] > 0.95
    assert first["pwcca"] < last["pwcca"] and first["cluster_nmi"] < last["cluster_nmi"]
    assert first["abx_distractor"] < 0.5 < last["abx_distractor"]  # voice pulls X to B's speaker
    with pytest.raises(Cancelled):
        measures_table(layers, words, speakers, progress=lambda e: e.done >= 1)


def test_undefined_inputs_give_nan_not_errors() -> None:
    X = np.random.default_rng(0).normal(size=(6, 4))
    one_word = np.array(["a"] * 6)
    assert math.isnan(pwcca_words(X, one_word).value)
    assert all(math.isnan(v) for v in cluster_word_nmi(X, one_word))
    singletons = np.array(["a", "b", "c", "d", "e", "f"])
    assert math.isnan(pwcca_words(X, singletons).value)  # no word has 2 clips to hold out
    assert math.isnan(pwcca_words(np.zeros((6, 4)), np.array(list("aabbcc"))).value)  # constant layer
    out = layer_measures(X, np.array(list("aabbcc")))  # no speakers: no ABX
    assert math.isnan(out["abx_across"]) and out["abx_across_triplets"] == 0
    with pytest.raises(ConfigError):
        pwcca_words(X, np.array(list("aabbcc")), folds=1)
    with pytest.raises(ConfigError):
        pwcca_words(X, np.array(list("aabbcc")), grid=(1.5,))


def test_views_measures_do_not_depend_on_row_order() -> None:
    """The app (manifest order) and analyse (word order) give the same numbers for the same clips."""
    import pandas as pd

    from embedviz import views

    layers, words, speakers = coded_layers(repeats=1)
    clips = pd.DataFrame({"clip_key": [f"k{i:03d}" for i in range(len(words))], "word": words, "speaker": speakers})
    shuffle = np.random.default_rng(5).permutation(len(words))
    first = views.measures_table(layers, clips, only=["middle"])
    again = views.measures_table({k: v[shuffle] for k, v in layers.items()}, clips.iloc[shuffle].reset_index(drop=True),
                                 only=["middle"])
    assert list(first["layer"]) == ["middle"] and first["depth"].iloc[0] == 0.5
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(ConfigError, match="no such layer"):
        views.measures_table(layers, clips, only=["nope"])


def test_speaker_word_and_measures_figures_draw_two_curves_per_model() -> None:
    import pandas as pd

    from embedviz.figures import measures_figure, speaker_word_figure

    layers, words, speakers = coded_layers(repeats=2)
    metrics = metrics_table(layers, words, speakers, model="m", probe=False)
    both = pd.concat([metrics.assign(model="a"), metrics.assign(model="b")], ignore_index=True)
    fig = speaker_word_figure(both)
    curves = [t for t in fig.data if t.name.startswith(("a ·", "b ·"))]
    assert len(curves) == 4  # word and speaker per model
    assert {t.line.dash for t in curves} == {"solid", "dash"}
    speaker_a = next(t for t in curves if t.name == "a · speaker 1-NN within words")
    np.testing.assert_allclose(speaker_a.y, metrics["speaker_knn_within_word"])
    assert any(t.name.startswith("speaker chance") for t in fig.data)  # shared chance drawn once
    with pytest.raises(ConfigError):
        speaker_word_figure(both, "knn_accuracy")
    table = measures_table(layers, words, speakers, model="m")
    mfig = measures_figure(table)
    assert table["abx_within"].notna().all()  # repeats=2: every speaker says each word twice
    assert {t.name for t in mfig.data} == {"m", "m · NMI chance", "m · word ABX, B by X's speaker",
                                           "m · word ABX within speaker"}
    abx = [t for t in mfig.data if t.xaxis == "x3" and t.name == "m"]
    np.testing.assert_allclose(abx[0].y, table["abx_across"])
    within = next(t for t in mfig.data if t.name == "m · word ABX within speaker")
    np.testing.assert_allclose(within.y, table["abx_within"])
    # Nobody says a word twice (the demo): no within-speaker curve rather than an empty one.
    assert not any("within" in t.name for t in measures_figure(table.assign(abx_within=np.nan)).data)
    with pytest.raises(ConfigError):
        measures_figure(table.drop(columns=["pwcca"]))


def test_analyse_measures_adds_columns_and_figures(tmp_path, capsys) -> None:
    import pandas as pd

    from embedviz.cli import main

    cache = tmp_path / "cache"
    assert main(["extract", "--model", "baseline:mel", "--words", "yes,no,up", "--samples", "4", "--cache", str(cache)]) == 0
    out, figures = tmp_path / "table.csv", tmp_path / "figures"
    assert main(["analyse", "--model", "baseline:mel", "--cache", str(cache), "--no-probe", "--measures",
                 "--out", str(out), "--figures", str(figures)]) == 0
    table = pd.read_csv(out)
    assert {"pwcca", "cluster_nmi", "abx_across", "abx_distractor", "measures_n", *SPEAKER_WORD_COLUMNS} <= set(table.columns)
    assert (table["measures_n"] == 12).all() and table["abx_across"].between(0, 1).all()
    assert table["speaker_knn_across_words"].notna().all()  # demo: one clip per speaker and word
    assert {"speaker_word.html", "measures.html"} <= {p.name for p in figures.glob("*.html")}
    # The printed table names each ABX column's condition (which speaker B is from).
    printed = capsys.readouterr().out
    assert "abx_across: word ABX score" in printed and "B by A's speaker [headline" in printed
    assert "abx_within: " in printed and "abx_distractor: " in printed and "B by X's speaker" in printed
    assert {"abx_within", "abx_within_triplets"} <= set(table.columns) and table["abx_within"].isna().all()
