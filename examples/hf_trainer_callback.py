"""Hugging Face Trainer: add ``StreamtopoTrainerCallback``; no hub access (a locally built
model: a ``PreTrainedModel`` subclass with a tiny config).

    python examples/hf_trainer_callback.py [--steps 200]
"""

import argparse
import tempfile

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments

from streamtopo import load_digits
from streamtopo.integrations.hf import StreamtopoTrainerCallback


class TinyConfig(PretrainedConfig):
    model_type = "streamtopo-tiny"

    def __init__(self, width: int = 64, depth: int = 5, **kw) -> None:
        super().__init__(**kw)
        self.width, self.depth = width, depth


class TinyClassifier(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        w = config.width
        self.layers = nn.ModuleList(
            [nn.Linear(64, w)] + [nn.Linear(w, w) for _ in range(config.depth - 1)]
        )
        self.head = nn.Linear(w, 10)
        self.post_init()

    def forward(self, pixels, labels=None):
        h = pixels
        for layer in self.layers:
            h = torch.relu(layer(h))
        logits = self.head(h)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


class Digits(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.X, self.y = load_digits()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": torch.from_numpy(self.X[i]), "labels": int(self.y[i])}


def main(steps: int = 200) -> None:
    torch.manual_seed(0)
    cb = StreamtopoTrainerCallback(stop=True, every=1)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=64,
            learning_rate=3e-3,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=TinyClassifier(TinyConfig()), args=args, train_dataset=Digits(), callbacks=[cb]
        )
        trainer.train()
    s = cb.status_
    print(f"{trainer.state.global_step} steps; layers {list(cb.monitor.layer_names)}")
    print(f"last status: {s.state}, layer h0 {s.layer.h0:.3f}, loss {s.loss.loss:.3f} {s.reason}")
    print(cb.monitor.summary()["layer"])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    main(p.parse_args().steps)
