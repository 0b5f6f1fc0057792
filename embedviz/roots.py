"""Allowlists: which folders may be opened as datasets, and which names may be loaded as models.

Everything a URL, a text box or an archive names is untrusted. These checks decide, before
anything is read from disk, whether a path or a model name is allowed:

* a dataset must be the bundled demo or a folder under one of the configured data roots
  (:func:`embedviz.settings.data_roots`: ``$EMBEDVIZ_DATA_ROOTS``, plus folders the
  product fetched);
* a model must be a catalogue id, ``random-init:<catalogue id>``, ``baseline:mel``, or a
  model folder under one of the configured model roots (``$EMBEDVIZ_MODEL_ROOTS``).

A path is checked lexically first (absolute, no ``..``, no NUL, not absurdly long), and
only a path that passes is resolved (following symlinks) and checked again with
:meth:`pathlib.Path.is_relative_to` against the resolved roots, so neither ``..`` nor a
symlink can lead out of a root. Each check returns ``(value, "")`` or ``(None, why)``:
the callers turn ``why`` into a warning (URL) or an error message (text box). Pure
library code: no Streamlit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Longest path or model name considered at all (anything longer is refused unread).
MAX_NAME_CHARS = 4096


def lexical(raw: str) -> Path | None:
    """An absolute, normalised path without ``..`` parts, or None. Touches no disk."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_NAME_CHARS or "\x00" in raw:
        return None
    path = Path(raw)
    if not path.is_absolute() or ".." in path.parts:
        return None
    return Path(os.path.normpath(raw))


def within(path: Path, roots: Iterable[Path]) -> bool:
    """True if ``path`` is one of ``roots`` or lies below one (no disk access)."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def contained_path(raw: str, roots: Sequence[Path | str]) -> tuple[str | None, str]:
    """``(resolved path, "")`` when ``raw`` lies inside one of ``roots``, else ``(None, why)``.

    Lexical check first (absolute, no ``..``), then the same check on the resolved path
    against the resolved roots, so a symlink inside a root cannot point outside it.
    Nothing outside the roots is resolved, stat'ed or opened.
    """
    if not roots:
        return None, "no folders are allowed for this"
    path = lexical(raw)
    if path is None:
        return None, "it must be an absolute path without '..'"
    lexical_roots = [Path(os.path.normpath(str(r))) for r in roots]
    resolved_roots = [Path(r).resolve() for r in roots]
    # A root may itself be reached through a symlink (e.g. /tmp on macOS): accept both spellings.
    if not within(path, lexical_roots + resolved_roots):
        return None, "it is outside the allowed folders"
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop
        return None, f"it cannot be resolved ({error})"
    if not within(resolved, resolved_roots):
        return None, "it leads outside the allowed folders (symlink)"
    return str(resolved), ""


def check_dataset_path(raw: str, data_roots: Sequence[Path | str], demo_root: Path | str) -> tuple[str | None, str]:
    """``(value, "")`` for an allowed dataset folder (``""`` means the demo), else ``(None, why)``.

    ``"demo"`` and the demo's own folder both mean the bundled demo.
    """
    if not isinstance(raw, str):
        return None, "not a folder name"
    demo = Path(demo_root).resolve()
    if raw.strip().lower() == "demo":
        return "", ""
    checked, why = contained_path(raw, [*data_roots, demo])
    if checked is None:
        if not data_roots and why.startswith("it is outside"):
            why = "only the demo dataset is allowed; set EMBEDVIZ_DATA_ROOTS to allow more folders"
        return None, why
    if Path(checked) == demo:
        return "", ""
    if not Path(checked).is_dir():
        return None, "no such folder"
    return checked, ""


def check_model_name(
    raw: str, catalogue_ids: Iterable[str], model_roots: Sequence[Path | str]
) -> tuple[str | None, str]:
    """``(name, "")`` for an allowed model name, else ``(None, why)``. No model is loaded.

    Allowed: a catalogue id, ``baseline:mel``, ``random-init:<catalogue id>`` (not of a
    baseline), or an existing folder under one of ``model_roots`` (returned resolved).
    Hub ids that are not in the catalogue are refused: the catalogue is the allowlist.
    """
    from embedviz.catalogue import BASELINE_ID, RANDOM_INIT_PREFIX

    ids = set(catalogue_ids)
    name = (raw or "").strip() if isinstance(raw, str) else ""
    if not name or len(name) > MAX_NAME_CHARS or "\x00" in name:
        return None, "empty or malformed name"
    if name == BASELINE_ID or (name in ids and not name.startswith("baseline:")):
        return name, ""
    if name.startswith(RANDOM_INIT_PREFIX):
        base = name[len(RANDOM_INIT_PREFIX) :].strip()
        if base in ids and not base.startswith("baseline:"):
            return f"{RANDOM_INIT_PREFIX}{base}", ""
        return None, f"random-init needs a catalogue model after 'random-init:'; {base[:60]!r} is not one"
    if name.startswith("/"):
        if not model_roots:
            return None, "local model folders are only allowed under EMBEDVIZ_MODEL_ROOTS, and none is set"
        checked, why = contained_path(name, model_roots)
        if checked is None:
            return None, why
        if not Path(checked).is_dir():
            return None, "no such model folder"
        return checked, ""
    return None, "not in the catalogue, not 'baseline:mel', not 'random-init:<catalogue id>' and not a model folder"


__all__ = ["MAX_NAME_CHARS", "check_dataset_path", "check_model_name", "contained_path", "lexical", "within"]
