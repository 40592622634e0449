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


@pytest.mark.parametrize("name,channels", [("resnet18_fcn", 64), ("resnet34_fcn", 64), ("resnet50_fcn", 256)])
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
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    del state["module.layer1.0.conv1.weight"]
    state["module.extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"tv.pth: not a matching ResNet.*layer1.0.conv1.weight.*extra.weight"):
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
    graph.graph.output.append(onnx.helper.make_tensor_value_info(node, onnx.TensorProto.FLOAT, None))
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
