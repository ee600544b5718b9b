"""Hugging Face transformers (BERT, ViT, GPT-2, Llama with grouped-query attention) pruned at 30% through the public `Pruner`.

Each model is built from a tiny config at random init (nothing is downloaded): `Pruner(model, 30)` and
`Pruner(model, 30, attention='heads')` prune it with nothing else from the user; it runs with its original output shape and
fewer parameters, its config describes the new sizes, and `save_pretrained` → `from_pretrained` gives back the same logits
with an empty load report. The first-prune check stays on: attention layers round to whole heads, which it allows."""
import copy, io, logging, os, subprocess, sys, tempfile, warnings
import pytest, torch
import torch.nn as nn

T = pytest.importorskip('transformers', reason="transformers is an optional extra: pip install -e '.[hf]'")
import torch_pruning as tp
from transformers.utils import logging as hf_logging
from fasterai_prune.tp.hf import HFAdapter, hf_example_inputs
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.prune.io import RECORD_KEY, pruning_record_of
from fasterai_prune.core.measure import count_params

def tiny(kind):
    "A small random-init model of `kind`, in eval mode"
    torch.manual_seed(0)
    if kind == 'bert': m = T.BertForSequenceClassification(T.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                                        intermediate_size=128, max_position_embeddings=32, num_labels=3))
    elif kind == 'vit': m = T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                                                     num_attention_heads=4, intermediate_size=128, num_labels=5))
    elif kind == 'llama': m = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                               num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=32))
    else:
        c = T.GPT2Config(vocab_size=100, n_positions=32, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0, pad_token_id=0, num_labels=3)
        m = T.GPT2LMHeadModel(c) if kind == 'gpt2' else T.GPT2ForSequenceClassification(c)
    return m.eval()

def reload(m):
    "`m` through `save_pretrained` / `from_pretrained`, and what the load report said"
    hf_logging.set_verbosity_warning(); hf_logging.enable_propagation()
    log = io.StringIO(); h = logging.StreamHandler(log); logging.getLogger('transformers').addHandler(h)
    try:
        with tempfile.TemporaryDirectory() as d:
            m.save_pretrained(d)
            return type(m).from_pretrained(d).eval(), log.getvalue()
    finally: logging.getLogger('transformers').removeHandler(h)

def sizes(m):
    c = m.config
    return {k: getattr(c, k) for k in ('hidden_size', 'intermediate_size', 'n_inner', 'num_attention_heads', 'num_key_value_heads', 'head_dim')
            if getattr(c, k, None)}


CASES = [   # kind, attention, output shape, parameters after, config after the prune
    ('bert', 'head_dim', (1, 3), 40_221, {'hidden_size': 44, 'intermediate_size': 89, 'num_attention_heads': 4}),
    ('bert', 'heads', (1, 3), 69_941, {'hidden_size': 64, 'intermediate_size': 89, 'num_attention_heads': 4}),   # head size derived: kept
    ('vit', 'head_dim', (1, 5), 41_719, {'hidden_size': 44, 'intermediate_size': 89, 'num_attention_heads': 4, 'head_dim': 11}),
    ('vit', 'heads', (1, 5), 37_423, {'hidden_size': 44, 'intermediate_size': 89, 'num_attention_heads': 2, 'head_dim': 16}),
    ('gpt2-cls', 'head_dim', (1, 3), 54_170, {'hidden_size': 44, 'n_inner': 179, 'num_attention_heads': 4}),
    ('gpt2-cls', 'heads', (1, 3), 88_870, {'hidden_size': 64, 'n_inner': 179, 'num_attention_heads': 4}),
    ('gpt2', 'head_dim', (1, 8, 100), 54_038, {'hidden_size': 44, 'n_inner': 179, 'num_attention_heads': 4}),   # tied wte / lm_head
    ('gpt2', 'heads', (1, 8, 100), 88_678, {'hidden_size': 64, 'n_inner': 179, 'num_attention_heads': 4}),
    # Llama's config wants hidden_size % num_attention_heads == 0: the adapter asks for round_to=8 (64 → 40, MLP 128 → 88)
    ('llama', 'head_dim', (1, 8, 100), 42_120, {'hidden_size': 40, 'intermediate_size': 88, 'num_attention_heads': 8, 'num_key_value_heads': 2, 'head_dim': 8}),
    ('llama', 'heads', (1, 8, 100), 37_000, {'hidden_size': 40, 'intermediate_size': 88, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 8}),
]

@pytest.mark.parametrize('kind,attention,shape,params,expected', CASES, ids=[f'{c[0]}-{c[1]}' for c in CASES])
def test_pruner_30_and_reload(kind, attention, shape, params, expected):
    m = tiny(kind)
    x = hf_example_inputs(m)
    p0 = count_params(m)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Pruner(m, 30, attention=attention, verbose=False).prune_model()
    with torch.no_grad(): y = m(**x).logits
    assert tuple(y.shape) == shape
    assert (p0, count_params(m)) == (p0, params)
    assert sizes(m) == expected
    assert not any(0 in p.shape for p in m.parameters())
    if kind == 'gpt2': assert m.lm_head.weight is m.transformer.wte.weight
    assert RECORD_KEY not in m.state_dict() and pruning_record_of(m) is not None
    back, report = reload(m)
    assert report == ''
    with torch.no_grad(): y2 = back(**x).logits
    torch.testing.assert_close(y2, y, atol=1e-6, rtol=0)

@pytest.mark.parametrize('kind', ['bert', 'vit'])
def test_global_is_refused_and_restored(kind):
    "Global pruning gives every layer its own width, which one config value cannot describe: refused by name, model unchanged"
    m = tiny(kind)
    p0, cfg0 = count_params(m), sizes(m)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(ValueError, match='pruned to different MLP widths'): Pruner(m, 30, 'global', verbose=False).prune_model()
    assert (count_params(m), sizes(m)) == (p0, cfg0)

def test_llama_global():
    "Global pruning of Llama: `round_to=8` (from its config's check) leaves both MLPs 88 wide, so the config describes them"
    m = tiny('llama')
    x = hf_example_inputs(m)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Pruner(m, 30, 'global', attention='heads', verbose=False, check_first_prune=False).prune_model()
    assert (count_params(m), sizes(m)) == (37_000, {'hidden_size': 40, 'intermediate_size': 88, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 8})
    back, report = reload(m)
    with torch.no_grad(): torch.testing.assert_close(back(**x).logits, m(**x).logits, atol=1e-6, rtol=0)
    assert report == ''

def test_gpt2_tied_weight_and_optimizer():
    "The tied `lm_head`/`wte` weight is one parameter after the prune, and the optimizer holds it once with its state sliced"
    m = tiny('gpt2')
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = hf_example_inputs(m)
    m(**x).logits.square().mean().backward(); opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Pruner(m, 30, verbose=False, check_first_prune=False, opt=opt).prune_model()
    assert m.lm_head.weight is m.transformer.wte.weight
    assert [id(p) for p in opt.param_groups[0]['params']] == [id(p) for p in m.parameters()]
    assert opt.state[m.transformer.wte.weight]['exp_avg'].shape == (100, 44)
    opt.zero_grad(); m(**x).logits.square().mean().backward(); opt.step()   # trains on

def test_gqa_heads_removed_evenly_per_kv_group():
    "Each KV head still serves the same number of query heads, and the KV projections are whole"
    m = tiny('llama')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        Pruner(m, 30, attention='heads', verbose=False, check_first_prune=False).prune_model()
    att = m.model.layers[1].self_attn
    assert (att.q_proj.out_features, att.k_proj.out_features, att.v_proj.out_features, att.o_proj.in_features) == (32, 16, 16, 32)
    assert (att.num_key_value_groups, att.head_dim) == (2, 8)

def test_gqa_removed_heads_are_the_ones_zeroed():
    "The original model, with the removed heads' output columns zeroed, gives the pruned model's logits exactly"
    m = tiny('llama')
    orig, x = copy.deepcopy(m), hf_example_inputs(m)
    keep_width = [m.model.embed_tokens, *[l.mlp.gate_proj for l in m.model.layers], *[l.mlp.up_proj for l in m.model.layers]]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        moved = Pruner(m, 30, attention='heads', ignored_layers=keep_width, verbose=False, check_first_prune=False).prune_model()
    for lo, lp in zip(orig.model.layers, m.model.layers):
        mv = next(mv for mv in moved if mv.module is lp.self_attn.q_proj and mv.name == 'weight')
        kept = sorted(set((mv.kept[:, 0] // mv.old_shape[1] // 8).tolist()))
        assert [sum(h // 4 == g for h in kept) for g in range(2)] == [2, 2], kept
        with torch.no_grad():
            for h in set(range(8)) - set(kept): lo.self_attn.o_proj.weight[:, h * 8:(h + 1) * 8] = 0
    with torch.no_grad(): torch.testing.assert_close(m(**x).logits, orig(**x).logits, atol=0, rtol=0)

def test_uneven_layers_are_refused_by_after_prune():
    "A config value cannot describe layers pruned differently: the error says so"
    m, ad = tiny('bert'), HFAdapter()
    tp.prune_linear_out_channels(m.bert.encoder.layer[0].intermediate.dense, [0, 1])
    tp.prune_linear_in_channels(m.bert.encoder.layer[0].output.dense, [0, 1])
    with pytest.raises(ValueError, match=r'different MLP widths \[126, 128\]'): ad.after_prune(m)
    assert m.config.intermediate_size == 128

def test_imports_without_transformers():
    "The module imports, and the adapter declines every model, when transformers cannot be imported"
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import torch.nn as nn\nfrom fasterai_prune.tp.hf import HFAdapter, conv1d_type\n"
            "print(HFAdapter().applies(nn.Linear(2, 2)), conv1d_type())")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=os.environ, timeout=120)
    assert res.stdout.strip() == 'False None', res.stderr
