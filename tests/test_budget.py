"Budgets: `target='macs'` / `'params'` land within one point of the asked share, measured by torch-pruning's counter."
import re
import pytest, torch
import torch.nn as nn
import torch_pruning as tp
from torchvision.models import resnet18, resnet50
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.core.budget import channel_block

def vit_tiny():
    timm = pytest.importorskip('timm', reason='the ViT case needs the timm extra')
    return timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=64, num_classes=10)

MODELS = {'resnet18': (resnet18, (1, 3, 64, 64)), 'resnet50': (resnet50, (1, 3, 64, 64)), 'vit': (vit_tiny, (1, 3, 64, 64))}
FAST = {('resnet18', 'global'), ('resnet18', 'local'), ('vit', 'global')}   # the rest is marked slow
CASES = [pytest.param(n, t, c, marks=() if (n, c) in FAST else pytest.mark.slow, id=f'{c}-{n}-{t}')
         for c in ('global', 'local') for n in MODELS for t in ('macs', 'params')]

def measured(model, x, target):
    macs, params = tp.utils.count_ops_and_params(model, x)
    return macs if target == 'macs' else params

@pytest.mark.parametrize('name,target,context', CASES)
def test_budget_lands_within_a_point(name, target, context):
    make, shape = MODELS[name]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    for ratio in (30, 50, 70):
        model = make().eval()
        before = measured(model, x, target)
        Pruner(model, ratio, context, target=target, example_inputs=x, verbose=False).prune_model()
        kept = 100 * measured(model, x, target) / before
        assert abs(kept - (100 - ratio)) <= 1, f"{name} {context} {target} {ratio}%: {kept:.2f}% kept, {100 - ratio}% asked"
        assert model(x).shape == make()(x).shape

def test_budget_errors_leave_the_model_unchanged():
    model = resnet18()
    x = torch.randn(1, 3, 64, 64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"`target` must be one of \('channels', 'params', 'macs', 'latency'\), got 'flops'"):
        Pruner(model, 50, target='flops', example_inputs=x, verbose=False)
    with pytest.raises(ValueError, match=r"cannot be met without emptying a layer: the smallest reachable is \d+\.\d%"):
        Pruner(model, 99.99, 'global', target='macs', example_inputs=x, verbose=False)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in state.items()}
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

def test_latency_target_reports_measured_figure(capsys):
    "Planned on per-layer latencies, then timed on the whole model: the figure is kept and printed, whatever it is"
    model = resnet18()
    x = torch.randn(1, 3, 64, 64)
    p = Pruner(model, 50, 'global', target='latency', example_inputs=x, verbose=True)
    p.prune_model()
    assert p.graph.total0 > 0 and p.graph.measured_share > 0, (p.graph.total0, p.graph.measured_share)   # a timing: its value is for benchmarks
    printed = capsys.readouterr().out
    assert re.search(r"Latency measured: \d+\.\d\d → \d+\.\d\d ms \(\d+\.\d% kept, 50% asked\)", printed), printed
    assert model(x).shape == (1, 1000)

def test_round_to_auto():
    "round_to='auto': multiples of the CPU's channel block (16 with AVX-512, else 8) for a latency target; counted targets keep exact figures (None)"
    from fasterai_prune.data import digits_cnn
    x = torch.randn(1, 1, 16, 16)
    widths = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]
    torch.manual_seed(0)
    model = digits_cnn(32).eval()   # a tiny model, where dispatch is a large share of the time: a modest budget stays reachable
    p = Pruner(model, 30, 'global', target='latency', example_inputs=x, verbose=False)
    p.prune_model()
    block = channel_block()
    assert p.round_to == block and widths(model) != widths(digits_cnn(32))
    assert [w % block for w in widths(model)] == [0] * len(widths(model)), widths(model)
    for target in ('channels', 'macs'):
        model = digits_cnn(32).eval()
        p = Pruner(model, 30, 'local', target=target, example_inputs=x, verbose=False)
        p.prune_model()
        assert p.round_to is None and any(w % 8 for w in widths(model)), widths(model)
    with pytest.raises(ValueError, match='round_to'): Pruner(digits_cnn(32), 30, round_to='eight', example_inputs=x, verbose=False)

def test_local_budget_plans_the_rounding():
    "round_to=8 with a local MACs budget: the planner predicts torch-pruning's rounding (46.9% kept of 50% asked without it)"
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    model = resnet50().eval()
    before = measured(model, x, 'macs')
    p = Pruner(model, 50, 'local', target='macs', round_to=8, example_inputs=x, verbose=False)
    i = [g.root for g in p.graph.groups].index(model.layer1[0].conv1)   # 64 channels
    assert (p.graph._local_removed(0.5)[i], p.graph._local_removed(0.3)[i]) == (32, 24)   # kept: 32; int(64 × 0.7) = 44 rounded down to 40
    p.prune_model()
    kept = 100 * measured(model, x, 'macs') / before
    assert abs(kept - 50) <= 1, f"{kept:.2f}% kept, 50% asked"
    assert [c.out_channels % 8 for c in model.modules() if isinstance(c, nn.Conv2d)] == [0] * 53

def test_global_budget_keeps_a_share_of_every_layer():
    "Ranked per unit of cost alone, a MACs budget left the digits CNN's three high-resolution convs one channel each (0.83 accuracy after fit at 50%)"
    from fasterai_prune.data import digits_cnn
    x = torch.randn(1, 1, 16, 16)
    for ratio in (50, 95):
        torch.manual_seed(0)
        model = digits_cnn(32)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        widths0 = [c.out_channels for c in convs]
        before = measured(model, x, 'macs')
        p = Pruner(model, ratio, 'global', target='macs', example_inputs=x, verbose=False)
        p.prune_model()
        floor = p.graph.min_share * (1 - p.graph.uniform_share(1 - ratio / 100))
        shares = [round(c.out_channels / w, 3) for c, w in zip(convs, widths0)]
        assert min(shares) >= floor - 0.05, f"{ratio}% of the MACs: channel shares kept {shares}, floor {floor:.3f}"
        assert abs(100 * measured(model, x, 'macs') / before - (100 - ratio)) <= 1
