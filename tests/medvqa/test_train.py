"""End-to-end training and evaluation: synthetic runs, resume equivalence, run-directory rules, NaN stop,
and a short real VQA-RAD run that beats the majority answer."""
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

import medvqa.train as train_module
from infra.errors import UserError
from medvqa.cli import main as cli_main
from medvqa.data import PreparedDataset, normalize_answer
from medvqa.evaluate import main as evaluate_main
from medvqa.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
QCR_TINY = str(ROOT / "configs" / "synthetic" / "qcr_tiny.yaml")
MEVF_TINY = str(ROOT / "configs" / "synthetic" / "mevf_ban_tiny.yaml")


@pytest.fixture(scope="module")
def synthetic(prepare_synthetic) -> Path:
    return prepare_synthetic("gray84,gray128")


def _qcr(synthetic, out, *extra):
    return train_main(["--config", QCR_TINY, "--out", str(out), f"data.root={synthetic}",
                       f"train.feature_cache={synthetic.parent / 'cache'}", *extra])


def test_mevf_finetuned_run_writes_everything(synthetic, tmp_path):
    run = tmp_path / "run"
    assert train_main(["--config", MEVF_TINY, "--out", str(run), f"data.root={synthetic}", "train.epochs=1"]) == 0
    for name in ("config.yaml", "metrics.csv", "metrics.json", "results.json", "predictions.csv",
                 "checkpoints/last.pt", "checkpoints/best_val.pt", "checkpoints/best_test.pt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics) == 1 and {"train_loss", "val_overall", "test_overall", "lr"} <= set(metrics[0])
    results = json.loads((run / "results.json").read_text())
    assert results["protocol"] == "sound" and results["n_open"] + results["n_closed"] == results["n"]
    assert results["overall"] == metrics[0]["test_overall"]  # evaluation reproduces the training-time score


def test_sound_result_of_a_run_without_validation_split_says_so(synthetic, tmp_path):
    run = tmp_path / "run"
    assert train_main(["--config", MEVF_TINY, "--out", str(run), f"data.root={synthetic}", "train.epochs=1",
                       "data.train_splits=[train,val]"]) == 0
    notes = json.loads((run / "results_sound.json").read_text())["notes"]
    assert "no validation split (trained on it): the last epoch, not a validation choice" in notes


def _interrupted_qcr(monkeypatch, data, out, stop_in_epoch, *extra):
    """Train as ``_qcr`` does, stopped like a killed process as epoch ``stop_in_epoch`` begins."""
    real_epoch = train_module.train_one_epoch

    def crash(exp, optimizer, epoch):
        if epoch == stop_in_epoch:
            raise KeyboardInterrupt
        return real_epoch(exp, optimizer, epoch)

    monkeypatch.setattr(train_module, "train_one_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        _qcr(data, out, *extra)
    monkeypatch.setattr(train_module, "train_one_epoch", real_epoch)


def test_resume_equals_uninterrupted(synthetic, tmp_path, monkeypatch):
    _qcr(synthetic, tmp_path / "straight", "train.epochs=3")
    _interrupted_qcr(monkeypatch, synthetic, tmp_path / "resumed", 2, "train.epochs=3")
    _qcr(synthetic, tmp_path / "resumed", "train.epochs=3")

    def history(run):
        rows = json.loads((run / "metrics.json").read_text())
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]

    assert history(tmp_path / "resumed") == history(tmp_path / "straight")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stop_after_then_on_equals_uninterrupted(synthetic, tmp_path, capsys):
    _qcr(synthetic, tmp_path / "straight", "train.epochs=3")
    pieces = tmp_path / "pieces"

    def in_pieces(*stop):
        return train_main(["--config", QCR_TINY, "--out", str(pieces), *stop, f"data.root={synthetic}",
                           f"train.feature_cache={synthetic.parent / 'cache'}", "train.epochs=3"])

    assert in_pieces("--stop-after", "2") == 0
    assert len(json.loads((pieces / "metrics.json").read_text())) == 2
    assert json.loads((pieces / "results_sound.json").read_text())["epoch"] in (0, 1)  # evaluated as it stands
    assert in_pieces("--stop-after", "2") == 0
    assert "already trained for 2 of 3 epochs; nothing to do before epoch 2" in capsys.readouterr().out
    assert in_pieces() == 0

    def history(run):
        return [{k: v for k, v in row.items() if "seconds" not in k}
                for row in json.loads((run / "metrics.json").read_text())]

    assert history(pieces) == history(tmp_path / "straight")  # the learning rate follows the 3-epoch schedule
    with pytest.raises(UserError, match="--stop-after: '0' is not a positive integer"):
        in_pieces("--stop-after", "0")


def test_type_classifier_interrupted_while_fitting_is_refit(synthetic, tmp_path, monkeypatch):
    _qcr(synthetic, tmp_path / "straight", "train.epochs=1")
    real_predict_open, calls = train_module.predict_open, []

    def crash_in_second_epoch(model, tokens):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict_open(model, tokens)

    monkeypatch.setattr(train_module, "predict_open", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _qcr(synthetic, tmp_path / "resumed", "train.epochs=1")
    assert not (tmp_path / "resumed" / "type_classifier.pt").exists()  # no half-fitted classifier to reload
    monkeypatch.setattr(train_module, "predict_open", real_predict_open)
    _qcr(synthetic, tmp_path / "resumed", "train.epochs=1")
    a, b = (torch.load(run / "type_classifier.pt", weights_only=True) for run in (tmp_path / "straight", tmp_path / "resumed"))
    assert a["epoch"] == b["epoch"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_run_directory_rules(synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    _qcr(synthetic, run, "train.epochs=1")
    _qcr(synthetic, run, "train.epochs=1")
    assert "nothing to do" in capsys.readouterr().out  # a finished run is not retrained
    with pytest.raises(UserError, match="different config"):
        _qcr(synthetic, run, "train.epochs=1", "train.lr=0.01")
    train_main(["--config", QCR_TINY, "--out", str(run), "--overwrite", f"data.root={synthetic}",
                f"train.feature_cache={synthetic.parent / 'cache'}", "train.epochs=1", "train.lr=0.01"])
    assert "lr: 0.01" in (run / "config.yaml").read_text()


def test_a_finished_run_is_extended_to_the_run_that_trained_longer(synthetic, tmp_path, capsys):
    _qcr(synthetic, tmp_path / "straight", "train.epochs=2")
    extended = tmp_path / "extended"
    _qcr(synthetic, extended, "train.epochs=1")
    _qcr(synthetic, extended, "train.epochs=2")
    a, b = (torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
            for run in (tmp_path / "straight", extended))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "epochs: 2" in (extended / "config.yaml").read_text()
    with pytest.raises(UserError, match="has trained 2 epochs already; train.epochs=1 asks for fewer"):
        _qcr(synthetic, extended, "train.epochs=1")


def test_checkpoints_of_the_same_epoch_are_one_file(synthetic, tmp_path):
    run = tmp_path / "run"
    _qcr(synthetic, run, "train.epochs=1")
    names = ("last", "best_val", "best_test")
    inodes = {(run / "checkpoints" / f"{name}.pt").stat().st_ino for name in names}
    assert len(inodes) == 1  # epoch 0 is every protocol's choice: one model on disk
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best_test.pt", "best_val.pt", "last.pt",
                                                                      "resume.pt"]
    assert "optimizer" not in torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def test_runtime_settings_do_not_make_a_different_run(synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    _qcr(synthetic, run, "train.epochs=1")
    _qcr(synthetic, run, "train.epochs=1", "train.threads=1", "train.progress=false", "train.eval_batch_size=7")
    assert "nothing to do" in capsys.readouterr().out
    assert "eval_batch_size: 7" in (run / "config.yaml").read_text()  # the latest runtime settings are kept


def test_a_run_follows_its_data_not_its_path(synthetic, tmp_path, monkeypatch):
    data, moved, run = tmp_path / "data", tmp_path / "elsewhere", tmp_path / "run"
    shutil.copytree(synthetic, data)
    _interrupted_qcr(monkeypatch, data, run, 1, "train.epochs=2")
    data.rename(moved)
    with pytest.raises(UserError, match="not a prepared dataset"):
        evaluate_main(["--run", str(run)])
    assert evaluate_main(["--run", str(run), "--data-root", str(moved), "--device", "cpu"]) == 0
    assert json.loads((run / "results_sound.json").read_text())["n_open"] > 0

    cli_main(["prepare", "synthetic", "--out", str(data), "--synthetic-images", "16", "--seed", "1",
              "--image-specs", "gray84,gray128"])  # other data where the run's data used to be
    saved = (run / "config.yaml").read_text()
    with pytest.raises(UserError, match=r"trained on other data .*\(records, dictionary, images:gray128, images:gray84 differ\)"):
        _qcr(data, run, "train.epochs=2", "train.eval_batch_size=7")
    with pytest.raises(UserError, match="trained on other data"):
        evaluate_main(["--run", str(run), "--data-root", str(data)])
    assert (run / "config.yaml").read_text() == saved  # the refused resume left the run as it was
    _qcr(moved, run, "train.epochs=2")  # the same data at a new path resumes, no --overwrite
    assert len(json.loads((run / "metrics.json").read_text())) == 2
    with pytest.raises(UserError, match="trained on other data"):  # a finished run is not re-pointed either
        _qcr(data, run, "train.epochs=2", "train.eval_batch_size=7")
    assert "eval_batch_size: 7" not in (run / "config.yaml").read_text()
    results = json.loads((run / "results_sound.json").read_text())
    assert results["data"]["square_filter"] == "bicubic" and set(results["data"]["digests"]) == {
        "records", "dictionary", "embeddings", "images:gray84", "images:gray128"}


def test_run_from_before_data_digests_resumes_only_at_its_path(synthetic, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _interrupted_qcr(monkeypatch, synthetic, run, 1, "train.epochs=2")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    del state["data_digests"]
    torch.save(state, run / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match=f"records no data digests; .* data.root={synthetic}"):
        _qcr(tmp_path / "elsewhere", run, "train.epochs=2")
    _qcr(synthetic, run, "train.epochs=2")
    assert len(json.loads((run / "metrics.json").read_text())) == 2


def test_data_digests_follow_content_not_provenance(synthetic, tmp_path):
    again, nearest = tmp_path / "again", tmp_path / "nearest"
    for out, extra in ((again, []), (nearest, ["--resize-filter", "nearest"])):
        cli_main(["prepare", "synthetic", "--out", str(out), "--synthetic-images", "16",
                  "--image-specs", "gray84,gray128", *extra])
    parts = ("records", "dictionary", "embeddings", "images:gray84", "images:gray128")
    original = {part: PreparedDataset(synthetic).digest(part) for part in parts}
    assert {part: PreparedDataset(again).digest(part) for part in parts} == original
    changed = [part for part in parts if PreparedDataset(nearest).digest(part) != original[part]]
    assert changed == ["images:gray84", "images:gray128"]
    with pytest.raises(UserError, match="unknown data part"):
        PreparedDataset(synthetic).digest("answers")


def test_protocols_and_multi_run_summary(synthetic, tmp_path, capsys):
    runs = [tmp_path / "s0", tmp_path / "s1"]
    for seed, run in enumerate(runs):
        _qcr(synthetic, run, "train.epochs=1", f"train.seed={seed}")
    for protocol in ("mevf-legacy", "pubmedclip-legacy"):
        assert evaluate_main(["--run", str(runs[0]), "--protocol", protocol]) == 0
        results = json.loads((runs[0] / f"results_{protocol}.json").read_text())
        assert results["protocol"] == protocol
    assert json.loads((runs[0] / "results_pubmedclip-legacy.json").read_text())["routing"] == "type classifier"
    evaluate_main(["--run", str(runs[0]), "--run", str(runs[1])])
    assert "over 2 runs" in capsys.readouterr().out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(synthetic, tmp_path, monkeypatch):
    real_one_hot = train_module.one_hot
    calls = []

    def poisoned(labels, n):
        calls.append(1)
        targets = real_one_hot(labels, n)
        return targets * float("nan") if len(calls) > 2 else targets

    monkeypatch.setattr(train_module, "one_hot", poisoned)
    run = tmp_path / "run"
    with pytest.raises(UserError, match="loss is nan at epoch 1"):
        _qcr(synthetic, run, "train.epochs=2", "train.batch_size=64")  # 2 batches per epoch
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 0


def test_bad_inputs_are_one_line_errors(synthetic, tmp_path):
    with pytest.raises(UserError, match="not a prepared dataset"):
        train_main(["--config", QCR_TINY, "--out", str(tmp_path / "a"), f"data.root={tmp_path}"])
    with pytest.raises(UserError, match="model.encoders.maml.weights: not found"):
        train_main(["--config", QCR_TINY, "--out", str(tmp_path / "b"), f"data.root={synthetic}",
                    "model.encoders.maml.weights=/nonexistent.weights"])
    with pytest.raises(UserError, match=r"weights is 'prepared', but .* holds no maml weights"):
        train_main(["--config", QCR_TINY, "--out", str(tmp_path / "c"), f"data.root={synthetic}",
                    "model.encoders.maml.weights=prepared"])
    assert not any((tmp_path / name).exists() for name in "abc")  # a failed start leaves no run folder
    with pytest.raises(UserError, match="not a run directory"):
        evaluate_main(["--run", str(tmp_path)])


def test_checkpoint_with_other_answers_is_refused(synthetic, tmp_path):
    run = tmp_path / "run"
    _qcr(synthetic, run, "train.epochs=1")
    path = run / "checkpoints" / "best_val.pt"
    state = torch.load(path, weights_only=True)
    state["answers"] = state["answers"][:-1]
    torch.save(state, path)
    with pytest.raises(UserError, match="answer vocabulary"):
        evaluate_main(["--run", str(run)])


def test_checkpoint_of_another_model_is_refused(synthetic, tmp_path):
    run = tmp_path / "run"
    _qcr(synthetic, run, "train.epochs=1")
    config = (run / "config.yaml").read_text().replace("hidden_dim: 32", "hidden_dim: 16")
    (run / "config.yaml").write_text(config)
    with pytest.raises(UserError, match="model mismatch, size mismatch"):
        evaluate_main(["--run", str(run)])


@pytest.mark.skipif(not (SHARED / "vqa_rad" / "data_RAD").is_dir(), reason="real VQA-RAD not available")
def test_real_vqa_rad_frozen_run_beats_majority_answer(tmp_path):
    data = tmp_path / "vqa_rad"
    cli_main(["prepare", "vqa-rad", "--source", str(SHARED / "vqa_rad" / "data_RAD"), "--out", str(data),
              "--glove", str(SHARED / "glove" / "glove6b_300d_subset.npz"), "--image-specs", "gray84,gray128"])
    run = tmp_path / "run"
    train_main(["--config", str(ROOT / "configs" / "vqa_rad" / "mevf_ban_frozen.yaml"), "--out", str(run),
                f"data.root={data}", "model.head.hidden_dim=256", "train.epochs=8", "train.progress=false"])
    test = PreparedDataset(data).records("test")
    majority = Counter(normalize_answer(r.answer) for r in test).most_common(1)[0][1] / len(test) * 100
    overall = json.loads((run / "results.json").read_text())["overall"]
    assert overall > majority + 10, (overall, majority)  # about 44 vs 29.5 after 8 epochs


def test_published_lr_schedules():
    from medvqa.config import load_config

    mevf = load_config(ROOT / "configs" / "vqa_rad" / "mevf_ban.yaml")
    lrs = [train_module.lr_at(e, mevf) for e in range(20)]
    assert lrs[:5] == [0.0025, 0.005, 0.0075, 0.01, 0.01]
    assert lrs[9] == 0.01 and lrs[10] == pytest.approx(0.0075) and lrs[19] == pytest.approx(0.01 * 0.75**5)
    qcr = load_config(ROOT / "configs" / "vqa_rad" / "qcr.yaml")
    assert {train_module.lr_at(e, qcr) for e in range(200)} == {0.002}
