"""Pruning and sparsity under DDP: 2 CPU processes (gloo, 127.0.0.1), started here by `launch`, which kills them after a time limit.

Each worker wraps a digits CNN in `DistributedDataParallel`, trains on its own shard of the data, and returns what the
tests compare across ranks. One launch (one start-up of the processes) runs every scenario: those that must work, then
those that must fail with a clear error on every rank.
"""
import time
from pathlib import Path
import pytest, torch, torch.nn as nn
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from fastai.learner import Learner, load_learner
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.optimizer import Adam
from fastai.metrics import accuracy
from fasterai_prune.data import digits_dls, digits_cnn
from fasterai_prune.core.schedule import agp
from fasterai_prune.core.criteria import large_final, taylor, wanda, random
from fasterai_prune.prune.prune_callback import PruneCallback, save_pruned_learner, load_pruned_learner
from fasterai_prune.sparse.sparsify_callback import SparsifyCallback
from fasterai_prune.prune.distributed import (launch, shard_dls, unwrap, unwrapped, rank, world_size, barrier,
                                              check_same_on_all_ranks)

WIDTH = 8
SCHEDULE = agp.with_window(0, 0.5)   # every prune in the first half of training: the second half shows training goes on

class LossLog(Callback):
    "Training loss of every batch, on this rank"
    def before_fit(self): self.losses = []
    def after_batch(self):
        if self.training: self.losses.append(self.learn.loss.item())

def accelerate_prepare(model):
    "The model as `accelerate` prepares it for several CPU processes (a DDP wrapper built by accelerate)"
    from accelerate import Accelerator
    return Accelerator(cpu=True).prepare(model)

def ddp_learner(path=None, seed=0, wrap=DDP):
    "A digits CNN in DDP on this rank's shard; each rank starts from a different init, which DDP replaces by rank 0's"
    torch.manual_seed(seed + 100 * rank())
    learn = Learner(shard_dls(digits_dls(bs=32)), wrap(digits_cnn(WIDTH)), loss_func=nn.CrossEntropyLoss(), metrics=accuracy,
                    opt_func=Adam, path=path or '.')
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *a, **k: None   # the Recorder's table, printed by every rank otherwise
    return learn

def state(learn) -> dict:
    return {k: v.detach().clone() for k, v in unwrap(learn.model).state_dict().items()}

def fit_pruned(criteria, context, path=None, wrap=DDP):
    learn, log = ddp_learner(path, wrap=wrap), LossLog()
    cb = PruneCallback(50, context, criteria, schedule=SCHEDULE)
    learn.fit_one_cycle(3, 1e-2, cbs=[cb, log])   # constant lr over 2 epochs ended anywhere in 0.22-0.84 (taylor, 8 seeds)
    last_prune = max(h['iter'] for h in cb.history) + 1   # the first batch after the last prune (fastai counts batches over the fit)
    return learn, dict(state=state(learn), wrapped=type(learn.model).__name__, n_prunes=len(cb.history), losses=log.losses,
                       last_prune=last_prune, removed=cb.history[-1]['channels_removed'] / 100, accuracy=float(learn.validate()[1]))

def train_everything(tmp):
    "Every scenario that must work: agp/large_final global, taylor, wanda (calibrated), accelerate-prepared, sparsify 80%, save/load/export"
    res = {}
    learn, res['large_final'] = fit_pruned(large_final, 'global', tmp)
    save_pruned_learner(learn, 'pruned')                      # rank 0 writes, every rank waits
    with unwrapped(learn): learn.export('export.pkl')         # fastai exports from rank 0 only
    barrier()
    fresh = ddp_learner(tmp, seed=1)
    load_pruned_learner(fresh, 'pruned')                      # every rank rebuilds the pruned model, still in DDP
    res['reloaded'] = dict(state=state(fresh), wrapped=type(fresh.model).__name__, accuracy=float(fresh.validate()[1]))
    res['taylor'] = fit_pruned(taylor, 'global')[1]
    res['wanda'] = fit_pruned(wanda, 'local')[1]
    res['accelerate'] = fit_pruned(large_final, 'global', wrap=accelerate_prepare)[1]
    for name, criteria, epochs in (('sparse', large_final, 2), ('sparse_wanda', wanda, 1)):   # wanda: calibrated on each rank's batch
        learn = ddp_learner()
        learn.fit(epochs, 1e-2, cbs=SparsifyCallback(80, 'weight', 'global', criteria, agp))
        res[name] = dict(masks={k: v == 0 for k, v in state(learn).items() if k.endswith('weight') and v.dim() == 4},
                         accuracy=float(learn.validate()[1]))
    res['bad'] = bad_setups()   # last: it tears the process group down
    return res

def error_of(f) -> str:
    try: f()
    except Exception as e: return f"{type(e).__name__}: {e}"
    return 'no error'

def bad_setups():
    "Each case must end with a clear error on every rank (the launch's time limit turns a hang into a failure)"
    res = {}
    res['ratio'] = error_of(lambda: ddp_learner().fit(1, 1e-3, cbs=PruneCallback(30 + 20 * rank(), 'global', schedule=SCHEDULE)))
    x = torch.randn(1 + rank(), 1, 16, 16)
    res['inputs'] = error_of(lambda: ddp_learner().fit(1, 1e-3, cbs=PruneCallback(50, 'global', schedule=SCHEDULE, example_inputs=x)))
    torch.manual_seed(rank())   # `random` scores differ across ranks: the plans differ after the first prune
    res['plan'] = error_of(lambda: ddp_learner().fit(1, 1e-3, cbs=PruneCallback(50, 'global', random, schedule=SCHEDULE)))
    learn = ddp_learner()      # built now: after the next case the group can no longer run collectives
    start = time.monotonic()   # a rank that never reaches the check (it failed before): the others give up
    if rank() == 0: res['absent'] = error_of(lambda: check_same_on_all_ranks({'a': 1}, 'pruning plan', timeout=2))
    else: time.sleep(3); res['absent'] = 'skipped the check'
    res['absent_seconds'] = time.monotonic() - start
    dist.destroy_process_group()
    res['torn_down'] = error_of(lambda: learn.fit(1, 1e-3, cbs=PruneCallback(50, 'global', schedule=SCHEDULE)))
    return res

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ddp')
    return launch(train_everything, 2, args=(str(tmp),), backend='gloo', timeout=200), tmp

def conv_widths(sd): return [v.shape[0] for k, v in sd.items() if k.endswith('weight') and v.dim() == 4]

@pytest.mark.parametrize('name', ['large_final', 'taylor', 'wanda', 'accelerate'])
def test_same_pruned_model_on_both_ranks(trained, name):
    (r0, r1), _ = trained
    a, b = r0[name], r1[name]
    assert a['n_prunes'] >= 2 and a['n_prunes'] == b['n_prunes']
    assert a['wrapped'] == 'DistributedDataParallel'            # still DDP after the prunes
    assert {k: v.shape for k, v in a['state'].items()} == {k: v.shape for k, v in b['state'].items()}
    for k in a['state']: torch.testing.assert_close(a['state'][k], b['state'][k], msg=k)
    assert a['removed'] == pytest.approx(0.5, abs=0.03)          # 50% of the prunable channels, measured on the model
    assert sum(conv_widths(a['state'])) < sum(conv_widths(unwrap(digits_cnn(WIDTH)).state_dict()))

@pytest.mark.parametrize('name', ['large_final', 'taylor', 'wanda', 'accelerate'])
def test_training_goes_on_after_the_last_prune(trained, name):
    (r0, r1), _ = trained
    for r in (r0, r1):
        losses, i = r[name]['losses'], r[name]['last_prune']
        after, end = sum(losses[i:i + 5]) / 5, sum(losses[-5:]) / 5
        assert end < after, (name, after, end)
    assert r0[name]['accuracy'] == r1[name]['accuracy'] > 0.5   # 10 classes: chance is 0.1; taylor over 8 seeds: 0.87-0.96

@pytest.mark.parametrize('name', ['sparse', 'sparse_wanda'])
def test_sparsify_masks_same_on_both_ranks(trained, name):
    "Without the average of the statistics over ranks in `calibrate`, wanda's masks differ across ranks"
    (r0, r1), _ = trained
    m0, m1 = r0[name]['masks'], r1[name]['masks']
    assert m0.keys() == m1.keys() and len(m0) == 7
    for k in m0: assert torch.equal(m0[k], m1[k]), k
    zeros = sum(int(m.sum()) for m in m0.values()) / sum(m.numel() for m in m0.values())
    assert zeros == pytest.approx(0.8, abs=0.01)
    assert r0[name]['accuracy'] == r1[name]['accuracy']
    if name == 'sparse': assert r0[name]['accuracy'] > 0.3   # 2 epochs; the wanda run has 1, sparsified to the last step

def test_saved_on_rank0_loads_in_one_process_and_in_ddp(trained):
    (r0, r1), tmp = trained
    files = sorted(p.name for p in (Path(tmp)/'models').iterdir())
    assert files == ['pruned.pth']   # the pruning record travels inside the checkpoint
    assert (Path(tmp)/'export.pkl').exists()
    learn = Learner(digits_dls(bs=32), digits_cnn(WIDTH), loss_func=nn.CrossEntropyLoss(), metrics=accuracy, path=tmp)
    load_pruned_learner(learn, 'pruned')                      # one process, no process group
    trained_sd = r0['large_final']['state']
    for k, v in learn.model.state_dict().items(): torch.testing.assert_close(v, trained_sd[k], msg=k)
    assert float(learn.validate()[1]) == pytest.approx(r0['large_final']['accuracy'], abs=1e-6)
    for k, v in r1['reloaded']['state'].items(): torch.testing.assert_close(v, trained_sd[k], msg=k)   # rank 1 read rank 0's file
    assert r1['reloaded']['wrapped'] == 'DistributedDataParallel'
    exported = load_learner(Path(tmp)/'export.pkl')
    assert type(exported.model).__name__ == 'Sequential'
    x = digits_dls().valid.one_batch()[0][:8]
    with torch.no_grad(): torch.testing.assert_close(exported.model.eval()(x), learn.model.eval()(x))

def test_bad_setups_fail_clearly_on_every_rank(trained):
    (r0, r1), _ = trained
    for r in (r0['bad'], r1['bad']):
        assert 'pruner setup differs across ranks (ranks that agree: [0] / [1])' in r['ratio']
        assert 'pruner setup differs across ranks' in r['inputs']
        assert 'pruning plan differs across ranks' in r['plan']
        assert 'process group was torn down' in r['torn_down']
    assert 'rank 0: could not compare the pruning plan across ranks: another rank did not reach the check within 2s' in r0['bad']['absent']
    assert r0['bad']['absent_seconds'] < 10
