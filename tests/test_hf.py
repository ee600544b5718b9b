"""Hugging Face transformers (BERT, ViT, GPT-2, Llama with grouped-query attention) pruned at 30% with `tp.hf.HFAdapter`.

Each model is built from a tiny config at random init: after the prune it runs with its original output shape and
fewer parameters, and `save_pretrained` → `from_pretrained` gives back the same logits. Until the tp registry passes
the adapter's outputs to torch-pruning, the adapter's outputs go in as keyword arguments (see nbs/15_tp.hf.ipynb)."""
import copy, os, subprocess, sys, tempfile, warnings
import pytest, torch
import torch.nn as nn

T = pytest.importorskip('transformers', reason="transformers is an optional extra: pip install -e '.[hf]'")
import torch_pruning as tp
from fasterai_prune.tp.hf import HFAdapter, hf_attentions, hf_example_inputs, conv1d_type
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.tp.planner import DependencyPruner
from fasterai_prune.tp.importance import CriteriaImportance
from fasterai_prune.core.criteria import large_final
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

def with_pruner(m, ad):
    "`Pruner`, heads narrowed (torch-pruning's `head_dim` mode, given as `out_channel_groups`)"
    Pruner(m, 30, example_inputs=hf_example_inputs(m), verbose=False, check_first_prune=False, out_channel_groups=dict(ad.heads(m)),
           customized_pruners=ad.pruners(m), unwrapped_parameters=ad.unwrapped(m), ignored_layers=ad.fixed(m),
           forward_fn=ad.forward_fn(m)).prune_model()

def with_dependency_pruner(m, ad):
    "`DependencyPruner` as `Pruner` builds it, with `num_heads`: whole heads removed"
    out = m.get_output_embeddings() if m.get_output_embeddings() is not None else m.classifier
    DependencyPruner(m, hf_example_inputs(m), CriteriaImportance(large_final), pruning_ratio=0.3,
                     ignored_layers=[out, *ad.fixed(m)], num_heads=ad.heads(m), prune_num_heads=True,
                     prune_head_dims=False, head_pruning_ratio=0.3, customized_pruners=ad.pruners(m),
                     unwrapped_parameters=ad.unwrapped(m), forward_fn=ad.forward_fn(m)).prune_to(1.)

def with_torch_pruning(m, ad):
    "torch-pruning's `BasePruner` with `Conv1D` among the roots (GPT-2: `Pruner` does not know `Conv1D` yet)"
    imp = CriteriaImportance(large_final)
    out = m.score if hasattr(m, 'score') else m.lm_head
    pr = tp.pruner.BasePruner(m, hf_example_inputs(m), imp, pruning_ratio=0.3, ignored_layers=[out, *ad.fixed(m)], num_heads=ad.heads(m),
                              root_module_types=[nn.modules.conv._ConvNd, nn.Linear, conv1d_type()], customized_pruners=ad.pruners(m),
                              unwrapped_parameters=ad.unwrapped(m), forward_fn=ad.forward_fn(m))
    imp.graph = pr.DG
    pr.step()

def reload(m):
    with tempfile.TemporaryDirectory() as d:
        m.save_pretrained(d)
        return type(m).from_pretrained(d).eval()

def sizes(m):
    c = m.config
    return {k: getattr(c, k) for k in ('hidden_size', 'intermediate_size', 'n_inner', 'num_attention_heads', 'num_key_value_heads', 'head_dim')
            if getattr(c, k, None)}

CASES = [   # kind, how, output shape, config after the prune
    ('bert', with_pruner, (1, 3), {'hidden_size': 44, 'intermediate_size': 89, 'num_attention_heads': 4}),
    ('vit', with_pruner, (1, 5), {'hidden_size': 44, 'intermediate_size': 89, 'num_attention_heads': 4, 'head_dim': 11}),
    ('vit', with_dependency_pruner, (1, 5), {'hidden_size': 44, 'intermediate_size': 89, 'num_attention_heads': 2, 'head_dim': 16}),
    ('gpt2-cls', with_torch_pruning, (1, 3), {'hidden_size': 44, 'n_inner': 179, 'num_attention_heads': 4}),
    ('gpt2', with_torch_pruning, (1, 8, 100), {'hidden_size': 64, 'n_inner': 179, 'num_attention_heads': 4}),   # tied wte: hidden kept
    ('llama', with_dependency_pruner, (1, 8, 100), {'hidden_size': 44, 'intermediate_size': 89, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 8}),
]

@pytest.mark.parametrize('kind,how,shape,expected', CASES, ids=[f'{c[0]}-{c[1].__name__}' for c in CASES])
def test_prune_30_and_reload(kind, how, shape, expected):
    m, ad = tiny(kind), HFAdapter()
    x = hf_example_inputs(m)
    p0 = count_params(m)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        how(m, ad)
        ad.after_prune(m)
    with torch.no_grad(): y = m(**x).logits
    assert tuple(y.shape) == shape
    assert count_params(m) < p0, (count_params(m), p0)
    assert sizes(m) == expected
    with torch.no_grad(): y2 = reload(m)(**x).logits
    torch.testing.assert_close(y2, y, atol=1e-6, rtol=0)

def test_gqa_heads_removed_evenly_per_kv_group():
    "Each KV head still serves the same number of query heads, and the KV projections are whole"
    m, ad = tiny('llama'), HFAdapter()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with_dependency_pruner(m, ad)
        ad.after_prune(m)
    att = m.model.layers[1].self_attn
    assert (att.q_proj.out_features, att.k_proj.out_features, att.v_proj.out_features, att.o_proj.in_features) == (32, 16, 16, 32)
    assert (att.num_key_value_groups, att.head_dim) == (2, 8)

def test_gqa_removed_heads_are_the_ones_zeroed():
    "The original model, with the removed heads' output columns zeroed, gives the pruned model's logits exactly"
    m, ad = tiny('llama'), HFAdapter()
    orig, x = copy.deepcopy(m), hf_example_inputs(m)
    keep_width = [m.model.embed_tokens, *[l.mlp.gate_proj for l in m.model.layers], *[l.mlp.up_proj for l in m.model.layers]]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        moved = DependencyPruner(m, x, CriteriaImportance(large_final), pruning_ratio=0.3, ignored_layers=[m.lm_head, *keep_width],
                                 num_heads=ad.heads(m), prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=0.3,
                                 unwrapped_parameters=ad.unwrapped(m), forward_fn=ad.forward_fn(m)).prune_to(1.)
        ad.after_prune(m)
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
