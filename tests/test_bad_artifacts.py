"""Bad checkpoints, bad indexes and out-of-range UI input (issue 6).

Each is refused with one line naming the file (or the value) and the problem: `hsg` exits 2 and
writes nothing, the library raises its own error class, the app shows a `gr.Error` message.
Nothing is executed from a file, and no file is altered by a failed command.
"""

import json
import re
import shutil

import gradio as gr
import numpy as np
import pytest
import torch

import app
import explorer as ex
import explorer_service as svc
from hsg_core.checkpoint import atomic_torch_save
from index.managed import open_or_build
from tests.conftest import assert_one_line_error, tree_digest

MARKER = "/tmp/hsg-pwned-by-checkpoint"


class RunsCode:
    """Unpickling this would create MARKER: proof that no code from a checkpoint ran."""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {MARKER}",))


def edited(source, target, edit):
    data = torch.load(source, map_location="cpu", weights_only=True)
    edit(data)
    return atomic_torch_save(data, target)


def fill(key: str, value: float):
    return lambda data: data["model"][key].fill_(value)


def expand(key: str):
    """Replace a weight by one stored number viewed at the weight's shape (stride 0): a few bytes in the
    file, the full size in any computation; the issue's bomb was such a view of 40000 x 40000."""
    return lambda data: data["model"].__setitem__(
        key, torch.ones(1).expand(data["model"][key].shape)
    )


class NotAllowed:
    """A class torch's weights_only unpickler refuses, with advice to load unsafely."""


def grow_embedding(data):
    data["config"]["model"]["embedding_dim"] = 32  # the weights still have 16


def write(path, data: bytes):
    path.write_bytes(data)
    return path


# (case id, maker(folder, good checkpoint) -> path, words the one-line error must hold)
BAD_CHECKPOINTS = [
    ("missing", lambda d, c: d / "none.pt", "no such checkpoint"),
    ("a-folder", lambda d, c: (d / "dir.pt").mkdir() or d / "dir.pt", "no such checkpoint"),
    (
        "truncated-head",
        lambda d, c: write(d / "cut.pt", c.read_bytes()[:1000]),
        "truncated or not a torch",
    ),
    (
        "truncated-half",
        lambda d, c: write(d / "half.pt", c.read_bytes()[: c.stat().st_size // 2]),
        "truncated or not a torch",
    ),
    ("text-file", lambda d, c: write(d / "notes.pt", b"hello world\n"), "truncated or not a torch"),
    (
        "pickle-with-code",
        lambda d, c: (
            torch.save({"format": "hsg-checkpoint/1", "model": RunsCode()}, d / "evil.pt")
            or d / "evil.pt"
        ),
        "refused to load",
    ),
    (
        "not-hsg",
        lambda d, c: atomic_torch_save({"weights": torch.zeros(2)}, d / "other.pt"),
        "not an HSG checkpoint",
    ),
    ("another-config", lambda d, c: edited(c, d / "wide.pt", grow_embedding), "shapes differ"),
    (
        "unknown-config-key",
        lambda d, c: edited(c, d / "future.pt", lambda x: x["config"]["model"].update(depth=3)),
        "stored config does not match",
    ),
    (
        "nan-weights",
        lambda d, c: edited(c, d / "nan.pt", fill("head.project.weight", float("nan"))),
        "NaN or inf",
    ),
    (
        "expanded-weights",
        lambda d, c: edited(c, d / "expanded.pt", expand("head.project.weight")),
        "expanded or overlapping views are refused",
    ),
    (
        "overflowing-weights",
        lambda d, c: edited(c, d / "huge.pt", fill("head.project.weight", 3e38)),
        "non-finite embeddings",
    ),
]


@pytest.mark.parametrize(
    "make, reason", [c[1:] for c in BAD_CHECKPOINTS], ids=[c[0] for c in BAD_CHECKPOINTS]
)
def test_bad_checkpoint_is_one_line_error(tmp_path, run_hsg, tiny_checkpoint, make, reason):
    good, images = tiny_checkpoint
    path = make(tmp_path, good)
    out = tmp_path / "out"
    code, _, err = run_hsg("segment", images / "0.png", "--checkpoint", path, "--out", out)
    assert_one_line_error(code, err, str(path), reason)
    assert not out.exists()
    import os

    assert not os.path.exists(MARKER)


def test_refusals_never_advise_loading_unsafely(tmp_path, run_hsg, tiny_checkpoint):
    """torch's refusal advises retrying with weights_only=False, or allowlisting the global "if you trust"
    it (in terminal escapes); `hsg` passes on torch's reason only, for checkpoints and --init-weights."""
    good, images = tiny_checkpoint
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "hsg-checkpoint/1", "model": NotAllowed()}, foreign)
    runs = [
        ("segment", images / "0.png", "--checkpoint", foreign, "--out", tmp_path / "out"),
        (
            "train",
            "--config",
            "tiny",
            "--data",
            images,
            "--out",
            tmp_path / "run",
            "--device",
            "cpu",
            "--init-weights",
            foreign,
        ),
    ]
    for argv in runs:
        code, _, err = run_hsg(*argv)
        line = assert_one_line_error(
            code, err, str(foreign), "NotAllowed was not an allowed global"
        )
        assert not re.search(
            r"weights_only=False|set to `False`|trust|safe_globals|allowlist|\x1b", line
        ), line


def test_resume_from_a_truncated_checkpoint_is_refused_untouched(
    tmp_path, run_hsg, tiny_checkpoint
):
    good, images = tiny_checkpoint
    run = tmp_path / "run"
    run.mkdir()
    cut = write(run / "checkpoint.pt", good.read_bytes()[:5000])
    code, _, err = run_hsg(
        "train", "--config", "tiny", "--data", images, "--out", run, "--resume", "--device", "cpu"
    )
    assert_one_line_error(code, err, str(cut), "truncated")
    assert cut.read_bytes() == good.read_bytes()[:5000]


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, tiny_checkpoint):
    import cli

    good, images = tiny_checkpoint
    out = tmp_path_factory.mktemp("idx") / "index"
    assert (
        cli.main(["index", "build", str(images), "--checkpoint", str(good), "--out", str(out)]) == 0
    )
    return out


def data_file(folder, kind: str):
    return next(folder.glob(f"{kind}-g*"))


def cut_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble_at(offset: int):
    def damage(path):
        data = bytearray(path.read_bytes())
        data[offset : offset + 16] = b"\xff" * 16
        path.write_bytes(bytes(data))

    return damage


def pickled_vectors(folder):
    """Replace the vectors by an object array (a pickle) and fix its size in the manifest."""
    path = data_file(folder, "vectors")
    np.save(path, np.array([RunsCode()], dtype=object), allow_pickle=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["vectors"]["bytes"] = path.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))


def manifest_edit(edit):
    def damage(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return damage


# (case id, damage(index folder), words the error must hold)
BAD_INDEXES = [
    ("truncated-faiss", lambda f: cut_half(data_file(f, "index")), "truncated or altered"),
    ("truncated-metadata", lambda f: cut_half(data_file(f, "metadata")), "truncated or altered"),
    ("truncated-vectors", lambda f: cut_half(data_file(f, "vectors")), "truncated or altered"),
    ("corrupt-faiss-header", lambda f: garble_at(0)(data_file(f, "index")), "corrupt faiss index"),
    ("corrupt-metadata", lambda f: garble_at(100)(data_file(f, "metadata")), "corrupt Parquet"),
    ("vectors-holding-a-pickle", pickled_vectors, "corrupt vector file"),
    ("missing-data-file", lambda f: data_file(f, "metadata").unlink(), "is missing"),
    ("missing-manifest", lambda f: (f / "manifest.json").unlink(), "manifest is missing"),
    ("manifest-not-json", lambda f: (f / "manifest.json").write_text("{oops"), "not valid JSON"),
    (
        "manifest-newer-format",
        manifest_edit(lambda m: m.update(format_version=99)),
        "unknown format version",
    ),
    (
        "manifest-of-something-else",
        manifest_edit(lambda m: m.update(format="other")),
        "not a segment index",
    ),
]


@pytest.mark.parametrize(
    "damage, reason", [c[1:] for c in BAD_INDEXES], ids=[c[0] for c in BAD_INDEXES]
)
def test_damaged_index_is_one_line_error_and_left_untouched(
    tmp_path, run_hsg, built_index, damage, reason
):
    folder = shutil.copytree(built_index, tmp_path / "index")
    damage(folder)
    before = tree_digest(folder)
    assert_one_line_error(*run_hsg("index", "info", folder)[::2], str(folder), reason)
    assert tree_digest(folder) == before


def test_index_of_another_checkpoint_is_refused(tmp_path, run_hsg, tiny_checkpoint, built_index):
    good, images = tiny_checkpoint
    folder = shutil.copytree(built_index, tmp_path / "index")
    other = tmp_path / "other.pt"
    assert (
        run_hsg("export", good, other)[0] == 0
    )  # same weights, another file: another checkpoint hash
    before = tree_digest(folder)
    for command in ("update", "build"):
        code, _, err = run_hsg("index", command, images, "--checkpoint", other, "--out", folder)
        reason = (
            "built with checkpoint" if command == "update" else "already holds a finished index"
        )
        assert_one_line_error(code, err, str(folder), reason)
    assert tree_digest(folder) == before


def test_app_refuses_a_given_index_of_another_checkpoint_and_rebuilds_its_own(tmp_path, explorer):
    from index import CheckpointMismatchError

    class OtherModel(type(explorer.predictor)):
        checkpoint_hash = "0" * 64

    given = shutil.copytree(explorer.index.path, tmp_path / "given")
    before = tree_digest(given)
    with pytest.raises(CheckpointMismatchError, match="built with checkpoint"):
        open_or_build(
            explorer.index.data_root,
            given,
            svc.index_extractor(OtherModel()),
            checkpoint_hash="0" * 64,
        )
    assert tree_digest(given) == before
    rebuilt = open_or_build(
        explorer.index.data_root,
        given,
        svc.index_extractor(OtherModel()),
        checkpoint_hash="0" * 64,
        managed=True,
    )
    assert rebuilt.manifest["checkpoint_hash"] == "0" * 64


def test_app_start_with_a_bad_checkpoint_is_one_line(tmp_path):
    bad = write(tmp_path / "bad.pt", b"junk")
    with pytest.raises(SystemExit) as info:
        app.load_app(app.parse_args(["--checkpoint", str(bad)]))
    assert str(info.value).startswith(f"hsg: error: {bad}: ") and "\n" not in str(info.value)


def session_of(explorer, height=40, width=160):
    image = np.zeros((height, width, 3), np.uint8)
    return ex.set_image(explorer.predictor, image)


def on_click(explorer, session, x, y, level=0):
    return app._on_click(explorer, session, x, y, level, 0.45, False, 3, "same level", True)


@pytest.mark.parametrize(
    "x, y, reason",
    [
        (160, 5, "outside the 160x40 image"),
        (5, 40, "outside"),
        (-1, 5, "outside"),
        (5, -7, "outside"),
        (10**9, 0, "outside"),
        (None, 5, "x and y must be"),
    ],
)
def test_click_out_of_range_is_a_ui_error(explorer, x, y, reason):
    with pytest.raises(gr.Error, match=reason):
        on_click(explorer, session_of(explorer), x, y)


@pytest.mark.parametrize("level", [-3, 99])
def test_level_out_of_range_is_clamped(explorer, level):
    session = session_of(explorer)
    top = session.prediction.num_levels - 1
    assert np.array_equal(ex.render(session, level), ex.render(session, min(max(level, 0), top)))
    session, _, rows, _, _ = on_click(explorer, session, 3, 3, level)
    assert session.selected[0] == min(max(level, 0), top) and len(rows) == top + 1


def test_click_before_any_image_is_a_ui_error(explorer):
    with pytest.raises(gr.Error, match="load an image first"):
        on_click(explorer, ex.Session(), 3, 3)


@pytest.mark.parametrize(
    "level, region, reason",
    [(1, 999, "level 1 has regions 0..15, not 999"), (1, -1, "not -1"), (9, 0, "no level 9")],
)
def test_picking_a_region_that_does_not_exist_is_refused(explorer, level, region, reason):
    with pytest.raises(ValueError, match=reason):
        ex.select_region(explorer.index, session_of(explorer), level, region)


@pytest.mark.parametrize(
    "image, reason",
    [
        (np.zeros((8, 8, 3), np.float32), "expected uint8"),
        (np.zeros((8, 8, 5), np.uint8), "expected an HxWx3"),
        (np.zeros((0, 8, 3), np.uint8), "empty image"),
    ],
)
def test_unusable_upload_is_a_ui_error(explorer, image, reason):
    with pytest.raises(gr.Error, match=reason):
        app._on_image(explorer, image, 0, 0.45, False)


def test_image_damaged_after_indexing_is_a_ui_error_naming_it(tmp_path, explorer):
    broken = write(tmp_path / "gone-bad.png", b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(gr.Error, match="gone-bad.png: corrupt or truncated"):
        app.open_path(explorer, broken, 0, 0.45, False)
