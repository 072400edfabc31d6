"""The SAO architecture and its checkpoints: a tiny random model with the official key names saved
and reloaded strictly as .safetensors and .ckpt, every kind of mismatch named, unsupported config
keys refused before any weights are read, the full-size parameter count, and LMDM's cached
context path equal to its masked full pass."""
from __future__ import annotations

import json

import pytest
import torch

from engine.sao.config import ConfigError, load_config, parse_config
from engine.sao.model import SaoModel
from engine.sao.weights import WeightsError, load_model, read_state_dict, save
from tests.sao_fixtures import lmdm, sao_small_config, tiny_config

PUBLISHED_DIT_PARAMETERS = 341e6    # Stability AI's figure for Stable Audio Open Small


def tiny_folder(tmp_path, cfg: dict | None = None, fmt: str = "safetensors", seed: int = 0):
    torch.manual_seed(seed)
    cfg = cfg or tiny_config()
    model = SaoModel(parse_config(cfg))
    (tmp_path / "model_config.json").write_text(json.dumps(cfg))
    save(model, tmp_path / f"model.{fmt}")
    return model


def probe(model: SaoModel) -> torch.Tensor:
    """One decoder pass and one DiT step on fixed inputs."""
    torch.manual_seed(1)
    cfg = model.cfg
    with torch.no_grad():
        cross, global_cond = model.condition(torch.randn(1, cfg.prompt_max_length, cfg.prompt_width), torch.tensor([7.0]))
        x = torch.randn(1, cfg.dit.io_channels, 20)
        return torch.cat([model.dit(x, torch.tensor([0.6]), cross, global_cond).flatten(),
                          model.autoencoder.decode(x).flatten()])


def test_tiny_lmdm_model_round_trips_with_its_extra_keys(tmp_path):
    cfg = lmdm(tiny_config(), "block-causal", 192, 48, accompaniment=True)
    original = tiny_folder(tmp_path, cfg, fmt="ckpt")
    assert original.state_dict()["model.model.to_input_add_embed.weight"].shape == (64, 1 + 8 + 1 + 8)
    loaded = load_model(tmp_path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in original.state_dict().items())
    (tmp_path / "model_config.json").write_text(json.dumps(tiny_config()))   # the base config: one key too many
    with pytest.raises(WeightsError, match=r"unexpected key model\.model\.to_input_add_embed\.weight \(shape 64x18\)"):
        load_model(tmp_path)


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt"])
def test_tiny_model_round_trips_strictly(tmp_path, fmt):
    original = tiny_folder(tmp_path, fmt=fmt)
    loaded = load_model(tmp_path)
    names = set(original.state_dict())
    assert {"model.model.transformer.layers.1.cross_attn.to_kv.weight",
            "pretransform.model.decoder.layers.1.layers.1.weight_g",
            "pretransform.model.encoder.layers.1.layers.0.layers.2.alpha",
            "conditioner.conditioners.seconds_total.embedder.embedding.0.weights",
            "model.model.transformer.rotary_pos_emb.inv_freq"} <= names
    assert set(read_state_dict(tmp_path / f"model.{fmt}")) == names
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(probe(loaded), probe(original))
    other = SaoModel(parse_config(tiny_config()))        # different random weights: the probe notices
    assert not torch.equal(probe(other), probe(original))


def rewrite(tmp_path, change):
    state = read_state_dict(tmp_path / "model.safetensors")
    change(state)
    from safetensors.torch import save_file
    save_file(state, str(tmp_path / "model.safetensors"))


def test_renamed_missing_and_reshaped_keys_are_named(tmp_path):
    tiny_folder(tmp_path)
    key = "model.model.transformer.layers.1.ff.ff.2.weight"
    rewrite(tmp_path, lambda s: s.__setitem__(key.replace("ff.2", "ff.3"), s.pop(key)))
    with pytest.raises(WeightsError, match=r"unexpected key model\.model\.transformer\.layers\.1\.ff\.ff\.3\.weight "
                                           r"\(shape 64x256\)"):
        load_model(tmp_path)

    tiny_folder(tmp_path)
    rewrite(tmp_path, lambda s: s.pop("pretransform.model.decoder.layers.2.layers.1.bias"))
    with pytest.raises(WeightsError, match=r"missing key pretransform\.model\.decoder\.layers\.2\.layers\.1\.bias "
                                           r"\(expected shape 16\)"):
        load_model(tmp_path)

    tiny_folder(tmp_path)
    key = "model.model.to_cond_embed.0.weight"
    rewrite(tmp_path, lambda s: s.__setitem__(key, torch.zeros(64, 768)))
    with pytest.raises(WeightsError, match=r"key model\.model\.to_cond_embed\.0\.weight has shape 64x768, "
                                           r"the config implies 64x512"):
        load_model(tmp_path)


def test_equivalent_spellings_load(tmp_path):
    """A residual unit's shared Snake stored once, and parametrized weight norm, are the same tensors."""
    original = tiny_folder(tmp_path)
    unit = "pretransform.model.encoder.layers.2.layers.1.layers"
    conv = "pretransform.model.decoder.layers.0"

    def respell(state):
        del state[f"{unit}.2.alpha"], state[f"{unit}.0.beta"]
        state[f"{conv}.parametrizations.weight.original0"] = state.pop(f"{conv}.weight_g")
        state[f"{conv}.parametrizations.weight.original1"] = state.pop(f"{conv}.weight_v")
    rewrite(tmp_path, respell)
    loaded = load_model(tmp_path).state_dict()
    assert torch.equal(loaded[f"{unit}.2.alpha"], original.state_dict()[f"{unit}.0.alpha"])
    assert torch.equal(loaded[f"{unit}.0.beta"], original.state_dict()[f"{unit}.2.beta"])
    assert torch.equal(loaded[f"{conv}.weight_v"], original.state_dict()[f"{conv}.weight_v"])


class NotATensor:
    pass


def test_ckpt_with_objects_is_refused_not_unpickled(tmp_path):
    original = tiny_folder(tmp_path, fmt="ckpt")
    torch.save({"state_dict": original.state_dict(), "callback": NotATensor()}, str(tmp_path / "model.ckpt"))
    with pytest.raises(WeightsError, match="refused: only tensors and plain containers"):
        load_model(tmp_path)


@pytest.mark.parametrize("path, value, message", [
    (("model", "diffusion", "config", "patch_size"), 2, r"model\.diffusion\.config\.patch_size = 2 is not supported"),
    (("model", "diffusion", "config", "layer_scale"), True, r"model\.diffusion\.config\.layer_scale is not supported"),
    (("model", "diffusion", "config", "global_cond_type"), "adaLN", r"global_cond_type = 'adaLN' is not supported"),
    (("model", "diffusion", "diffusion_objective"), "v", r"diffusion_objective = 'v' is not supported"),
    (("model", "pretransform", "config", "decoder", "config", "antialias_activation"), True,
     r"decoder\.config\.antialias_activation = True is not supported"),
    (("model", "conditioning", "configs", 1, "id"), "bpm", r"number conditioner 'bpm' is not supported"),
])
def test_unsupported_config_is_refused_by_name_before_weights(tmp_path, path, value, message):
    cfg = tiny_config()
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / "model_config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(b"not read: the config is refused first")
    with pytest.raises(ConfigError, match=message):
        load_model(tmp_path)


def test_lmdm_configs_are_read_or_refused_by_name(tmp_path):
    cfg = parse_config(lmdm(tiny_config(), "block-causal", 192, 48, accompaniment=True))
    assert (cfg.attention, cfg.context_frames, cfg.chunk_frames, cfg.window_chunks, cfg.accomp_cutoff) == \
        ("block-causal", 192, 48, 4, 144)
    assert cfg.lmdm and cfg.accompaniment and cfg.dit.postpend
    assert parse_config(lmdm(tiny_config(), "enc-dec", 208, 48)).attention == "enc-dec"
    offset = lmdm(tiny_config(), "block-causal", 192, 48)
    offset["training"]["arc"]["self_forcing"]["rope_mode"] = "offset"
    with pytest.raises(ConfigError, match=r"training\.arc\.self_forcing\.rope_mode = 'offset' is not supported"):
        parse_config(offset)
    no_router = lmdm(tiny_config(), "enc-dec", 192, 48)
    no_router["training"]["context_router"] = False
    with pytest.raises(ConfigError, match="input_add_dims without training.context_router"):
        parse_config(no_router)
    path = tmp_path / "model_config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="model_config.json is not valid JSON"):
        load_config(path)


def test_full_size_parameter_counts():
    """The published architecture (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        counts = SaoModel(parse_config(sao_small_config())).parameter_counts()
    assert abs(counts["dit"] / PUBLISHED_DIT_PARAMETERS - 1) < 0.005, counts
    assert 100e6 < counts["autoencoder"] < 200e6, counts       # the Oobleck VAE is not in the 341 M
    print(f"SAO-Small DiT {counts['dit'] / 1e6:.2f} M (published ~341 M), autoencoder "
          f"{counts['autoencoder'] / 1e6:.2f} M, conditioners {counts['conditioners'] / 1e6:.3f} M")


@pytest.mark.parametrize("pattern", ["enc-dec", "block-causal"])
def test_lmdm_cached_context_equals_masked_full_pass(pattern):
    torch.manual_seed(3)
    cfg = parse_config(lmdm(tiny_config(), pattern, 192, 48, accompaniment=True))
    model = SaoModel(cfg).eval()
    from engine.sao.torch_backend import first_visible_frame
    n, chunk = cfg.context_frames, cfg.chunk_frames
    with torch.no_grad():
        cross, global_cond = model.condition(torch.randn(1, cfg.prompt_max_length, cfg.prompt_width), torch.tensor([11.0]))
        x, t = torch.randn(1, 8, n + chunk), torch.tensor([0.7])
        known = (torch.arange(n + chunk) < n).float()[None, None]
        add = torch.cat([known, torch.randn(1, 8, n + chunk) * known, known, torch.randn(1, 8, n + chunk) * known], 1)
        full = model.dit(x, t, cross, global_cond, add, pattern, n, chunk, cfg.window_chunks)[..., n:]
        cache = model.dit.context_kv(add[..., :n], cross, pattern, chunk, cfg.window_chunks)
        cached = model.dit.velocity_cached(x[..., n:], t, cross, global_cond, add[..., n:], cache,
                                           first_visible_frame(cfg))
        unmasked = model.dit(x, t, cross, global_cond, add, "full")[..., n:]
        noisy_context = x.clone()
        noisy_context[..., :n] = torch.randn(1, 8, n)
        ignored = model.dit(noisy_context, t, cross, global_cond, add, pattern, n, chunk, cfg.window_chunks)[..., n:]
    assert cache.shape == (2, 2, 1, 2, n, 32)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
    assert (unmasked - full).abs().max() > 1e-3, "the attention pattern had no effect"
    torch.testing.assert_close(ignored, full)      # context frames of x are routed out; input_add carries them

