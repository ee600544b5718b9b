"Equivalence property: zeroing exactly what a prune removes, then pruning it, leaves the outputs unchanged."
import copy, pytest, torch, torch.nn as nn
from hypothesis import assume, given, settings, strategies as st
import torch_pruning as tp
from fasterai_prune.tp.planner import DependencyPruner
from fasterai_prune.tp.importance import CriteriaImportance
from fasterai_prune.tp.tracked import tracked_prune
from fasterai_prune.core.criteria import Criteria

class Net(nn.Module):
    "A random conv net: chain of blocks (plain, residual add, concat, depthwise, grouped), BN, pooling, flatten->linear"
    def __init__(self, kinds, width, bn, pool):
        super().__init__()
        if kinds and kinds[-1] in ('cat', 'psplit', 'csp'): kinds = [*kinds, 'plain']   # concat right before flatten: see test_concat_flatten_linear
        # a grouped conv concatenated with another branch (by a concat, or by a split block's own concat): see test_grouped_then_concat
        kinds = [k for i, k in enumerate(kinds) if not (k == 'grouped' and i + 1 < len(kinds) and kinds[i + 1] in ('cat', 'psplit', 'csp'))] or ['plain']
        # a concat feeding a split: see test_concat_then_split
        while any(a in ('cat', 'psplit', 'csp') and b in ('psplit', 'csp') for a, b in zip(kinds, kinds[1:])):
            kinds = [k for i, k in enumerate(kinds) if not (k in ('cat', 'psplit', 'csp') and i + 1 < len(kinds) and kinds[i + 1] in ('psplit', 'csp'))]
        self.stem, c, self.blocks = nn.Conv2d(3, width, 3, padding=1), width, nn.ModuleList()
        for k in kinds:
            if k == 'plain': b = nn.ModuleDict(dict(a=nn.Conv2d(c, c + 2, 3, padding=1))); c2 = c + 2
            elif k == 'res': b = nn.ModuleDict(dict(a=nn.Conv2d(c, c, 3, padding=1), b=nn.Conv2d(c, c, 1))); c2 = c
            elif k == 'cat': b = nn.ModuleDict(dict(a=nn.Conv2d(c, 4, 1))); c2 = c + 4
            elif k == 'dw': b = nn.ModuleDict(dict(a=nn.Conv2d(c, c, 3, padding=1, groups=c), b=nn.Conv2d(c, c, 1))); c2 = c
            elif k == 'psplit': b = nn.ModuleDict(dict(a=nn.Conv2d(2, 2, 3, padding=1))); c2 = c   # FasterNet: a conv on the first piece, the rest untouched
            elif k == 'csp': b = nn.ModuleDict(dict(a=nn.Conv2d(c // 2 - 1, 3, 1))); c2 = c - c // 2 + 4   # the first piece straight to the concat, the second (unequal: no `chunk`) through a conv
            else: g = 2; b = nn.ModuleDict(dict(p=nn.Conv2d(c, 2 * g * 2, 1), a=nn.Conv2d(2 * g * 2, 2 * g * 2, 3, padding=1, groups=g))); c2 = 2 * g * 2
            if bn: b['bn'] = nn.BatchNorm2d(c2)
            b.kind = k; self.blocks.append(b); c = c2
        self.pool = nn.MaxPool2d(2) if pool == 'max' else nn.AvgPool2d(2)
        self.fc1, self.fc2 = nn.Linear(c * 4 * 4, 12), nn.Linear(12, 3)

    def forward(self, x):
        x = self.stem(x).relu()
        for b in self.blocks:
            k = b.kind
            if k == 'plain': y = b['a'](x)
            elif k == 'res': y = x + b['b'](b['a'](x).relu())
            elif k == 'cat': y = torch.cat([x, b['a'](x)], 1)
            elif k == 'dw': y = b['b'](b['a'](x).relu())
            elif k == 'psplit':   # the pieces' sizes as a pruned model must have them: the conv's inputs, and the rest
                x1, x2 = torch.split(x, [b['a'].in_channels, x.shape[1] - b['a'].in_channels], 1); y = torch.cat([b['a'](x1), x2], 1)
            elif k == 'csp': x1, x2 = torch.split(x, [x.shape[1] - b['a'].in_channels, b['a'].in_channels], 1); y = torch.cat([x1, b['a'](x2)], 1)
            else: y = b['a'](b['p'](x))
            if 'bn' in b: y = b['bn'](y)
            x = y.relu()
        x = self.pool(x).flatten(1)
        return self.fc2(self.fc1(x).relu())

def randomize_bn(m, g):
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            for t in (b.weight, b.bias, b.running_mean): t.data = torch.randn(t.shape, generator=g)
            b.running_var.data = torch.rand(b.running_var.shape, generator=g) + 0.5

@settings(max_examples=200, deadline=None)
@given(kinds=st.lists(st.sampled_from(['plain', 'res', 'cat', 'dw', 'grouped', 'psplit', 'csp']), min_size=1, max_size=3),
       width=st.integers(4, 6), bn=st.booleans(), pool=st.sampled_from(['max', 'avg']),
       ratio=st.floats(0.1, 0.8), glob=st.booleans(), seed=st.integers(0, 2**16))
def test_zeroing_then_pruning_changes_nothing(kinds, width, bn, pool, ratio, glob, seed):
    g = torch.Generator().manual_seed(seed); torch.manual_seed(seed)
    net = Net(kinds, width, bn, pool).eval(); randomize_bn(net, g)
    x = torch.randn(2, 3, 8, 8, generator=g)
    # prune a twin; `tracked_prune`'s records say, for every replaced parameter, which elements of the original it kept
    twin = copy.deepcopy(net)
    dp = DependencyPruner(twin, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=ratio, global_pruning=glob, ignored_layers=[twin.fc2])
    moved = dp.prune_to(1.)
    names = {m: n for n, m in twin.named_modules()}
    mods = dict(net.named_modules())
    # zero, in the original net, every conv/linear weight and bias element the prune removes: the removed inputs of each
    # consumer then contribute exactly nothing, whatever BatchNorm makes of the removed outputs
    with torch.no_grad():
        for mv in moved:
            if not isinstance(mv.module, (nn.Conv2d, nn.Linear)): continue
            p = getattr(mods[names[mv.module]], mv.name)
            keep = torch.zeros(p.numel(), dtype=torch.bool); keep[mv.kept.reshape(-1)] = True
            p.view(-1)[~keep] = 0
        zeroed = net(x)
        pruned = twin(x)
    assert pruned.shape == (2, 3)
    assert sum(p.numel() for p in twin.parameters()) < sum(p.numel() for p in net.parameters())
    assert torch.allclose(zeroed, pruned, atol=1e-5, rtol=1e-4), (zeroed - pruned).abs().max()


@pytest.mark.xfail(strict=True, reason="torch-pruning 1.6 bug: a concat followed by pooling and flatten->linear maps only one "
                   "branch's removed channels to the linear's inputs (plain tp.pruner.MagnitudePruner fails the same way)")
def test_concat_flatten_linear():
    torch.manual_seed(0)
    net = Net(['res'], 4, False, 'max').eval()
    net.blocks[0].kind = 'cat'; net.blocks[0]['a'] = nn.Conv2d(4, 4, 1); net.fc1 = nn.Linear(8 * 16, 12)
    x = torch.randn(2, 3, 8, 8)
    DependencyPruner(net, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=0.5, ignored_layers=[net.fc2]).prune_to(1.)
    assert net(x).shape == (2, 3)


def test_global_depthwise():
    "Found by the property: a depthwise group was pruned twice (planned, then again with the channel-grouped groups)"
    torch.manual_seed(5)
    net = Net(['plain', 'dw', 'grouped'], 5, False, 'max').eval()
    x = torch.randn(2, 3, 8, 8)
    DependencyPruner(net, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=0.5, global_pruning=True, ignored_layers=[net.fc2]).prune_to(1.)
    assert net(x).shape == (2, 3)
    a = net.blocks[1]['a']
    assert a.weight.shape[0] == a.out_channels == a.in_channels == a.groups


def test_global_never_empties():
    "Found by the property: at 75% the stem conv, one side of a concatenation, lost all its filters"
    torch.manual_seed(0)
    net = Net(['cat', 'res'], 4, False, 'max').eval()
    x = torch.randn(2, 3, 8, 8)
    DependencyPruner(net, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=0.75, global_pruning=True, ignored_layers=[net.fc2]).prune_to(1.)
    assert min(m.weight.shape[0] for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))) >= 1


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.sampled_from(['plain', 'res', 'cat', 'dw', 'grouped']), min_size=1, max_size=3),
       width=st.integers(4, 8), ratio=st.floats(0.05, 0.95), round_to=st.sampled_from([None, 2]), seed=st.integers(0, 2**16))
def test_global_up_to_95_percent_keeps_every_layer(kinds, width, ratio, round_to, seed):
    torch.manual_seed(seed)
    net = Net(kinds, width, True, 'avg').eval()
    x = torch.randn(2, 3, 8, 8)
    DependencyPruner(net, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=ratio, global_pruning=True,
                     ignored_layers=[net.fc2], round_to=round_to).prune_to(1.)
    assert net(x).shape == (2, 3)
    floor = 1
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)): assert m.weight.shape[0] >= floor, (m, m.weight.shape)


@pytest.mark.xfail(strict=True, reason="torch-pruning 1.6 bug: a grouped conv whose output is concatenated with another branch "
                   "loses an uneven number of channels (plain tp.pruner.MagnitudePruner fails the same way)")
def test_grouped_then_concat():
    torch.manual_seed(2)
    net = Net(['grouped', 'res'], 4, False, 'max').eval()
    net.blocks[1].kind = 'cat'; net.blocks[1]['a'] = nn.Conv2d(8, 4, 1); net.blocks.append(nn.ModuleDict(dict(a=nn.Conv2d(12, 12, 3, padding=1), b=nn.Conv2d(12, 12, 1))))
    net.blocks[2].kind = 'res'; net.fc1 = nn.Linear(12 * 16, 12)
    x = torch.randn(2, 3, 8, 8)
    DependencyPruner(net, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=0.5, ignored_layers=[net.fc2]).prune_to(1.)
    assert net(x).shape == (2, 3)


@pytest.mark.parametrize('context', ['local', 'global'])
def test_pruner_keeps_a_misprunable_block_whole(context):
    "On a layout torch-pruning 1.6 mis-prunes (a concat inside a residual block), `Pruner` keeps the blocks it broke, names them in one warning, and prunes the rest"
    from fasterai_prune.prune.pruner import Pruner
    from fasterai_prune.core.measure import count_params
    torch.manual_seed(0)
    net = Net(['res'], 4, False, 'max').eval()
    net.blocks[0].kind = 'cat'; net.blocks[0]['a'] = nn.Conv2d(4, 4, 1); net.fc1 = nn.Linear(8 * 16, 12)
    x = torch.randn(2, 3, 8, 8)
    n0 = count_params(net)
    with pytest.warns(UserWarning, match=r"Kept the channels of .*blocks\.0\.a.*pruning them broke the model \(.*shapes cannot be multiplied"):
        pr = Pruner(net, 50, context, example_inputs=x, verbose=False)
        pr.prune_model()
    assert [type(b).__name__ for b in pr.kept_blocks][:1] == ['Conv2d'], pr.kept_blocks
    with torch.no_grad(): assert net(x).shape == (2, 3)
    assert net.blocks[0]['a'].out_channels == 4   # kept whole
    assert count_params(net) < n0, (count_params(net), n0)


class AttnNet(nn.Module):
    "Tokens -> linear embedding -> timm multi-head attention (unfused, so its scale stays the trained one) -> mean -> head"
    def __init__(self, dim, heads):
        super().__init__()
        from timm.layers import Attention
        self.embed, self.attn, self.head = nn.Linear(6, dim), Attention(dim, heads, qkv_bias=True), nn.Linear(dim, 3)
        self.attn.fused_attn = False
    def forward(self, x): return self.head(self.attn(self.embed(x)).mean(1))

@settings(max_examples=15, deadline=None)
@given(heads=st.sampled_from([2, 3, 4]), head_dim=st.sampled_from([4, 6]), ratio=st.floats(0.2, 0.7),
       mode=st.sampled_from(['head_dim', 'heads']), seed=st.integers(0, 2**16))
def test_attention_zeroing_then_pruning_changes_nothing(heads, head_dim, ratio, mode, seed):
    "The attention width is pruned (whole heads, or the same dims of every head); the zeroed original gives the same outputs"
    pytest.importorskip('timm')
    torch.manual_seed(seed)
    net = AttnNet(heads * head_dim, heads).eval()
    x = torch.randn(2, 5, 6)
    twin = copy.deepcopy(net)
    dp = DependencyPruner(twin, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=ratio, num_heads={twin.attn.qkv: heads},
                          prune_num_heads=mode == 'heads', prune_head_dims=mode == 'head_dim', ignored_layers=[twin.embed, twin.attn.proj, twin.head])
    moved = dp.prune_to(1.)
    a = twin.attn
    # whole heads go (head_dim kept, at least one head left), or the same dims of every head (the heads kept)
    if mode == 'heads': assert a.head_dim == head_dim and 1 <= a.num_heads <= heads
    else: assert a.num_heads == heads and a.head_dim < head_dim
    assert a.qkv.out_features == 3 * a.num_heads * a.head_dim
    names, mods = {m: n for n, m in twin.named_modules()}, dict(net.named_modules())
    with torch.no_grad():
        for mv in moved:
            if not isinstance(mv.module, nn.Linear): continue
            p = getattr(mods[names[mv.module]], mv.name)
            keep = torch.zeros(p.numel(), dtype=torch.bool); keep[mv.kept.reshape(-1)] = True
            p.view(-1)[~keep] = 0
        zeroed, pruned = net(x), twin(x)
    assert torch.allclose(zeroed, pruned, atol=1e-5, rtol=1e-4), (zeroed - pruned).abs().max()


@pytest.mark.xfail(strict=True, reason="torch-pruning 1.6 limit: a split of a concat's output, whose pieces straddle the concat's "
                   "inputs, cannot be mapped with its two index-mapping slots (same result with plain torch-pruning's mapping); "
                   "`Pruner`'s first-prune check catches it and keeps the block whole")
def test_concat_then_split():
    torch.manual_seed(0)
    net, x = Net(['plain', 'plain', 'plain'], 4, False, 'max'), torch.randn(2, 3, 8, 8)   # 4 → 6 → 8 → 10 channels
    net.blocks[0]['a'], net.blocks[0].kind = nn.Conv2d(4, 4, 1), 'cat'   # 4 → 8
    net.blocks[1] = nn.ModuleDict(dict(a=nn.Conv2d(2, 2, 3, padding=1))); net.blocks[1].kind = 'psplit'   # 8 → 8, split 2 + 6
    assert net.eval()(x).shape == (2, 3)
    DependencyPruner(net, x, CriteriaImportance(Criteria(torch.abs)), pruning_ratio=0.5, ignored_layers=[net.fc2]).prune_to(1.)
    assert net(x).shape == (2, 3)

