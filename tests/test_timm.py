"timm families pruned at 50%, local and global: the output shape is unchanged, parameters drop, and the model runs."
import json, os, warnings
from pathlib import Path
import pytest, torch

timm = pytest.importorskip('timm', reason='timm is not installed (pip install -e ".[timm]")')
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.core.measure import count_params

# one model per failure class of issue 9: the smallest variant, or a narrower and shallower copy of it (timm passes
# the keyword arguments to the model's constructor), at a small input size
FAST = {
    'test_vit': (64, dict(img_size=64)),                                  # timm Attention: attn_dim, head_dim (ViT/DeiT)
    'deit_tiny_patch16_224': (64, dict(img_size=64, depth=2)),            # DeiT
    'swin_tiny_patch4_window7_224': (64, dict(img_size=64, embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=2)),   # window attention, PatchMerging
    'beit_base_patch16_224': (64, dict(img_size=64, embed_dim=48, depth=2, num_heads=2)),   # qkv through F.linear with q/v biases
    'cs3darknet_focus_s': (64, {}),                                       # CSP split sizes
    'res2next50': (64, dict(layers=[2, 1, 1, 1])),                        # Res2Net split width
    'ghostnet_050': (64, {}),                                             # ghost concat
    'dpn48b': (64, {}),                                                   # dual path concat
    'levit_128s': (224, {}),                                              # LeViT subsample
    'pit_ti_224': (224, dict(depth=(1, 1, 1))),                          # PiT pooling
    'coat_tiny': (224, dict(serial_depths=(1, 1, 1, 1), parallel_depth=1)),   # CoaT
    'convit_tiny': (224, dict(depth=2, local_up_to_layer=1)),             # ConViT gated attention
    'xcit_nano_12_p8_224': (64, dict(depth=2, cls_attn_layers=1)),        # channel attention (XCA), class attention
    'poolformerv2_s12': (64, {}),                                         # MetaFormer Scale.shape, GroupNorm without bias
    'mobilevit_xxs': (64, {}),                                            # MobileViT
    'edgenext_xx_small': (64, {}),                                        # EdgeNeXt XCA
    'test_convnext': (64, {}),                                            # ConvNeXt layer scale gamma
    'rexnet_100': (64, {}),                                               # RexNet (torch-pruning's group search ran for hours; ClosureGraph)
    'tresnet_m': (64, dict(layers=[1, 1, 1, 1])),                         # BlurPool, groups=channels
    'hiera_tiny_224': (224, dict(stages=(1, 1, 2, 1))),                   # a 5-D matmul's expand, read by torch-pruning as a GQA repeat of 0
    'halonet_h1': (256, {}),
    'shvit_s1': (64, {}),
    'visformer_tiny': (224, dict(depth=(1, 1, 1))),
    'gcvit_xxtiny': (224, {}),                                            # keys and values in a layer named `qkv` (2 × heads): not head attention                        # conv qkv: the global plan's group maps back onto it; (1, C, H, W) position embeddings                                                 # torch-pruning cannot trace SHSA (a view it divides by 0): traced as one node, kept whole                                              # 5-D expands read as GQA repeats: root indices lost (None)
}

def build(name, size, kwargs):
    m = timm.create_model(name, pretrained=False, **kwargs).eval()
    return m, torch.randn(1, 3, size, size)

def check(name, context, size, kwargs, attention='head_dim'):
    "Prune `name` at 50%: the output shape is unchanged, the output finite, parameters drop; the fallback warning (or None)"
    torch.manual_seed(0)
    m, x = build(name, size, kwargs)
    with torch.no_grad(): shape = m(x).shape
    p0 = count_params(m)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        Pruner(m, 50, context, example_inputs=x, verbose=False, attention=attention).prune_model()
    with torch.no_grad(): y = m(x)
    assert y.shape == shape
    assert torch.isfinite(y).all()
    assert count_params(m) < p0
    kept = [str(i.message) for i in w if str(i.message).startswith('Kept the channels of')]
    assert len(kept) <= 1   # at most one line names the blocks kept whole
    return m, (kept[0] if kept else None)

# measured on this commit: these still fail (the model is restored unchanged and the error names the layer)
XFAIL = {}   # (name, context): cause; none left (DPN local passes since the concat sizes are recorded while tracing)
# the blocks a prune keeps whole (the first prune broke them), as the warning names them: (context, part of the line)
FALLBACK = {
    ('res2next50', 'local'): 'layer1.1.conv1',                  # the Res2Net split's producer
    ('ghostnet_050', 'local'): 'shortcut',                      # over-pruned through the ghost concat
    ('ghostnet_050', 'global'): 'blocks.7.0.shortcut.2',        # the plan's group maps back onto it through the ghost concat
    ('convit_tiny', 'global'): 'blocks.0.attn',                 # width tied to the per-head size
    ('visformer_tiny', 'global'): 'stage3.0.attn.qkv, stage2.0.attn.qkv',   # the plan's group for qkv maps back onto all its channels
}
ATTENTION = ['test_vit', 'deit_tiny_patch16_224', 'swin_tiny_patch4_window7_224', 'beit_base_patch16_224', 'pit_ti_224',
             'coat_tiny', 'xcit_nano_12_p8_224', 'poolformerv2_s12', 'mobilevit_xxs']
CASES = [(n, c) for n in FAST for c in ('local', 'global')]
# the default suite: the attention families in both contexts, RexNet (whose group search never ended before ClosureGraph)
# in both, and one context of each split/concat class (CSP and
# TResNet have their own tests below); the rest (LeViT, DPN, the other contexts: all pass on this commit) is slow
DEFAULT = [(n, c) for n, c in CASES if n in ATTENTION] + [('ghostnet_050', 'local'), ('res2next50', 'local'), ('convit_tiny', 'local'), ('convit_tiny', 'global'),
                                                           ('rexnet_100', 'local'), ('rexnet_100', 'global'),
                                                           ('hiera_tiny_224', 'local'), ('hiera_tiny_224', 'global'),
                                                           ('shvit_s1', 'local'), ('shvit_s1', 'global'), ('visformer_tiny', 'local'), ('visformer_tiny', 'global'),
                                                           ('gcvit_xxtiny', 'local')]

@pytest.mark.parametrize('name,context', DEFAULT)
def test_timm_fast(name, context):
    m, line = check(name, context, *FAST[name])
    if (name, context) in FALLBACK: assert FALLBACK[(name, context)] in line, line

def test_dpn_dual_path_is_pruned():
    "DPN local: torch-pruning inferred its concat sizes through slices ([512, 1792, 64] for [512, 256, 64]) and nothing was pruned; recorded while tracing, 61% of the parameters stay"
    m, line = check('dpn48b', 'local', *FAST['dpn48b'])
    p0 = count_params(build('dpn48b', *FAST['dpn48b'])[0])
    assert count_params(m) < 0.7 * p0, count_params(m) / p0
    assert line is None or line.count(',') <= 3, line   # at most a few blocks kept whole (53 before the fix)

def test_blurpool_follows_its_channels():
    "TResNet: BlurPool's per-channel filter (groups=channels) loses the channels of the conv feeding it, without a fallback"
    m, line = check('tresnet_m', 'local', *FAST['tresnet_m'])
    assert line is None
    from timm.layers import BlurPool2d
    pools = [b for b in m.modules() if isinstance(b, BlurPool2d)]
    assert pools and all(b.channels == b.filt.shape[0] for b in pools)
    before = [b.channels for b in build('tresnet_m', *FAST['tresnet_m'])[0].modules() if isinstance(b, BlurPool2d)]
    assert sum(b.channels for b in pools) < sum(before)

def test_csp_split_producer_is_pruned_in_halves():
    "CSP: the conv whose output is split in two halves loses as many channels in each (it was kept whole before the split pieces were mapped to their own consumers)"
    m, line = check('cs3darknet_focus_s', 'local', *FAST['cs3darknet_focus_s'])
    s, ref = m.stages[0], timm.create_model('cs3darknet_focus_s').stages[0]
    assert line is None, line   # no block kept whole
    assert (s.conv_exp.conv.out_channels, ref.conv_exp.conv.out_channels) == (32, 64)
    assert s.conv_exp.conv.out_channels == s.conv_exp.conv.weight.shape[0] == 2 * s.blocks[0].conv1.conv.in_channels
    assert s.blocks[0].conv1.conv.out_channels < ref.blocks[0].conv1.conv.out_channels

@pytest.mark.slow
@pytest.mark.parametrize('name,context', [pytest.param(n, c, marks=pytest.mark.xfail(strict=True, reason=XFAIL[(n, c)]))
                                          if (n, c) in XFAIL else (n, c) for n, c in CASES if (n, c) not in DEFAULT])
def test_timm_rest(name, context):
    "Families left out of the default suite for time (LeViT, DPN, CSP, TResNet, the other context of GhostNet and Res2Net, ConvNeXt), and EdgeNeXt"
    m, line = check(name, context, *FAST[name])
    if (name, context) in FALLBACK: assert FALLBACK[(name, context)] in line, line

def test_heads_modes():
    "'heads' removes whole heads (head_dim kept); 'head_dim' keeps the heads, each narrower"
    m, _ = check('test_vit', 'local', *FAST['test_vit'], attention='heads')
    a = m.blocks[0].attn
    assert (a.num_heads, a.head_dim) == (1, 32)
    m, _ = check('test_vit', 'local', *FAST['test_vit'], attention='head_dim')
    a = m.blocks[0].attn
    assert (a.num_heads, a.head_dim) == (2, 16)

def test_bad_attention_argument():
    m, x = build('test_vit', *FAST['test_vit'])
    with pytest.raises(ValueError, match='attention'): Pruner(m, 50, example_inputs=x, attention='rows')

FAMILIES = Path(__file__).resolve().parents[1]/'bench'/'timm_families.json'

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('FULL_ZOO'), reason='full timm zoo: set FULL_ZOO=1 (or run bench/timm_zoo.py)')
@pytest.mark.parametrize('context', ['local', 'global'])
@pytest.mark.parametrize('name', sorted(set(json.loads(FAMILIES.read_text()).values())) if FAMILIES.exists() else [])
def test_timm_full(name, context):
    m = timm.create_model(name, pretrained=False)
    check(name, context, m.pretrained_cfg['input_size'][-1], {})

def test_untraceable_blocks_are_kept_whole():
    "SHViT: torch-pruning's trace fails inside SHSA; the SHSA blocks are traced as single nodes and kept, the rest is pruned"
    import timm.models.shvit as shvit
    m, x = build('shvit_s1', *FAST['shvit_s1'])
    p0 = count_params(m)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        Pruner(m, 50, 'local', example_inputs=x, verbose=False).prune_model()
    lines = [str(i.message) for i in w if 'traced as single nodes' in str(i.message)]
    assert len(lines) == 1 and lines[0].startswith('Kept 9 SHSA blocks whole'), lines
    shsa = [b for b in m.modules() if isinstance(b, shvit.SHSA)]
    fresh = [b for b in build('shvit_s1', *FAST['shvit_s1'])[0].modules() if isinstance(b, shvit.SHSA)]
    assert [[p.shape for p in b.parameters()] for b in shsa] == [[p.shape for p in b.parameters()] for b in fresh]   # kept whole
    assert count_params(m) < 0.7 * p0
