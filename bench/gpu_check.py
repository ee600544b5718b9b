"""CUDA check of the pruning core without fastai: Pruner + remap_optimizer on a GPU resnet18, Adam state carried, AMP fp16 steps.

Run: python bench/gpu_check.py   (prints what it checked; exits 1 on a failed check, 0 with a note when there is no GPU)
"""
import sys, time, torch, torch.nn as nn
from torchvision.models import resnet18
from fasterai_prune.prune.pruner import Pruner

def main():
    if not torch.cuda.is_available(): print("no CUDA device: nothing checked"); return 0
    dev = 'cuda'
    torch.manual_seed(0)
    # synthetic but learnable: the class is set by the mean colour of the image (no data set needed on the GPU machine)
    x = torch.randn(4096, 3, 32, 32, device=dev); y = (x.mean((2, 3)) @ torch.randn(3, 10, device=dev)).argmax(1)
    model = resnet18(weights=None, num_classes=10).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    scaler = torch.amp.GradScaler('cuda')
    pruner = Pruner(model, 50, 'global', verbose=False, example_inputs=x[:1])
    def train(n):
        for i in range(n):
            idx = torch.randint(0, len(x), (128,), device=dev)
            with torch.autocast('cuda', dtype=torch.float16): loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        return loss.item()
    train(50)
    t = time.perf_counter()
    for p in (0.25, 0.5, 0.75, 1.0): pruner.prune_to(p, opt); torch.cuda.synchronize()
    prune_s = time.perf_counter() - t
    live = {id(p) for p in model.parameters()}
    checks = {
        'optimizer holds exactly the live parameters': {id(p) for g in opt.param_groups for p in g['params']} == live,
        'every parameter on cuda, float32': all(p.is_cuda and p.dtype == torch.float32 for p in model.parameters()),
        'Adam step counts carried (50)': all(int(opt.state[p]['step']) == 50 for p in model.parameters()),
    }
    def full_loss():
        model.eval()
        with torch.no_grad(): l = nn.functional.cross_entropy(model(x), y).item()
        model.train(); return l
    loss_pruned = full_loss()
    train(200)
    loss = full_loss()
    model.eval()
    with torch.no_grad(): acc = (model(x).argmax(1) == y).float().mean().item()
    checks[f'keeps training after pruning (loss {loss_pruned:.3f} -> {loss:.3f})'] = loss < loss_pruned
    print(f"{torch.cuda.get_device_name()}: 4 prunes to 50% global in {prune_s:.3f}s; "
          f"params {sum(p.numel() for p in model.parameters()):,}; loss {loss:.3f}; train accuracy {acc:.3f}")
    for k, v in checks.items(): print(f"{'ok  ' if v else 'FAIL'} {k}")
    return 0 if all(checks.values()) else 1

if __name__ == '__main__': sys.exit(main())
