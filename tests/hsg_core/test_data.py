import numpy as np
import pytest
import torch

from hsg_core.config import load_config
from hsg_core.data import MultiviewFolder, augment_view, collate_views, to_batch


def test_views_share_oversegment_ids_and_pad_with_ignore():
    cfg = load_config("tiny", ["data.scale_range=[0.5, 0.5]", "data.crop_size=48"]).data
    image = torch.rand(3, 40, 60)
    superpixels = torch.arange(40 * 60).reshape(40, 60) // 300  # ids 0..7
    rng = np.random.default_rng(0)
    view, sp = augment_view(image, superpixels, cfg, rng)
    assert view.shape == (3, 48, 48) and sp.shape == (48, 48)
    assert (sp[20:, :] == -1).all() and (sp[:, 30:] == -1).all()  # 20 x 30 image padded to 48
    assert set(sp[sp >= 0].unique().tolist()) <= set(range(8))


def test_samples_are_pure_functions_of_position(image_folder):
    cfg = load_config("tiny")
    a = MultiviewFolder(image_folder, cfg.data, cfg.overseg, seed=1)
    b = MultiviewFolder(image_folder, cfg.data, cfg.overseg, seed=1)
    va, sa = a[7]
    vb, sb = b[7]
    assert torch.equal(va, vb) and torch.equal(sa, sb)
    assert va.shape == (2, 3, 64, 64) and sa.shape == (2, 64, 64)
    first_epoch = {a.index_at(p) for p in range(len(a))}
    assert first_epoch == set(range(len(a)))  # every image once per epoch
    common = set(sa[0].unique().tolist()) & set(sa[1].unique().tolist()) - {-1}
    assert common  # the two views overlap in oversegment ids: the cross-view correspondence


def test_unreadable_files_are_skipped_once(image_folder, caplog):
    (image_folder / "zz_broken.png").write_bytes(b"not a png")
    cfg = load_config("tiny")
    data = MultiviewFolder(image_folder, cfg.data, cfg.overseg, seed=0)
    broken = [i for i, p in enumerate(data.paths) if p.name == "zz_broken.png"][0]
    positions = [p for p in range(3 * len(data)) if data.index_at(p) == broken]
    for p in positions:
        views, _ = data[p]
        assert views.shape[0] == 2
    assert sum("zz_broken.png" in r.getMessage() for r in caplog.records) == 1


def test_empty_folder(tmp_path):
    cfg = load_config("tiny")
    with pytest.raises(FileNotFoundError, match="no images"):
        MultiviewFolder(tmp_path, cfg.data, cfg.overseg)


def test_batch_layout_and_padding_normalised_to_zero():
    items = [
        (torch.full((2, 3, 4, 4), 0.9), torch.tensor([[[0, 1, -1, -1]] * 4] * 2)) for _ in range(3)
    ]
    collated = collate_views(items)
    batch = to_batch(
        collated, torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25), torch.device("cpu")
    )
    assert batch.image_ids.tolist() == [0, 0, 1, 1, 2, 2] and batch.views.tolist() == [0, 1] * 3
    assert (batch.images[..., 2:] == 0).all() and torch.allclose(
        batch.images[..., :2], torch.tensor(1.6)
    )
