"Torchvision models pruned at 50% local and global: forward works with the original output shape and fewer parameters."
import os, pytest, torch, torchvision, warnings
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.core.measure import count_params

FAST = ['resnet18', 'mobilenet_v3_small', 'squeezenet1_1', 'shufflenet_v2_x0_5', 'mnasnet0_5', 'efficientnet_b0',
        'regnet_y_400mf', 'convnext_tiny', 'swin_t']   # one per family, small inputs; the rest below and in bench/zoo.py
FULL = torchvision.models.list_models(module=torchvision.models)
SIZE = {'vit_b_32': 224, 'inception_v3': 75}

def _check(name, context, size=None):
    torch.manual_seed(0)
    m = torchvision.models.get_model(name, weights=None).eval()
    s = size or SIZE.get(name, 224 if name.startswith(('vit', 'maxvit')) else 64)
    x = torch.randn(1, 3, s, s)
    with torch.no_grad(): shape = m(x).shape
    p0 = count_params(m)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Pruner(m, 50, context, example_inputs=x, verbose=False).prune_model()
    m.eval()
    with torch.no_grad(): y = m(x)
    assert y.shape == shape == (1, 1000)
    assert torch.isfinite(y).all()
    assert count_params(m) < p0

@pytest.mark.parametrize('context', ['local', 'global'])
@pytest.mark.parametrize('name', FAST)
def test_zoo_fast(name, context): _check(name, context)

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('FULL_ZOO'), reason='full zoo: set FULL_ZOO=1 (or run bench/zoo.py)')
@pytest.mark.parametrize('context', ['local', 'global'])
@pytest.mark.parametrize('name', FULL)
def test_zoo_full(name, context): _check(name, context, 299 if name == 'inception_v3' else 224)

@pytest.mark.parametrize('name', ['fcn_resnet50', 'lraspp_mobilenet_v3_large'])
def test_segmentation(name):
    m = torchvision.models.get_model(name, weights=None, weights_backbone=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(): shapes = {k: v.shape for k, v in m(x).items()}
    p0 = count_params(m)
    heads = [getattr(m, h) for h in ('classifier', 'aux_classifier') if getattr(m, h, None) is not None]
    Pruner(m, 50, 'global', example_inputs=x, ignored_layers=heads, verbose=False).prune_model()
    with torch.no_grad(): assert {k: v.shape for k, v in m(x).items()} == shapes
    assert count_params(m) < p0

def test_detection():
    m = torchvision.models.get_model('fasterrcnn_mobilenet_v3_large_320_fpn', weights=None, weights_backbone=None, min_size=128, max_size=128).eval()
    x = ([torch.rand(3, 128, 128)],)
    p0 = count_params(m)
    Pruner(m, 50, 'local', example_inputs=x, ignored_layers=[m.rpn, m.roi_heads, m.backbone.fpn], verbose=False).prune_model()
    with torch.no_grad(): out = m(*x)
    assert sorted(out[0]) == ['boxes', 'labels', 'scores'] and out[0]['boxes'].shape[-1] == 4
    assert count_params(m) < p0
