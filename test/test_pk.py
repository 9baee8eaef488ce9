"""The PK model: architecture, losses, ablations, files, data parsing, the shipped default."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from affective_memory_ros.encoders.pk import PKEncoder, default_weights_path
from affective_memory_ros.expressions import EXPRESSIONS, expression_index
from affective_memory_ros.metrics import ccc, rmse
from affective_memory_ros.pk.checkpoint import (
    CheckpointError,
    load_inference_model,
    read_provenance,
    save_inference_model,
)
from affective_memory_ros.pk.data import (
    CropSet,
    held_out,
    load_cropset,
    person_pairs,
    read_affectnet_csv,
    read_labels_csv,
    save_cropset,
)
from affective_memory_ros.pk.model import PK, PKConfig, count_parameters
from affective_memory_ros.pk.train import Lambdas, RealPairs, TrainConfig, Trainer, augment


def tiny(**kw: object) -> PKConfig:
    return PKConfig(width=8, **kw)  # type: ignore[arg-type]


def tiny_data(n: int = 12, seed: int = 0) -> CropSet:
    import cv2

    rng = np.random.default_rng(seed)
    # Smooth images (upsampled 4x4 noise): structure an autoencoder can learn in a few steps.
    coarse = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    crops = np.stack([cv2.resize(c, (96, 96), interpolation=cv2.INTER_CUBIC) for c in coarse])
    labels = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    labels[::3] = np.nan  # unlabelled faces mixed in
    return CropSet(crops, labels, [f"g{i}" for i in range(n)], ["synthetic"] * n)


def test_shapes_and_ranges() -> None:
    model = PK(tiny())
    x = torch.rand(4, 3, 96, 96) * 2 - 1
    y = torch.rand(4, 2) * 2 - 1
    z = model.encoder(x)
    assert z.shape == (4, 50) and z.abs().max() <= 1
    out = model.generator(z, y)
    assert out.shape == (4, 3, 96, 96) and out.abs().max() <= 1
    assert model.emotion(z).shape == (4, 2) and model.emotion(z).abs().max() <= 1
    assert model.prior(z).shape == (4,) and model.real(x, y).shape == (4,)


def test_paper_size_model_has_about_sixteen_million_parameters() -> None:
    assert 14e6 < count_parameters(PK(PKConfig(width=64))) < 18e6


def test_initialisation_follows_the_paper() -> None:
    model = PK(tiny())
    w = model.encoder.convs[2].weight.detach()
    assert abs(float(w.mean())) < 0.005 and 0.015 < float(w.std()) < 0.025
    assert float(model.encoder.fc.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize(("flags", "name", "absent"), [
    ({"use_prior": False, "use_real": False, "use_em": False}, "base", {"prior", "real", "d_prior", "d_real"}),
    ({"use_prior": False, "use_real": False}, "+em", {"prior", "real", "d_prior", "d_real"}),
    ({"use_real": False}, "+prior+em", {"real", "d_real", "img"}),
    ({}, "all", set()),
])
def test_ablation_flags_remove_discriminators_and_losses(flags: dict[str, bool], name: str, absent: set[str]) -> None:
    cfg = tiny(**flags)
    assert cfg.name == name
    trainer = Trainer(TrainConfig(model=cfg, device="cpu", batch_size=6, edit_weight=0.0, out_dir="/tmp/unused"),
                      tiny_data())
    model = trainer.model
    assert (model.prior is None) == (not cfg.use_prior) and (model.real is None) == (not cfg.use_real)
    logs = trainer.train_step(*next(trainer.batches(0)), torch.Generator().manual_seed(0))
    for key in ("d_prior", "z"):
        assert (key in logs) == cfg.use_prior
    for key in ("d_real", "img"):
        assert (key in logs) == cfg.use_real
    assert not absent & set(logs)


@pytest.mark.parametrize("loss", ["rec", "em", "edit"])
def test_each_loss_is_reduced_by_its_own_gradient(loss: str) -> None:
    """Each loss, trained alone on a tiny batch, falls by at least a fifth.

    Why not all losses together: the joint objective is a compromise (the edit
    loss and the adversarial terms pull G away from a perfect reconstruction),
    so whether L_rec ends a short joint run lower than it started depends on
    tiny floating-point differences between CPUs (on one machine it rose from
    0.4465 to 0.4742). Alone, each loss must fall clearly on any CPU: that is
    the property worth checking, that every loss reaches the parameters it
    should and descends. The edit loss is read through E and D_em, so it is
    trained with L_rec and L_em on (a D_em that reads nothing gives G no signal).
    """
    torch.manual_seed(0)
    weights = {"rec": 0.0, "em": 0.0, "z": 0.0, "img": 0.0, "iden": 0.0, loss: 1.0} if loss != "edit" else \
        {"rec": 1.0, "em": 1.0, "z": 0.0, "img": 0.0, "iden": 0.0}
    trainer = Trainer(TrainConfig(model=tiny(use_prior=False, use_real=False), device="cpu", batch_size=8,
                                  lambdas=Lambdas(**weights), edit_weight=1.0 if loss == "edit" else 0.0, lr=1e-3,
                                  out_dir="/tmp/unused"), tiny_data(8))
    x, y = next(trainer.batches(0))
    history = [trainer.train_step(x, y, torch.Generator().manual_seed(0))[loss] for _ in range(100)]
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < 0.8 * first, f"{loss}: {first:.4f} -> {last:.4f}"


def test_augmentation_keeps_shape_and_range() -> None:
    x = torch.rand(5, 3, 96, 96) * 2 - 1
    out = augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.abs().max() <= 1 and not torch.equal(out, x)


def test_inference_model_round_trip_and_refusals(tmp_path: Path) -> None:
    model = PK(tiny())
    path = save_inference_model(tmp_path / "pk.safetensors", model, {"note": "test"})
    loaded, provenance = load_inference_model(path)
    assert provenance == {"note": "test"}
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        expected = model.emotion(model.encoder(x))
        got = loaded.emotion(loaded.encoder(x))
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)  # stored as float16
    assert loaded.prior is None and loaded.real is None
    data = path.read_bytes()
    for name, bad in {"truncated": data[:100], "garbage": os.urandom(500), "empty": b""}.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(bad)
        with pytest.raises(CheckpointError):
            load_inference_model(p)
        assert p.read_bytes() == bad
    from affective_memory_ros.memory import GrowingWhenRequired, GWRConfig, save_memory

    foreign = tmp_path / "memory.safetensors"
    net = GrowingWhenRequired(GWRConfig(dim=2))
    net.learn(np.zeros(2, np.float32))
    save_memory(net, foreign)
    with pytest.raises(CheckpointError, match="format"):
        load_inference_model(foreign)


def test_training_resumes_exactly_even_mid_epoch(tmp_path: Path) -> None:
    data = tiny_data(12)  # batch 6: two steps per epoch, so step 3 is in the middle of epoch 2
    cfg = TrainConfig(model=tiny(), device="cpu", batch_size=6, out_dir=str(tmp_path / "a"), max_steps=3,
                      epochs=3, checkpoint_every=1000)
    Trainer(cfg, data).fit()
    resumed = Trainer(dataclasses.replace(cfg, out_dir=str(tmp_path / "b"), max_steps=5), data)
    resumed.resume(tmp_path / "a" / "checkpoint.safetensors")
    assert resumed.step == 3
    resumed.fit()
    straight = Trainer(dataclasses.replace(cfg, out_dir=str(tmp_path / "c"), max_steps=5), data)
    straight.fit()
    assert resumed.step == straight.step == 5
    for (k, va), vb in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    # A run started from this checkpoint records what the checkpoint's run did (a chain of runs keeps each).
    recorded = read_provenance(tmp_path / "a" / "checkpoint.safetensors")
    assert recorded["steps"] == 3 and recorded["train_config"]["max_steps"] == 3


def test_labels_csv_and_affectnet_parsing(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,label,valence,arousal\na.png,happy,0.5,0.2\nb.png,neutral,,\n"
                                         "c.png,sad,-3,0.1\n")
    recs = read_labels_csv(tmp_path)
    assert (recs[0].valence, recs[0].arousal) == (0.5, 0.2)
    assert np.isnan(recs[1].valence) and np.isnan(recs[2].valence) and recs[2].arousal == pytest.approx(0.1)
    csv_path = tmp_path / "training.csv"
    csv_path.write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
        "689/a.jpg,10,12,100,100,\"1;2\",1,0.785714,-0.055556\n"
        "689/b.jpg,0,0,50,50,,8,-2,-2\n"
        "690/c.jpg,5,5,60,60,,2,-0.3,-2\n")
    recs = read_affectnet_csv(csv_path, tmp_path / "images")
    assert recs[0].valence == pytest.approx(0.785714) and recs[0].box == (10.0, 12.0, 100.0, 100.0)
    assert np.isnan(recs[1].valence) and np.isnan(recs[1].arousal)
    assert recs[2].valence == pytest.approx(-0.3) and np.isnan(recs[2].arousal)
    from affective_memory_ros.pk.data import crop_records

    out = crop_records(recs, detector=None)  # files are missing: skipped and counted, not fatal
    assert len(out) == 0 and out.skipped["missing"] == 3
    with pytest.raises(ValueError, match="AffectNet"):
        bad = tmp_path / "bad.csv"
        bad.write_text("a,b\n1,2\n")
        read_affectnet_csv(bad, tmp_path)


def test_held_out_split_is_deterministic_and_by_group() -> None:
    groups = [f"person{i // 2}" for i in range(400)]
    mask = held_out(groups)
    assert 0.08 < mask.mean() < 0.22
    assert all(mask[i] == mask[i + 1] for i in range(0, 400, 2)), "a group never straddles the split"
    np.testing.assert_array_equal(mask, held_out(list(groups)))


def test_ccc_against_hand_computed_values() -> None:
    assert ccc([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert ccc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = [1, 2, 3], y = [2, 3, 4]: var 2/3 each, cov 2/3, mean gap 1 -> 2(2/3) / (4/3 + 1) = 4/7
    assert ccc([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7)
    # x = [0, 0, 1, 1], y = [0, 1, 0, 1]: cov 0 -> 0
    assert ccc([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    assert np.isnan(ccc([1.0], [1.0]))
    assert ccc([1, np.nan, 3, 2], [1, 5, 3, 2]) == pytest.approx(1.0)
    assert rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))


def test_default_model_loads_and_gives_finite_outputs(media_dir: Path) -> None:
    from affective_memory_ros.perception.align import crop_faces
    from affective_memory_ros.perception.blazeface import BlazeFaceDetector
    from affective_memory_ros.video import read_image

    assert default_weights_path().is_file()
    pk = PKEncoder(device="cpu")
    image = read_image(media_dir / "multi_face.jpg")
    crops = crop_faces(image, BlazeFaceDetector("full")([image])[0])
    enc = pk.encode(crops)
    z, av = enc.code, enc.av
    assert z.shape == (5, 50) and av.shape == (5, 2) and enc.probs.shape == (5, 8)
    assert np.isfinite(z).all() and np.isfinite(av).all() and np.abs(av).max() <= 1
    assert pk.has_classes and np.isfinite(enc.probs).all()
    np.testing.assert_allclose(enc.probs.sum(axis=1), 1.0, atol=1e-5)
    edits = pk.edit_images(crops[:1], np.array([[-1, -1], [0, 0], [1, 1]], np.float32))
    assert edits.shape == (1, 3, 96, 96, 3) and edits.dtype == np.uint8


def test_shipped_pk_edits_of_real_faces_read_back_in_the_order_of_their_targets(media_dir: Path) -> None:
    """The evaluate command's edit read-back on five real faces: the shipped G's valence and arousal edits to
    -1 / 0 / +1 read back clearly increasing (a G that ignored its targets would read the same three times)."""
    from affective_memory_ros.perception.align import crop_faces
    from affective_memory_ros.perception.blazeface import BlazeFaceDetector
    from affective_memory_ros.pk.evaluate import READBACK_TARGETS, edit_readback
    from affective_memory_ros.video import read_image

    image = read_image(media_dir / "multi_face.jpg")
    crops = crop_faces(image, BlazeFaceDetector("full")([image])[0])
    out = edit_readback(PKEncoder(device="cpu").model, crops, batch=2)  # two batches and a remainder
    assert out["targets"] == list(READBACK_TARGETS)
    for key in ("valence", "arousal"):
        low, mid, high = out[key]
        assert high - mid > 0.2 and mid - low > 0.05 and all(abs(v) <= 1 for v in out[key]), (key, out)


def test_ddp_with_two_processes_matches_one_process(tmp_path: Path) -> None:
    """torchrun-style gloo run on 2 CPU processes vs 1 process, same global batch and seed."""
    script = Path(__file__).parent / "helpers" / "ddp_steps.py"
    import socket

    # A port the OS says is free now (a fixed or pid-derived port collides with parallel runs).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single.npy")], env=env, check=True,
                            capture_output=True, text=True, timeout=600)
    del single
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "ddp.npy")],
                              env=dict(env, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]
    one, two = np.load(tmp_path / "single.npy"), np.load(tmp_path / "ddp.npy")
    assert one.shape == two.shape == (4,)
    np.testing.assert_allclose(two, one, rtol=2e-3, atol=2e-4)


# --------------------------------------------------------------------------- categorical head and real pairs
NEUTRAL, HAPPY = expression_index("neutral"), expression_index("happy")


def pair_data(people: int = 4, singles: int = 8, seed: int = 0) -> CropSet:
    """Singles with A/V and a class, then ``people`` persons photographed neutral and smiling (no A/V).
    A person's smile is their neutral photo with a brighter lower half: a small, consistent edit."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (singles + people, 4, 4, 3)).astype(np.uint8)
    faces = np.stack([cv2.resize(c, (96, 96), interpolation=cv2.INTER_CUBIC) for c in coarse])
    smiles = faces[singles:].copy()
    smiles[:, 56:] = np.clip(smiles[:, 56:].astype(np.int64) + 40, 0, 255).astype(np.uint8)
    crops = np.concatenate([faces[:singles], np.stack([faces[singles:], smiles], 1).reshape(-1, 96, 96, 3)])
    labels = np.full((singles + 2 * people, 2), np.nan, np.float32)
    labels[:singles] = rng.uniform(-1, 1, (singles, 2))
    classes = np.concatenate([rng.integers(0, 7, singles), np.tile([NEUTRAL, HAPPY], people)])
    groups = [f"face{i}" for i in range(singles)] + [f"person{i // 2}" for i in range(2 * people)]
    return CropSet(crops, labels, groups, ["synthetic"] * len(crops), {}, classes)


def test_categorical_head_shape_and_probabilities() -> None:
    model = PK(tiny(num_classes=8))
    z = model.encoder(torch.rand(3, 3, 96, 96) * 2 - 1)
    assert model.classifier is not None and model.classifier(z).shape == (3, 8)
    assert PK(tiny()).classifier is None, "no head unless asked: files before it existed have none"
    # The head is built last: every other part starts from the same weights with or without it.
    torch.manual_seed(5)
    a = PK(tiny()).state_dict()
    torch.manual_seed(5)
    b = PK(tiny(num_classes=8)).state_dict()
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    with pytest.raises(ValueError):
        PKConfig(num_classes=-1)


def test_class_loss_is_wired_only_with_a_head() -> None:
    data = pair_data()
    with_head = Trainer(TrainConfig(model=tiny(num_classes=8), device="cpu", batch_size=8, out_dir="/tmp/unused"),
                        data)
    x, y = next(with_head.batches(0))
    logs = with_head.train_step(x, y, torch.Generator().manual_seed(0), with_head.c[:8])
    assert np.isfinite(logs["cls"]) and logs["cls"] == pytest.approx(np.log(8), rel=0.05)  # uniform at start
    before = with_head.model.classifier.net[0].weight.detach().clone()
    with_head.train_step(x, y, torch.Generator().manual_seed(0), with_head.c[:8])
    assert not torch.equal(before, with_head.model.classifier.net[0].weight), "C is in the optimiser"
    without = Trainer(TrainConfig(model=tiny(), device="cpu", batch_size=8, out_dir="/tmp/unused"), data)
    assert "cls" not in without.train_step(x, y, torch.Generator().manual_seed(0), without.c[:8])
    # Unknown classes (-1) take no part: a batch without any known class gives a zero loss.
    logs = with_head.train_step(x, y, torch.Generator().manual_seed(0), torch.full((8,), -1))
    assert logs["cls"] == 0.0


def test_detached_class_loss_trains_the_head_and_never_shapes_e() -> None:
    """class_detach: E, G and D_em after three steps are bit for bit those of a run without any class loss, while
    C learns; without it the class loss does reach E (so the comparison can tell the two apart)."""
    data = pair_data()

    def run(**kw: Any) -> Trainer:
        trainer = Trainer(TrainConfig(model=tiny(num_classes=8), device="cpu", batch_size=8, out_dir="/tmp/unused",
                                      seed=3, real=RealPairs(pairs_per_step=2), **kw), data)
        x, y = next(trainer.batches(0))
        for step in range(3):  # with real pairs: their photos' neutral/happy classes take part too
            trainer.train_step(x, y, torch.Generator().manual_seed(step), trainer.c[:8], trainer.pair_batch())
        return trainer

    start = Trainer(TrainConfig(model=tiny(num_classes=8), device="cpu", out_dir="/tmp/unused", seed=3), data).model
    detached, none, attached = run(class_detach=True), run(class_weight=0.0), run()
    for part in ("encoder", "generator", "emotion"):
        a, b = getattr(detached.model, part).state_dict(), getattr(none.model, part).state_dict()
        assert all(torch.equal(v, b[k]) for k, v in a.items()), part
    enc_a, enc_b = detached.model.encoder.state_dict(), attached.model.encoder.state_dict()
    assert not all(torch.equal(v, enc_b[k]) for k, v in enc_a.items()), "the attached class loss shapes E"
    assert not torch.equal(detached.model.classifier.net[0].weight, start.classifier.net[0].weight), "C learns"


def test_person_pairs_and_cropset_classes_round_trip(tmp_path: Path) -> None:
    data = pair_data(people=3, singles=4)
    pairs = person_pairs(data)
    assert pairs.shape == (3, 2)
    assert (data.classes[pairs[:, 0]] == NEUTRAL).all() and (data.classes[pairs[:, 1]] == HAPPY).all()
    assert all(data.groups[a] == data.groups[b] for a, b in pairs)
    save_cropset(tmp_path / "c.npz", data)
    again = load_cropset(tmp_path / "c.npz")
    np.testing.assert_array_equal(again.classes, data.classes)
    assert (CropSet(data.crops[:2], data.labels[:2], ["a", "b"], ["s", "s"]).classes == -1).all()


@pytest.mark.parametrize(("loss", "mode"), [("pair_v", "rank"), ("pair_v", "pair"), ("pair_v", "class"),
                                            ("pair_img", "none"), ("pair_code", "none")])
def test_each_pair_loss_is_reduced_by_its_own_gradient(loss: str, mode: str) -> None:
    """Each real-pair loss, trained alone (every other weight 0) on a tiny batch of 4 persons, falls by more
    than 15 %. The code-space edit loss reads G's edits through E, so E is first given a code worth
    matching (a few reconstruction steps), as the edit-consistency test does with D_em. Width 16: at
    width 8 (two channels before G's output) whether G leaves its flat start within a few dozen steps
    depends on the draw."""
    torch.manual_seed(0)
    zero = Lambdas(rec=0.0, em=0.0, z=0.0, img=0.0, iden=0.0)
    real = RealPairs(pairs_per_step=4, valence=mode, valence_weight=1.0 if loss == "pair_v" else 0.0,
                     neutral_valence=0.0, happy_valence=0.5, edit_image_weight=1.0 if loss == "pair_img" else 0.0,
                     edit_code_weight=1.0 if loss == "pair_code" else 0.0)
    cfg = TrainConfig(model=PKConfig(width=16, use_prior=False, use_real=False, num_classes=8), device="cpu",
                      batch_size=8, lambdas=zero, edit_weight=0.0, class_weight=0.0, lr=1e-3, out_dir="/tmp/unused",
                      real=real)
    trainer = Trainer(cfg, pair_data())
    x, y = next(trainer.batches(0))
    pairs = trainer.pair_batch()
    assert pairs is not None and pairs.shape == (4, 6, 96, 96)
    if loss == "pair_code":
        warm = Trainer(dataclasses.replace(cfg, lambdas=Lambdas(rec=1.0, em=0.0, z=0.0, img=0.0, iden=0.0),
                                           real=RealPairs()), pair_data())
        for _ in range(30):
            warm.train_step(x, y, torch.Generator().manual_seed(0))
        trainer.model.load_state_dict(warm.model.state_dict())
    history = [trainer.train_step(x, y, torch.Generator().manual_seed(0), None, pairs)[loss] for _ in range(80)]
    first, last = np.mean(history[:3]), np.mean(history[-5:])
    assert last < 0.85 * first, f"{loss}/{mode}: {first:.5f} -> {last:.5f}"


def test_pair_losses_are_logged_and_pairs_share_one_augmentation() -> None:
    trainer = Trainer(TrainConfig(model=tiny(num_classes=8), device="cpu", batch_size=8, out_dir="/tmp/unused",
                                  real=RealPairs(pairs_per_step=2)), pair_data())
    x, y = next(trainer.batches(0))
    logs = trainer.train_step(x, y, torch.Generator().manual_seed(0), trainer.c[:8], trainer.pair_batch())
    assert {"cls", "pair_v", "pair_dv", "pair_img", "pair_code"} <= set(logs)
    same = torch.cat([x[:3], x[:3]], dim=1)
    out = augment(same, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out[:, :3], out[:, 3:])
    with pytest.raises(ValueError, match="pairs per step"):
        Trainer(TrainConfig(model=tiny(), device="cpu", batch_size=8, out_dir="/tmp/unused",
                            real=RealPairs(pairs_per_step=9)), pair_data())
    with pytest.raises(ValueError, match="valence"):
        RealPairs(valence="bogus")


def test_head_is_exported_and_files_without_it_still_load(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from affective_memory_ros.pk.checkpoint import load_weights

    model = PK(tiny(num_classes=8))
    path = save_inference_model(tmp_path / "new.safetensors", model, {})
    enc = PKEncoder(path, device="cpu")
    crops = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    out = enc.encode(crops)
    assert enc.has_classes and np.isfinite(out.probs).all()
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
    # A version-1 file, as written before the head existed: no classifier tensors, no num_classes in the config.
    old = PK(tiny())
    state = {k: v.half().contiguous() for k, v in old.state_dict().items() if k.split(".")[0] in
             ("encoder", "generator", "emotion")}
    v1 = tmp_path / "v1.safetensors"
    save_file(state, v1, metadata={"format": "affective_memory_ros.pk", "format_version": "1",
                                   "config": json.dumps({"use_em": True, "use_prior": True, "use_real": True,
                                                         "width": 8, "z_dim": 50}), "provenance": "{}"})
    old_enc = PKEncoder(v1, device="cpu")
    got = old_enc.encode(crops)
    assert not old_enc.has_classes and got.probs.shape == (3, 8) and np.isnan(got.probs).all()
    assert np.isfinite(got.av).all()
    # Fine-tuning from an old file: what it has is loaded, the head and discriminators start fresh.
    fresh = PK(tiny(num_classes=8))
    assert load_weights(v1, fresh) == ["emotion", "encoder", "generator"]
    torch.testing.assert_close(fresh.encoder.fc.weight, load_file(v1)["encoder.fc.weight"].float())
    with pytest.raises(CheckpointError, match="do not fit"):
        load_weights(path, PK(PKConfig(width=16, num_classes=8)))
    # A newer version is refused with a clear message.
    newer = tmp_path / "v99.safetensors"
    save_file(state, newer, metadata={"format": "affective_memory_ros.pk", "format_version": "99",
                                      "config": "{}", "provenance": "{}"})
    with pytest.raises(CheckpointError, match="newer"):
        load_inference_model(newer)


def test_post_trained_head_leaves_e_g_and_d_em_as_they_were() -> None:
    from affective_memory_ros.pk.train import HeadConfig, post_train_classifier

    torch.manual_seed(0)
    model = PK(tiny(num_classes=8))
    data = pair_data(people=4, singles=8)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier")}
    head_before = model.classifier.net[0].weight.detach().clone()
    losses = post_train_classifier(model, data, HeadConfig(epochs=100, lr=1e-2))
    assert len(losses) == 100 and losses[-1] < 0.9 * losses[0]  # measured: 2.08 -> 1.61
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items()), "only C may change"
    assert not torch.equal(head_before, model.classifier.net[0].weight)
    with pytest.raises(ValueError, match="no categorical head"):
        post_train_classifier(PK(tiny()), data)
    with pytest.raises(ValueError, match="no face with an expression label"):
        post_train_classifier(model, CropSet(data.crops[:2], data.labels[:2], ["a", "b"], ["s", "s"]))


def test_add_head_keeps_the_files_weights_and_records_what_it_learned_from(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from affective_memory_ros.pk.recipe import add_head
    from affective_memory_ros.pk.train import HeadConfig

    old = PK(tiny())
    path = save_inference_model(tmp_path / "old.safetensors", old, {"trained_on": "synthetic"})
    model, provenance = add_head(str(path), pair_data(), HeadConfig(epochs=3))
    assert model.classifier is not None and provenance["trained_on"] == "synthetic"
    assert provenance["classifier"]["parts_kept"] == ["emotion", "encoder", "generator"]
    assert provenance["classifier"]["faces_per_class"]["neutral"] >= 4
    new = save_inference_model(tmp_path / "new.safetensors", model, provenance)
    a, b = load_file(path), load_file(new)
    assert set(b) - set(a) == {k for k in b if k.startswith("classifier.")} and set(a) <= set(b)
    assert all(torch.equal(a[k], b[k]) for k in a), "E, G and D_em are copied bit for bit"
    assert PKEncoder(new, device="cpu").has_classes
    assert PKConfig.from_json(json.dumps({"width": 8, "z_dim": 50})).num_classes == 0  # files before the head
    # A file that has a head (the recipe trains one jointly with E): that head is post-trained further.
    again, provenance2 = add_head(str(new), pair_data(), HeadConfig(epochs=3, seed=1))
    assert provenance2["classifier"]["continued_from_files_head"]
    assert not provenance["classifier"]["continued_from_files_head"]
    assert provenance2["classifier"]["parts_kept"] == ["emotion", "encoder", "generator"]
    c = load_file(save_inference_model(tmp_path / "again.safetensors", again, provenance2))
    assert set(c) == set(b) and all(torch.equal(b[k], c[k]) for k in b if not k.startswith("classifier.")), \
        "E, G and D_em copied bit for bit"
    assert not all(torch.equal(b[k], c[k]) for k in b if k.startswith("classifier.")), "the head learned"
    assert provenance2["classifier"]["previous"]["config"] == provenance["classifier"]["config"], "record kept"
    # It starts from the file's head: with a zero learning rate the head comes back as the file holds it.
    same, _ = add_head(str(new), pair_data(), HeadConfig(epochs=1, lr=0.0))
    d = load_file(save_inference_model(tmp_path / "same.safetensors", same, {}))
    assert all(torch.equal(b[k], d[k]) for k in b)


def test_reading_spread_tells_a_collapsed_pk_from_a_trained_one(media_dir: Path) -> None:
    """The recipe's stage-1 guard: a PK whose D_em reads every face alike (as collapsed CUDA runs did, docs/pk.md)
    is told apart from the shipped, trained one, on real faces."""
    from affective_memory_ros.perception.align import crop_faces
    from affective_memory_ros.perception.blazeface import BlazeFaceDetector
    from affective_memory_ros.pk.recipe import COLLAPSE_SPREAD, reading_spread
    from affective_memory_ros.video import read_image

    crops = []
    for name in ("multi_face.jpg", "single_face.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg"):
        image = read_image(media_dir / name)
        crops += list(crop_faces(image, BlazeFaceDetector("full")([image])[0]))
    faces = CropSet(np.stack(crops), np.full((len(crops), 2), np.nan, np.float32), [f"f{i}" for i in
                    range(len(crops))], ["media"] * len(crops))
    shipped, _ = load_inference_model(default_weights_path())
    assert reading_spread(shipped, faces) > 50 * COLLAPSE_SPREAD
    assert reading_spread(PK(tiny()), faces) < COLLAPSE_SPREAD, "an untrained PK reads every face alike too"
    collapsed = PK(tiny())
    torch.nn.init.zeros_(collapsed.emotion.net[2].weight)  # D_em's last linear layer: one reading for every code
    assert reading_spread(collapsed, faces) < COLLAPSE_SPREAD


def test_recipe_stops_before_training_on_or_exporting_a_collapsed_pk(tmp_path: Path, media_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe run end to end on real faces: a PK whose D_em reads every face alike (here: untrained, the
    faces being fewer than a batch) stops the run after stage 1 and nothing is exported, unless asked."""
    import shutil

    from affective_memory_ros.pk import recipe
    from affective_memory_ros.pk.recipe import COLLAPSE_SPREAD, main

    folder = tmp_path / "faces"
    folder.mkdir()
    rows = ["file,valence,arousal,label"]
    for i, name in enumerate(("single_face.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg", "0-f15-hao-ph.jpg",
                              "15-f13-anc-ph.jpg", "multi_face.jpg")):
        shutil.copy(media_dir / name, folder / name)
        rows.append(f"{name},{0.5 - 0.2 * i:.1f},{0.1 * i:.1f},{'happiness' if i % 2 else 'neutral'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    export = tmp_path / "pk.safetensors"
    args = ["--diffusionfer", str(folder), "--width", "8", "--stage1-steps", "2", "--stage2-steps", "1",
            "--pairs-per-step", "0", "--threads", "1", "--cache", str(tmp_path / "cache"), "--out",
            str(tmp_path / "run"), "--export", str(export)]
    with pytest.raises(SystemExit, match="stage 1 collapsed"):
        main(args)
    assert not export.exists() and not (tmp_path / "run" / "stage2").exists()
    assert main([*args, "--skip-collapse-check"]) == 0 and export.is_file()
    _, provenance = load_inference_model(export)
    assert provenance["stage1"]["trained_here"] and provenance["stage1"]["train_config"]["max_steps"] == 2
    assert provenance["stage1"]["valence_spread"] < COLLAPSE_SPREAD and "valence_spread" in provenance
    # A stage 1 that spread its readings and a stage 2 that collapsed: still nothing is exported.
    export.unlink()
    spreads = iter([0.3, 0.0])
    monkeypatch.setattr(recipe, "reading_spread", lambda model, faces: next(spreads))
    with pytest.raises(SystemExit, match="stage 2 collapsed"):
        recipe.main(args)
    assert not export.exists()


def test_shipped_model_records_its_recipe_and_trained_on_the_train_split_only() -> None:
    """The shipped PK (scripts/train_default_pk.sh): the real-face recipe from scratch, stage 1 then the
    real-face stage, then its categorical head post-trained further; every step saw only the train split."""
    _, provenance = load_inference_model(default_weights_path())
    head = provenance["classifier"]
    assert head["train"]["split"] == "affective_memory_ros.splits (train only)" and not head["train"]["dev_fold"]
    assert head["continued_from_files_head"] and head["config"]["epochs"] == 50
    assert head["parts_kept"] == ["emotion", "encoder", "generator"] and head["classes"] == list(EXPRESSIONS)
    data, stage2 = provenance["data"], provenance["train_config"]
    assert data["split"] == head["train"]["split"] and not data["dev_fold"]
    assert data["train"]["london_frl"] == {"faces": 82, "people": 41, "with_av": 0, "with_class": 82}
    assert stage2["real"]["pairs_per_step"] == 8 and stage2["real"]["valence_weight"] == 3.0
    assert provenance["steps"] == 1500 and stage2["max_steps"] == 1500
    stage1 = provenance["stage1"]
    assert stage1["trained_here"] and stage1["steps"] == 1500
    assert stage1["train_config"]["real"]["pairs_per_step"] == 0, "stage 1 has no real pairs"
    assert stage1["train_config"]["seed"] + 1 == stage2["seed"]
