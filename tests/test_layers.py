"Layering of the package, read from its source: torch-pruning is imported only by `fasterai_prune.tp`, and no module imports from a layer above its own."
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1]/'fasterai_prune'
LAYER = {'core': 0, 'data': 0, 'tp': 1, 'prune': 2, 'sparse': 2, 'recover': 3, 'analyze': 3, 'deploy': 3, 'demo': 4, 'all': 4}

def modules() -> list:
    return sorted(p for p in PKG.rglob('*.py') if p.name not in ('__init__.py', '_modidx.py'))

def package_part(p:Path) -> str:
    "First component of the module's path inside the package ('core', 'tp', ... or the module name at top level)"
    return p.relative_to(PKG).with_suffix('').parts[0]

def imports(p:Path) -> list:
    "Absolute names imported by module `p` (relative imports resolved against its package)"
    tree, pkg = ast.parse(p.read_text()), ['fasterai_prune', *p.relative_to(PKG).parent.parts]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            names.append('.'.join(base + ([node.module] if node.module else [])))
    return names

def test_every_module_is_layered():
    unknown = [str(p) for p in modules() if package_part(p) not in LAYER]
    assert unknown == [], f"modules without a layer in tests/test_layers.py: {unknown}"

def test_torch_pruning_only_in_tp():
    offenders = [str(p.relative_to(PKG)) for p in modules() if package_part(p) != 'tp'
                 and any(n == 'torch_pruning' or n.startswith('torch_pruning.') for n in imports(p))]
    assert offenders == []

@pytest.mark.parametrize('path', modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_from_a_layer_above(path):
    own = LAYER[package_part(path)]
    above = [n for n in imports(path) if n.startswith('fasterai_prune.')
             and LAYER.get(n.split('.')[1], -1) > own]
    assert above == [], f"{path.relative_to(PKG)} (layer {own}) imports {above}"

def test_checker_sees_relative_imports():
    "The checker resolves `from ..core.x import y` inside the package, so a violation written that way is caught"
    assert 'fasterai_prune.core.batchnorm' in imports(PKG/'recover'/'batchnorm.py')
    assert 'fasterai_prune.tp.planner' in imports(PKG/'prune'/'pruner.py')
    assert all(not n.startswith('.') for n in imports(PKG/'prune'/'pruner.py'))
