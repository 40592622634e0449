import numpy as np
import pytest
import torch

from hsg_core.backbones import create_backbone, list_backbones


def test_registry():
    assert list_backbones() == ["dinov2_vits14", "resnet18_fcn", "resnet34_fcn", "resnet50_fcn"]
    with pytest.raises(ValueError, match="unknown backbone 'vgg'.*resnet18_fcn"):
        create_backbone("vgg")
    with pytest.raises(ValueError, match="no fetched ResNet weights"):
        create_backbone("resnet18_fcn", init="fetched", width=8)


@pytest.mark.parametrize(
    "name,channels", [("resnet18_fcn", 64), ("resnet34_fcn", 64), ("resnet50_fcn", 256)]
)
def test_resnet_grids_at_every_stride(name, channels):
    model = create_backbone(name, width=8).eval()
    assert model.out_channels == channels
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 45, 70)
    for stride in (8, 16, 32):
        model.set_output_stride(stride)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (1, channels, -(-45 // stride), -(-70 // stride)), stride
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="output stride must be one of"):
        model.set_output_stride(4)


def test_torchvision_state_dict_round_trip(tmp_path):
    source = create_backbone("resnet18_fcn", width=8)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"], state["module.fc.bias"] = torch.zeros(10, 64), torch.zeros(10)
    path = tmp_path / "tv.pth"
    torch.save({"state_dict": state}, path)
    loaded = create_backbone("resnet18_fcn", width=8, init=str(path))
    assert all(
        torch.equal(a, b)
        for a, b in zip(source.state_dict().values(), loaded.state_dict().values())
    )
    del state["module.layer1.0.conv1.weight"]
    state["module.extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"tv.pth: not a matching ResNet.*layer1.0.conv1.weight.*extra.weight"
    ):
        create_backbone("resnet18_fcn", width=8, init=str(path))


def test_freeze_keeps_eval_and_no_grads():
    model = create_backbone("resnet18_fcn", width=8, freeze=True)
    parent = torch.nn.Sequential(model)
    parent.train()
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_vit_grid_and_padding():
    model = create_backbone("dinov2_vits14").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 71)).shape == (1, 384, 4, 6)
    with pytest.raises(ValueError, match="patch size 14"):
        model.set_output_stride(16)


def test_dinov2_matches_onnxruntime(fetched_weights):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = fetched_weights("dinov2_vits14")
    model = create_backbone("dinov2_vits14", init="fetched").eval()
    graph = onnx.load(str(path))
    node = "/backbone/layernorm/Add_1_output_0"
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(node, onnx.TensorProto.FLOAT, None)
    )
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tokens = torch.from_numpy(session.run([node], {"input_image": x.numpy()})[0])
    with torch.no_grad():
        ours = model(x)
    reference = tokens[:, 1:].transpose(1, 2).reshape(2, 384, 16, 16)
    assert (ours - reference).abs().max().item() <= 1e-3
    assert np.isfinite(ours.numpy()).all()


def test_dinov2_bad_weight_file(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x.onnx: not a readable ONNX file"):
        create_backbone("dinov2_vits14", init=str(bad))


# torchvision's replace_stride_with_dilation, written out by hand: the first 3x3 conv of a stage keeps the
# previous stage's dilation, the others take the stage's; ResNet-50's last stage multiplies by [1, 2, 4].
TORCHVISION_DILATIONS = {
    ("resnet50_fcn", 8): [[[1]] * 3, [[1]] * 4, [[1]] + [[2]] * 5, [[2], [8], [16]]],
    ("resnet50_fcn", 16): [[[1]] * 3, [[1]] * 4, [[1]] * 6, [[1], [4], [8]]],
    ("resnet50_fcn", 32): [[[1]] * 3, [[1]] * 4, [[1]] * 6, [[1], [2], [4]]],
    ("resnet18_fcn", 8): [[[1, 1]] * 2, [[1, 1]] * 2, [[1, 2], [2, 2]], [[2, 4], [4, 4]]],
    ("resnet18_fcn", 16): [[[1, 1]] * 2, [[1, 1]] * 2, [[1, 1]] * 2, [[1, 2], [2, 2]]],
    ("resnet18_fcn", 32): [[[1, 1]] * 2] * 4,
}


@pytest.mark.parametrize("name, stride", sorted(TORCHVISION_DILATIONS))
def test_dilation_table_is_torchvisions(name, stride):
    model = create_backbone(name, width=8, output_stride=stride)
    assert model.dilation_table(stride) == TORCHVISION_DILATIONS[(name, stride)]
    for stage, rates in zip(
        (model.layer1, model.layer2, model.layer3, model.layer4), model.dilation_table(stride)
    ):
        assert [[c.dilation[0] for c in blk.spatial_convs()] for blk in stage] == rates


@pytest.mark.parametrize("name", ["resnet18_fcn", "resnet50_fcn"])
def test_os8_computes_what_os16_computes_at_shared_positions(name):
    torch.manual_seed(0)
    model = create_backbone(name, width=8).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        model.set_output_stride(16)
        os16 = model(x)
        model.set_output_stride(8)
        os8 = model(x)[..., ::2, ::2]
    assert os8.shape == os16.shape
    interior = (
        slice(None),
        slice(None),
        slice(1, -1),
        slice(1, -1),
    )  # zero padding differs at the border
    error = (os8 - os16)[interior].norm() / os16[interior].norm()
    assert error < 1e-5, error
    old = create_backbone(name, width=8, dilation_rule="stage").eval()
    old.load_state_dict(model.state_dict())
    with torch.no_grad():
        old.set_output_stride(16)
        before = old(x)
        old.set_output_stride(8)
        after = old(x)[..., ::2, ::2]
    assert (
        (after - before)[interior].norm() / before[interior].norm()
    ) > 0.01  # the rule this fixes


def test_unknown_dilation_rule_is_refused():
    with pytest.raises(ValueError, match="model.dilation_rule must be one of previous, stage"):
        create_backbone("resnet18_fcn", width=8, dilation_rule="torch")
