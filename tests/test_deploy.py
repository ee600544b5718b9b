"deploy: BatchNorm folding keeps outputs on real torchvision models, pruned or not; ONNX export checked under onnxruntime."
import importlib.util
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models import resnet18, resnet50, mobilenet_v3_large
from fasterai_prune.deploy.fold_bn import fold_bn
from fasterai_prune.deploy.onnx import export_onnx
from fasterai_prune.prune.pruner import Pruner

def random_stats(model, seed=0):
    "Non-trivial BatchNorm statistics and affine parameters, so that a wrong fold shows in the outputs"
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5); m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()

def n_bn(model): return sum(isinstance(m, _BatchNorm) for m in model.modules())

slow = pytest.mark.slow
@pytest.mark.parametrize('ctor,pruned,with_inputs', [
    (resnet18, False, False), (resnet18, True, False), (resnet18, True, True), (resnet50, False, False),
    (mobilenet_v3_large, False, True), (mobilenet_v3_large, True, False),
    pytest.param(resnet50, True, False, marks=slow), pytest.param(resnet50, True, True, marks=slow),
    pytest.param(mobilenet_v3_large, True, True, marks=slow)])
def test_fold_bn_keeps_outputs(ctor, pruned, with_inputs):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    m = random_stats(ctor())
    n0 = n_bn(m)
    if pruned: Pruner(m, 50, 'global', verbose=False, example_inputs=x[:1]).prune_model()
    with torch.no_grad(): ref = m(x)
    res = fold_bn(m, x[:1] if with_inputs else None)
    with torch.no_grad(): out = m(x)
    assert (out - ref).abs().max().item() <= 1e-5 * max(1., ref.abs().max().item()), (out - ref).abs().max().item()
    assert (n_bn(m), len(res.folded), res.left) == (0, n0, {})
    assert m.training is False

def test_fold_bn_leaves_and_reports_a_batchnorm_not_after_a_layer():
    m = random_stats(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4)))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(): ref = m(x)
    res = fold_bn(m)
    with torch.no_grad(): assert torch.allclose(m(x), ref, atol=1e-5)
    assert res.folded == [('0', '1')] and list(res.left) == ['3'] and isinstance(m[3], nn.BatchNorm2d)
    assert 'not fed directly' in res.left['3']

def test_fold_bn_leaves_batch_statistics_batchnorm():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    res = fold_bn(m)
    assert res.folded == [] and 'batch statistics' in res.left['1']

has_ort = importlib.util.find_spec('onnxruntime') is not None and importlib.util.find_spec('onnx') is not None

@pytest.mark.skipif(not has_ort, reason='onnx/onnxruntime not installed: pip install -e ".[deploy]"')
@pytest.mark.parametrize('ctor', [resnet18, pytest.param(mobilenet_v3_large, marks=slow)])
def test_export_onnx_pruned_matches_onnxruntime(ctor, tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    m = random_stats(ctor())
    Pruner(m, 50, 'global', verbose=False, example_inputs=x[:1]).prune_model()
    fold_bn(m)
    res = export_onnx(m, x, tmp_path/'m.onnx')
    assert res.path.exists() and res.size_mb > 0.5 * sum(p.numel() for p in m.parameters()) * 4 / 1e6
    assert res.max_abs_diff < 1e-4, res.max_abs_diff
    import onnxruntime as ort
    sess = ort.InferenceSession(str(res.path), providers=['CPUExecutionProvider'])
    x2 = torch.randn(2, 3, 64, 64)   # other inputs than those of the export
    with torch.no_grad(): ref = m(x2)
    got = sess.run(None, {sess.get_inputs()[0].name: x2.numpy()})[0]
    assert abs(got - ref.numpy()).max() < 1e-4
