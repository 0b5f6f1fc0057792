"""A model reference, parsed once at the edge (CLI argument, URL, widget, settings).

Every name a user can give is one of four kinds:

* ``catalogue`` / ``hub``: a hub id (``facebook/wav2vec2-base``); ``catalogue`` when embedviz
  embeds its config, ``hub`` for any other ``org/name`` (it must then be in the HF cache);
* ``random_init``: ``random-init:<catalogue id>``, that architecture with seeded random weights;
* ``baseline``: ``baseline:mel``, the log-mel / MFCC features (no weights);
* ``local_folder``: an existing folder in Hugging Face format.

:meth:`ModelRef.parse` decides the kind once; ``str(ref)`` gives the text form back
(``ModelRef.parse(str(ref)) == ref``). Callers branch on ``ref.kind`` instead of re-parsing.
Importing this module is cheap (no numpy, no torch).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from embedviz.errors import ModelLoadError

RANDOM_INIT_PREFIX = "random-init:"
BASELINE_ID = "baseline:mel"
#: Longest name accepted (a URL or widget could carry anything).
MAX_NAME_LENGTH = 4096

Kind = Literal["catalogue", "hub", "random_init", "baseline", "local_folder"]
KINDS: tuple[str, ...] = ("catalogue", "hub", "random_init", "baseline", "local_folder")

_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str) -> bool:
    """True for ``org/name`` shaped ids."""
    return bool(_HUB_ID_RE.match(name))


def looks_like_path(name: str) -> bool:
    """True for names that can only be folders (absolute, ./, ~/, or with a backslash)."""
    return name.startswith(("/", ".", "~")) or "\\" in name or (os.sep in name and not is_hub_id(name))


def local_folder(name: str | os.PathLike[str]) -> Path | None:
    """The folder ``name`` points to, if it is an existing directory."""
    path = Path(os.path.expanduser(str(name)))
    return path.resolve() if path.is_dir() else None


def _catalogue_ids() -> tuple[str, ...]:
    from embedviz import catalogue  # late: catalogue imports this module

    return catalogue.catalogue_ids()


@dataclass(frozen=True)
class ModelRef:
    """What a model name refers to.

    Attributes:
        kind: one of :data:`KINDS`.
        id: the hub id (``catalogue``, ``hub``), the catalogue id a ``random_init`` is built
            from, ``baseline:mel``, or the resolved folder path (``local_folder``).
    """

    kind: Kind
    id: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelLoadError(f"model reference kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(self.id, str) or not self.id:
            raise ModelLoadError("model reference id must be a non-empty string")

    def __str__(self) -> str:
        return RANDOM_INIT_PREFIX + self.id if self.kind == "random_init" else self.id

    @property
    def text(self) -> str:
        """The text form (same as ``str(ref)``)."""
        return str(self)

    @property
    def folder(self) -> Path | None:
        """The folder of a ``local_folder`` reference, else None."""
        return Path(self.id) if self.kind == "local_folder" else None

    @property
    def is_hub(self) -> bool:
        """True for ``catalogue`` and ``hub`` references (weights come from the HF cache or hub)."""
        return self.kind in ("catalogue", "hub")

    @classmethod
    def parse(cls, text: str | os.PathLike[str] | "ModelRef") -> "ModelRef":
        """Decide what ``text`` refers to. Nothing is loaded; folders are checked to exist.

        Order: ``baseline:mel``, ``random-init:<id>``, a catalogue id, an existing folder,
        any other ``org/name`` hub id.

        Raises:
            ModelLoadError: empty or malformed name, ``random-init:`` of a non-catalogue id,
                or a path that is not an existing folder.
        """
        if isinstance(text, ModelRef):
            return text
        name = str(text if text is not None else "").strip()
        if not name:
            raise ModelLoadError("model name is empty; pick a catalogue model, a local folder or 'baseline:mel'")
        if len(name) > MAX_NAME_LENGTH or "\x00" in name:
            raise ModelLoadError(f"model name {name[:60]!r}... is malformed (too long or contains NUL)")
        if name == BASELINE_ID:
            return cls("baseline", BASELINE_ID)
        ids = _catalogue_ids()
        if name.startswith(RANDOM_INIT_PREFIX):
            base = name[len(RANDOM_INIT_PREFIX):].strip()
            if base not in ids:
                raise ModelLoadError(
                    f"{name!r}: random-init needs a catalogue model id after 'random-init:', e.g. "
                    f"'random-init:facebook/wav2vec2-base'; {base!r} is not one"
                )
            return cls("random_init", base)
        if name in ids:
            return cls("catalogue", name)
        folder = local_folder(name)
        if folder is not None:
            return cls("local_folder", str(folder))
        if is_hub_id(name) and not looks_like_path(name):
            return cls("hub", name)
        raise ModelLoadError(
            f"{name!r}: no such model folder, and not a hub id like 'org/name'; give a folder containing "
            "config.json, or a catalogue id"
        )


def is_allowed(ref: ModelRef, catalogue_ids: Iterable[str], model_roots: Sequence[Path | str]) -> tuple[bool, str]:
    """Whether a shared URL or widget may use ``ref``: ``(True, "")`` or ``(False, why)``.

    Allowed: the baseline, catalogue ids in ``catalogue_ids``, random-init of one of them,
    and folders inside one of ``model_roots`` (resolved, so symlinks out of a root are refused).
    Other hub ids are refused (nothing outside the catalogue is fetched on a URL's say-so).
    """
    ids = set(catalogue_ids)
    if ref.kind == "baseline":
        return True, ""
    if ref.kind in ("catalogue", "hub"):
        if ref.id in ids:
            return True, ""
        return False, f"{ref.id!r} is not in the catalogue"
    if ref.kind == "random_init":
        if ref.id in ids:
            return True, ""
        return False, f"random-init needs a catalogue model after 'random-init:'; {ref.id!r} is not one"
    if not model_roots:
        return False, "local model folders are only allowed under EMBEDVIZ_MODEL_ROOTS, and none is set"
    folder = Path(ref.id).resolve()
    for root in model_roots:
        root_path = Path(os.path.expanduser(str(root))).resolve()
        if folder == root_path or folder.is_relative_to(root_path):
            return True, ""
    return False, f"{folder} is not under a configured model root"
