"""``torch._dynamo`` stays unimported in an eager trial, and is all there as soon as something compiles.

Each case runs in a fresh interpreter: whether ``torch._dynamo`` was imported is a property of the process.
"""

import json
import subprocess
import sys
import textwrap

import pytest

TRAIN = """
import json, sys
import torch
from hpsearch.trainables import lazy_dynamo
installed = lazy_dynamo.install()
from hpsearch.trainables.data import Splits
from hpsearch.trainables.loop import train_model

g = torch.Generator().manual_seed(0)
x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
data = Splits(x[:64], y[:64], x[64:], y[64:], x[64:], y[64:], 3)
states = []
for optimizer in ["sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam"]:
    config = {"hidden_layers": 1, "units": 8, "optimizer": optimizer, "grad_clip": "norm",
              "grad_clip.threshold": 1.0, "batch_size": 16}
    train_model("mlp", config, data, 2, lambda m, s=None: states.append(s), checkpoint_every=1)
model = torch.nn.Linear(6, 3)
opt = torch.optim.Adam(model.parameters())
opt.load_state_dict(opt.state_dict())
scaler = torch.amp.GradScaler("cpu")
scaler.scale(model(x).sum()).backward()
scaler.step(opt)
scaler.update()
print(json.dumps({"installed": installed, "real_loaded": lazy_dynamo.loaded() is not None,
                  "checkpoints": sum(s is not None for s in states)}))
"""


def run(code: str, **env: str) -> dict:
    import os

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_eager_training_never_imports_torch_dynamo():
    found = run(TRAIN)
    assert found == {"installed": True, "real_loaded": False, "checkpoints": 12}


def test_without_the_stand_in_the_same_training_imports_torch_dynamo():
    """What the stand-in saves: every optimizer imports Dynamo (the test above would fail without it)."""
    assert run(TRAIN, HPSEARCH_LAZY_DYNAMO="0") == {"installed": False, "real_loaded": True, "checkpoints": 12}


@pytest.mark.parametrize("first", ["torch.compile", "from torch._dynamo.utils import counters"])
def test_whatever_asks_for_dynamo_gets_the_real_one_and_optimizers_are_disabled_for_it(first):
    found = run(
        f"""
        import json, sys
        import torch
        from torch.optim import Optimizer
        from hpsearch.trainables import lazy_dynamo
        assert lazy_dynamo.install()
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.ones(3, 4)).sum().backward()
        opt.step()
        opt.zero_grad()  # torch's lazy wrapper now holds the stand-in's dispatcher
        dispatch = getattr(Optimizer.zero_grad.__wrapped__, "__dynamo_disable")
        before = len(dispatch.hpsearch_target)
        if {first!r} == "torch.compile":
            compiled = torch.compile(model, backend="eager")
            compiled(torch.ones(3, 4))
        else:
            from torch._dynamo.utils import counters
        opt.zero_grad()
        real = sys.modules["torch._dynamo"]
        print(json.dumps({{
            "before": before,
            "after": len(dispatch.hpsearch_target),
            "target_disabled": bool(getattr(dispatch.hpsearch_target[0], "_torchdynamo_disable", False)),
            "real": lazy_dynamo.loaded() is real and torch._dynamo is real,
            "graph_break_is_real": torch._dynamo.graph_break is not lazy_dynamo.graph_break,
        }}))
        """
    )
    assert found == {"before": 0, "after": 1, "target_disabled": True, "real": True, "graph_break_is_real": True}


def test_compile_true_still_compiles_after_eager_trials_in_the_same_process():
    """A reused actor: eager trials first (stand-in in place), then a ``compile: true`` trial."""
    found = run(
        """
        import json
        import torch
        from hpsearch.trainables import lazy_dynamo
        lazy_dynamo.install()
        from hpsearch.trainables.data import Splits
        from hpsearch.trainables.loop import train_model
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 5, generator=g), torch.randint(0, 2, (64,), generator=g)
        data = Splits(x[:48], y[:48], x[48:], y[48:], x[48:], y[48:], 2)
        scores = {}
        for compile in (False, True):
            metrics = []
            train_model("mlp", {"hidden_layers": 1, "units": 8, "compile": compile, "batch_size": 16}, data, 2,
                        lambda m, s=None: metrics.append(m), seed=3)
            scores[str(compile)] = metrics[-1]["val_loss"]
        from torch._dynamo.utils import counters
        print(json.dumps({"real": lazy_dynamo.loaded() is not None, "frames": sum(counters["frames"].values()),
                          "same": abs(scores["True"] - scores["False"]) < 1e-4}))
        """
    )
    assert found["real"] and found["frames"] > 0 and found["same"]
