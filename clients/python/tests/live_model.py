"""The model, data and evaluation of the live-server script (live_server.py), importable by ``python -m emalab sweep``
(``--model tests.live_model:build_model --evaluate tests.live_model:evaluate``) as a user's training module would be."""
import torch

torch.manual_seed(0)
# A 3-class problem of overlapping Gaussian clusters: a small network reaches about 85 % in a few hundred steps, and the
# tracks and reconstructions differ by a point or two (separated clusters gave every one 100 %: a flat σ_rel plot).
CENTERS = torch.randn(3, 10) * 0.6


def batch(n, generator):
    labels = torch.randint(0, 3, (n,), generator=generator)
    return CENTERS[labels] + torch.randn(n, 10, generator=generator), labels


TEST_X, TEST_Y = batch(600, torch.Generator().manual_seed(99))


def build_model():
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 3))


def evaluate(model):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(TEST_X)
        result = {"val_acc": (logits.argmax(1) == TEST_Y).float().mean().item(),
                  "val_loss": torch.nn.functional.cross_entropy(logits, TEST_Y).item()}
    model.train(was_training)
    return result
