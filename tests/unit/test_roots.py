"""Allowlists (embedviz.roots): datasets only under the roots, models only from the catalogue or model roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedviz.catalogue import CATALOGUE
from embedviz.datasets import demo_root
from embedviz.roots import check_dataset_path, check_model_name, contained_path, lexical


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "sc" / "yes").mkdir(parents=True)
    (root / "file.txt").write_text("not a folder")
    outside = tmp_path / "outside"
    (outside / "yes").mkdir(parents=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "inner_link").symlink_to(root / "sc", target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")
    return {"root": root, "outside": outside}


def test_a_folder_under_the_root_is_allowed_and_comes_back_resolved(tree) -> None:
    root = tree["root"]
    assert check_dataset_path(str(root / "sc"), [root], demo_root()) == (str((root / "sc").resolve()), "")
    # A symlink that stays inside the root is fine (resolved to its target).
    assert check_dataset_path(str(root / "inner_link"), [root], demo_root())[0] == str((root / "sc").resolve())


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("escape", "symlink"),  # a symlink out of the root
        ("escape/yes", "symlink"),
        ("sc/../../outside", ".."),
        ("file.txt", "no such folder"),  # not a directory
        ("missing", "no such folder"),
        ("loop", "resolved"),  # a symlink loop
    ],
)
def test_paths_leading_out_of_a_root_or_not_folders_are_refused(tree, name, why) -> None:
    checked, reason = check_dataset_path(str(tree["root"] / name), [tree["root"]], demo_root())
    assert checked is None and why in reason, reason


@pytest.mark.parametrize("raw", ["sc", "./sc", "~/sc", "", "/x\x00y", "/" + "a" * 5000])
def test_relative_empty_or_malformed_paths_are_refused_lexically(tree, raw) -> None:
    assert lexical(raw) is None
    assert check_dataset_path(raw, [tree["root"]], demo_root())[0] is None


def test_outside_and_no_roots(tree) -> None:
    assert "outside" in check_dataset_path(str(tree["outside"]), [tree["root"]], demo_root())[1]
    assert "only the demo" in check_dataset_path(str(tree["outside"]), [], demo_root())[1]
    assert contained_path(str(tree["root"]), [])[0] is None
    assert check_dataset_path("demo", [], demo_root()) == ("", "")
    assert check_dataset_path(str(demo_root()), [], demo_root()) == ("", "")


def test_models_catalogue_ids_or_folders_under_model_roots(tree) -> None:
    ids = set(CATALOGUE)
    root = tree["root"]
    assert check_model_name("openai/whisper-tiny", ids, []) == ("openai/whisper-tiny", "")
    assert check_model_name(" baseline:mel ", ids, []) == ("baseline:mel", "")
    assert check_model_name("random-init:openai/whisper-tiny", ids, [])[0] == "random-init:openai/whisper-tiny"
    assert check_model_name(str(root / "sc"), ids, [root])[0] == str((root / "sc").resolve())
    for bad, why in [
        ("someone/else", "not in the catalogue"),
        ("random-init:baseline:mel", "random-init"),
        (str(root / "sc"), "EMBEDVIZ_MODEL_ROOTS"),  # no model roots configured
    ]:
        name, reason = check_model_name(bad, ids, [])
        assert name is None and why in reason, reason
    for bad, why in [(str(root / "escape"), "symlink"), (str(root / "file.txt"), "no such model folder"),
                     ("sc", "not in the catalogue"), (str(tree["outside"]), "outside")]:
        name, reason = check_model_name(bad, ids, [root])
        assert name is None and why in reason, (bad, reason)
