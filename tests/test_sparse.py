"Must-show tests of issue 5: Sparsifier and SparsifyCallback on digits"
import math
import pytest
import torch
import torch.nn as nn
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.optimizer import Adam
import fastai.callback.schedule  # noqa: F401  (fit_one_cycle)
from fasterai_prune.core.criteria import large_final
from fasterai_prune.core.schedule import agp
from fasterai_prune.data import digits_dls, digits_cnn
from fasterai_prune.sparse.sparsifier import Sparsifier
from fasterai_prune.sparse.sparsify_callback import SparsifyCallback


def _net(width=8, seed=0):
    torch.manual_seed(seed)
    return digits_cnn(width)

def _zeros(m): return int((m.weight == 0).sum())

def _params(model): return [p.detach().clone() for p in model.parameters()]


def test_local_weight_50_every_conv_within_one_of_half():
    net = _net()
    sp = Sparsifier(net, 'weight', 'local', large_final, layer_type=nn.Conv2d)
    sp.sparsify_model(50)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7
    for m in convs: assert abs(_zeros(m) - m.weight.numel() / 2) <= 1


def test_local_filter_50_exactly_half_the_filters():
    net = _net()
    Sparsifier(net, 'filter', 'local', large_final, layer_type=nn.Conv2d).sparsify_model(50)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            per_filter = (m.weight != 0).flatten(1).sum(1)
            assert int((per_filter == 0).sum()) == m.out_channels // 2
            assert int((per_filter == m.weight[0].numel()).sum()) == m.out_channels // 2   # the others untouched


def test_global_70_exact_total_and_layers_differ():
    net = _net()
    sp = Sparsifier(net, 'weight', 'global', large_final, layer_type=(nn.Conv2d, nn.Linear))
    sp.sparsify_model(70)
    total = sum(m.weight.numel() for m in sp.layers.values())
    assert sum(_zeros(m) for m in sp.layers.values()) == math.floor(0.7 * total + 0.5)
    per_layer = [_zeros(m) / m.weight.numel() for m in sp.layers.values()]
    assert max(per_layer) - min(per_layer) > 0.1


def test_2_4_two_nonzeros_in_every_group_of_four():
    net = _net()
    sp = Sparsifier(net, 'weight', 'local', large_final, nm=True, layer_type=nn.Conv2d)
    sp.sparsify_model(50)
    checked = 0
    for name, m in sp.layers.items():
        if m.in_channels % 4: 
            assert 'skipped' in sp.report()[name]['note'] and _zeros(m) == 0
            continue
        groups = (m.weight != 0).movedim(1, -1).reshape(-1, 4).sum(-1)
        assert bool((groups == 2).all())
        checked += 1
    assert checked == 6


@pytest.mark.parametrize('bad, contains', [
    (lambda net: Sparsifier(net, 'weight', 'local', large_final, layer_type=nn.Conv2d).sparsify_model(101), '`sparsity`'),
    (lambda net: Sparsifier(net, 'weight', 'local', large_final, layer_type=nn.Conv2d).sparsify_model(-1), '`sparsity`'),
    (lambda net: Sparsifier(net, 'kernel', 'local', large_final, layer_type=nn.Linear), "`granularity`='kernel' is not defined for Linear"),
    (lambda net: Sparsifier(net, 'weight', 'local', large_final, layer_type=nn.Conv2d).sparsify_model({'no.such.layer': 50}), "'no.such.layer'"),
])
def test_bad_input_clear_error_model_unchanged(bad, contains):
    net = _net()
    before = _params(net)
    with pytest.raises((ValueError, TypeError), match=None) as e: bad(net)
    assert contains in str(e.value)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_masks_survive_optimizer_steps():
    net = _net()
    sp = Sparsifier(net, 'weight', 'global', large_final, layer_type=nn.Conv2d)
    sp.sparsify_model(60)
    masked = {m: m.weight == 0 for m in sp.layers.values()}
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    xb, yb = torch.rand(32, 1, 16, 16), torch.randint(0, 10, (32,))
    for _ in range(5):
        opt.zero_grad(); nn.functional.cross_entropy(net(xb), yb).backward(); opt.step()
        sp.apply_masks()
    for m, z in masked.items(): assert m.weight[z].abs().sum().item() == 0


def test_sparsify_callback_80_global_on_digits():
    torch.manual_seed(0)
    learn = Learner(digits_dls(), digits_cnn(16), loss_func=nn.CrossEntropyLoss(), metrics=accuracy, opt_func=Adam)
    keys = set(learn.model.state_dict())
    n_buffers = len(list(learn.model.buffers()))
    cb = SparsifyCallback(80, 'weight', 'global', large_final, agp, layer_type=nn.Conv2d)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 1e-2, cbs=cb)
    convs = [m for m in learn.model.modules() if isinstance(m, nn.Conv2d)]
    total = sum(m.weight.numel() for m in convs)
    assert sum(_zeros(m) for m in convs) == math.floor(0.8 * total + 0.5)
    names = list(learn.recorder.metric_names)
    last = learn.recorder.values[-1]
    assert last[names.index('sparsity') - 1] == pytest.approx(80, abs=0.01)
    _, acc = learn.validate()
    assert acc > 0.9
    assert set(learn.model.state_dict()) == keys
    assert len(list(learn.model.buffers())) == n_buffers
    assert all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in learn.model.modules())
