"""model_config.json of a Stable Audio Open Small checkpoint (or an LMDM fine-tune of it), read
into one frozen dataclass.

Every key the file may hold is known here. A key that changes the architecture or how the
model is run, and that this implementation does not follow, is refused with its full path
before any weights are read. Keys that only steer training (optimizers, demos, gradient
checkpointing, half precision, `requires_grad`) are accepted and have no effect. Of the
`training` section only the LMDM keys that fix the inference-time attention pattern are read.

Pure Python: the ONNX Runtime path reads the same config without importing torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "model_config.json"
ONNX_DIR = "onnx"                  # graphs of `livediff export-sao`, inside the model folder
# T5 encoders the `t5` conditioner may name, by hidden size (the checkpoint does not contain them)
T5_WIDTHS = {"t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
             "google/flan-t5-small": 512, "google/flan-t5-base": 768, "google/flan-t5-large": 1024,
             "google/flan-t5-xl": 2048, "google/flan-t5-xxl": 4096}
NUMBER_IDS = ("seconds_total", "seconds_start")          # number conditioners we know how to fill
INPUT_ADD_IDS = ("inpaint_mask", "inpaint_masked_input", "accomp_mask", "accomp_input")
ATTENTION_PATTERNS = ("full", "enc-dec", "block-causal")


class ConfigError(ValueError):
    """A model_config.json this implementation cannot run; the message names the key."""


@dataclass(frozen=True)
class OobleckConfig:
    channels: int
    c_mults: tuple[int, ...]
    strides: tuple[int, ...]
    latent_dim: int          # encoder: 2 x the bottleneck's latent size (mean and scale); decoder: the latent size
    audio_channels: int
    use_snake: bool
    final_tanh: bool = False


@dataclass(frozen=True)
class DitConfig:
    io_channels: int
    embed_dim: int
    depth: int
    num_heads: int
    cond_token_dim: int
    global_cond_dim: int
    qk_norm: str = "none"                             # "ln", "l2" or "none"
    postpend: bool = False                            # LMDM: the global token goes last (RoPE position 0)
    input_add_dims: tuple[tuple[str, int], ...] = ()  # LMDM: per-frame conditioning added after project_in
    project_cond_tokens: bool = True
    project_global_cond: bool = True

    @property
    def dim_heads(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def rotary_dim(self) -> int:
        return max(self.dim_heads // 2, 32)


@dataclass(frozen=True)
class SaoConfig:
    sample_rate: int
    sample_size: int                                   # training length in samples (bounds context + target)
    audio_channels: int
    encoder: OobleckConfig
    decoder: OobleckConfig
    latent_dim: int
    downsampling_ratio: int
    vae_scale: float
    cond_dim: int
    prompt_id: str | None                              # id of the t5 conditioner, if any
    prompt_max_length: int
    prompt_width: int
    prompt_model: str
    number_conditioners: tuple[tuple[str, float, float], ...]   # (id, min_val, max_val)
    cross_attention_ids: tuple[str, ...]
    global_cond_ids: tuple[str, ...]
    input_add_ids: tuple[tuple[str, int], ...]
    objective: str                                     # "rf_denoiser" or "rectified_flow"
    dit: DitConfig
    attention: str = "full"                            # ATTENTION_PATTERNS
    context_frames: int = 208                          # latent frames of context per pass
    chunk_frames: int = 48                             # latent frames generated per pass
    window_chunks: int = 4                             # block-causal: chunks each chunk sees (itself included)
    accomp_cutoff: int | None = None                   # latent frames of the window that hear the accompaniment

    @property
    def max_frames(self) -> int:
        return self.sample_size // self.downsampling_ratio

    @property
    def frame_seconds(self) -> float:
        return self.downsampling_ratio / self.sample_rate

    @property
    def lmdm(self) -> bool:
        """Clean context through input_add (and a KV cache) instead of re-noised context frames."""
        return bool(self.input_add_ids)

    @property
    def accompaniment(self) -> bool:
        return any(name == "accomp_input" for name, _ in self.input_add_ids)


# --- reading -------------------------------------------------------------------------------

def _table(data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(data).__name__}")
    return data


def _check_keys(data: dict, where: str, allowed: set[str], required: set[str] = frozenset()) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]} is not supported by livediff's SAO implementation "
                          f"(supported keys of {where}: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{where}.{missing[0]} is missing")


def _value(data: dict, key: str, where: str, kind: type | tuple, default: Any = ..., choices=None) -> Any:
    if key not in data:
        if default is ...:
            raise ConfigError(f"{where}.{key} is missing")
        return default
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ConfigError(f"{where}.{key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}.{key} = {value!r} is not supported; supported: {', '.join(map(repr, choices))}")
    return value


def _positive(data: dict, key: str, where: str, default: Any = ...) -> int:
    value = _value(data, key, where, int, default)
    if value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive integer, got {value}")
    return value


def _int_list(data: dict, key: str, where: str, default: Any = ...) -> tuple[int, ...]:
    value = _value(data, key, where, list, default)
    if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ConfigError(f"{where}.{key} must be a non-empty list of positive integers, got {value!r}")
    return tuple(value)


def _oobleck(data: Any, where: str, role: str) -> OobleckConfig:
    data = _table(data, where)
    _check_keys(data, where, {"type", "config", "requires_grad"}, {"type", "config"})
    _value(data, "type", where, str, choices=("oobleck",))
    _value(data, "requires_grad", where, bool, True)
    cfg = _table(data["config"], f"{where}.config")
    io_key = "in_channels" if role == "encoder" else "out_channels"
    allowed = {io_key, "channels", "c_mults", "strides", "latent_dim", "use_snake", "antialias_activation"}
    if role == "decoder":
        allowed |= {"final_tanh", "use_nearest_upsample"}
    _check_keys(cfg, f"{where}.config", allowed)
    w = f"{where}.config"
    _value(cfg, "antialias_activation", w, bool, False, choices=(False,))
    if role == "decoder":
        _value(cfg, "use_nearest_upsample", w, bool, False, choices=(False,))
    c_mults = _int_list(cfg, "c_mults", w, [1, 2, 4, 8])
    strides = _int_list(cfg, "strides", w, [2, 4, 8, 8])
    if len(c_mults) != len(strides):
        raise ConfigError(f"{w}.c_mults has {len(c_mults)} entries and {w}.strides {len(strides)}; they must match")
    return OobleckConfig(channels=_positive(cfg, "channels", w, 128), c_mults=c_mults, strides=strides,
                         latent_dim=_positive(cfg, "latent_dim", w, 32), audio_channels=_positive(cfg, io_key, w, 2),
                         use_snake=_value(cfg, "use_snake", w, bool, False),
                         final_tanh=_value(cfg, "final_tanh", w, bool, True) if role == "decoder" else False)


def _pretransform(data: Any, sample_rate: int) -> dict:
    where = "model.pretransform"
    data = _table(data, where)
    _check_keys(data, where, {"type", "config", "iterate_batch", "model_half", "chunked", "scale"}, {"type", "config"})
    _value(data, "type", where, str, choices=("autoencoder",))
    for key in ("iterate_batch", "model_half", "chunked"):     # batching / precision of the reference runner only
        _value(data, key, where, bool, False)
    scale = float(_value(data, "scale", where, (int, float), 1.0))
    cfg = _table(data["config"], f"{where}.config")
    w = f"{where}.config"
    _check_keys(cfg, w, {"encoder", "decoder", "bottleneck", "latent_dim", "downsampling_ratio", "io_channels",
                         "sample_rate"}, {"encoder", "decoder", "latent_dim", "downsampling_ratio"})
    bottleneck = _table(cfg.get("bottleneck", {"type": "vae"}), f"{w}.bottleneck")
    _check_keys(bottleneck, f"{w}.bottleneck", {"type"}, {"type"})
    _value(bottleneck, "type", f"{w}.bottleneck", str, choices=("vae",))
    if "sample_rate" in cfg and cfg["sample_rate"] != sample_rate:
        raise ConfigError(f"{w}.sample_rate = {cfg['sample_rate']!r} differs from sample_rate = {sample_rate}")
    encoder, decoder = _oobleck(cfg["encoder"], f"{w}.encoder", "encoder"), _oobleck(cfg["decoder"], f"{w}.decoder", "decoder")
    latent_dim = _positive(cfg, "latent_dim", w)
    ratio = _positive(cfg, "downsampling_ratio", w)
    if encoder.latent_dim != 2 * latent_dim or decoder.latent_dim != latent_dim:
        raise ConfigError(f"{w}.encoder.config.latent_dim must be 2 x {w}.latent_dim (the VAE bottleneck splits mean "
                          f"and scale) and {w}.decoder.config.latent_dim equal to it; got {encoder.latent_dim}, "
                          f"{decoder.latent_dim}, {latent_dim}")
    for name, part in (("encoder", encoder), ("decoder", decoder)):
        if math.prod(part.strides) != ratio:
            raise ConfigError(f"{w}.{name}.config.strides multiply to {math.prod(part.strides)}, "
                              f"not {w}.downsampling_ratio = {ratio}")
    if (encoder.channels, encoder.c_mults, encoder.strides) != (decoder.channels, decoder.c_mults, decoder.strides):
        raise ConfigError(f"{w}.encoder and {w}.decoder must share channels, c_mults and strides")
    return dict(encoder=encoder, decoder=decoder, latent_dim=latent_dim, downsampling_ratio=ratio, vae_scale=scale,
                io_channels=_positive(cfg, "io_channels", w, encoder.audio_channels))


def _conditioning(data: Any) -> dict:
    where = "model.conditioning"
    data = _table(data, where)
    _check_keys(data, where, {"configs", "cond_dim"}, {"configs", "cond_dim"})
    cond_dim = _positive(data, "cond_dim", where)
    prompt_id, prompt_max_length, prompt_width, prompt_model, numbers = None, 0, 0, "", []
    configs = _value(data, "configs", where, list)
    seen = set()
    for i, entry in enumerate(configs):
        w = f"{where}.configs[{i}]"
        entry = _table(entry, w)
        _check_keys(entry, w, {"id", "type", "config"}, {"id", "type"})
        cid = _value(entry, "id", w, str)
        if cid in seen:
            raise ConfigError(f"{w}.id = {cid!r} appears twice")
        seen.add(cid)
        kind = _value(entry, "type", w, str, choices=("t5", "number"))
        cfg = _table(entry.get("config", {}), f"{w}.config")
        if kind == "t5":
            _check_keys(cfg, f"{w}.config", {"t5_model_name", "max_length", "enable_grad", "project_out"})
            if prompt_id is not None:
                raise ConfigError(f"{w}: a second t5 conditioner ({cid!r}) is not supported")
            prompt_model = _value(cfg, "t5_model_name", f"{w}.config", str, "t5-base")
            if prompt_model not in T5_WIDTHS:
                raise ConfigError(f"{w}.config.t5_model_name = {prompt_model!r} is not supported; supported: "
                                  f"{', '.join(T5_WIDTHS)}")
            if _value(cfg, "project_out", f"{w}.config", bool, False):
                raise ConfigError(f"{w}.config.project_out = true is not supported")
            _value(cfg, "enable_grad", f"{w}.config", bool, False)
            prompt_id, prompt_width = cid, T5_WIDTHS[prompt_model]
            prompt_max_length = _positive(cfg, "max_length", f"{w}.config", 128)
        else:
            _check_keys(cfg, f"{w}.config", {"min_val", "max_val"})
            if cid not in NUMBER_IDS:
                raise ConfigError(f"{w}: number conditioner {cid!r} is not supported (livediff fills only "
                                  f"{', '.join(NUMBER_IDS)})")
            low = float(_value(cfg, "min_val", f"{w}.config", (int, float), 0))
            high = float(_value(cfg, "max_val", f"{w}.config", (int, float), 1))
            if not high > low:
                raise ConfigError(f"{w}.config: max_val must exceed min_val, got {low}, {high}")
            numbers.append((cid, low, high))
    return dict(cond_dim=cond_dim, prompt_id=prompt_id, prompt_max_length=prompt_max_length, prompt_width=prompt_width,
                prompt_model=prompt_model, number_conditioners=tuple(numbers))


_DIT_KEYS = {"io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim", "global_cond_dim", "transformer_type",
             "attn_kwargs", "postpend", "input_add_dims", "project_cond_tokens", "project_global_cond", "patch_size",
             "input_concat_dim", "prepend_cond_dim", "global_cond_type", "timestep_cond_type", "split_qkv"}


def _pairs(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                                              and isinstance(p[1], int) and p[1] > 0 for p in value):
        raise ConfigError(f"{where} must be a list of [id, channels] pairs, got {value!r}")
    for name, _ in value:
        if name not in INPUT_ADD_IDS:
            raise ConfigError(f"{where}: {name!r} is not supported; supported: {', '.join(INPUT_ADD_IDS)}")
    return tuple((name, dim) for name, dim in value)


def _dit(data: Any, objective: str) -> DitConfig:
    where = "model.diffusion.config"
    cfg = _table(data, where)
    _check_keys(cfg, where, _DIT_KEYS, {"io_channels", "embed_dim", "depth", "num_heads"})
    _value(cfg, "transformer_type", where, str, "x-transformers", choices=("continuous_transformer",))
    _value(cfg, "patch_size", where, int, 1, choices=(1,))
    _value(cfg, "input_concat_dim", where, int, 0, choices=(0,))
    _value(cfg, "prepend_cond_dim", where, int, 0, choices=(0,))
    _value(cfg, "global_cond_type", where, str, "prepend", choices=("prepend",))
    _value(cfg, "timestep_cond_type", where, str, "global", choices=("global",))
    _value(cfg, "split_qkv", where, bool, False, choices=(False,))
    attn = _table(cfg.get("attn_kwargs", {}), f"{where}.attn_kwargs")
    _check_keys(attn, f"{where}.attn_kwargs", {"qk_norm"})
    qk_norm = _value(attn, "qk_norm", f"{where}.attn_kwargs", str, "none", choices=("ln", "l2", "none"))
    embed_dim, heads = _positive(cfg, "embed_dim", where), _positive(cfg, "num_heads", where)
    if embed_dim % heads or (embed_dim // heads) % 2:
        raise ConfigError(f"{where}.embed_dim = {embed_dim} must split into {heads} heads of an even width")
    return DitConfig(io_channels=_positive(cfg, "io_channels", where), embed_dim=embed_dim,
                     depth=_positive(cfg, "depth", where), num_heads=heads,
                     cond_token_dim=_value(cfg, "cond_token_dim", where, int, 0),
                     global_cond_dim=_value(cfg, "global_cond_dim", where, int, 0), qk_norm=qk_norm,
                     postpend=_value(cfg, "postpend", where, bool, False),
                     input_add_dims=_pairs(cfg["input_add_dims"], f"{where}.input_add_dims") if "input_add_dims" in cfg else (),
                     project_cond_tokens=_value(cfg, "project_cond_tokens", where, bool, True),
                     project_global_cond=_value(cfg, "project_global_cond", where, bool, True))


def _attention(training: Any, dit: DitConfig, max_frames: int) -> dict:
    """The LMDM attention pattern, chunk and context sizes, from the training section."""
    training = _table(training or {}, "training")
    inpainting = _table(training.get("inpainting") or {}, "training.inpainting")
    mask = _table(inpainting.get("mask_kwargs") or {}, "training.inpainting.mask_kwargs")
    arc = _table(_table(training.get("arc") or {}, "training.arc").get("self_forcing") or {}, "training.arc.self_forcing")
    router = _value(training, "context_router", "training", bool, False)
    if not dit.input_add_dims:
        if router:
            raise ConfigError("training.context_router = true needs model.diffusion.config.input_add_dims "
                              "(the clean context input)")
        # LMDM's pass for SAO-Small: 208 context + 48 target frames = its 256-frame training length
        chunk = min(48, max_frames // 4)
        return dict(attention="full", context_frames=min(208, max_frames - chunk), chunk_frames=chunk)
    names = [name for name, _ in dit.input_add_dims]
    if names[:2] != ["inpaint_mask", "inpaint_masked_input"]:
        raise ConfigError(f"model.diffusion.config.input_add_dims must start with inpaint_mask, inpaint_masked_input; "
                          f"got {names}")
    if not router:
        raise ConfigError("model.diffusion.config.input_add_dims without training.context_router = true is not "
                          "supported (LMDM checkpoints are trained with the context router)")
    if not dit.postpend:
        raise ConfigError("training.context_router = true needs model.diffusion.config.postpend = true "
                          "(the global token after the sequence, as LMDM trains it)")
    w = "training.inpainting.mask_kwargs"
    pattern = _value(mask, "context_router_attention_pattern", w, str, "enc-dec", choices=("enc-dec", "block-causal"))
    rope_mode = _value(arc, "rope_mode", "training.arc.self_forcing", (str, type(None)), None)
    if rope_mode not in (None, "fixed"):
        raise ConfigError(f"training.arc.self_forcing.rope_mode = {rope_mode!r} is not supported; supported: 'fixed'")
    context = _value(mask, "fixed_mask_size", w, int, _value(arc, "context_size", "training.arc.self_forcing", int, 192))
    chunk = _value(mask, "block_causal_chunk_size", w, int, _value(arc, "chunk_size", "training.arc.self_forcing", int, 48))
    window = _value(mask, "block_causal_window_chunks", w, int, context // chunk if chunk else 0)
    if context <= 0 or chunk <= 0 or context + chunk > max_frames:
        raise ConfigError(f"{w}: context {context} + chunk {chunk} latent frames must be positive and fit sample_size "
                          f"({max_frames} frames)")
    if pattern == "block-causal" and (context % chunk or not 1 <= window <= context // chunk):
        raise ConfigError(f"{w}: block-causal needs fixed_mask_size ({context}) a multiple of block_causal_chunk_size "
                          f"({chunk}) and 1 <= block_causal_window_chunks ({window}) <= {context // chunk}")
    accomp = _table(inpainting.get("accomp_kwargs") or {}, "training.inpainting.accomp_kwargs")
    cutoff = _value(accomp, "cutoff", "training.inpainting.accomp_kwargs", int, context) if "accomp_input" in names else None
    return dict(attention=pattern, context_frames=context, chunk_frames=chunk, window_chunks=window, accomp_cutoff=cutoff)


def parse_config(data: Any) -> SaoConfig:
    data = _table(data, "model_config.json")
    _check_keys(data, "model_config", {"model_type", "sample_size", "sample_rate", "audio_channels", "model", "training"},
                {"model_type", "sample_size", "sample_rate", "model"})
    _value(data, "model_type", "model_config", str, choices=("diffusion_cond",))
    sample_rate = _positive(data, "sample_rate", "model_config")
    model = _table(data["model"], "model")
    _check_keys(model, "model", {"pretransform", "conditioning", "diffusion", "io_channels"},
                {"pretransform", "conditioning", "diffusion", "io_channels"})
    pretransform = _pretransform(model["pretransform"], sample_rate)
    audio_channels = _positive(data, "audio_channels", "model_config", 2)
    if pretransform.pop("io_channels") != audio_channels or pretransform["encoder"].audio_channels != audio_channels \
            or pretransform["decoder"].audio_channels != audio_channels:
        raise ConfigError(f"model.pretransform: encoder inputs, decoder outputs and io_channels must all equal "
                          f"audio_channels = {audio_channels}")
    conditioning = _conditioning(model["conditioning"])
    where = "model.diffusion"
    diffusion = _table(model["diffusion"], where)
    _check_keys(diffusion, where, {"type", "config", "diffusion_objective", "cross_attention_cond_ids",
                                   "global_cond_ids", "input_add_ids", "input_concat_ids", "prepend_cond_ids",
                                   "distribution_shift_options"}, {"type", "config", "diffusion_objective"})
    _value(diffusion, "type", where, str, choices=("dit",))
    objective = _value(diffusion, "diffusion_objective", where, str, choices=("rf_denoiser", "rectified_flow"))
    for key in ("input_concat_ids", "prepend_cond_ids"):
        if _value(diffusion, key, where, list, []):
            raise ConfigError(f"{where}.{key} = {diffusion[key]!r} is not supported (only [])")
    _value(diffusion, "distribution_shift_options", where, (dict, type(None)), None)  # a training-time timestep shift
    known = {cid for cid, _, _ in conditioning["number_conditioners"]} | {conditioning["prompt_id"]}
    ids = {}
    for key in ("cross_attention_cond_ids", "global_cond_ids"):
        ids[key] = tuple(_value(diffusion, key, where, list, []))
        for cid in ids[key]:
            if cid not in known:
                raise ConfigError(f"{where}.{key} names {cid!r}, which model.conditioning does not define")
    if conditioning["prompt_id"] in ids["global_cond_ids"]:
        raise ConfigError(f"{where}.global_cond_ids: the prompt ({conditioning['prompt_id']!r}) cannot be global")
    dit = _dit(diffusion["config"], objective)
    input_add = _pairs(diffusion["input_add_ids"], f"{where}.input_add_ids") if "input_add_ids" in diffusion else ()
    if input_add != dit.input_add_dims:
        raise ConfigError(f"{where}.input_add_ids {list(map(list, input_add))} must equal "
                          f"{where}.config.input_add_dims {list(map(list, dit.input_add_dims))}")
    expected = {"model.io_channels": _positive(model, "io_channels", "model"),
                f"{where}.config.io_channels": dit.io_channels}
    for key, value in expected.items():
        if value != pretransform["latent_dim"]:
            raise ConfigError(f"{key} = {value} must equal model.pretransform.config.latent_dim = {pretransform['latent_dim']}")
    latent = pretransform["latent_dim"]
    for name, dim in dit.input_add_dims:
        if dim != (1 if name.endswith("_mask") else latent):
            raise ConfigError(f"{where}.config.input_add_dims: {name} has {dim} channels; it must have "
                              f"{1 if name.endswith('_mask') else latent}")
    if ids["cross_attention_cond_ids"] and dit.cond_token_dim != conditioning["cond_dim"]:
        raise ConfigError(f"{where}.config.cond_token_dim = {dit.cond_token_dim} must equal "
                          f"model.conditioning.cond_dim = {conditioning['cond_dim']}")
    if conditioning["prompt_id"] and conditioning["prompt_width"] != conditioning["cond_dim"]:
        raise ConfigError(f"model.conditioning.cond_dim = {conditioning['cond_dim']} differs from the width of "
                          f"{conditioning['prompt_model']} ({conditioning['prompt_width']}); a projected prompt is not supported")
    if dit.global_cond_dim != len(ids["global_cond_ids"]) * conditioning["cond_dim"]:
        raise ConfigError(f"{where}.config.global_cond_dim = {dit.global_cond_dim} must be cond_dim x the number of "
                          f"global_cond_ids ({len(ids['global_cond_ids'])} x {conditioning['cond_dim']})")
    if bool(ids["cross_attention_cond_ids"]) != (dit.cond_token_dim > 0):
        raise ConfigError(f"{where}.config.cond_token_dim must be set exactly when cross_attention_cond_ids is non-empty")
    sample_size = _positive(data, "sample_size", "model_config")
    if sample_size % pretransform["downsampling_ratio"]:
        raise ConfigError(f"sample_size = {sample_size} must be a multiple of the downsampling ratio "
                          f"({pretransform['downsampling_ratio']})")
    max_frames = sample_size // pretransform["downsampling_ratio"]
    if max_frames < 8:
        raise ConfigError(f"sample_size = {sample_size} is {max_frames} latent frames; at least 8 are needed")
    return SaoConfig(sample_rate=sample_rate, sample_size=sample_size, audio_channels=audio_channels, **pretransform,
                     **conditioning, cross_attention_ids=ids["cross_attention_cond_ids"],
                     global_cond_ids=ids["global_cond_ids"], input_add_ids=input_add, objective=objective, dit=dit,
                     **_attention(data.get("training"), dit, max_frames))


def load_config(path: Path) -> SaoConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; a Stable Audio Open Small folder holds model_config.json "
                          f"next to model.safetensors or model.ckpt")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None
    try:
        return parse_config(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
