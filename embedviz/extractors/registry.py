"""The family registry: each extractor module declares its model family once.

In the way s3prl's upstreams or lhotse's audio backends register themselves, every module
in :mod:`embedviz.extractors` that implements a family calls :func:`register` at import with
a :class:`FamilySpec`. Everything that needs to know about families (the catalogue's layer
names, which ``model_type`` a folder may have, which transformers classes load it, its
default preprocessor, the options that change its numbers, how to build its extractor)
asks :func:`family` / :func:`families` / :func:`family_for_model_type` instead of keeping
its own table.

Modules are discovered lazily: the first question imports every module of the package
(except ``base`` and ``registry``), so adding a family is one new module with its
``register(...)`` call, plus its tiny model in ``tests/tiny_models.py`` for the contract
tests. Importing this module imports neither numpy nor torch.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from embedviz.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from embedviz.extractors.base import Extractor, ModelInfo

#: Modules of the package that are not families.
_NOT_FAMILIES = frozenset({"base", "registry"})


@dataclass(frozen=True)
class FamilySpec:
    """One model family, declared once by its extractor module.

    Attributes:
        name: family name (``wav2vec2``, ``whisper``, ...), stored in ``ModelInfo.family``.
        model_types: transformers ``config.json`` ``model_type`` values of this family
            (empty for weightless families such as the baseline).
        model_class: transformers base-model class name (``Wav2Vec2Model``), never a task
            head; None for weightless families.
        config_class: transformers config class name (``Wav2Vec2Config``); None if weightless.
        layer_names: ``config -> layer names`` in network order, without weights.
        construct: ``(model, *, info, device, preprocessor, options) -> Extractor``;
            ``options`` holds the values of :attr:`numeric_options`.
        default_preprocessor: ``config -> preprocessor_config dict`` for checkpoints that
            ship none; None if the family needs no preprocessor.
        layer_widths: ``config -> {layer: width}`` when known without running the model.
        numeric_options: names of :class:`~embedviz.settings.ExtractionSettings` fields that
            change this family's numbers (besides ``max_seconds``, which every family has).
        preferred_batch_size: clips per forward pass when the caller gives none, measured on
            the 2-core CPU of the dev machine (issue 8, ``bench/bench_extraction.py``).
        config_defaults: transformers defaults of the config fields ``layer_names`` reads,
            used when a folder's config.json leaves them out.
        build_random: ``config -> model`` for ``random-init:``; default ``model_class(config)``.
        prepare_model: ``model -> model`` applied after loading (e.g. keep only an encoder).
    """

    name: str
    layer_names: Callable[[Any], tuple[str, ...]]
    construct: Callable[..., "Extractor"]
    model_types: tuple[str, ...] = ()
    model_class: str | None = None
    config_class: str | None = None
    default_preprocessor: Callable[[Any], dict[str, Any]] | None = None
    layer_widths: Callable[[Any], Mapping[str, int]] | None = None
    numeric_options: tuple[str, ...] = ()
    preferred_batch_size: int = 8
    config_defaults: Mapping[str, Any] = field(default_factory=dict)
    build_random: Callable[[Any], Any] | None = None
    prepare_model: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ConfigError(f"family name {self.name!r} must be a non-empty identifier")
        if (self.model_class is None) != (self.config_class is None) or (self.model_class is None) != (
            not self.model_types
        ):
            raise ConfigError(
                f"family {self.name}: model_class, config_class and model_types are all set (a model with "
                "weights) or all empty (a weightless family)"
            )
        if not isinstance(self.preferred_batch_size, int) or self.preferred_batch_size < 1:
            raise ConfigError(f"family {self.name}: preferred_batch_size must be a positive int")

    @property
    def has_weights(self) -> bool:
        """False for families computed from the audio alone (the baseline)."""
        return self.model_class is not None

    def model_cls(self) -> Any:
        """The transformers model class (imports transformers)."""
        import transformers

        return getattr(transformers, str(self.model_class))

    def config_cls(self) -> Any:
        """The transformers config class (imports transformers)."""
        import transformers

        return getattr(transformers, str(self.config_class))

    def build(
        self, model: Any, *, info: "ModelInfo | None", device: str, preprocessor: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> "Extractor":
        """Build this family's extractor (``model`` already passed through :attr:`prepare_model`)."""
        return self.construct(model, info=info, device=device, preprocessor=dict(preprocessor),
                              options={k: options[k] for k in self.numeric_options if k in options})


_lock = threading.RLock()
_families: dict[str, FamilySpec] = {}
_loaded = False


def register(spec: FamilySpec) -> FamilySpec:
    """Add ``spec`` to the registry (called by each family module at import). Returns it.

    Raises:
        ConfigError: another family already has this name or one of its model types.
    """
    with _lock:
        old = _families.get(spec.name)
        if old is not None and old != spec:
            raise ConfigError(f"family {spec.name!r} is registered twice")
        for other in _families.values():
            if other.name != spec.name and set(other.model_types) & set(spec.model_types):
                raise ConfigError(f"model_type(s) {set(other.model_types) & set(spec.model_types)} of family "
                                  f"{spec.name!r} already belong to {other.name!r}")
        _families[spec.name] = spec
    return spec


def _load_all() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True  # set first: a module importing another must not recurse
        import embedviz.extractors as package

        for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
            if module not in _NOT_FAMILIES and not module.startswith("_"):
                importlib.import_module(f"embedviz.extractors.{module}")


def families() -> dict[str, FamilySpec]:
    """Every registered family, by name, in a stable order (weights first, then by name)."""
    _load_all()
    with _lock:
        ordered = sorted(_families.values(), key=lambda s: (not s.has_weights, s.name))
        return {s.name: s for s in ordered}


def family(name: str) -> FamilySpec:
    """The family called ``name``.

    Raises:
        ModelLoadError: no such family.
    """
    specs = families()
    if name not in specs:
        raise ModelLoadError(f"unknown model family {name!r}; expected one of {', '.join(specs)}")
    return specs[name]


def family_for_model_type(model_type: Any) -> FamilySpec | None:
    """The family whose checkpoints have ``config.json`` ``model_type`` = ``model_type``, or None."""
    for spec in families().values():
        if str(model_type) in spec.model_types:
            return spec
    return None


def model_types() -> tuple[str, ...]:
    """Every supported transformers ``model_type``."""
    return tuple(t for spec in families().values() for t in spec.model_types)
