"""``medvqa predict`` and ``Predictor.from_run``: the answers of a trained run for new images and questions."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_prep.synthetic import generate
from infra.errors import UserError
from medvqa.cli import main as cli_main
from medvqa.data import PreparedDataset
from medvqa.predict import Predictor
from medvqa.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(prepare_synthetic, tmp_path_factory) -> dict[str, Path]:
    data = prepare_synthetic("gray84,gray128")
    out = tmp_path_factory.mktemp("runs")
    for name in ("mevf_ban", "qcr"):
        assert train_main(["--config", str(ROOT / "configs" / "synthetic" / f"{name}_tiny.yaml"), "--out",
                           str(out / name), f"data.root={data}", "train.epochs=1", "model.head.hidden_dim=16",
                           "model.freeze_visual=true"]) == 0
    return {"mevf_ban": out / "mevf_ban", "qcr": out / "qcr", "images": out / "images"}


def test_answers_on_the_original_images_are_the_evaluations(runs: dict[str, Path]) -> None:
    """Images decoded and resized here as the prepared caches: the same answers as ``medvqa evaluate``."""
    predictions = pd.read_csv(runs["mevf_ban"] / "predictions_sound.csv", keep_default_na=False)
    raw = generate(16, 0)
    test = [r for r in raw.records if r.split == "test"]
    predictor = Predictor.from_run(runs["mevf_ban"])
    found = predictor.predict_batch([raw.open_image(r.image_id) for r in test], [r.question for r in test],
                                    k=len(predictor.answers))
    assert [p.answers[0][0] for p in found] == predictions.prediction.tolist()
    assert all(p.route is None for p in found)
    assert [round(p.answers[0][1], 6) for p in found] == predictions.probability.tolist()
    assert sum(prob for _, prob in found[0].answers) == pytest.approx(1.0, abs=1e-5)
    assert [prob for _, prob in found[0].answers] == sorted((prob for _, prob in found[0].answers), reverse=True)


def test_qcr_is_routed_by_its_type_classifier(runs: dict[str, Path], tmp_path: Path) -> None:
    raw = generate(16, 0)
    image = tmp_path / "scan.png"
    raw.open_image("synth_00000.png").save(image)
    predictor = Predictor.from_run(runs["qcr"])
    vocab = PreparedDataset(predictor.config.data.root).answer_vocab()
    for question in ("is there a lesion in the image?", "what organ is shown?"):
        prediction = predictor.predict(image, question, k=3)
        branch = vocab.open if prediction.route == "open" else vocab.closed
        assert prediction.route in ("open", "closed") and len(prediction.answers) == min(3, len(branch))
        assert {answer for answer, _ in prediction.answers} <= set(branch)  # only the routed branch answers
        tokens = predictor.tokens(question)[None]
        assert prediction.route == ("open" if predictor.router(tokens).argmax(1).item() == 1 else "closed")


def test_the_command_single_and_batch(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = generate(16, 0)
    raw.open_image("synth_00001.png").save(tmp_path / "a.png")
    assert cli_main(["predict", "--run", str(runs["qcr"]), "--image", str(tmp_path / "a.png"), "--question",
                     "what organ is shown?", "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Q: what organ is shown?  [routed ") and len(lines) == 3 and lines[1].startswith("  1. ")
    (tmp_path / "batch.jsonl").write_text(json.dumps({"image": "a.png", "question": "is it a ct scan?"}) + "\n")
    (tmp_path / "batch.csv").write_text("image,question\na.png,is it a ct scan?\n")
    for batch in ("batch.jsonl", "batch.csv"):
        assert cli_main(["predict", "--run", str(runs["mevf_ban"]), "--input", str(tmp_path / batch), "-k", "1"]) == 0
        row = json.loads(capsys.readouterr().out)
        assert row["route"] is None and len(row["answers"]) == 1 and 0 < row["answers"][0]["probability"] <= 1


@pytest.mark.parametrize(("args", "message"), [
    (["--question", "zebra xylophone?"], "none of its words is in the run's dictionary"),
    (["--image", "missing.png"], "image not found: .*missing.png"),
    (["--input", "rows.txt"], "input file not found"),
    (["--input", "empty.jsonl"], "empty.jsonl: no questions"),
    ([], "give --image and --question, or --input FILE"),
])
def test_bad_input_is_one_line(runs: dict[str, Path], tmp_path: Path, args: list[str], message: str,
                               capsys: pytest.CaptureFixture) -> None:
    generate(16, 0).open_image("synth_00001.png").save(tmp_path / "a.png")
    (tmp_path / "empty.jsonl").write_text("\n")
    given = {"--image": str(tmp_path / "a.png"), "--question": "is it a ct scan?"} if args[:1] != ["--input"] else {}
    if args:
        given[args[0]] = str(tmp_path / args[1]) if args[0] in ("--image", "--input") else args[1]
    else:
        given = {}
    argv = ["predict", "--run", str(runs["mevf_ban"])] + [x for pair in given.items() for x in pair]
    with pytest.raises(UserError, match=message):
        from medvqa.predict import main

        main(argv[1:])
    assert cli_main(argv) == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
