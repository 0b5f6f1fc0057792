"""Read the Explore page's one figure back from an AppTest run.

2D views (up to ``figures.ECHARTS_MAX_POINTS`` points) are an ``st.echarts_chart``: its
proto's ``spec`` is the option JSON, and each series' ``dataset.source`` is a
``{"name": <hash>}`` reference to an Arrow table in the proto's ``datasets``. 3D views
and larger 2D ones are an ``st.plotly_chart`` (proto ``spec``: the figure JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tests.app.conftest import charts as drawn


@dataclass(frozen=True)
class EChart:
    """The option of the page's ECharts chart and its datasets (by name) as DataFrames."""

    option: dict
    datasets: dict[str, pd.DataFrame]

    def titles(self, prefix: str) -> list[dict]:
        return [t for t in self.option.get("title", []) if str(t.get("id", "")).startswith(prefix)]

    def panel_titles(self) -> list[str]:
        """Each panel's title lines and subtitle, one text (lines joined by newlines)."""
        return [t["text"] + ("\n" + t["subtext"] if t.get("subtext") else "") for t in self.titles("panel title")]

    def word_series(self) -> list[dict]:
        """The series that draw stored clips (those reading a dataset)."""
        return [s for s in self.option["series"] if "datasetIndex" in s]

    def rows(self, series: dict) -> pd.DataFrame:
        """A word series' rows (columns x, y, clip, word, speaker)."""
        source = self.option["dataset"][series["datasetIndex"]]["source"]
        return self.datasets[source["name"]]

    def panel_points(self, panel: int) -> dict[str, tuple[float, float]]:
        """clip id -> (x, y) of every stored clip drawn in ``panel``."""
        out = {}
        for s in self.word_series():
            if s["xAxisIndex"] == panel:
                rows = self.rows(s)
                out.update(zip(rows["clip"], zip(rows["x"].astype(float), rows["y"].astype(float))))
        return out

    def stars(self) -> list[list[float] | None]:
        """The "your clip" point of every panel (None for a panel without one)."""
        stars: list[list[float] | None] = [None] * len(self.option["grid"])
        for s in self.option["series"]:
            if s.get("name") == "your clip":
                stars[s["xAxisIndex"]] = [float(v) for v in s["data"][0]]
        return stars


def echart(at) -> EChart | None:
    """The page's one ECharts chart (None when there is none; two would fail: every panel
    belongs in one chart)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    charts = drawn(at, "echarts_chart")
    assert len(charts) <= 1, f"{len(charts)} ECharts charts: every panel belongs in one chart"
    if not charts:
        return None
    proto = charts[0].proto
    datasets = {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in proto.datasets}
    return EChart(json.loads(proto.spec), datasets)


def plotly_figure(at) -> dict | None:
    """The page's one Plotly figure (3D, or 2D past ECharts' cap), or None."""
    charts = drawn(at, "plotly_chart")
    assert len(charts) <= 1, f"{len(charts)} charts: every panel belongs in one figure"
    return json.loads(charts[0].proto.spec) if charts else None


def panel_titles(at) -> list[str]:
    """The title of each drawn panel, in panel order, whichever renderer drew it (Plotly's
    ``<br>`` line breaks as newlines); no figure: []."""
    chart = echart(at)
    if chart is not None:
        assert plotly_figure(at) is None, "2D panels and a Plotly figure on one page"
        return chart.panel_titles()
    spec = plotly_figure(at)
    if spec is None:
        return []
    return [a["text"].replace("<br>", "\n") for a in spec["layout"].get("annotations", [])
            if a.get("name") == "panel title"]


def plotly_array(value) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array ``{"dtype", "bdata"}`` (base64)."""
    import base64

    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=np.float64)


def select(at, selected: list[dict], areas: list[dict] = ()):
    """Rerun as if the user had selected in the ECharts chart: ``selected`` and ``areas``
    in ``st.echarts_chart``'s payload (``series_index`` / ``data_indices``; brush areas).

    AppTest implements no interaction for this element, so the widget state goes in as
    the browser sends it (a JSON ``string_value`` under the chart's id), through AppTest's
    ``_run``; the page's real ``on_select`` callback then runs before the script."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    (element,) = drawn(at, "echarts_chart")
    states = at._tree.get_widget_states()
    kept = [w for w in states.widgets if w.id != element.proto.id]
    del states.widgets[:]
    states.widgets.extend(kept)
    states.widgets.append(WidgetState(id=element.proto.id, string_value=json.dumps(
        {"selection": {"selected": selected, "areas": list(areas)}})))
    return at._run(widget_state=states)
