"""``medvqa compare`` on real runs trained on the synthetic dataset, and the probabilities evaluation keeps."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from statsmodels.stats.contingency_tables import mcnemar

from medvqa.cli import main as cli_main
from medvqa.config import read_run_config
from medvqa.experiment import build_experiment, predict, predict_topk
from medvqa.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]
MEVF_TINY = str(ROOT / "configs" / "synthetic" / "mevf_ban_tiny.yaml")


@pytest.fixture(scope="module")
def runs(prepare_synthetic, tmp_path_factory) -> dict[str, Path]:
    """Frozen MEVF-BAN runs, 2 epochs: MAML+CDAE and MAML alone, seeds 0 and 1."""
    data = prepare_synthetic("gray84,gray128")
    out = tmp_path_factory.mktemp("runs")
    made = {}
    for name, visual in (("both", "maml,cdae"), ("maml", "maml")):
        for seed in (0, 1):
            run = out / f"{name}_s{seed}"
            assert train_main(["--config", MEVF_TINY, "--out", str(run), f"data.root={data}",
                               f"train.feature_cache={out / 'cache'}", "train.epochs=2", "model.freeze_visual=true",
                               "model.head.hidden_dim=16", f"train.seed={seed}", f"model.visual=[{visual}]"]) == 0
            made[f"{name}_s{seed}"] = run
    return made


def _predictions(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "predictions_sound.csv", dtype={"qid": str})


def test_compare_two_sets_pairs_by_seed_and_writes_json_and_markdown(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--a", str(runs["both_s0"]), str(runs["both_s1"]),
            "--b", str(runs["maml_s1"]), str(runs["maml_s0"]), "--labels", "maml+cdae", "maml", "--out", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "maml+cdae: 2 runs (seed 0, 1); maml: 2 runs (seed 1, 0); protocol sound; 24 test questions" in printed
    assert "Holm's step-down correction over 3 tests" in printed
    result = json.loads((out / "compare.json").read_text())
    assert [(p["seed_a"], p["seed_b"]) for p in result["difference"]["pairs"]] == [(0, 0), (1, 1)]
    for side, names in (("a", ["both_s0", "both_s1"]), ("b", ["maml_s1", "maml_s0"])):
        overall = [json.loads((runs[n] / "results_sound.json").read_text())["overall"] for n in names]
        assert result[side]["overall"]["per_seed"] == pytest.approx(overall, abs=0.01)
        assert result[side]["overall"]["mean"] == pytest.approx(np.mean(overall), abs=0.01)
        assert result[side]["overall"]["std"] == pytest.approx(np.std(overall, ddof=1), abs=0.01)
    for test, seed in zip(result["difference"]["overall"]["mcnemar"], (0, 1)):
        a, b = _predictions(runs[f"both_s{seed}"]), _predictions(runs[f"maml_s{seed}"])
        assert list(a["qid"]) == list(b["qid"])
        table = pd.crosstab(a["correct"], b["correct"]).reindex(index=[True, False], columns=[True, False], fill_value=0)
        assert test["p_value"] == pytest.approx(mcnemar(table.to_numpy(), exact=True).pvalue, rel=1e-9)
        assert (test["a_only"], test["b_only"]) == (table.loc[True, False], table.loc[False, True])
    mcnemar_p = [t["p_value"] for metric in ("open", "closed", "overall") for t in result["difference"][metric]["mcnemar"]]
    holm = sorted(mcnemar_p)[0] * len(mcnemar_p)  # Holm's smallest adjusted p: the smallest raw p times the tests
    assert min(t["p_adjusted"] for m in ("open", "closed", "overall")
               for t in result["difference"][m]["mcnemar"]) == pytest.approx(min(holm, 1.0))
    for test in result["difference"]["overall"]["mcnemar"]:  # both printed, raw first
        assert f"s{test['seed_a']} {test['p_value']:.3g} / {test['p_adjusted']:.3g}" in printed
    differences = [(_predictions(runs[f"maml_s{s}"])["correct"].mean() - _predictions(runs[f"both_s{s}"])["correct"].mean())
                   for s in (0, 1)]
    assert result["difference"]["overall"]["difference"] == pytest.approx(100 * np.mean(differences), abs=0.01)
    markdown = (out / "compare.md").read_text()
    assert ("| metric | maml+cdae | maml | maml - maml+cdae [95% CI] | p | p (holm) | McNemar p per seed (raw / holm) |"
            in markdown)


def test_compare_two_runs_of_different_seeds(runs, capsys):
    assert cli_main(["compare", str(runs["both_s0"]), str(runs["maml_s1"]), "--correction", "bonferroni",
                     "--resamples", "500"]) == 0
    printed = capsys.readouterr().out
    assert "A: 1 run (seed 0); B: 1 run (seed 1)" in printed and "s0/1 " in printed
    assert "Bonferroni correction over 3 tests" in printed


def _one_line_error(capsys, argv) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


def test_compare_refuses_bad_input_in_one_line(runs, tmp_path, capsys):
    other = tmp_path / "other_test_set"
    shutil.copytree(runs["maml_s0"], other)
    frame = _predictions(other)
    frame.iloc[:-3].to_csv(other / "predictions_sound.csv", index=False)  # a run evaluated on other questions
    err = _one_line_error(capsys, ["compare", str(runs["both_s0"]), str(other)])
    assert "was evaluated on other test questions" in err and "(21 and 24 questions, 21 qids in common)" in err

    unevaluated = tmp_path / "unevaluated"
    shutil.copytree(runs["maml_s0"], unevaluated)
    (unevaluated / "results_sound.json").unlink()
    err = _one_line_error(capsys, ["compare", str(runs["both_s0"]), str(unevaluated)])
    assert f"run medvqa evaluate --run {unevaluated} --protocol sound" in err

    err = _one_line_error(capsys, ["compare", "--a", str(runs["both_s0"]), str(runs["maml_s0"]), "--b", str(runs["maml_s1"])])
    assert "are both seed 0: give one run per seed" in err
    err = _one_line_error(capsys, ["compare", "--a", str(runs["both_s0"]), str(runs["both_s1"]),
                                   "--b", str(runs["maml_s1"]), str(unevaluated.parent / "nowhere")])
    assert "is not a run directory" in err
    reseeded = []
    for name, seed in (("maml_s0", 5), ("maml_s1", 6)):
        copy = tmp_path / f"seed{seed}"
        shutil.copytree(runs[name], copy)
        config = yaml.safe_load((copy / "config.yaml").read_text())
        config["train"]["seed"] = seed
        (copy / "config.yaml").write_text(yaml.safe_dump(config))
        reseeded.append(str(copy))
    err = _one_line_error(capsys, ["compare", "--a", str(runs["both_s0"]), str(runs["both_s1"]), "--b", *reseeded])
    assert "the two sets of runs share no seed (seeds [0, 1] and [5, 6])" in err
    assert "RUN_A RUN_B are two runs, got 3" in _one_line_error(capsys, ["compare", *(str(runs[n]) for n in list(runs)[:3])])
    assert "unknown protocol" in _one_line_error(capsys, ["compare", str(runs["both_s0"]), str(runs["maml_s0"]),
                                                          "--protocol", "best"])


def test_an_experiment_sets_the_tf32_mode_of_its_run(runs):
    config = read_run_config(runs["both_s0"])
    config.train.tf32 = "ieee"
    build_experiment(config)
    convolutions = torch.backends.cudnn.conv if hasattr(torch.backends.cudnn, "conv") else None
    assert (convolutions.fp32_precision == "ieee") if convolutions else not torch.backends.cudnn.allow_tf32
    config.train.tf32 = "cudnn"  # back to PyTorch's default for the tests that follow
    build_experiment(config)


def test_predictions_keep_the_probability_of_the_predicted_answer(runs):
    run = runs["both_s1"]
    config = read_run_config(run)
    exp = build_experiment(config, torch.load(run / "checkpoints" / "best_val.pt", weights_only=True))
    test = exp.splits["test"]
    top = predict_topk(exp, test, k=4)
    frame = _predictions(run)
    assert [t[0][0] for t in top] == list(frame["prediction"].astype(str)) == predict(exp, test)
    assert [round(t[0][1], 6) for t in top] == pytest.approx(list(frame["probability"]), abs=1e-6)
    for answers in top:
        probabilities = [p for _, p in answers]
        assert len(answers) == 4 and probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-6 and len({a for a, _ in answers}) == 4
