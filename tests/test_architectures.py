"""Structured pruning beyond torchvision: small hand-written architectures pruned at 50%, local and global.

Each case checks that the pruned model runs in eval with its original output shape and fewer parameters, plus the
invariant its architecture needs kept (output channels, depthwise groups, norm widths, attention heads...)."""
import pytest, torch, warnings
import torch.nn as nn
import torch.nn.functional as F
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.core.measure import count_params

CONTEXTS = pytest.mark.parametrize('context', ['local', 'global'])

def _flat(out):
    "Shapes of a tensor, or of the tensors in a dict/tuple output"
    if isinstance(out, torch.Tensor): return out.shape
    if isinstance(out, dict): return {k: _flat(v) for k, v in out.items()}
    return tuple(_flat(o) for o in out)

def _call(m, x): return m(**x) if isinstance(x, dict) else m(*x) if isinstance(x, tuple) else m(x)

def _finite(out):
    if isinstance(out, torch.Tensor): return bool(torch.isfinite(out).all())
    vals = out.values() if isinstance(out, dict) else out
    return all(_finite(o) for o in vals)

def prune_and_check(model, x, context, ratio=50, **kw):
    "Prune `model` in place; check forward in eval, same output shapes, fewer params. Returns the model"
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad(): before = _flat(_call(model, x))
    p0 = count_params(model)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Pruner(model, ratio, context, example_inputs=x, verbose=False, **kw).prune_model()
    model.eval()
    with torch.no_grad(): out = _call(model, x)
    assert _flat(out) == before
    assert _finite(out)
    assert count_params(model) < p0, f"{count_params(model)} !< {p0}"
    return model

def params_of(m): return [p.detach().clone() for p in m.parameters()]
def same(a, b): return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))

# ---------------------------------------------------------------- 1. U-Net with concatenated skips
def cbr(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

class UNet(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.e1, self.e2, self.e3 = cbr(3, c), cbr(c, 2*c), cbr(2*c, 4*c)
        self.up2 = nn.ConvTranspose2d(4*c, 2*c, 2, stride=2)
        self.d2 = cbr(4*c, 2*c)
        self.up1 = nn.Upsample(scale_factor=2, mode='nearest')
        self.d1 = cbr(2*c + c, c)
        self.out = nn.Conv2d(c, 2, 1)
    def forward(self, x):
        e1 = self.e1(x); e2 = self.e2(F.max_pool2d(e1, 2)); e3 = self.e3(F.max_pool2d(e2, 2))
        d2 = self.d2(torch.cat([e2, self.up2(e3)], 1))
        d1 = self.d1(torch.cat([e1, self.up1(d2)], 1))
        return self.out(d1)

@CONTEXTS
def test_unet(context):
    m = prune_and_check(UNet(), torch.randn(2, 3, 16, 16), context)
    assert m.out.out_channels == 2
    assert m.e3[0].out_channels < 32
    assert m.d1[0].in_channels == m.e1[0].out_channels + m.d2[0].out_channels

# ---------------------------------------------------------------- 2. depthwise-separable + squeeze-and-excitation
class SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // r, 1), nn.Linear(c // r, c)
    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(self.reduce(s)).flatten(1)
        return x * torch.sigmoid(self.expand(s))[:, :, None, None]

class DWBlock(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.dw = nn.Conv2d(i, i, 3, padding=1, groups=i, bias=False)
        self.bn1 = nn.BatchNorm2d(i)
        self.se = SE(i)
        self.pw = nn.Conv2d(i, o, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
    def forward(self, x): return F.relu(self.bn2(self.pw(self.se(F.relu(self.bn1(self.dw(x)))))))

class DWNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.blocks = nn.Sequential(DWBlock(16, 32), DWBlock(32, 32), DWBlock(32, 64))
        self.head = nn.Linear(64, 10)
    def forward(self, x): return self.head(self.blocks(self.stem(x)).mean((2, 3)))

@CONTEXTS
def test_depthwise_se(context):
    m = prune_and_check(DWNet(), torch.randn(2, 3, 16, 16), context)
    for b in m.blocks:
        assert b.dw.groups == b.dw.in_channels == b.dw.out_channels
        assert b.pw.in_channels == b.dw.out_channels == b.bn1.num_features == b.se.expand.out_features
        assert b.se.reduce.out_channels == b.se.expand.in_features
    assert m.head.out_features == 10

# ---------------------------------------------------------------- 3. residual MLP with LayerNorm
class ResMLP(nn.Module):
    def __init__(self, d=32, h=64, n=3):
        super().__init__()
        self.inp = nn.Linear(12, d)
        self.lns = nn.ModuleList(nn.LayerNorm(d) for _ in range(n))
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d)) for _ in range(n))
        self.norm, self.out = nn.LayerNorm(d), nn.Linear(d, 5)
    def forward(self, x):
        x = self.inp(x)
        for ln, mlp in zip(self.lns, self.mlps): x = x + mlp(ln(x))
        return self.out(self.norm(x))

@CONTEXTS
def test_residual_mlp_layernorm(context):
    m = prune_and_check(ResMLP(), torch.randn(4, 12), context)
    d = m.inp.out_features
    assert d < 32
    for ln, mlp in zip(m.lns, m.mlps):
        assert ln.normalized_shape == (d,) == (mlp[0].in_features,) == (mlp[2].out_features,)
        assert ln.weight.shape == (d,)
    assert m.norm.normalized_shape == (m.out.in_features,)

# ---------------------------------------------------------------- 4. Conv1d + BatchNorm1d
class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv1d(4, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
                               nn.Conv1d(16, 32, 3, padding=1, stride=2), nn.BatchNorm1d(32), nn.ReLU(),
                               nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU())
        self.fc = nn.Linear(32, 3)
    def forward(self, x): return self.fc(self.f(x).mean(-1))

@CONTEXTS
def test_conv1d_batchnorm1d(context):
    m = prune_and_check(Conv1dNet(), torch.randn(2, 4, 40), context)
    for conv, bn in [(m.f[0], m.f[1]), (m.f[3], m.f[4]), (m.f[6], m.f[7])]:
        assert bn.num_features == conv.out_channels == bn.running_mean.shape[0]
    assert m.f[6].out_channels == m.fc.in_features and m.fc.out_features == 3

# ---------------------------------------------------------------- 5. TransformerEncoderLayer classifier
class TfClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.enc = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
        self.out = nn.Linear(32, 6)
    def forward(self, x): return self.out(self.enc(self.emb(x)).mean(1))

@CONTEXTS
def test_transformer_encoder_layer(context):
    x = torch.randint(0, 50, (2, 7))
    m = prune_and_check(TfClassifier(), x, context)
    a = m.enc.self_attn
    assert a.num_heads == 4
    assert a.embed_dim % a.num_heads == 0 and a.head_dim * a.num_heads == a.embed_dim
    assert a.in_proj_weight.shape == (3 * a.embed_dim, m.emb.embedding_dim)
    assert m.enc.norm1.normalized_shape == (m.emb.embedding_dim,)

# ---------------------------------------------------------------- 6. LSTM classifier
class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.fc = nn.Linear(32, 4)
    def forward(self, x):
        _, (h, _) = self.lstm(self.inp(x))
        return self.fc(h[-1])

@CONTEXTS
def test_lstm_classifier(context, capsys):
    """torch-pruning 1.6 would prune `inp`'s outputs but not the LSTM's inputs (a broken model; plain MagnitudePruner too):
    `Pruner` keeps the outputs of layers feeding a recurrent layer, says so, and the model keeps working"""
    torch.manual_seed(0)
    m, x = LSTMClassifier().eval(), torch.randn(3, 9, 6)
    p = Pruner(m, 50, context, verbose=True, example_inputs=x)
    p.prune_model()
    assert "Keeping the outputs of inp: they feed a recurrent layer" in capsys.readouterr().out
    assert m(x).shape == (3, 4)
    assert m.inp.out_features == m.lstm.input_size == 16
    assert m.lstm.hidden_size == m.fc.in_features and m.fc.out_features == 4
    assert m.lstm.weight_ih_l0.shape == (4 * m.lstm.hidden_size, m.lstm.input_size)

# ---------------------------------------------------------------- 7a. GroupNorm
class GNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.g1 = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.c2, self.g2 = nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(8, 32)
        self.fc = nn.Linear(32, 10)
    def forward(self, x):
        x = F.relu(self.g1(self.c1(x))); x = F.relu(self.g2(self.c2(x)))
        return self.fc(x.mean((2, 3)))

@CONTEXTS
def test_groupnorm(context):
    m = prune_and_check(GNNet(), torch.randn(2, 3, 12, 12), context)
    for c, g in [(m.c1, m.g1), (m.c2, m.g2)]:
        assert g.num_channels == c.out_channels == g.weight.shape[0]
        assert g.num_channels % g.num_groups == 0

# ---------------------------------------------------------------- 7b. multi-input, dict output
class MultiIO(nn.Module):
    def __init__(self):
        super().__init__()
        self.img = nn.Sequential(cbr(3, 16), cbr(16, 16))
        self.tab = nn.Sequential(nn.Linear(5, 16), nn.ReLU())
        self.fuse = nn.Linear(32, 32)
        self.cls, self.reg = nn.Linear(32, 7), nn.Linear(32, 1)
    def forward(self, img, tab):
        z = torch.cat([self.img(img).mean((2, 3)), self.tab(tab)], 1)
        z = F.relu(self.fuse(z))
        return {'cls': self.cls(z), 'reg': self.reg(z)}

@CONTEXTS
def test_multi_input_dict_output(context):
    x = (torch.randn(2, 3, 12, 12), torch.randn(2, 5))
    m = prune_and_check(MultiIO(), x, context)
    assert (m.cls.out_features, m.reg.out_features) == (7, 1)
    assert m.fuse.in_features == m.img[1][0].out_channels + m.tab[0].out_features

# ---------------------------------------------------------------- 7c. Conv3d
class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(),
                               nn.Conv3d(8, 16, 3, padding=1, stride=2), nn.BatchNorm3d(16), nn.ReLU())
        self.fc = nn.Linear(16, 2)
    def forward(self, x): return self.fc(self.f(x).mean((2, 3, 4)))

@CONTEXTS
def test_conv3d(context):
    m = prune_and_check(Conv3dNet(), torch.randn(2, 1, 6, 8, 8), context)
    assert m.f[1].num_features == m.f[0].out_channels == m.f[3].in_channels
    assert m.f[4].num_features == m.f[3].out_channels == m.fc.in_features

# ---------------------------------------------------------------- 7d. Embedding + PReLU
class EmbPReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 24)
        self.l1, self.act = nn.Linear(24, 32), nn.PReLU(32)
        self.l2 = nn.Linear(32, 4)
    def forward(self, x): return self.l2(self.act(self.l1(self.emb(x).mean(1))))

@CONTEXTS
def test_embedding_prelu(context):
    m = prune_and_check(EmbPReLU(), torch.randint(0, 30, (3, 5)), context)
    assert m.act.weight.numel() == m.l1.out_features == m.l2.in_features
    assert m.emb.embedding_dim == m.l1.in_features and m.emb.num_embeddings == 30

# ---------------------------------------------------------------- 7e. inception-style branches concatenated
class Inception(nn.Module):
    def __init__(self, i):
        super().__init__()
        self.b1 = cbr(i, 8)
        self.b2 = nn.Sequential(nn.Conv2d(i, 8, 1), nn.ReLU(), cbr(8, 12))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(i, 4, 1))
    def forward(self, x): return torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)

class InceptionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.inc, self.post = cbr(3, 16), Inception(16), cbr(24, 16)
        self.fc = nn.Linear(16, 10)
    def forward(self, x): return self.fc(self.post(self.inc(self.stem(x))).mean((2, 3)))

@CONTEXTS
def test_inception_concat(context):
    m = prune_and_check(InceptionNet(), torch.randn(2, 3, 12, 12), context)
    inc = m.inc
    widths = inc.b1[0].out_channels + inc.b2[2][0].out_channels + inc.b3[1].out_channels
    assert m.post[0].in_channels == widths < 24
    assert all(w > 0 for w in (inc.b1[0].out_channels, inc.b2[2][0].out_channels, inc.b3[1].out_channels))

# ---------------------------------------------------------------- 7f. torch.chunk / split
class ChunkNet(nn.Module):
    "GLU-style gate: a conv's channels are split in two halves, one gating the other"
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 5)
    def forward(self, x):
        a, b = torch.chunk(self.c1(x), 2, dim=1)
        return self.fc(F.relu(self.c2(a * torch.sigmoid(b))).mean((2, 3)))

@CONTEXTS
def test_chunk(context):
    """A conv whose output is split with `torch.chunk` prunes: traced as `split_with_sizes` (tp.adapters.ExplicitSplits),
    its halves grouped so that each loses the same channels (torch-pruning alone over-prunes or empties it)"""
    torch.manual_seed(0)
    m, x = ChunkNet().eval(), torch.randn(2, 3, 10, 10)
    before = sum(p.numel() for p in m.parameters())
    Pruner(m, 50, context, example_inputs=x, verbose=False).prune_model()
    assert m(x).shape == (2, 5)
    assert (m.c1.out_channels, m.c2.in_channels) == (16, 8)   # 32 → 16 channels, each half of the chunk 16 → 8
    assert (before, sum(p.numel() for p in m.parameters())) == (3301, 1077)

# ---------------------------------------------------------------- errors leave the model untouched
def test_unprunable_requests_leave_model_unchanged():
    m = GNNet()
    before = params_of(m)
    x = torch.randn(2, 3, 12, 12)
    for kw, msg in [(dict(pruning_ratio=100), 'pruning_ratio'), (dict(pruning_ratio=50, context='everywhere'), 'context'),
                    (dict(pruning_ratio=50, example_inputs=torch.randn(2, 5, 12, 12)), 'example_inputs'),
                    (dict(pruning_ratio=50, ignored_layers=['c9']), 'ignored_layers'),
                    (dict(pruning_ratio=50, ignored_layers=['c1', 'c2']), 'no prunable layer')]:
        kw.setdefault('example_inputs', x)
        with pytest.raises(ValueError, match=msg): Pruner(m, verbose=False, **kw)
    assert same(before, params_of(m))

class BareParam(nn.Module):
    "A bare nn.Parameter multiplies the conv features: torch-pruning does not see it as a layer"
    def __init__(self):
        super().__init__()
        self.c1, self.w, self.fc = nn.Conv2d(3, 8, 3), nn.Parameter(torch.randn(8, 8)), nn.Linear(8, 2)
    def forward(self, x): return self.fc(self.c1(x).mean((2, 3)) @ self.w)

def test_untraceable_model_clear_error():
    "torch-pruning prunes c1 but not the rows of the bare parameter `w` (plain MagnitudePruner too): checked, undone, reported"
    m, x = BareParam().eval(), torch.randn(2, 3, 10, 10)
    before = params_of(m)
    try:
        with pytest.raises(ValueError): Pruner(m, 50, example_inputs=x, verbose=False).prune_model()
    finally:
        assert same(before, params_of(m))
