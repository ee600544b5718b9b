"Sensitivity analysis and compression report: the must-show assertions of issue 11."
import copy, os
import pytest
import torch
import torch.nn as nn
import torch_pruning as tp   # tests may use torch-pruning's own counter as the independent reference
from fastai.learner import Learner
from fastai.metrics import accuracy
from fasterai_prune.data import digits_dls, digits_cnn
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.prune.prune_callback import PruneCallback
from fasterai_prune.analyze.sensitivity import sensitivity, out_channels
from fasterai_prune.analyze.report import compression_report


@pytest.fixture(scope='module')
def learn():
    torch.manual_seed(0)
    l = Learner(digits_dls(), digits_cnn(16), loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
    l.fit(1, 1e-2)
    return l


def test_sensitivity_leaves_model_unchanged_and_suggest_feeds_pruner(learn):
    state = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.model.train()
    sens = sensitivity(learn, ratios=(30, 70), n_batches=1, recalibrate=True)
    sd = learn.model.state_dict()
    assert [k for k in state if not torch.equal(sd[k], state[k])] == []
    assert all(m.training for m in learn.model.modules())
    assert len(sens.table) == 2 * 5
    ratios = sens.suggest(max_drop=1.)   # everything acceptable: the largest ratio everywhere
    assert ratios == {n: 70. for n in sens.table.layer.unique()}
    m = copy.deepcopy(learn.model)
    Pruner(m, ratios, verbose=False).prune_model()
    named = dict(m.named_modules())
    assert {n: out_channels(named[n]) for n in ratios} == {n: int(r * .3) for n, r in zip(ratios, sens.table.groupby('layer', sort=False).channels.first())}
    PruneCallback(ratios)


@pytest.mark.parametrize('ratios', [(0, 50), (10, 100), (-1,), (150,)])
def test_sensitivity_ratio_out_of_range(learn, ratios):
    with pytest.raises(ValueError, match='`ratios`'): sensitivity(learn, ratios=ratios)


def _bn_free(m):
    "`m` with every BatchNorm replaced by an identity: only conv and linear layers cost MACs"
    m = copy.deepcopy(m)
    for n, c in list(m.named_modules()):
        for k, ch in list(c.named_children()):
            if isinstance(ch, nn.BatchNorm2d): setattr(c, k, nn.Identity())
    return m


def test_report_matches_independent_counts(learn, tmp_path):
    before = _bn_free(learn.model)   # conv, linear, ReLU, pooling: torch-pruning's total then counts ReLU and pooling too
    after = copy.deepcopy(before)
    Pruner(after, 50, verbose=False).prune_model()
    with torch.no_grad(): after[-1].weight[after[-1].weight.abs() < .05] = 0   # some zeros for the sparse file
    x = torch.randn(4, 1, 16, 16)
    t = compression_report(before, after, example_inputs=x, save_dir=tmp_path, n_repeats=3, n_warmup=1, show=False)
    for side, m in (('before', before), ('after', after)):
        _, params, per_layer, _ = tp.utils.count_ops_and_params(m, x[:1], layer_wise=True)
        macs = sum(v for k, v in per_layer.items() if isinstance(k, (nn.Conv2d, nn.Linear)))
        assert t.loc['MACs (conv + linear, batch 1)', side] == macs
        assert t.loc['parameters', side] == params
        assert t.loc['size on disk MB (state_dict)', side] == os.path.getsize(tmp_path/f'{side}.pth') / 1e6
        assert t.loc['size on disk MB (zip)', side] == os.path.getsize(tmp_path/f'{side}.zip') / 1e6
        nz = sum(int((p != 0).sum()) for p in m.parameters())
        assert t.loc['non-zero parameters', side] == nz
        assert abs(t.loc['sparsity %', side] - 100 * (1 - nz / params)) < 1e-9


def test_report_takes_learners(learn):
    after = copy.deepcopy(learn.model)
    Pruner(after, 30, verbose=False).prune_model()
    t = compression_report(learn, after, n_repeats=2, n_warmup=1, show=False)
    acc = learn.validate()[1]
    assert abs(t.loc['metric', 'before'] - acc) < 1e-6, (t.loc['metric', 'before'], acc)
    assert t.loc['parameters', 'after'] == sum(p.numel() for p in after.parameters())
    assert f'latency ms, batch 8 (cpu, {torch.get_num_threads()} threads)' in t.index
