"""Everything a training or evaluation run builds from its config: data tensors, answer set, model."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from infra.errors import UserError
from infra.tf32 import set_tf32
from medvqa.batches import SplitTensors, VisualInputs, answer_list, split_tensors
from medvqa.config import Config
from medvqa.data import AnswerVocab, PreparedDataset
from medvqa.models import QuestionTypeClassifier, VQAHead, VQAOutput, create_encoder, create_head
from medvqa.models.visual import PREPARED_WEIGHTS, VisualFrontEnd, frozen_encoders


@dataclass
class Experiment:
    config: Config
    ds: PreparedDataset
    vocab: AnswerVocab
    answers: list[str]  # answer string at each logit position
    model: VQAHead
    visual: VisualInputs
    splits: dict[str, SplitTensors]  # "train", "val" (may be empty), "test"
    device: torch.device
    data_digests: dict[str, str]  # the digest of each part of the data the run reads; checkpoints keep it
    encoder_settings: dict[str, dict[str, Any]]  # model.encoders with the weights files resolved


def resolve_device(name: str) -> torch.device:
    """``train.device``: "auto" picks CUDA when available; an unavailable CUDA device is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device {name!r} is not a device: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device {name!r}: CUDA is not available on this machine (use cpu or auto)")
    return device


def answer_sizes(vocab: AnswerVocab) -> dict[str, int]:
    """The size of each answer set a head may score (``VQAHead.branches`` names them)."""
    return {"all": len(vocab.all), "closed": len(vocab.closed), "open": len(vocab.open)}


def encoder_settings(config: Config, ds: PreparedDataset) -> dict[str, dict[str, Any]]:
    """``model.encoders`` with ``weights: prepared`` resolved to the copy in the prepared data; a named
    weights file that does not exist is a one-line error."""
    resolved = {}
    for name, settings in config.model.encoders.items():
        settings = dict(settings)
        weights = settings.get("weights")
        if weights == PREPARED_WEIGHTS:
            found = ds.encoder_weights(name)
            if found is None:
                raise UserError(f"model.encoders.{name}.weights is '{PREPARED_WEIGHTS}', but {ds.root} holds no "
                                f"{name} weights: prepare it with --encoder-weights DIR, or give the file")
            settings["weights"] = str(found)
        elif weights and not Path(weights).exists():
            raise UserError(f"model.encoders.{name}.weights: not found: {weights}")
        resolved[name] = settings
    return resolved


def build_model(config: Config, ds: PreparedDataset, vocab: AnswerVocab,
                settings: dict[str, dict[str, Any]]) -> VQAHead:
    """The configured head with GloVe / tf-idf initialised embeddings; ``settings``: ``encoder_settings``."""
    m = config.model
    try:
        encoders = {name: create_encoder(name, settings[name]) for name in m.visual}
        for name in frozen_encoders(m.freeze_visual, m.visual):
            encoders[name].freeze()
        model = create_head(m.name, m.head, ntoken=ds.dictionary.ntoken, answer_sizes=answer_sizes(vocab),
                            visual=VisualFrontEnd(encoders, float32_encoders=not config.train.bf16_visual))
    except (KeyError, ValueError, OSError) as error:  # OSError: a folder where a weights file belongs
        raise UserError(f"model: {error}") from None
    glove, tfidf_glove = ds.word_embeddings(tfidf=config.data.tfidf)
    model.init_word_embeddings(glove, tfidf_glove)
    return model


def encoders_from_files(model: VQAHead, settings: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Frozen encoders that their weights file rebuilds exactly, with their identities (name -> digest).

    ``settings``: the run's resolved encoder settings (``encoder_settings``). Checkpoints leave these
    encoders' parameters out (a frozen CLIP tower alone is hundreds of MB per file): loading one reads
    them from the same files again, and the identity proves they are unchanged. An encoder whose
    parameters the file does not give (a builder that ignores it, a file changed since an older
    checkpoint was written) keeps them in the checkpoint.
    """
    from_files = {}
    for name, encoder in model.visual.encoders.items():
        if encoder.trainable or not settings[name].get("weights"):
            continue
        rebuilt = dict(create_encoder(name, settings[name]).named_parameters())
        if all(torch.equal(p.detach().cpu(), rebuilt[key].detach()) for key, p in encoder.named_parameters()):
            from_files[name] = encoder.identity()
    return from_files


def _encoder_parameter_keys(model: VQAHead, names: Iterable[str]) -> set[str]:
    """The state-dict keys of the parameters (not buffers) of the visual encoders ``names``."""
    paths = {id(module): path for path, module in model.named_modules()}
    return {f"{paths[id(model.visual.encoders[name])]}.{key}"
            for name in names for key, _ in model.visual.encoders[name].named_parameters()}


def checkpoint_state(model: VQAHead, from_files: dict[str, str]) -> dict[str, Tensor]:
    """``model.state_dict()`` less the parameters of the encoders ``from_files`` (see ``encoders_from_files``)."""
    left_out = _encoder_parameter_keys(model, from_files)
    return {key: value for key, value in model.state_dict().items() if key not in left_out}


def load_model_state(model: VQAHead, state: dict, answers: list[str], where: str) -> None:
    """Load a checkpoint into ``model`` (built with the run's encoder weights files).

    A different answer set or model, or a weights file that changed since training, is a one-line error.
    """
    if state.get("answers") != answers:
        raise UserError(f"{where}: its answer vocabulary ({len(state.get('answers') or [])} answers) does not "
                        f"match the run's data ({len(answers)} answers)")
    from_files: dict[str, str] = state.get("encoders_from_files") or {}
    unknown = [name for name in from_files if name not in model.visual.encoders]
    if unknown:
        raise UserError(f"{where}: model mismatch, it reads visual encoders {unknown} from weights files "
                        f"but the model has {list(model.visual.encoders)}")
    try:
        result = model.load_state_dict(state["model"], strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise UserError(f"{where}: model mismatch, {detail}") from None
    missing = set(result.missing_keys) - _encoder_parameter_keys(model, from_files)
    if missing or result.unexpected_keys:
        raise UserError(f"{where}: model mismatch, missing {sorted(missing)[:3]}, "
                        f"unexpected {result.unexpected_keys[:3]}")
    for name, identity in from_files.items():
        if model.visual.encoders[name].identity() != identity:
            raise UserError(f"{where}: the weights file of model.encoders.{name} holds other weights than the "
                            f"frozen {name!r} encoder was trained with: restore the file it was trained with")


def check_data(state: dict, ds: PreparedDataset, where: str) -> None:
    """Refuse a checkpoint whose data digests differ from those of ``ds`` (checkpoints without any pass)."""
    trained_on = state.get("data_digests") or {}
    differing = [part for part, digest in trained_on.items() if ds.digest(part) != digest]
    if differing:
        raise UserError(f"{where} was trained on other data than {ds.root} ({', '.join(differing)} differ): "
                        "point data.root or --data-root at the data it was trained on")


def build_experiment(config: Config, state: dict | None = None, where: str = "checkpoint") -> Experiment:
    """Load the prepared dataset, build the model and preload every tensor a run needs.

    ``state``: a checkpoint to load before frozen features are computed (resume, evaluation); without
    one, frozen encoders get BatchNorm statistics from the training images.
    """
    ds = PreparedDataset(config.data.root)
    if state is not None:
        check_data(state, ds, where)
    vocab = ds.answer_vocab(config.data.answer_vocab, closed_by=config.data.closed_by)
    settings = encoder_settings(config, ds)
    model = build_model(config, ds, vocab, settings)
    if state is not None:
        load_model_state(model, state, answer_list(vocab, model.answer_branches), where)
    splits = {"train": split_tensors(ds, config.data.train_splits, ds.dictionary, vocab, model.answer_branches),
              "val": split_tensors(ds, [] if "val" in config.data.train_splits else ["val"], ds.dictionary,
                                   vocab, model.answer_branches),
              "test": split_tensors(ds, ["test"], ds.dictionary, vocab, model.answer_branches)}
    if not len(splits["train"]):
        raise UserError(f"{ds.root}: no training records in splits {config.data.train_splits}")
    encoders = dict(model.visual.encoders.items())
    cache = Path(config.train.feature_cache or Path(config.data.root) / "feature_cache")
    calibrate = any(not e.trainable and e.calibrate_norms for e in encoders.values()) and state is None
    calibration = splits["train"].image_rows.unique() if calibrate else None
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    device = resolve_device(config.train.device)
    set_tf32(config.train.tf32)
    model = model.to(device)  # before caching: frozen encoders compute their features on the training device
    visual = VisualInputs(ds, encoders, cache, calibration, config.train.channels_last).to(device)
    parts = ["records", "dictionary", "embeddings", *sorted({f"images:{e.input_spec.key}" for e in encoders.values()})]
    splits = {name: split.to(device) for name, split in splits.items()}
    return Experiment(config, ds, vocab, answer_list(vocab, model.answer_branches), model, visual, splits, device,
                      {part: ds.digest(part) for part in parts}, settings)


def forward(exp: Experiment, split: SplitTensors, idx: Tensor, is_open: Tensor | None = None) -> VQAOutput:
    """The head on the records ``idx`` of ``split``; ``is_open`` overrides the gold routing."""
    images, features = exp.visual.batch(split.image_rows[idx])
    routing = split.is_open[idx] if is_open is None else is_open.to(exp.device)
    with torch.autocast(exp.device.type, dtype=torch.bfloat16, enabled=exp.config.train.bf16):
        return exp.model(split.tokens[idx], images=images, features=features, is_open=routing)


@torch.no_grad()
def predict_topk(exp: Experiment, split: SplitTensors, is_open: Tensor | None = None,
                 k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable answers of every record of ``split`` with their probabilities, best first.

    Probabilities are the softmax of the logits over the answers of the branch that answered the
    question (gold routing unless ``is_open`` is given); fewer than ``k`` where that branch has fewer.
    """
    exp.model.eval()
    top = []
    for idx in split.batches(exp.config.train.eval_batch_size):
        routing = None if is_open is None else is_open[idx]
        logits = forward(exp, split, idx, routing).logits.float()  # [B, A]; -inf outside the routed branch
        order = logits.sort(dim=1, descending=True, stable=True).indices[:, :k]  # ties: the first answer first
        probabilities = logits.softmax(1).gather(1, order)
        for positions, values, reachable in zip(order.tolist(), probabilities.tolist(),
                                                torch.isfinite(logits).sum(1).tolist()):
            top.append([(exp.answers[p], v) for p, v in zip(positions[:reachable], values[:reachable])])
    return top


def predict(exp: Experiment, split: SplitTensors, is_open: Tensor | None = None) -> list[str]:
    """Predicted answer strings for every record of ``split`` (gold routing unless ``is_open`` is given)."""
    return [top[0][0] for top in predict_topk(exp, split, is_open, k=1)]


def build_type_classifier(exp: Experiment) -> QuestionTypeClassifier:
    model = QuestionTypeClassifier(exp.ds.dictionary.ntoken, hidden_dim=exp.config.type_classifier.hidden_dim)
    model.init_word_embeddings(exp.ds.word_embeddings(tfidf=exp.config.data.tfidf)[0])
    return model.to(exp.device)


@torch.no_grad()
def predict_open(classifier: QuestionTypeClassifier, tokens: Tensor, batch_size: int = 512) -> Tensor:
    """``[N]`` bool: the classifier says the question is open."""
    classifier.eval()
    return torch.cat([classifier(t).argmax(1) == 1 for t in tokens.split(batch_size)])
