"Issue 10: every ordinary fastai Learner move works with pruned and sparse models (vision_learner resnet18, tabular_learner)."
import warnings
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import load_learner
from fastai.metrics import accuracy
from fastai.losses import CrossEntropyLossFlat
from fastai.callback.tracker import SaveModelCallback, EarlyStoppingCallback
from fastai.vision.learner import vision_learner
from fastai.vision.data import ImageDataLoaders
from fastai.tabular.all import TabularDataLoaders, tabular_learner, Categorify, Normalize, CategoryBlock
from torchvision.models import resnet18
from sklearn.datasets import load_breast_cancer
from fasterai_prune.all import *
from fasterai_prune.data import digits_tensors, DigitsDataset

@pytest.fixture(scope='module')
def digits_folder(tmp_path_factory):
    "Digits as 32×32 RGB PNG files in train/valid/<label>/ folders: plain fastai image data"
    from PIL import Image
    root = tmp_path_factory.mktemp('digits')
    x, y = digits_tensors(32)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:384]
    for k, i in enumerate(idx.tolist()):
        d = root/('train' if k < 256 else 'valid')/str(int(y[i])); d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[i, 0] * 255).byte().numpy()).convert('RGB').save(d/f'{i}.png')
    return root

@pytest.fixture
def make_vision(digits_folder, tmp_path):
    def make(cbs=None, seed=0):
        torch.manual_seed(seed)
        dls = ImageDataLoaders.from_folder(digits_folder, train='train', valid='valid', bs=64, num_workers=0, device='cpu', seed=0)
        return vision_learner(dls, resnet18, pretrained=False, metrics=accuracy, path=tmp_path, cbs=cbs)
    return make

def quiet(learn): return learn.no_bar(), learn.no_logging()
def n_params(m): return sum(p.numel() for p in m.parameters())
def widths(m): return [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]
def opt_params(learn): return {id(p) for pl in learn.opt.param_lists for p in pl}
def fit(learn, n, *args, **kw):
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(n, 1e-3, *args, **kw)

def test_one_api_defaults_and_names():
    "Every argument but the target has a default; criteria and schedules by name or object alike; bad ones named"
    PruneCallback(50); SparsifyCallback(80)
    PruneCallback(50, 'global', 'large_final', 'lin'); SparsifyCallback(80, 'weight', 'global', 'large_final', 'lin')
    net = resnet18(num_classes=10)
    Pruner(net, 30, verbose=False).prune_model()
    assert widths(net)[0] == 44
    sp = Sparsifier(net); sp.sparsify_model(80)
    assert sp.sparsity() == pytest.approx(80, abs=0.01)
    for f, name in [(lambda: PruneCallback(50, schedule='agpp'), '`schedule`'), (lambda: SparsifyCallback(80, criteria='big'), '`criteria`'),
                    (lambda: PruneCallback(50, context='all'), '`context`'), (lambda: SparsifyCallback(180), '`sparsity`'),
                    (lambda: Pruner(resnet18(), 30, schedule='nope'), '`schedule`')]:
        with pytest.raises((ValueError, TypeError), match=name): f()

def test_1_pruner_on_a_learner_keeps_the_optimizer(make_vision, tmp_path):
    learn = make_vision()
    fit(learn, 1)   # the optimizer now exists and holds the dense parameters
    Pruner(learn, 30, verbose=False).prune_model()
    assert opt_params(learn) == {id(p) for p in learn.model.parameters()}
    before = [p.detach().clone() for p in learn.model.parameters()]
    fit(learn, 1)
    moved = [not torch.equal(b, p) for b, p in zip(before, learn.model.parameters()) if p.requires_grad]
    assert sum(moved) == len(moved)   # every trainable (pruned) parameter trained

def test_2_export_small_and_predict_after_load_learner(make_vision, tmp_path):
    learn = make_vision(cbs=[PruneCallback(30), SparsifyCallback(50, verbose=False)])
    fit(learn, 1)
    learn.export('with_cbs.pkl')
    plain = load_learner(tmp_path/'with_cbs.pkl')
    for cb in [c for c in plain.cbs if isinstance(c, (PruneCallback, SparsifyCallback))]: plain.remove_cb(cb)
    plain.export('without.pkl')
    size_with, size_without = (tmp_path/'with_cbs.pkl').stat().st_size, (tmp_path/'without.pkl').stat().st_size
    assert size_with < 1.02 * size_without, (size_with, size_without)
    loaded = load_learner(tmp_path/'with_cbs.pkl')
    item = learn.dls.valid_ds.items[0]
    torch.testing.assert_close(loaded.predict(item)[2], learn.predict(item)[2])

def test_3_save_model_callback_and_load_any_checkpoint(make_vision, tmp_path):
    cb = PruneCallback(50, schedule='lin')
    learn = make_vision(cbs=cb)
    # the epoch with the most parameters kept is the first: after_fit reloads a checkpoint from before the last prune
    fit(learn, 3, cbs=SaveModelCallback(monitor='params_kept', comp=np.greater, fname='best'))
    sizes = [e['params'] for e in cb.epoch_log]
    assert n_params(learn.model) == sizes[0] > sizes[-1]
    learn.load('best')   # plain fastai again, whatever the current architecture
    fresh = make_vision(cbs=PruneCallback(50), seed=1)   # a fresh learner with an unpruned model
    fresh.load('best')
    x = torch.randn(2, 3, 32, 32)
    learn.model.eval(); fresh.model.eval()
    torch.testing.assert_close(fresh.model(x), learn.model(x))
    assert opt_params(fresh) == {id(p) for p in fresh.model.parameters()}

def test_4_records_chain_over_several_prunes(make_vision, tmp_path):
    learn = make_vision()
    Pruner(learn, 20, verbose=False).prune_model()
    fit(learn, 1, cbs=PruneCallback(30))
    fit(learn, 1, cbs=PruneCallback(20, 'global'))
    learn.save('thrice')
    fresh = make_vision(cbs=PruneCallback(10), seed=1)
    fresh.load('thrice')
    assert widths(fresh.model) == widths(learn.model)
    x = torch.randn(2, 3, 32, 32)
    learn.model.eval(); fresh.model.eval()
    torch.testing.assert_close(fresh.model(x), learn.model(x))

def test_5_prune_and_sparsify_in_one_fit(make_vision, tmp_path):
    pc, sc = PruneCallback(40, schedule='lin'), SparsifyCallback(60, schedule='lin', verbose=False)
    learn = make_vision(cbs=[pc, sc])
    n0 = widths(learn.model)
    fit(learn, 2)
    assert sum(widths(learn.model)) < 0.7 * sum(n0)
    assert sc.sparsifier.sparsity() == pytest.approx(60, abs=0.1)
    for m, mask in sc.sparsifier.masks.items(): assert mask.shape == m.weight.shape

def test_6_cancelled_fit_warns_and_finish_reaches_the_target(make_vision, tmp_path):
    cb = PruneCallback(50, schedule='lin')
    learn = make_vision(cbs=cb)
    with pytest.warns(UserWarning, match=r'finish\(\)'):
        fit(learn, 4, cbs=EarlyStoppingCallback(min_delta=100, patience=0))
    part = widths(learn.model)
    cb.finish()
    ref = resnet18(num_classes=10); Pruner(ref, 50, verbose=False, example_inputs=torch.randn(1, 3, 32, 32)).prune_model()
    assert sum(widths(learn.model)) < sum(part)
    assert widths(learn.model) == widths(ref)

def test_7_validate_and_predict_add_no_column_and_do_no_work(make_vision, tmp_path):
    pc, sc = PruneCallback(30), SparsifyCallback(50, verbose=False)
    learn = make_vision(cbs=[pc, sc])
    fit(learn, 1)
    sparsifier, w = sc.sparsifier, widths(learn.model)
    loss, acc = learn.validate()
    learn.predict(learn.dls.valid_ds.items[0])
    assert sc.sparsifier is sparsifier and widths(learn.model) == w
    learn.lr_find(num_it=6, show_plot=False)
    assert widths(learn.model) == w

def test_8_fine_tune_spans_both_phases_with_epochs(make_vision, tmp_path):
    cb = PruneCallback(50, schedule='lin', epochs=3)
    learn = make_vision(cbs=cb)
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(2, 1e-3, freeze_epochs=1)
    removed = [e['channels_removed'] for e in cb.epoch_log]
    assert len(removed) == 3 and 10 < removed[0] < 40 and removed[-1] == pytest.approx(50, abs=1)
    cb = PruneCallback(50, schedule='lin')   # default: the first fit (the frozen epoch) does all the pruning
    learn = make_vision(cbs=cb)
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(1, 1e-3, freeze_epochs=1)
    assert cb.epoch_log[0]['channels_removed'] == pytest.approx(50, abs=1) and len(cb.epoch_log) == 1

def test_resume_mid_fit_continues_the_schedule(make_vision, tmp_path):
    cb = PruneCallback(50, schedule='lin')
    learn = make_vision(cbs=cb)
    fit(learn, 3, cbs=SaveModelCallback(every_epoch=True))
    full = widths(learn.model)
    fresh = make_vision(cbs=PruneCallback(50, schedule='lin'), seed=1)
    fresh.load('model_0')
    mid = widths(fresh.model)
    fit(fresh, 3, start_epoch=1)
    assert sum(full) < sum(mid)
    assert abs(sum(widths(fresh.model)) - sum(full)) <= 0.01 * sum(full)

def test_tabular_learner_prune_and_sparsify():
    d = load_breast_cancer(as_frame=True)
    df = d.frame.rename(columns=lambda c: c.replace(' ', '_'))
    conts = [c for c in df.columns if c != 'target']
    dls = TabularDataLoaders.from_df(df, procs=[Normalize], cont_names=conts, y_names='target', y_block=CategoryBlock(), bs=64,
                                     valid_idx=list(range(0, len(df), 5)))
    torch.manual_seed(0)
    sc = SparsifyCallback(50, verbose=False)
    learn = tabular_learner(dls, layers=[64, 32], metrics=accuracy, cbs=[PruneCallback(30), sc])
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2, 1e-2)
    assert [m.out_features for m in learn.model.modules() if isinstance(m, nn.Linear)] == [44, 22, 2]
    assert 'Linear' in sc.describe()
    loss, acc = learn.validate()
    assert acc > 0.85
