"""Channels-last inference where it was measured faster, and `auto` precision by model size."""
import numpy as np
import torch

from mtt.inference.tagger import Tagger
from mtt.formats.mel_shard import ShardWriter, shard_attributes
from mtt.formats.mel_store import MelStore
from mtt.models import build_model, to_channels_last
from mtt.inference.device import (channels_last_faster, inference_model, is_small_cnn,
                                  resolve_precision)
from mtt.inference.songs import chunk_starts, predict_songs

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def small():
    torch.manual_seed(0)
    return build_model("transformer", 5, conv_channels=8, width=32, layers=1, heads=2).eval()


def test_channels_last_only_for_small_cnns_in_fp32_on_cpu():
    resnet16 = build_model("resnet", 5, channels=16)
    teacher = build_model("transformer", 5, preset="teacher")
    assert is_small_cnn(small()) and is_small_cnn(resnet16) and not is_small_cnn(teacher)
    assert channels_last_faster(small(), CPU, "fp32")
    assert channels_last_faster(resnet16, CPU, "fp32")
    assert not channels_last_faster(teacher, CPU, "fp32")  # C128: slower on the EPYC
    assert not channels_last_faster(small(), CPU, "bf16")
    # bf16 on a CPU with native bf16 (AMX Xeon, Zen 4 EPYC): the paper's teacher channels-last
    assert channels_last_faster(teacher, CPU, "bf16", native_bf16=True)
    assert not channels_last_faster(teacher, CPU, "bf16", native_bf16=False)
    assert not channels_last_faster(small(), CPU, "bf16", native_bf16=True)
    assert not channels_last_faster(small(), CUDA, "fp32")  # not measured on a GPU


def test_auto_keeps_fp32_for_small_cnns_on_native_bf16_cpus():
    teacher = build_model("transformer", 5, preset="teacher")
    assert resolve_precision("auto", CPU, native_bf16=True, model=small()) == "fp32"
    assert resolve_precision("auto", CPU, native_bf16=True, model=teacher) == "bf16"
    assert resolve_precision("auto", CPU, native_bf16=True) == "bf16"  # no model: as before
    assert resolve_precision("auto", CPU, native_bf16=False, model=teacher) == "fp32"
    assert resolve_precision("bf16", CPU, native_bf16=True, model=small()) == "bf16"  # asked for


def test_the_inference_copy_is_channels_last_with_the_same_outputs_and_the_model_untouched():
    model = small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = inference_model(model, CPU, "fp32")
    assert run is not model
    conv = run.frontend.layer2.conv_1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert model.frontend.layer2.conv_1.weight.is_contiguous()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    x = torch.randn(3, 128, 173) * 15 - 40
    with torch.no_grad():
        assert (torch.sigmoid(run(x)) - torch.sigmoid(model(x))).abs().max() <= 1e-5
    assert inference_model(model, CPU, "bf16") is model


def test_predict_songs_and_the_tagger_give_the_contiguous_models_numbers(tmp_path):
    model = small()
    rng = np.random.default_rng(0)
    writer = ShardWriter(tmp_path / "s.h5", shard_attributes(1.0, "test"))
    for i in range(3):
        writer.add(f"T{i}", rng.normal(-40, 15, (400, 128)).astype(np.float16), 400 * 512)
    writer.close()
    store = MelStore([tmp_path / "s.h5"])
    probs = predict_songs(model, store, ["T0", "T1", "T2"], CPU, chunks=2, frames=173,
                          batch_size=4, precision="fp32")
    chunks = torch.from_numpy(np.concatenate([store.read_chunks(t, chunk_starts(store.num_frames(t), 173, 2), 173)
                                              for t in ("T0", "T1", "T2")]))
    with torch.no_grad():
        expected = torch.sigmoid(model(chunks)).view(3, 2, 5).mean(1).numpy()
    assert np.abs(probs - expected).max() <= 1e-5
    assert model.frontend.layer2.conv_1.weight.is_contiguous()  # predict_songs used a copy

    tagger = Tagger(model, list("abcde"), device="cpu", precision="fp32")
    assert tagger.model is not model
    wave = rng.standard_normal(22050 * 3).astype(np.float32) * 0.1
    contiguous = Tagger(to_channels_last(small()).to(memory_format=torch.contiguous_format),
                        list("abcde"), precision="bf16")  # bf16: never converted
    assert contiguous.model.frontend.layer2.conv_1.weight.is_contiguous()
    got = tagger.tag(wave, top_k=None)
    mel = tagger.logmel(torch.from_numpy(wave))[None]
    with torch.no_grad():
        ref = torch.sigmoid(model(mel))[0].numpy()
    assert max(abs(got[t] - float(p)) for t, p in zip("abcde", ref)) <= 1e-5


def test_bf16_channels_last_on_a_native_bf16_cpu_stays_close_to_fp32(monkeypatch):
    """Where the CPU has native bf16, a larger model's bf16 inference runs on a channels-last
    copy; faked here (the path also runs on other CPUs, only slower): the result stays within
    bf16's error."""
    import mtt.inference.device as device
    torch.manual_seed(0)
    model = build_model("transformer", 5, conv_channels=32, width=32, layers=1, heads=2).eval()
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    net = inference_model(model, CPU, "bf16")
    assert net is not model
    assert net.frontend.layer1.conv_1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 128, 87)
    with torch.inference_mode():
        exact = torch.sigmoid(model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = torch.sigmoid(net(x).float())
    assert torch.allclose(exact, fast, atol=2e-2)
