"""A BERT sentence encoder read straight from its directory, for the packed engine alone.

The server's encoder process runs only the packed engine (:mod:`models.packed`), which needs the
weights, the tokenizer, the prompts and the longest input. Loading them through
sentence-transformers imports it and transformers, which the engine never calls: in that process
they held about 0.2 GB (measured in-process, anonymous memory: transformers 126 MB,
sentence-transformers 70 MB, against torch's 143 MB). Here the same files are read with
``safetensors`` (the weights stay mapped from the file: the word table's rows are read only as
tokens need them) and ``tokenizers`` (the same tokenizer file, so the same token ids), and the
packed engine is handed the same tensors under the names it reads.

A directory that is not a plain BERT encoder with mean pooling and normalisation (another
architecture, pooling or module list, missing files) gives None: the caller loads it with
sentence-transformers as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)

# the modules a sentence-transformers directory must list, in order (the end of each "type")
_MODULES = ("Transformer", "Pooling", "Normalize")


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}


def _plain_bert(folder: Path) -> bool:
    """Whether ``folder`` holds a BERT encoder (GELU, absolute positions) with mean pooling, normalised."""
    modules = (
        json.loads((folder / "modules.json").read_text(encoding="utf-8")) if (folder / "modules.json").is_file() else []
    )
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if tuple(types) != _MODULES or modules[0].get("path", "") not in ("", "."):
        return False
    pooling = _json(folder / str(modules[1].get("path", "")) / "config.json")
    mode = pooling.get("pooling_mode", "mean" if pooling.get("pooling_mode_mean_tokens") else "")
    others = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens" and v]
    if mode != "mean" or others or pooling.get("include_prompt", True) is False:
        return False
    if _json(folder / "sentence_bert_config.json").get("do_lower_case"):  # sentence-transformers lowercases first
        return False
    cfg = _json(folder / "config.json")
    return (
        cfg.get("model_type") == "bert"
        and cfg.get("hidden_act") == "gelu"
        and cfg.get("position_embedding_type", "absolute") == "absolute"
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
    )


class LeanTokenizer:
    """The calls the encoder makes of a Hugging Face fast tokenizer, on the ``tokenizers`` library alone."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_truncation()  # the encoder windows long texts itself
        self._tok.no_padding()
        names = _json(folder / "tokenizer_config.json")
        self.cls_token_id = self._id(names, "cls_token", "[CLS]")
        self.sep_token_id = self._id(names, "sep_token", "[SEP]")
        self.pad_token_id = self._id(names, "pad_token", "[PAD]")
        self.model_max_length = int(names.get("model_max_length", 512))

    def _id(self, names: dict[str, Any], key: str, default: str) -> int:
        token = names.get(key, default)
        token = token.get("content", default) if isinstance(token, dict) else token
        found = self._tok.token_to_id(str(token))
        if found is None:
            raise ValueError(f"the tokenizer has no {key} {token!r}")
        return int(found)

    def __call__(
        self, texts: str | list[str], add_special_tokens: bool = True, truncation: bool = False
    ) -> dict[str, Any]:
        if truncation:
            raise ValueError("the lean tokenizer does not truncate: the encoder windows long texts")
        if isinstance(texts, str):
            return {"input_ids": self._tok.encode(texts, add_special_tokens=add_special_tokens).ids}
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encoded]}


class LeanModel:
    """What :class:`~models.encoder.Encoder` reads of a sentence-transformers model, for the packed engine.

    ``model[0].auto_model`` is a tree of the weights under the names a ``transformers`` BertModel
    gives them (what :class:`~models.packed.PackedBert` reads); nothing here runs the model.
    """

    checked_for_packed = True  # models.encoder.packed_unsupported: checked when loaded

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        cfg = _json(folder / "config.json")
        self.tokenizer = LeanTokenizer(folder)
        st = _json(folder / "sentence_bert_config.json")
        limit = min(self.tokenizer.model_max_length, int(cfg.get("max_position_embeddings", 512)))
        self.max_seq_length = int(st.get("max_seq_length") or limit)
        self.prompts: dict[str, str] = dict(_json(folder / "config_sentence_transformers.json").get("prompts", {}))
        self._dim = int(cfg["hidden_size"])
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            tensors = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118 - not a dict
        self.auto_model = _bert_tree(tensors, cfg)

    def get_sentence_embedding_dimension(self) -> int:
        return self._dim

    def __getitem__(self, index: int) -> Any:
        if index != 0:
            raise IndexError(index)
        return self


def _bert_tree(tensors: dict[str, Any], cfg: dict[str, Any]) -> SimpleNamespace:
    """The weights as attributes named as in a ``transformers`` BertModel (an optional "bert." prefix dropped)."""
    word = next((k for k in tensors if k.endswith("embeddings.word_embeddings.weight")), None)
    if word is None:
        raise ValueError("model.safetensors has no embeddings.word_embeddings.weight")
    prefix = word[: -len("embeddings.word_embeddings.weight")]

    def tensor(name: str) -> Any:
        try:
            return tensors[prefix + name]
        except KeyError:
            raise ValueError(f"model.safetensors has no {prefix + name}") from None

    def part(name: str) -> SimpleNamespace:
        return SimpleNamespace(weight=tensor(f"{name}.weight"), bias=tensor(f"{name}.bias"))

    layers = []
    for i in range(int(cfg["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        layers.append(
            SimpleNamespace(
                attention=SimpleNamespace(
                    self=SimpleNamespace(
                        query=part(f"{p}.attention.self.query"),
                        key=part(f"{p}.attention.self.key"),
                        value=part(f"{p}.attention.self.value"),
                    ),
                    output=SimpleNamespace(
                        dense=part(f"{p}.attention.output.dense"), LayerNorm=part(f"{p}.attention.output.LayerNorm")
                    ),
                ),
                intermediate=SimpleNamespace(dense=part(f"{p}.intermediate.dense")),
                output=SimpleNamespace(dense=part(f"{p}.output.dense"), LayerNorm=part(f"{p}.output.LayerNorm")),
            )
        )
    embeddings = SimpleNamespace(
        word_embeddings=SimpleNamespace(weight=tensor("embeddings.word_embeddings.weight")),
        position_embeddings=SimpleNamespace(weight=tensor("embeddings.position_embeddings.weight")),
        token_type_embeddings=SimpleNamespace(weight=tensor("embeddings.token_type_embeddings.weight")),
        LayerNorm=part("embeddings.LayerNorm"),
    )
    config = SimpleNamespace(
        model_type=cfg["model_type"],
        hidden_act=cfg["hidden_act"],
        num_attention_heads=int(cfg["num_attention_heads"]),
        hidden_size=int(cfg["hidden_size"]),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
        position_embedding_type=cfg.get("position_embedding_type", "absolute"),
    )
    return SimpleNamespace(config=config, embeddings=embeddings, encoder=SimpleNamespace(layer=layers))


def release_file_pages(path: Path) -> int:
    """Hand back this process's resident pages of a file it maps (Linux; 0 elsewhere); bytes released.

    After the packed engine has copied the layers in bfloat16, the float32 layers it read stay
    resident in the file's mapping, unused (about 80 MB for the default model). The pages are
    clean file pages: a later read (a word-table row) reads them again from the file.
    """
    import ctypes
    import mmap

    smaps = Path("/proc/self/smaps")
    madvise = getattr(ctypes.CDLL(None), "madvise", None) if smaps.exists() else None
    if madvise is None:
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    target = str(path.resolve())
    spans: list[tuple[int, int, int]] = []  # (start, end, kB written to: copied from the file)
    for line in smaps.read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            spans.append((start, end, -1) if fields[-1] == target else (0, 0, 0))
        elif fields and fields[0] == "Anonymous:" and spans and spans[-1][2] == -1:
            spans[-1] = (spans[-1][0], spans[-1][1], int(fields[1]))
    released = 0
    for start, end, written in spans:
        # only a mapping nothing has written to: dropping a written page would lose the write
        if end > start and written == 0 and madvise(start, end - start, mmap.MADV_DONTNEED) == 0:
            released += end - start
    return released


def load_lean_model(location: str | Path) -> LeanModel | None:
    """The model at ``location`` for the packed engine without sentence-transformers, or None when
    it is not a plain BERT mean-pooling directory (load it with sentence-transformers then)."""
    folder = Path(location)
    try:
        return LeanModel(folder) if folder.is_dir() and _plain_bert(folder) else None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a file not as expected: the usual load
        log.warning("%s: not read as a lean model (%s); loading it with sentence-transformers", folder, exc)
        return None
