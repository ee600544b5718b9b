"Knowledge distillation and learning-rate rewinding: the must-show assertions of issue 11."
import copy
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.callback.core import Callback
from fastai.callback.schedule import *   # fit_one_cycle
from fasterai_prune.data import digits_dls, digits_cnn
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.prune.prune_callback import PruneCallback
from fasterai_prune.recover.distill import distillation_loss, KnowledgeDistillationCallback, in_optimizer
from fasterai_prune.recover.rewind import ScheduleRecorder, fit_rewound, one_cycle_schedule


def seed_loss(student_logits, teacher_logits, targets, temperature, alpha):
    "The seed's `DistillationFineTuner.distillation_loss`, verbatim"
    soft_targets = F.softmax(teacher_logits / temperature, dim=1)
    soft_student = F.log_softmax(student_logits / temperature, dim=1)
    distill_loss = F.kl_div(soft_student, soft_targets, reduction='batchmean') * (temperature ** 2)
    ce_loss = F.cross_entropy(student_logits, targets)
    return alpha * distill_loss + (1 - alpha) * ce_loss


@pytest.mark.parametrize('temperature,alpha', [(4., .5), (1., 0.), (2., 1.), (7.5, .3)])
def test_distillation_loss_is_the_seed_formula(temperature, alpha):
    g = torch.Generator().manual_seed(1)
    s, t = 3 * torch.randn(16, 10, generator=g), 3 * torch.randn(16, 10, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    got, want = distillation_loss(s, t, y, temperature, alpha), seed_loss(s, t, y, temperature, alpha)
    assert abs(float(got) - float(want)) < 1e-6, (float(got), float(want))


def _learner(model):
    return Learner(digits_dls(), model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy)


class _WatchOpt(Callback):
    order = 30
    def __init__(self, kd): self.kd, self.seen = kd, []
    def after_batch(self):
        if self.training: self.seen.append(in_optimizer(self.learn.opt, self.kd.distiller.parameters()))


def test_teacher_unchanged_and_projections_in_optimizer():
    torch.manual_seed(0)
    teacher = digits_cnn(16)
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    modes = [m.training for m in teacher.modules()]
    student = copy.deepcopy(teacher)
    Pruner(student, 50, verbose=False).prune_model()
    learn = _learner(student)
    kd = KnowledgeDistillationCallback(teacher, features={'1': '1', '4.conv1': '4.conv1'})
    watch = _WatchOpt(kd)
    learn.fit_one_cycle(1, 1e-2, cbs=[kd, watch])
    n = len(kd.distiller.parameters())
    assert n == 2
    assert watch.seen == [[True] * n] * len(learn.dls.train)
    assert in_optimizer(learn.opt, kd.distiller.parameters()) == [False] * n
    sd = teacher.state_dict()
    assert [k for k in state if not torch.equal(sd[k], state[k])] == []
    assert [m.training for m in teacher.modules()] == modes
    assert [p.requires_grad for p in teacher.parameters()] == [True] * len(list(teacher.parameters()))


def test_projection_rebuilt_when_prune_narrows_student():
    torch.manual_seed(0)
    teacher = digits_cnn(16)
    learn = _learner(copy.deepcopy(teacher))
    kd = KnowledgeDistillationCallback(teacher, features={'2.0': '2.0'})
    learn.fit_one_cycle(1, 1e-2, cbs=[PruneCallback(50), kd])
    p = kd.distiller.projections[0]
    assert (p.linear.in_features, p.linear.out_features) == (learn.model[2][0].out_channels, 32)
    assert learn.model[2][0].out_channels == 16


def test_teacher_learner_trained_with_fine_tune():
    "fasterai issue #8: a teacher Learner after `fine_tune` (frozen groups), student also `fine_tune`d with the callback"
    def body_head(m): return [list(m[:-1].parameters()), list(m[-1].parameters())]
    torch.manual_seed(0)
    teacher = Learner(digits_dls(), digits_cnn(8), loss_func=nn.CrossEntropyLoss(), splitter=body_head)
    teacher.fine_tune(1, freeze_epochs=1)
    state = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    student = Learner(digits_dls(), digits_cnn(4), loss_func=nn.CrossEntropyLoss(), splitter=body_head)
    kd = KnowledgeDistillationCallback(teacher, features={'1': '1'})
    student.fine_tune(1, freeze_epochs=1, cbs=kd)
    assert kd.distiller.projections[0].linear.weight.shape == (8, 4)
    assert [k for k in state if not torch.equal(teacher.model.state_dict()[k], state[k])] == []
    assert in_optimizer(student.opt, kd.distiller.parameters()) == [False]


def test_bad_inputs_named_before_training():
    torch.manual_seed(0)
    learn = _learner(digits_cnn(8))
    state = {k: v.clone() for k, v in learn.model.state_dict().items()}
    five = nn.Sequential(*list(digits_cnn(8).children())[:-1], nn.Linear(32, 5))
    with pytest.raises(ValueError, match='`teacher` outputs shape'): learn.fit(1, cbs=KnowledgeDistillationCallback(five))
    with pytest.raises(ValueError, match='`temperature`'): KnowledgeDistillationCallback(digits_cnn(8), temperature=0)
    with pytest.raises(ValueError, match='`alpha`'): KnowledgeDistillationCallback(digits_cnn(8), alpha=1.01)
    with pytest.raises(ValueError, match="`features` names teacher layer 'x'"): KnowledgeDistillationCallback(digits_cnn(8), features={'1': 'x'})
    with pytest.raises(ValueError, match="`features` names student layer 'x'"): learn.fit(1, cbs=KnowledgeDistillationCallback(digits_cnn(8), features={'x': '1'}))
    assert [k for k in state if not torch.equal(learn.model.state_dict()[k], state[k])] == []


def test_export_never_holds_teacher(tmp_path):
    torch.manual_seed(0)
    learn = _learner(digits_cnn(8))
    big_teacher = digits_cnn(64)   # ~1.5 MB of parameters
    kd = KnowledgeDistillationCallback(big_teacher)
    learn.fit(1, cbs=kd)
    learn.path = tmp_path
    learn.export('plain.pkl')
    learn.add_cb(kd); learn.export('kd.pkl')
    plain, with_kd = (tmp_path/'plain.pkl').stat().st_size, (tmp_path/'kd.pkl').stat().st_size
    assert with_kd - plain < 20_000, (plain, with_kd)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_mixed_precision_teacher_on_student_device():
    from fastai.callback.fp16 import MixedPrecision
    torch.manual_seed(0)
    teacher = digits_cnn(16)   # on CPU: moved for the fit, back after
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    learn = Learner(digits_dls(device='cuda'), digits_cnn(8).cuda(), loss_func=nn.CrossEntropyLoss(), cbs=MixedPrecision())
    kd = KnowledgeDistillationCallback(teacher, features={'1': '1'})
    learn.fit_one_cycle(1, 1e-2, cbs=kd)
    assert next(teacher.parameters()).device.type == 'cpu'
    assert [k for k in state if not torch.equal(teacher.state_dict()[k], state[k])] == []
    assert kd.distiller.projections[0].linear.weight.device.type == 'cuda'


def test_lr_rewinding_replays_the_schedule():
    torch.manual_seed(0)
    learn = _learner(digits_cnn(8))
    rec = ScheduleRecorder()
    learn.fit_one_cycle(3, 1e-2, cbs=rec)
    lrs, moms, n = list(learn.recorder.hps['lr']), list(learn.recorder.hps['mom']), len(learn.dls.train)
    Pruner(learn.model, 50, verbose=False).prune_model()
    learn.opt = None   # parameters replaced by the prune: a new optimizer
    fit_rewound(learn, rec.schedule, rewind_epoch=1)
    assert torch.allclose(torch.tensor(learn.recorder.hps['lr'], dtype=torch.float64), torch.tensor(lrs[n:], dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.allclose(torch.tensor(learn.recorder.hps['mom'], dtype=torch.float64), torch.tensor(moms[n:], dtype=torch.float64), atol=1e-12, rtol=0)
    hand = one_cycle_schedule(3, 1e-2).values('lr', [i / (3 * n) for i in range(3 * n)])
    assert torch.allclose(torch.tensor(hand, dtype=torch.float64), torch.tensor(lrs, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match='`rewind_epoch`'): fit_rewound(learn, rec.schedule, rewind_epoch=3)


def test_prune_sparsify_and_distill_in_one_fit():
    from fasterai_prune.sparse.sparsify_callback import SparsifyCallback
    from fasterai_prune.core.criteria import large_final
    torch.manual_seed(0)
    teacher = digits_cnn(8)
    learn = _learner(copy.deepcopy(teacher))
    learn.fit(1, 1e-2, cbs=[PruneCallback(50, context='global'), SparsifyCallback(50, 'weight', 'global', large_final, 'agp'),
                            KnowledgeDistillationCallback(teacher)])
    convs = [m for m in learn.model.modules() if isinstance(m, nn.Conv2d)]
    kept = sum(m.out_channels for m in convs) / sum(m.out_channels for m in teacher.modules() if isinstance(m, nn.Conv2d))
    zeros = sum(int((m.weight == 0).sum()) for m in convs) / sum(m.weight.numel() for m in convs)
    assert kept < 0.8, f"channels kept: {kept:.3f}"              # the structured prune happened
    assert zeros == pytest.approx(0.5, abs=0.05), f"zeros: {zeros:.3f}"   # and the survivors are half zero
    assert learn.model(torch.randn(2, 1, 16, 16)).shape == (2, 10)
