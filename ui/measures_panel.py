"""Layer analysis sections: where speaker and word information live, and the layer-wise
measures of the literature (PWCCA, cluster NMI, ABX).

Numbers come from :mod:`ui.cached` (the library computes them); this module only lays
them out, explains them and reports progress.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd
import streamlit as st

from embedviz.viewstate import ViewSettings
from ui import cached, state, widgets

SPEAKER_WORD_HELP = (
    "**Word k-NN across speakers** (solid): the 5 nearest clips *by other speakers* vote on a clip's word, "
    "so a shared voice cannot help. **Speaker 1-NN** (dashed): the nearest clip votes on the *speaker*. "
    "*Within words* only clips of the same word are candidates, and only speakers who said that word at "
    "least twice are scored; *across words* only clips of other words are candidates (the speaker must be "
    "recognised from their other words). Grey lines: chance (the majority word; the speaker of a random "
    "candidate clip). Where the dashed curve is above the solid one, a layer's neighbourhoods follow the "
    "voice more than the word."
)

MEASURES_HELP = """
* **PWCCA with one-hot words.** Canonical correlation between the layer and the one-hot word labels, each
  canonical direction weighted by how much of the representation it accounts for (projection-weighted CCA,
  Morcos, Raghu & Bengio, NeurIPS 2018), as in Pasad, Chou & Livescu (ASRU 2021) and Pasad, Shi & Livescu
  (ICASSP 2023). Ridge-regularised CCA; the regularisation is chosen on held-out clips and the value is
  measured on clips used neither for the directions nor for that choice (nested 3-fold cross-validation).
  1: the words are a linear function of the layer on unseen clips; about 0: no linear word information.
* **k-means cluster NMI.** k-means with k = number of words (seeded, on length-normalised vectors), then
  I(word; cluster) / H(word): the word version of HuBERT's phone-normalised mutual information (Hsu et al.,
  TASLP 2021). 1: the clusters are the words; the dotted line is its expected value for clusters unrelated
  to the words.
* **Word ABX across speakers** (the headline ABX number; Schatz et al., Interspeech 2013, the ZeroSpeech
  across-speaker condition). Is a clip X closer to another token A of its word **by a different speaker**
  than to a token B of another word? B is by **A's speaker**, so the voice favours neither. The **score** is
  the fraction of triplets (A, B, X) with d(A, X) < d(B, X) (cosine distance, ties ½): 1 perfect, 0.5 chance;
  the ABX error rate ZeroSpeech reports is 1 − score. Solid curve and the table's *ABX across speakers*.
  Secondary, dash-dot curve and table: *ABX within speaker* (A, B and X all by X's speaker, ZeroSpeech's within-speaker
  condition; empty when no speaker said a word twice, as in the demo). Dotted curve and *ABX, B by X's
  speaker*: A by another speaker, B by X's own, so a layer organised by voice pulls X towards B and scores
  below 0.5. Every triplet is scored up to 20,000, else 20,000 seeded samples.
"""


def _speaker_metric(full: pd.DataFrame) -> tuple[str, str]:
    """The speaker curve to draw (:func:`embedviz.figures.speaker_word_metric`) and why."""
    from embedviz.figures import speaker_word_metric

    if speaker_word_metric(full) == "speaker_knn_within_word":
        return "speaker_knn_within_word", "Speaker identity is measured within words."
    return "speaker_knn_across_words", (
        "No speaker said a word twice in this selection (one clip per speaker and word, as in the demo), "
        "so speaker identity within words is undefined; the dashed curve is speaker 1-NN **across words**."
    )


def render_speaker_word(full: pd.DataFrame) -> None:
    """Word k-NN across speakers and speaker k-NN per layer, on one chart, for every model of ``full``
    (the Layer analysis metrics table, several models concatenated)."""
    from embedviz.figures import speaker_word_figure

    with st.container(border=True):
        st.subheader("Where speaker and word information live")
        st.caption(SPEAKER_WORD_HELP)
        if full.empty or "speaker_knn_across_words" not in full.columns:
            st.info("No metrics: too few stored clips.")
            return
        metric, why = _speaker_metric(full)
        st.caption(why)
        st.plotly_chart(speaker_word_figure(full, metric), key="la_speaker_word", config={"displaylogo": False})
        chance_col = "speaker_within_word_chance" if metric == "speaker_knn_within_word" else "speaker_across_words_chance"
        n_col = "speaker_within_word_n" if metric == "speaker_knn_within_word" else "speaker_across_words_n"
        shown = full[["model", "layer", "speaker_disjoint_knn", "chance", metric, chance_col, n_col]].rename(
            columns={"speaker_disjoint_knn": "word k-NN across speakers", "chance": "word chance",
                     metric: "speaker 1-NN", chance_col: "speaker chance", n_col: "clips scored"}
        )
        with st.expander("Speaker vs word table", expanded=False):
            st.dataframe(shown, hide_index=True, key="la_speaker_word_table", column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in ("word k-NN across speakers", "word chance", "speaker 1-NN", "speaker chance")
            })


def render_measures(view: ViewSettings, ready: Mapping[str, cached.LayerSelection],
                    labels: Mapping[str, str]) -> ViewSettings:
    """The Measures section: what each measure is and its reference, a toggle that computes
    them (cached per model, clips and store state), then a chart and a table per layer.

    The toggle is the view's ``measures`` setting (in the URL: a shared link shows the
    measures computed); returns the view with the toggle's value."""
    from embedviz.figures import measures_figure
    from embedviz.measures import MEASURES_MAX_N

    with st.container(border=True):
        st.subheader("Measures")
        st.markdown(MEASURES_HELP)
        state.seed("la_measures", view.measures == "on")
        on = st.toggle(
            "Compute the measures",
            key="la_measures",
            help=f"PWCCA runs a nested cross-validation per layer: seconds per layer. At most {MEASURES_MAX_N:,} "
            "clips are used (a seeded sample, the same for every layer). Results are cached. "
            "Kept in the page's URL (measures=on), so a shared link shows them.",
        )
        view = view.replace(measures="on" if on else "off")
        if not on:
            return view
        tables = widgets.layer_by_layer(ready, labels, cached.layer_measures, "Measures")
        if not tables:
            st.info("No measures: too few stored clips.")
            return view
        full = pd.concat(tables, ignore_index=True)
        used, total = int(full["measures_n"].max()), int(full["n_clips"].max())
        size = f"{used:,} clips" if used == total else f"a seeded sample of {used:,} of {total:,} clips"
        st.caption(f"Computed on {size}.")
        best = [part.loc[part["abx_across"].idxmax()]
                for _, part in full.dropna(subset=["abx_across"]).groupby("model", sort=False)]
        if best:
            st.markdown("**Word ABX across speakers** (A and X one word by different speakers, B another word by "
                        "A's speaker), best layer: " + "; ".join(
                            f"**{r['model']}** layer {r['layer']} (score {r['abx_across']:.2f}, "
                            f"error {1 - r['abx_across']:.0%})" for r in best))
        st.plotly_chart(measures_figure(full), key="la_measures_chart", config={"displaylogo": False})
        # The headline first, then the dotted curve, then within speaker (often empty), then counts.
        abx = {"abx_across": "ABX across speakers", "abx_distractor": "ABX, B by X's speaker",
               "abx_within": "ABX within speaker", "abx_across_triplets": "triplets",
               "abx_within_triplets": "triplets within"}
        shown = full[["model", "layer", "pwcca", "pwcca_regularisation", "cluster_nmi", "cluster_nmi_chance",
                      *abx, "measures_n"]].rename(
            columns={"pwcca": "PWCCA", "cluster_nmi": "cluster NMI", "pwcca_regularisation": "PWCCA ridge",
                     "cluster_nmi_chance": "NMI chance", **abx, "measures_n": "clips"})
        st.dataframe(shown, hide_index=True, key="la_measures_table", column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("PWCCA", "PWCCA ridge", "cluster NMI", "NMI chance", abx["abx_across"], abx["abx_within"],
                      abx["abx_distractor"])
        })
    return view
