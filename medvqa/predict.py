"""Ask a trained run questions about images: ``medvqa predict --run DIR --image FILE --question TEXT [-k 5]``,
or ``--input FILE.jsonl|csv`` (fields ``image``, ``question``; image paths relative to that file) for a batch.

Prints the top-k answers with their probabilities (``medvqa.experiment.predict_topk``: a softmax over the
answers of the branch the question goes to). A head routed by question type (QCR) is routed by the run's
question-type classifier, and the route is shown. The Python API is ``Predictor.from_run(DIR)``; it
reads the run's checkpoint and, of the prepared data, only what an answer needs: the dictionary, the
answer list and the encoder weights (no image cache, no feature cache). Images are resized as the
prepared caches are (``data_prep.images.render``).
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from data_prep.images import render
from data_prep.records import VQARecord
from data_prep.text import tokenize
from infra.cli import Parser
from infra.errors import UserError
from infra.tf32 import set_tf32
from medvqa.batches import SplitTensors, answer_list
from medvqa.config import Config, read_run_config
from medvqa.data import PreparedDataset
from medvqa.experiment import Experiment, build_model, encoder_settings, load_model_state, predict_topk, resolve_device
from medvqa.models import QuestionTypeClassifier
from medvqa.models.visual import images_to_tensor
from medvqa.protocols import get_protocol


@dataclass(frozen=True)
class Prediction:
    question: str
    answers: list[tuple[str, float]]  # the top k, most probable first
    route: str | None  # "open" / "closed" where the type classifier routed the question (QCR); else None


class QueryImages:
    """New images laid out as ``VisualInputs`` lays out a dataset's: row i of each input is image i."""

    def __init__(self, images: dict[str, Tensor]) -> None:
        self.images = images  # input spec key -> [B, C, S, S]

    def batch(self, image_rows: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return {key: x[image_rows] for key, x in self.images.items()}, {}


class Predictor:
    """A trained run's head with what it needs to answer: dictionary, answer list, image preprocessing and,
    for a head routed by question type, the type classifier."""

    def __init__(self, exp: Experiment, square_filter: str, router: QuestionTypeClassifier | None) -> None:
        self.exp, self.router = exp, router
        self.specs = {}  # input spec key -> how the prepared cache was made (its gray caches' filter)
        for encoder in exp.model.visual.encoders.values():
            spec = encoder.input_spec
            self.specs[spec.key] = replace(spec, interpolation=square_filter) if spec.resize_mode == "squash" else spec

    @property
    def config(self) -> Config:
        return self.exp.config

    @property
    def answers(self) -> list[str]:
        return self.exp.answers

    @classmethod
    def from_run(cls, run_dir: str | Path, protocol: str = "sound", device: str = "cpu",
                 data_root: str | Path | None = None) -> "Predictor":
        """The model of ``run_dir`` at the epoch ``protocol`` picks (``sound``: best validation accuracy)."""
        run_dir = Path(run_dir)
        config = read_run_config(run_dir)
        path = run_dir / "checkpoints" / f"{get_protocol(protocol).checkpoint}.pt"
        if not path.is_file():
            raise UserError(f"checkpoint not found: {path} (is the run trained?)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        ds = PreparedDataset(data_root or config.data.root)
        vocab = ds.answer_vocab(config.data.answer_vocab, closed_by=config.data.closed_by)
        settings = encoder_settings(config, ds)
        model = build_model(config, ds, vocab, settings)
        answers = answer_list(vocab, model.answer_branches)
        load_model_state(model, state, answers, str(path))
        router = None
        if model.routed_by_type:
            router_path = run_dir / "type_classifier.pt"
            if not router_path.is_file():
                raise UserError(f"{router_path} not found: {config.model.name} routes each question by its type, "
                                "and this run has no question-type classifier (train with type_classifier.epochs > 0)")
            router = QuestionTypeClassifier(ds.dictionary.ntoken, hidden_dim=config.type_classifier.hidden_dim)
            router.load_state_dict(torch.load(router_path, map_location="cpu", weights_only=True)["model"])
        target = resolve_device(device)
        set_tf32(config.train.tf32)
        exp = Experiment(config, ds, vocab, answers, model.to(target).eval(), QueryImages({}), {}, target, {}, settings)
        return cls(exp, ds.summary.get("square_filter", "bicubic"), router.to(target).eval() if router else None)

    def tokens(self, question: str) -> Tensor:
        """``[12]`` token ids; a question none of whose words the run knows is refused."""
        dictionary, words = self.exp.ds.dictionary, tokenize(question)
        if not words or dictionary.count_unknown(question) == len(words):
            raise UserError(f"question {question!r}: none of its words is in the run's dictionary "
                            f"({len(dictionary.vocabulary)} words): the model cannot read it")
        return torch.tensor(dictionary.encode(question), dtype=torch.long)

    def images(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        """Each encoder's input ``[B, C, S, S]``, made as the prepared caches and normalised as it expects."""
        return {key: images_to_tensor(np.stack([render(image, spec) for image in images]), spec).to(self.exp.device)
                for key, spec in self.specs.items()}

    @torch.no_grad()
    def predict_batch(self, images: Sequence[Image.Image | str | Path], questions: Sequence[str],
                      k: int = 5) -> list[Prediction]:
        """Top-``k`` answers for each (image, question) pair."""
        if k < 1:
            raise UserError(f"-k {k}: ask for at least one answer")
        device = self.exp.device
        tokens = torch.stack([self.tokens(q) for q in questions]).to(device)  # [B, 12]
        pictures = [open_image(image) if isinstance(image, (str, Path)) else image for image in images]
        is_open = None if self.router is None else self.router(tokens).argmax(1) == 1  # [B]
        routing = is_open if is_open is not None else torch.zeros(len(questions), dtype=torch.bool, device=device)
        records = [VQARecord(str(i), f"query {i}", q, "", "OPEN" if o else "CLOSED", "", "query")
                   for i, (q, o) in enumerate(zip(questions, routing.tolist()))]
        rows = torch.arange(len(questions), device=device)
        split = SplitTensors(records, tokens, torch.full_like(rows, -1), routing, rows)
        self.exp.visual = QueryImages(self.images(pictures))
        top = predict_topk(self.exp, split, is_open, k)
        routes = [None] * len(questions) if is_open is None else ["open" if o else "closed" for o in is_open.tolist()]
        return [Prediction(question, answers, route) for question, answers, route in zip(questions, top, routes)]

    def predict(self, image: Image.Image | str | Path, question: str, k: int = 5) -> Prediction:
        return self.predict_batch([image], [question], k)[0]


def open_image(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{path}: not a readable image ({error})") from None


def read_batch(path: Path) -> list[tuple[Path, str]]:
    """(image, question) pairs from a JSONL or CSV file with fields ``image`` and ``question``."""
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise UserError(f"{path}:{number}: not JSON ({error.msg})") from None
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(enumerate(csv.DictReader(handle), 2))
    else:
        raise UserError(f"{path}: --input takes a .jsonl or .csv file")
    pairs = []
    for number, row in rows:
        if not isinstance(row, dict) or not row.get("image") or not row.get("question"):
            raise UserError(f"{path}:{number}: needs the fields image and question")
        pairs.append((path.parent / row["image"], str(row["question"])))
    if not pairs:
        raise UserError(f"{path}: no questions (one row per image and question, fields image and question)")
    return pairs


def format_prediction(prediction: Prediction) -> Iterable[str]:
    route = f"  [routed {prediction.route} by the type classifier]" if prediction.route else ""
    yield f"Q: {prediction.question}{route}"
    for rank, (answer, probability) in enumerate(prediction.answers, 1):
        yield f"  {rank}. {answer:<30} {probability:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="medvqa predict", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run directory")
    parser.add_argument("--image", type=Path, help="an image file (any format Pillow reads)")
    parser.add_argument("--question", help="the question about it")
    parser.add_argument("--input", type=Path, help="a .jsonl or .csv file of image, question (one answer line each, "
                                                   "JSON on stdout)")
    parser.add_argument("-k", type=int, default=5, help="answers to show (default 5)")
    parser.add_argument("--protocol", default="sound", help="which epoch's model: the one this protocol reports")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--data-root", type=Path, help="prepared dataset, if not at the run's data.root")
    args = parser.parse_args(argv)
    if (args.input is None) == (args.image is None and args.question is None):
        raise UserError("medvqa predict: give --image and --question, or --input FILE")
    if args.input is None and (args.image is None or args.question is None):
        raise UserError("medvqa predict: --image and --question go together")
    pairs = read_batch(args.input) if args.input else [(args.image, args.question)]
    predictor = Predictor.from_run(args.run, args.protocol, args.device, args.data_root)
    predictions = predictor.predict_batch([image for image, _ in pairs], [q for _, q in pairs], args.k)
    for (image, _), prediction in zip(pairs, predictions):
        if args.input:
            print(json.dumps({"image": str(image), "question": prediction.question, "route": prediction.route,
                              "answers": [{"answer": a, "probability": round(p, 6)} for a, p in prediction.answers]}))
        else:
            print("\n".join(format_prediction(prediction)))
    return 0
